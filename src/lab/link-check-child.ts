/**
 * The two ends of a link measurement, run inside lab hosts by link-check.ts:
 * `echo PORT` answers each 1-byte ping and sends N bytes on request;
 * `probe HOST PORT PINGS BYTES` prints {rtt_ms (median), rtt_min_ms, mbit} as
 * JSON (BYTES 0: pings only, no mbit).
 * Plain TCP, as the lab's traffic (HTTP, gRPC) is.
 */
import net from 'node:net';

function echo(port: number): void {
  net.createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => undefined);
    s.on('data', (d: Buffer) => {
      if (d[0] === 0x42) s.write(Buffer.alloc(d.readUInt32BE(1)));
      else s.write(d.subarray(0, 1));
    });
  }).listen(port, '0.0.0.0', () => process.stdout.write('ready\n'));
}

async function probe(host: string, port: number, pings: number, bytes: number): Promise<void> {
  const s = net.connect({ host, port });
  s.setNoDelay(true);
  await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
  const rtts: number[] = [];
  // The first pings warm up the proxy's code paths (and JIT): not counted.
  const warmup = 10;
  for (let i = 0; i < pings + warmup; i++) {
    const t = performance.now();
    s.write('p');
    await new Promise((r) => s.once('data', r));
    if (i >= warmup) rtts.push(performance.now() - t);
  }
  rtts.sort((a, b) => a - b);
  const rtt = { rtt_ms: rtts[Math.floor(rtts.length / 2)], rtt_min_ms: rtts[0] };
  const mbit = bytes > 0 ? await bulk(s, bytes) : undefined;
  s.destroy();
  process.stdout.write(`${JSON.stringify({ ...rtt, mbit })}\n`);
}

/** Mbit/s of a transfer of `bytes` toward the prober. */
async function bulk(s: net.Socket, bytes: number): Promise<number> {
  // Over the transfer after its first quarter: TCP's slow start is not the link's rate.
  const request = Buffer.alloc(5);
  request[0] = 0x42;
  request.writeUInt32BE(bytes, 1);
  let got = 0;
  let t1 = 0;
  const skip = bytes / 4;
  s.write(request);
  await new Promise<void>((resolve) => s.on('data', (d: Buffer) => {
    const before = got;
    got += d.length;
    if (before < skip && got >= skip) t1 = performance.now();
    if (got >= bytes) resolve();
  }));
  const seconds = (performance.now() - t1) / 1000;
  return ((bytes - skip) * 8) / seconds / 1e6;
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'echo') echo(Number(args[0]));
else probe(args[0], Number(args[1]), Number(args[2]), Number(args[3])).catch((err: Error) => {
  process.stderr.write(`${err.message}\n`);
  process.exit(1);
});
