/**
 * A TCP proxy that adds a one-way delay to every chunk, both directions: a
 * slow link for tests on a kernel without netem. Listens on `listenHost` at
 * each port of a range and forwards to the same port on `targetHost`.
 */
import net from 'node:net';

export interface DelayProxy {
  /** One-way delay in ms; takes effect for chunks sent from now on. */
  delayMs: number;
  close(): Promise<void>;
}

function pipeDelayed(from: net.Socket, to: net.Socket, proxy: { delayMs: number }): void {
  from.on('data', (chunk) => {
    // Same delay for every chunk of a link while it is unchanged: timers keep their order.
    setTimeout(() => { if (!to.destroyed) to.write(chunk); }, proxy.delayMs);
  });
  from.on('end', () => setTimeout(() => to.end(), proxy.delayMs));
  from.on('error', () => to.destroy());
  from.on('close', () => setTimeout(() => to.destroy(), proxy.delayMs + 1));
}

export async function startDelayProxy(listenHost: string, targetHost: string, ports: { from: number; to: number }, delayMs = 0): Promise<DelayProxy> {
  const proxy = { delayMs };
  const servers: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)); };
  for (let port = ports.from; port <= ports.to; port++) {
    const server = net.createServer((client) => {
      const upstream = net.connect({ host: targetHost, port });
      track(client);
      track(upstream);
      client.setNoDelay(true);
      upstream.setNoDelay(true);
      pipeDelayed(client, upstream, proxy);
      pipeDelayed(upstream, client, proxy);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, listenHost, () => resolve());
    });
    servers.push(server);
  }
  return Object.assign(proxy, {
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  });
}
