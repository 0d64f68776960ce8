/**
 * The shaping proxy on loopback (127.0.0.2 relays to 127.0.0.1, same port):
 * delay, ordered jitter, token-bucket bandwidth and loss, each measured on a
 * real TCP echo server. Namespaces and NAT are covered by test/lab.test.ts.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startProxyEnd, type LinkShape, type RunningProxy } from './link-proxy.js';

const linux = process.platform === 'linux'; // 127.0.0.2 answers without configuration on Linux only
let cleanup: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of cleanup.reverse()) await c(); // client, then proxy, then server: a server closes once its connections have
  cleanup = [];
});

async function echoServer(): Promise<number> {
  const server = net.createServer((s) => s.on('data', (d) => s.write(d)).on('error', () => undefined));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

async function proxied(shape: Partial<LinkShape>): Promise<net.Socket> {
  const port = await echoServer();
  const proxy: RunningProxy = await startProxyEnd({
    listenAddress: '127.0.0.2', targetAddress: '127.0.0.1', ports: [port], shape: { delayMs: 0, jitterMs: 0, lossPercent: 0, ...shape },
  });
  cleanup.push(() => proxy.close());
  const s = net.connect({ host: '127.0.0.2', port });
  s.setNoDelay(true);
  await new Promise((r) => s.once('connect', r));
  cleanup.push(async () => { s.destroy(); });
  return s;
}

/** Sends `count` numbered messages, one per `gapMs`, and records when and in which order their echoes arrive. */
async function stream(s: net.Socket, count: number, gapMs: number): Promise<{ order: number[]; rtts: number[] }> {
  const sent: number[] = [];
  const order: number[] = [];
  const rtts: number[] = [];
  let buffer = '';
  const done = new Promise<void>((resolve) => s.on('data', (d) => {
    buffer += d.toString();
    for (let i = buffer.indexOf(';'); i >= 0; i = buffer.indexOf(';')) {
      const n = Number(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
      order.push(n);
      rtts.push(performance.now() - sent[n]);
      if (order.length === count) resolve();
    }
  }));
  for (let n = 0; n < count; n++) {
    sent[n] = performance.now();
    s.write(`${n};`);
    await new Promise((r) => setTimeout(r, gapMs));
  }
  await done;
  return { order, rtts };
}

describe.skipIf(!linux)('link proxy', () => {
  it('delays each direction by the one-way delay, keeping order under jitter', async () => {
    const s = await proxied({ delayMs: 15, jitterMs: 10 });
    const { order, rtts } = await stream(s, 40, 3);
    expect(order).toEqual([...Array(40).keys()]); // jittered chunks never overtake each other
    // Each way 15 +- 10 ms: an echo takes 10-50 ms, and varies.
    expect(Math.min(...rtts)).toBeGreaterThanOrEqual(9.5);
    expect(Math.max(...rtts)).toBeLessThan(80);
    expect(Math.max(...rtts) - Math.min(...rtts)).toBeGreaterThan(5);
  });

  it('limits bandwidth with its token bucket when asked to', async () => {
    const s = await proxied({ bandwidthMbit: 8 }); // 1 MB/s each way
    const payload = Buffer.alloc(500_000, 1);
    let got = 0;
    const t0 = performance.now();
    const done = new Promise<void>((r) => s.on('data', (d: Buffer) => { got += d.length; if (got >= payload.length) r(); }));
    s.write(payload);
    await done;
    const seconds = (performance.now() - t0) / 1000;
    // 0.5 MB up and back at 1 MB/s: the two directions overlap, so ~0.5 s, not less.
    expect(seconds).toBeGreaterThan(0.45);
    expect(seconds).toBeLessThan(1.2);
  });

  it('turns loss into a connection reset', async () => {
    const s = await proxied({ lossPercent: 100 });
    const closed = new Promise<string>((r) => {
      s.once('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
      s.once('close', () => r('closed'));
    });
    s.write('lost');
    expect(await closed).toBe('ECONNRESET');
  });
});
