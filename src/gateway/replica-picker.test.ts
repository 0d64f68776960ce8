import { describe, expect, it } from 'vitest';
import type { Route, RouteReplica } from '../protocol/routing.js';
import { ReplicaPicker } from './replica-picker.js';
import { ReplicaStats } from './replica-stats.js';

const replica = (id: string, node: string, o: Partial<RouteReplica> = {}): RouteReplica => ({
  id, node, address: '10.0.0.1', port: 20000, grpc_port: 20001, cloud: false, version: '1', ...o,
});
const route = (replicas: RouteReplica[], locality: Route['policy']['locality'] = 'local-first'): Route => ({ deployment: 'd', policy: { locality, hedge: false }, replicas });

const local = replica('local', 'n1', { site: 'factory' });
const sameSite = replica('site', 'n2', { site: 'factory' });
const cloud = replica('cloud', 'n3', { site: 'cloud', cloud: true });
const here = { node: 'n1', site: 'factory' };

function counts(picker: ReplicaPicker, r: Route, n = 1000, exclude?: Set<string>): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const id = picker.pick(r, here, exclude)?.id ?? 'none';
    out[id] = (out[id] ?? 0) + 1;
  }
  return out;
}

describe('ReplicaPicker', () => {
  it('local-first: this node, then its site, then anything', () => {
    const stats = new ReplicaStats();
    const picker = new ReplicaPicker(stats);
    expect(counts(picker, route([local, sameSite, cloud]))).toEqual({ local: 1000 });
    expect(counts(picker, route([sameSite, cloud]))).toEqual({ site: 1000 });
    expect(counts(picker, route([cloud]))).toEqual({ cloud: 1000 });
  });

  it('skips ejected replicas, moving to the next tier, and uses them only when nothing else is left', () => {
    const stats = new ReplicaStats();
    const picker = new ReplicaPicker(stats);
    stats.begin('local');
    expect(stats.end('local', { ok: false, kind: 'connect' })).toBe(true); // a connection failure ejects at once
    expect(counts(picker, route([local, sameSite]))).toEqual({ site: 1000 });
    expect(counts(picker, route([local]))).toEqual({ local: 1000 }); // panic mode
  });

  it('never picks a replica already tried for this request', () => {
    const picker = new ReplicaPicker(new ReplicaStats());
    expect(counts(picker, route([local, sameSite]), 100, new Set(['local']))).toEqual({ site: 100 });
    expect(picker.pick(route([local]), here, new Set(['local']))).toBeUndefined();
  });

  it('cloud-only keeps cloud replicas only', () => {
    const picker = new ReplicaPicker(new ReplicaStats());
    expect(counts(picker, route([local, sameSite, cloud], 'cloud-only'))).toEqual({ cloud: 1000 });
    expect(picker.pick(route([local], 'cloud-only'), here)).toBeUndefined();
  });

  it('fastest: power of two choices favours the lower latency x (1 + in-flight)', () => {
    const stats = new ReplicaStats();
    const picker = new ReplicaPicker(stats);
    const fast = replica('fast', 'n2');
    const slow = replica('slow', 'n3');
    for (let i = 0; i < 5; i++) {
      stats.begin('fast'); stats.end('fast', { ok: true, latencyMs: 2 });
      stats.begin('slow'); stats.end('slow', { ok: true, latencyMs: 40 });
    }
    expect(counts(picker, route([fast, slow], 'fastest'))).toEqual({ fast: 1000 });
    // With enough requests queued at the fast one, the slow one wins.
    for (let i = 0; i < 30; i++) stats.begin('fast');
    expect(counts(picker, route([fast, slow], 'fastest'))).toEqual({ slow: 1000 });
  });
});

describe('ReplicaStats: outlier ejection', () => {
  it('ejects after consecutive 5xx answers, and a successful half-open probe readmits', () => {
    // Long enough that a busy machine cannot end the ejection between two lines; the time after it is passed explicitly.
    const ejectionMs = 60_000;
    const stats = new ReplicaStats({ consecutiveErrors: 3, baseEjectionMs: ejectionMs });
    for (let i = 0; i < 2; i++) {
      stats.begin('r'); expect(stats.end('r', { ok: false, kind: 'status' })).toBe(false);
    }
    stats.begin('r');
    expect(stats.end('r', { ok: false, kind: 'status' })).toBe(true);
    expect(stats.isEjected('r')).toBe(true);
    expect(stats.dueForHalfOpenProbe('r')).toBe(false); // not before its ejection time is over
    expect(stats.dueForHalfOpenProbe('r', performance.now() + ejectionMs + 1)).toBe(true);
    stats.probed('r', { ok: true, latencyMs: 3 });
    expect(stats.isEjected('r')).toBe(false);
    expect(stats.dueForHalfOpenProbe('r')).toBe(false);
  });

  it('ejects an admitted replica only after repeated failed probes, an ejected one at the first', () => {
    const stats = new ReplicaStats({ consecutiveErrors: 3, baseEjectionMs: 10_000 });
    expect(stats.probed('r', { ok: false })).toBe(false);
    expect(stats.probed('r', { ok: false })).toBe(false);
    expect(stats.probed('r', { ok: false })).toBe(true);
    expect(stats.probed('r', { ok: false })).toBe(false); // still ejected: extended, not a new ejection
    expect(stats.isEjected('r')).toBe(true);
  });

  it('does not blame a replica for a cancelled request', () => {
    const stats = new ReplicaStats({ consecutiveErrors: 1 });
    stats.begin('r');
    expect(stats.end('r', { ok: false, kind: 'cancelled' })).toBe(false);
    expect(stats.isEjected('r')).toBe(false);
    expect(stats.inflight('r')).toBe(0);
  });
});
