/**
 * The lab's link emulator: a shaping TCP proxy for one direction of a link
 * (connections opened by host A to host B). This kernel has no netem, so the
 * delay is added here, in user space; no library does per-chunk delay with
 * ordered jitter, a token bucket and loss for TCP streams, hence this file.
 *
 * Each chunk read from one side gets a delivery time: when the token bucket
 * (bandwidth, if the proxy enforces it) lets it leave, plus the one-way delay
 * +- jitter, never before the previous chunk (TCP keeps order). One timer per
 * direction delivers the queue. Reading pauses while more than four
 * bandwidth-delay products (at least 256 KiB) wait in the queue, so a fast
 * sender feels the link as it would a real one. Loss resets the connection:
 * TCP hides a lost packet as a retransmission, which a proxy between two
 * healthy kernels cannot show.
 */
import net from 'node:net';

export interface LinkShape {
  /** One-way delay added to every chunk, in ms. */
  delayMs: number;
  jitterMs: number;
  /** Enforced by the proxy when set (undefined: unlimited here, or shaped by tc). */
  bandwidthMbit?: number;
  lossPercent: number;
}

type Item = { at: number; chunk: Buffer } | { at: number; end: true };

/** One direction of one connection: chunks from `from` reach `to` when the link would deliver them. */
class DelayLine {
  private readonly queue: Item[] = [];
  private timer: NodeJS.Timeout | undefined;
  private armed = false;
  private lastDepart = 0;
  private lastDeliver = 0;
  private queuedBytes = 0;
  private readonly highWater: number;

  constructor(private readonly from: net.Socket, private readonly to: net.Socket, private readonly shape: LinkShape, private readonly onLoss: () => void) {
    const bdp = shape.bandwidthMbit ? (shape.bandwidthMbit * 1e6 / 8) * ((shape.delayMs + shape.jitterMs) / 1000) : 4 * 2 ** 20;
    // Room for the bytes in flight (one bandwidth-delay product) and a backlog that keeps the bucket busy
    // while reading resumes: below that, the link idles and measures slower than its rate.
    this.highWater = Math.max(256 * 1024, 4 * bdp);
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.enqueue({ at: this.deliveryTime(0), end: true }));
    to.on('drain', () => this.maybeResume());
  }

  private deliveryTime(bytes: number): number {
    const now = performance.now();
    let depart = now;
    if (this.shape.bandwidthMbit) {
      // Token bucket with a one-packet burst: the link serializes chunks one after another.
      depart = Math.max(now, this.lastDepart) + (bytes * 8) / (this.shape.bandwidthMbit * 1000);
      this.lastDepart = depart;
    }
    const jitter = this.shape.jitterMs ? (Math.random() * 2 - 1) * this.shape.jitterMs : 0;
    this.lastDeliver = Math.max(this.lastDeliver, depart + Math.max(0, this.shape.delayMs + jitter));
    return this.lastDeliver;
  }

  private push(chunk: Buffer): void {
    if (this.shape.lossPercent > 0 && Math.random() * 100 < this.shape.lossPercent) {
      this.onLoss();
      return;
    }
    this.queuedBytes += chunk.length;
    this.enqueue({ at: this.deliveryTime(chunk.length), chunk });
    if (this.queuedBytes > this.highWater) this.from.pause();
  }

  private enqueue(item: Item): void {
    this.queue.push(item);
    if (this.queue.length === 1) this.arm();
  }

  private arm(): void {
    if (this.armed || this.queue.length === 0) return;
    this.armed = true;
    const wait = this.queue[0].at - performance.now();
    // Node timers count whole milliseconds and fire up to one late: wake a millisecond early and
    // finish the wait on the next turns of the loop (at most a millisecond of polling per delivery).
    if (wait < 1.5) setImmediate(() => this.deliver());
    else this.timer = setTimeout(() => this.deliver(), wait - 1);
  }

  private deliver(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armed = false;
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0].at <= now + 0.05) {
      const item = this.queue.shift()!;
      if ('end' in item) {
        this.to.end();
        continue;
      }
      this.queuedBytes -= item.chunk.length;
      if (!this.to.destroyed) this.to.write(item.chunk);
    }
    this.maybeResume();
    this.arm();
  }

  private maybeResume(): void {
    if (this.from.isPaused() && this.queuedBytes < this.highWater / 2 && this.to.writableLength < this.highWater) this.from.resume();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

export interface ProxyEnd {
  /** Address the proxy listens on (connections to `targetAddress` are NATed here). */
  listenAddress: string;
  targetAddress: string;
  ports: number[];
  shape: LinkShape;
}

export interface RunningProxy {
  connections(): number;
  /** Changes the shape in place, open connections included (`tern lab up` calibrates the delay this way). */
  reshape(shape: LinkShape): void;
  close(): Promise<void>;
}

function relay(client: net.Socket, end: ProxyEnd, shape: LinkShape, port: number, sockets: Set<net.Socket>): void {
  // Leave from the proxy's own address: tc classifies each link's traffic by it.
  const upstream = net.connect({ host: end.targetAddress, port, localAddress: end.listenAddress });
  for (const s of [client, upstream]) {
    sockets.add(s);
    s.setNoDelay(true);
    s.on('close', () => sockets.delete(s));
  }
  const reset = () => {
    client.resetAndDestroy();
    upstream.resetAndDestroy();
  };
  const lines = [new DelayLine(client, upstream, shape, reset), new DelayLine(upstream, client, shape, reset)];
  const close = () => {
    lines.forEach((l) => l.stop());
    client.destroy();
    upstream.destroy();
  };
  // An error or a close on one side ends the other once what is in flight would have arrived.
  const later = () => setTimeout(close, shape.delayMs + shape.jitterMs + 1);
  client.on('error', later);
  upstream.on('error', later);
  client.on('close', later);
  upstream.on('close', later);
}

/** Listens on every port of `end` and relays each connection to the same port of the target. */
export async function startProxyEnd(end: ProxyEnd): Promise<RunningProxy> {
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  // One shape object shared by every connection of this end: reshape() reaches them all.
  const shape: LinkShape = { ...end.shape };
  for (const port of end.ports) {
    const server = net.createServer({ noDelay: true }, (client) => relay(client, end, shape, port, sockets));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: end.listenAddress, port, backlog: 1024 }, () => resolve());
    });
    servers.push(server);
  }
  return {
    connections: () => sockets.size / 2,
    reshape: (next) => void Object.assign(shape, next),
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
