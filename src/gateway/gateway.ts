/**
 * The gateway's core: knows the routing table, picks replicas, retries,
 * hedges, enforces deadlines and probes replicas. It knows nothing of HTTP or
 * gRPC: a transport hands it an `Attempt` (send this request to that replica)
 * and gets the first good answer back, as Triton's frontends hand requests to
 * its core.
 */
import type { Logger } from 'pino';
import { TernError } from '../protocol/errors.js';
import type { Route, RouteReplica, RoutingTable } from '../protocol/routing.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import { LatencyWindow } from './latency-window.js';
import { ReplicaPicker, type Locale } from './replica-picker.js';
import { ReplicaStats, type FailureKind, type ReplicaStatsConfig } from './replica-stats.js';

/** One try of a request on one replica. `value` on a failure is the replica's own error answer, returned if no retry does better. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; kind: FailureKind; error: Error; value?: T };
export type Attempt<T> = (replica: RouteReplica, signal: AbortSignal) => Promise<Outcome<T>>;

export interface Routed<T> {
  value: T;
  replica: RouteReplica;
}

export interface GatewayConfig {
  locale?: Locale;
  log: Logger;
  metrics: GatewayMetrics;
  stats?: ReplicaStatsConfig;
  /** Probes replicas not used for this long (ms) to keep their latency fresh (default 2000). */
  probeIdleMs?: number;
  probeIntervalMs?: number;
  /**
   * A replica that has not answered one request after this long (ms) is treated as failed:
   * the request is retried elsewhere and the replica ejected (default 30 s). A hung replica
   * would otherwise hold requests until the caller gives up.
   */
  attemptTimeoutMs?: number;
  /** A health check of one replica; resolves when it answered ready (latency measured by the gateway). */
  probe?: (replica: RouteReplica, signal: AbortSignal) => Promise<void>;
}

export class Gateway {
  readonly stats: ReplicaStats;
  private readonly picker: ReplicaPicker;
  private routes = new Map<string, Route>();
  private tableVersion = -1;
  private readonly windows = new Map<string, LatencyWindow>();
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly probing = new Set<string>();
  private locale: Locale;

  constructor(private readonly config: GatewayConfig) {
    this.stats = new ReplicaStats(config.stats);
    this.picker = new ReplicaPicker(this.stats);
    this.locale = config.locale ?? {};
    if (config.probe) {
      this.probeTimer = setInterval(() => this.probeRound(), config.probeIntervalMs ?? 500);
      this.probeTimer.unref();
    }
  }

  /** The routing-table version in use (-1 before the first table). */
  get version(): number {
    return this.tableVersion;
  }

  get deployments(): string[] {
    return [...this.routes.keys()];
  }

  /** Where "local" is; the control plane's gateway learns it once its node joined. */
  setLocale(locale: Locale): void {
    this.locale = locale;
  }

  /** Takes a newer table; false for an older or equal version. Replicas that left get no new requests from now on (the drain protocol's first step). */
  apply(table: RoutingTable): boolean {
    if (table.version <= this.tableVersion) return false;
    this.tableVersion = table.version;
    this.routes = new Map(table.routes.map((r) => [r.deployment, r]));
    this.stats.retain(new Set(table.routes.flatMap((r) => r.replicas.map((x) => x.id))));
    return true;
  }

  route(deployment: string): Route {
    const route = this.routes.get(deployment);
    if (!route) {
      const known = this.tableVersion < 0 ? 'no routing table yet' : `routing table version ${this.tableVersion}`;
      throw new TernError('MODEL_NOT_FOUND', `deployment ${deployment} is unknown to this gateway (${known})`);
    }
    if (route.replicas.length === 0) throw new TernError('MODEL_UNAVAILABLE', `deployment ${deployment} has no ready replica`);
    return route;
  }

  /** Any replica of the deployment, for requests whose answer does not depend on the replica (metadata, readiness). */
  async forward<T>(deployment: string, attempt: Attempt<T>, deadline?: number): Promise<Routed<T>> {
    try {
      return await this.run(this.route(deployment), attempt, deadline);
    } catch (err) {
      if (err instanceof TernError) this.config.metrics.failed(deployment, err.code);
      throw err;
    }
  }

  close(): void {
    clearInterval(this.probeTimer);
  }

  // ---------------------------------------------------------------------------

  private window(deployment: string): LatencyWindow {
    let w = this.windows.get(deployment);
    if (!w) this.windows.set(deployment, w = new LatencyWindow());
    return w;
  }

  /**
   * Sends to one replica; on a failure retries once on another; with hedging,
   * sends a second copy when the first is slower than the deployment's p95.
   * The first good answer wins and the other copy is cancelled.
   */
  private run<T>(route: Route, attempt: Attempt<T>, deadline: number | undefined): Promise<Routed<T>> {
    const { metrics } = this.config;
    const name = route.deployment;
    const tried = new Set<string>();
    const inflight = new Map<string, AbortController>();
    let retryLeft = true;
    let settled = false;
    let last: { replica: RouteReplica; outcome: Outcome<T> & { ok: false } } | undefined;
    const timers: NodeJS.Timeout[] = [];

    return new Promise<Routed<T>>((resolve, reject) => {
      const finish = (fn: () => void) => {
        settled = true;
        for (const t of timers) clearTimeout(t);
        for (const c of inflight.values()) c.abort();
        fn();
      };
      const giveUp = () => finish(() => {
        if (last?.outcome.value !== undefined) resolve({ value: last.outcome.value, replica: last.replica });
        else reject(new TernError('UPSTREAM_FAILED', `deployment ${name}: no replica answered (last: ${last ? `${last.replica.id} on ${last.replica.node}: ${last.outcome.error.message}` : 'none tried'})`));
      });

      const launch = (hedge: boolean): boolean => {
        const replica = this.picker.pick(route, this.locale, tried);
        if (!replica) return false;
        tried.add(replica.id);
        const controller = new AbortController();
        inflight.set(replica.id, controller);
        this.stats.begin(replica.id);
        const started = performance.now();
        const limitMs = this.config.attemptTimeoutMs ?? 30_000;
        let hung = false;
        const hangTimer = setTimeout(() => { hung = true; controller.abort(); }, limitMs);
        attempt(replica, controller.signal).catch((error: unknown): Outcome<T> => ({ ok: false, kind: 'connect', error: error as Error })).then((result) => {
          clearTimeout(hangTimer);
          inflight.delete(replica.id);
          const ms = performance.now() - started;
          const outcome: Outcome<T> = hung ? { ok: false, kind: 'connect', error: new Error(`no answer within ${limitMs} ms`) } : result;
          const cancelled = !outcome.ok && !hung && (controller.signal.aborted || outcome.kind === 'cancelled');
          if (outcome.ok) {
            this.stats.end(replica.id, { ok: true, latencyMs: ms });
            metrics.attempt(name, replica.id, 'ok', ms / 1000);
            this.window(name).add(ms);
          } else {
            const ejected = this.stats.end(replica.id, { ok: false, kind: cancelled ? 'cancelled' : outcome.kind });
            metrics.attempt(name, replica.id, cancelled ? 'cancelled' : 'error');
            if (ejected) {
              metrics.ejection(name, replica.id);
              this.config.log.warn({ deployment: name, replica: replica.id, node: replica.node, reason: outcome.error.message }, 'replica ejected');
            }
          }
          if (settled) return;
          if (outcome.ok) {
            if (tried.size > 1 && route.policy.hedge) metrics.hedge(name, hedge ? 'hedge' : 'first');
            finish(() => resolve({ value: outcome.value, replica }));
            return;
          }
          last = { replica, outcome };
          if (retryLeft && launch(false)) {
            retryLeft = false;
            metrics.retry(name);
            return;
          }
          if (inflight.size === 0) giveUp();
        }, (err: unknown) => { if (!settled) finish(() => reject(err)); });
        return true;
      };

      if (deadline !== undefined) {
        const left = deadline - Date.now();
        if (left <= 0) return finish(() => reject(deadlineError(name, deadline)));
        timers.push(setTimeout(() => finish(() => reject(deadlineError(name, deadline))), left));
      }
      if (!launch(false)) return giveUp();
      const hedgeAfter = route.policy.hedge ? this.window(name).p95() : undefined;
      if (hedgeAfter !== undefined) {
        timers.push(setTimeout(() => {
          if (!settled && launch(true)) retryLeft = false; // the hedge is the one extra copy this request gets
        }, Math.max(1, hedgeAfter)));
      }
    });
  }

  /** Half-open probes of ejected replicas whose ejection ran out, and latency probes of idle ones. */
  private probeRound(): void {
    const probe = this.config.probe;
    if (!probe) return;
    const now = performance.now();
    const idleMs = this.config.probeIdleMs ?? 2000;
    for (const route of this.routes.values()) {
      for (const r of route.replicas) {
        const halfOpen = this.stats.dueForHalfOpenProbe(r.id, now);
        if (this.probing.has(r.id)) continue;
        if (!halfOpen && (this.stats.isEjected(r.id, now) || !this.stats.idleFor(r.id, idleMs, now))) continue;
        this.probing.add(r.id);
        const started = performance.now();
        const signal = AbortSignal.timeout(2000);
        probe(r, signal).finally(() => this.probing.delete(r.id)).then(
          () => {
            this.stats.probed(r.id, { ok: true, latencyMs: performance.now() - started });
            if (halfOpen) this.config.log.info({ deployment: route.deployment, replica: r.id }, 'replica readmitted after a successful probe');
          },
          () => {
            if (this.stats.probed(r.id, { ok: false })) this.config.metrics.ejection(route.deployment, r.id);
          },
        );
      }
    }
  }
}

function deadlineError(deployment: string, deadline: number): TernError {
  return new TernError('DEADLINE_EXCEEDED', `deployment ${deployment}: no answer before the request's deadline (${new Date(deadline).toISOString()})`);
}
