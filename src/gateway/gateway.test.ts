/**
 * The gateway core's decisions, with attempts as plain functions (the core is
 * transport-agnostic by design; the HTTP and gRPC transports are tested
 * against real replicas in test/gateway*.test.ts).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { RouteReplica, RoutingTable } from '../protocol/routing.js';
import { Gateway, type Attempt } from './gateway.js';
import { GatewayMetrics } from './gateway-metrics.js';

const replica = (id: string, node: string): RouteReplica => ({ id, node, address: '127.0.0.1', port: 1, grpc_port: 2, cloud: false, version: '1' });
const table = (version: number, replicas: RouteReplica[]): RoutingTable => ({
  version, generated_at: 0, routes: [{ deployment: 'd', policy: { locality: 'local-first', hedge: false }, replicas }],
});

function gateway(attemptTimeoutMs?: number): Gateway {
  const g = new Gateway({ locale: { node: 'n1' }, log: pino({ level: 'silent' }), metrics: new GatewayMetrics(), attemptTimeoutMs });
  g.apply(table(1, [replica('r1', 'n1'), replica('r2', 'n2')]));
  return g;
}

const refused: Attempt<string> = async (r) => (r.id === 'r1' ? { ok: false, kind: 'connect', error: new Error('connect ECONNREFUSED') } : { ok: true, value: `from ${r.id}` });

describe('Gateway core', () => {
  it('retries once on another replica after a connection failure, and ejects the failed one', async () => {
    const g = gateway();
    expect(await g.forward('d', refused)).toMatchObject({ value: 'from r2', replica: { id: 'r2' } });
    expect(g.stats.isEjected('r1')).toBe(true);
    expect(await g.forward('d', refused)).toMatchObject({ value: 'from r2' }); // r1 is skipped while ejected
  });

  it('gives up naming the last failure when every try failed, or returns the replica\'s own error answer', async () => {
    const g = gateway();
    await expect(g.forward('d', async () => ({ ok: false, kind: 'connect', error: new Error('connection reset') })))
      .rejects.toMatchObject({ code: 'UPSTREAM_FAILED', message: expect.stringMatching(/no replica answered \(last: r\d on n\d: connection reset\)/) });
    const g2 = gateway();
    const fiveHundred: Attempt<string> = async (r) => ({ ok: false, kind: 'status', error: new Error('HTTP 500'), value: `500 from ${r.id}` });
    expect((await g2.forward('d', fiveHundred)).value).toMatch(/^500 from r[12]$/);
  });

  it('answers DEADLINE_EXCEEDED when the deadline passes, and retries a hung replica elsewhere', async () => {
    const g = gateway(50);
    const hang: Attempt<string> = (r, signal) => new Promise((resolve) => {
      if (r.id === 'r2') resolve({ ok: true, value: 'r2' });
      signal.addEventListener('abort', () => resolve({ ok: false, kind: 'cancelled', error: new Error('aborted') }));
    });
    await expect(gateway().forward('d', hang, Date.now() + 30)).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    const started = performance.now();
    expect((await g.forward('d', hang)).value).toBe('r2');
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(g.stats.isEjected('r1')).toBe(true);
  });

  it('names an unknown deployment and one with no ready replica; ignores older tables', () => {
    const g = gateway();
    expect(() => g.route('nope')).toThrow(/deployment nope is unknown to this gateway \(routing table version 1\)/);
    expect(g.apply(table(1, []))).toBe(false);
    expect(g.apply(table(2, []))).toBe(true);
    expect(() => g.route('d')).toThrow(/deployment d has no ready replica/);
  });
});
