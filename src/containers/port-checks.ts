/** Node port checks for containers on the node's network: before one starts (free?) and while it starts (accepting?). */
import net from 'node:net';

/** True when nothing listens on `port` on any address of this node. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host: '0.0.0.0', exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** True when something accepts TCP connections on this node's `port` (a hung handshake counts as no after 2 s). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.setTimeout(2000, () => s.destroy());
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}
