/**
 * What the gateway has learned about each replica: EWMA latency (from real
 * requests and from probes), requests in flight, when it was last used, and
 * outlier ejection.
 *
 * Ejection (as Envoy's outlier detection): a connection failure ejects at
 * once (the replica is gone or restarting); 5xx answers eject after
 * `consecutiveErrors` in a row. The ejection lasts `baseEjectionMs` x the
 * number of times the replica was ejected (capped), after which it is
 * half-open: the prober sends it one health check, and a success readmits it
 * with a clean slate, a failure ejects it again.
 */

export interface ReplicaStatsConfig {
  /** Weight of the newest sample in the EWMA (0..1). */
  alpha?: number;
  /** Latency assumed for a replica never measured (ms): optimistic, so new replicas get tried. */
  initialLatencyMs?: number;
  consecutiveErrors?: number;
  baseEjectionMs?: number;
  maxEjectionMs?: number;
}

interface Entry {
  ewmaMs: number;
  samples: number;
  inflight: number;
  lastUsed: number;
  lastProbed: number;
  errorsInARow: number;
  ejections: number;
  /** performance.now() until which it is ejected; 0 when admitted. */
  ejectedUntil: number;
}

/** connect: no connection or it broke; status: the replica answered 5xx; cancelled: the gateway gave up on it (deadline, a hedge won). */
export type FailureKind = 'connect' | 'status' | 'cancelled';

export class ReplicaStats {
  private readonly entries = new Map<string, Entry>();
  private readonly alpha: number;
  private readonly initialMs: number;
  private readonly errorLimit: number;
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(config: ReplicaStatsConfig = {}) {
    this.alpha = config.alpha ?? 0.3;
    this.initialMs = config.initialLatencyMs ?? 1;
    this.errorLimit = config.consecutiveErrors ?? 3;
    this.baseMs = config.baseEjectionMs ?? 1000;
    this.maxMs = config.maxEjectionMs ?? 30_000;
  }

  private entry(id: string): Entry {
    let e = this.entries.get(id);
    if (!e) {
      e = { ewmaMs: this.initialMs, samples: 0, inflight: 0, lastUsed: 0, lastProbed: 0, errorsInARow: 0, ejections: 0, ejectedUntil: 0 };
      this.entries.set(id, e);
    }
    return e;
  }

  /** The picker's cost: expected latency scaled by the queue already waiting there. */
  cost(id: string): number {
    const e = this.entry(id);
    return e.ewmaMs * (1 + e.inflight);
  }

  latencyMs(id: string): number {
    return this.entry(id).ewmaMs;
  }

  inflight(id: string): number {
    return this.entry(id).inflight;
  }

  isEjected(id: string, now = performance.now()): boolean {
    const until = this.entries.get(id)?.ejectedUntil ?? 0;
    return until > now;
  }

  /** Ejected and its ejection time is over: due for a half-open probe. */
  dueForHalfOpenProbe(id: string, now = performance.now()): boolean {
    const until = this.entries.get(id)?.ejectedUntil ?? 0;
    return until !== 0 && until <= now;
  }

  /** Not used by real traffic (or probed) for `idleMs`: its latency figure is getting stale. */
  idleFor(id: string, idleMs: number, now = performance.now()): boolean {
    const e = this.entry(id);
    return now - Math.max(e.lastUsed, e.lastProbed) >= idleMs;
  }

  begin(id: string): void {
    const e = this.entry(id);
    e.inflight += 1;
    e.lastUsed = performance.now();
  }

  /** Ends a request begun with `begin`; `latencyMs` is recorded only for answers from the model. */
  end(id: string, outcome: { ok: true; latencyMs: number } | { ok: false; kind: FailureKind }): boolean {
    const e = this.entry(id);
    e.inflight = Math.max(0, e.inflight - 1);
    if (outcome.ok) {
      this.sample(e, outcome.latencyMs);
      e.errorsInARow = 0;
      return false;
    }
    if (outcome.kind === 'cancelled') return false; // not the replica's fault
    e.errorsInARow += 1;
    if (outcome.kind === 'connect' || e.errorsInARow >= this.errorLimit) return this.eject(e);
    return false;
  }

  /**
   * A probe's result: a success readmits an ejected replica; a failed half-open probe ejects it
   * again, a failed latency probe of an admitted one counts like a 5xx (one slow health check on
   * a busy board is no reason to drop a replica).
   */
  probed(id: string, result: { ok: true; latencyMs: number } | { ok: false }): boolean {
    const e = this.entry(id);
    e.lastProbed = performance.now();
    if (!result.ok) {
      if (e.ejectedUntil !== 0) return this.eject(e);
      e.errorsInARow += 1;
      return e.errorsInARow >= this.errorLimit ? this.eject(e) : false;
    }
    this.sample(e, result.latencyMs);
    if (e.ejectedUntil !== 0) {
      e.ejectedUntil = 0;
      e.errorsInARow = 0;
    }
    return false;
  }

  /** Replicas no longer in the routing table. */
  retain(ids: ReadonlySet<string>): void {
    for (const id of this.entries.keys()) if (!ids.has(id)) this.entries.delete(id);
  }

  private sample(e: Entry, ms: number): void {
    e.ewmaMs = e.samples === 0 ? ms : e.ewmaMs + this.alpha * (ms - e.ewmaMs);
    e.samples += 1;
  }

  /** Returns true when this is a new ejection (for the metrics). */
  private eject(e: Entry): boolean {
    const now = performance.now();
    const fresh = e.ejectedUntil <= now;
    if (fresh) e.ejections += 1;
    e.ejectedUntil = now + Math.min(this.maxMs, this.baseMs * e.ejections);
    e.errorsInARow = 0;
    return fresh;
  }
}
