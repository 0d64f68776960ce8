/**
 * Ports for replicas from a configured range. Each replica takes a pair: HTTP
 * on `port`, gRPC on `port + 1`. A port is handed out only when both are free
 * right now (a test bind) and not reserved for another replica of this agent.
 */
import net from 'node:net';

export interface PortRange {
  from: number;
  to: number;
}

export const DEFAULT_PORT_RANGE: PortRange = { from: 20000, to: 20999 };

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

export class PortAllocator {
  private readonly reserved = new Map<number, string>();
  private cursor: number;

  constructor(private readonly range: PortRange = DEFAULT_PORT_RANGE, private readonly host = '0.0.0.0') {
    if (!(range.from > 0 && range.to <= 65535 && range.to > range.from)) {
      throw new Error(`port range ${range.from}-${range.to} is invalid: it needs at least two ports within 1-65535`);
    }
    this.cursor = range.from;
  }

  /** A free port pair for `owner`; `preferred` (e.g. the port a restarted replica had) is tried first. */
  async allocate(owner: string, preferred?: number): Promise<number> {
    const existing = [...this.reserved].find(([, o]) => o === owner)?.[0];
    if (existing !== undefined) return existing;
    const candidates: number[] = [];
    if (preferred !== undefined && preferred >= this.range.from && preferred < this.range.to) candidates.push(preferred);
    const span = this.range.to - this.range.from;
    for (let i = 0; i < span; i++) {
      const p = this.range.from + ((this.cursor - this.range.from + i) % span);
      if (p !== preferred) candidates.push(p);
    }
    for (const p of candidates) {
      if (this.reserved.has(p) || this.reserved.has(p + 1) || this.reserved.has(p - 1)) continue;
      this.reserved.set(p, owner); // reserve before the async probe, so concurrent allocations skip it
      if ((await canBind(p, this.host)) && (await canBind(p + 1, this.host))) {
        this.cursor = p + 2 > this.range.to - 1 ? this.range.from : p + 2;
        return p;
      }
      this.reserved.delete(p);
    }
    throw new Error(`no free port pair in ${this.range.from}-${this.range.to} (${this.reserved.size} reserved by replicas)`);
  }

  /** Reserves the pair a running workload already listens on (one adopted after an agent restart), without a test bind. */
  claim(owner: string, port: number): void {
    this.release(owner);
    this.reserved.set(port, owner);
  }

  release(owner: string): void {
    for (const [p, o] of this.reserved) if (o === owner) this.reserved.delete(p);
  }

  portOf(owner: string): number | undefined {
    return [...this.reserved].find(([, o]) => o === owner)?.[0];
  }
}
