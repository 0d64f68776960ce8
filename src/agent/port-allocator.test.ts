import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { PortAllocator } from './port-allocator.js';

async function freeBase(): Promise<number> {
  // A port with some room above it, found by binding to 0.
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '0.0.0.0', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return Math.min(port, 60000);
}

describe('port allocator', () => {
  it('hands out distinct free pairs, skips busy ports, and reuses released ones', async () => {
    const base = await freeBase();
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(base + 1, '0.0.0.0', r));
    try {
      const ports = new PortAllocator({ from: base, to: base + 20 });
      const a = await ports.allocate('a');
      const b = await ports.allocate('b');
      expect(a).not.toBe(base); // base+1 (its gRPC port) is busy
      expect(Math.abs(a - b)).toBeGreaterThanOrEqual(2);
      expect(await ports.allocate('a')).toBe(a);
      expect(ports.portOf('b')).toBe(b);
      ports.release('a');
      expect(await ports.allocate('c', a)).toBe(a);
    } finally {
      busy.close();
    }
  });

  it('says so when the range is exhausted', async () => {
    const base = await freeBase();
    const ports = new PortAllocator({ from: base, to: base + 2 }); // room for one pair (base, base+1)
    await ports.allocate('a');
    await expect(ports.allocate('b')).rejects.toThrow(/no free port pair/);
  });

  it('rejects an invalid range', () => {
    expect(() => new PortAllocator({ from: 10, to: 10 })).toThrow(/invalid/);
  });
});
