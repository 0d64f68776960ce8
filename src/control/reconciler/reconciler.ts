/**
 * Converges observed to desired state, continuously and after every change:
 * places missing replicas, retires surplus ones, replaces replicas of nodes
 * that went down or are draining, and rolls new versions out start-first (the
 * new replica is ready before the old one stops). Every decision lands in the
 * event log with its reason. Nodes learn their share as a retained desired
 * state whose revision only grows, which also fences a node that comes back
 * after being declared dead: its newer desired state no longer lists its old
 * replicas, so it stops them.
 */
import type { Logger } from 'pino';
import { hostPorts, type DesiredState, type Heartbeat, type ReplicaStatus } from '../../protocol/fleet.js';
import type { RoutesPublisher } from '../routing/routes-publisher.js';
import { pickVictims, schedule, type NodeView } from '../scheduler/scheduler.js';
import type { DeploymentRecord, NodeRecord, ReplicaRecord, Store } from '../store/store.js';
import { desiredState, fingerprint, replicasToRunByNode } from './desired-state.js';

/** "v3" for a model version, "revision 3" for a container deployment (its generation). */
function revisionName(d: DeploymentRecord): string {
  return d.kind === 'container' ? `revision ${d.version}` : `v${d.version}`;
}

export interface DesiredPublisher {
  publishDesired(state: DesiredState): Promise<void> | void;
}

export interface ReconcilerOptions {
  /** Full pass at least this often, even without triggers. */
  intervalMs?: number;
  /** Heartbeats are written to the store in batches this often. */
  heartbeatFlushMs?: number;
  /**
   * Triggered passes start at least this long after the previous one ended (default 100 ms):
   * a thousand "ready" reports then cost a few passes, not hundreds. The first trigger after a
   * quiet spell still runs on the next turn of the event loop.
   */
  minPassGapMs?: number;
  /**
   * The routing table's publisher. With it, a replica being retired drains first: it leaves
   * the table, and is stopped once every gateway routes by a table without it (or after
   * drainTimeoutMs). Without it, replicas stop at once.
   */
  routes?: RoutesPublisher;
  drainTimeoutMs?: number;
}

export class Reconciler {
  private timer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private pending?: { cancel(): void };
  private lastPassEnd = -Infinity;
  private published = new Map<string, string>();
  private heartbeats = new Map<string, { ts: number; stats: Heartbeat }>();
  private lastWarning = new Map<string, string>();
  private observed = new Map<string, string>();
  private running = false;
  /** Replicas draining: since when, and the first routing-table version without them. */
  private drains = new Map<string, { since: number; version?: number }>();
  /** The store may hold drains from before a restart until the first pass has looked. */
  private drainsLoaded = false;

  constructor(
    private readonly store: Store,
    private readonly publisher: DesiredPublisher,
    private readonly log: Logger,
    private readonly options: ReconcilerOptions = {},
  ) {}

  start(): void {
    this.timer = setInterval(() => this.trigger('periodic'), this.options.intervalMs ?? 1000);
    this.flushTimer = setInterval(() => this.flushHeartbeats(), this.options.heartbeatFlushMs ?? 250);
    // After a restart, re-announce every node's desired state with a new revision.
    this.published.clear();
    this.trigger('startup');
  }

  stop(): void {
    clearInterval(this.timer);
    clearInterval(this.flushTimer);
    this.pending?.cancel();
    this.pending = undefined;
    this.flushHeartbeats();
  }

  /** Coalesces bursts of triggers into one pass: on the next turn of the event loop, and no sooner than minPassGapMs after the previous pass. */
  trigger(reason: string): void {
    if (this.pending) return;
    const run = () => {
      this.pending = undefined;
      this.reconcile(reason);
    };
    const wait = this.lastPassEnd + (this.options.minPassGapMs ?? 100) - performance.now();
    if (wait > 0) {
      const t = setTimeout(run, wait);
      this.pending = { cancel: () => clearTimeout(t) };
    } else {
      const i = setImmediate(run);
      this.pending = { cancel: () => clearImmediate(i) };
    }
  }

  // ---- observations from the fleet hub ----

  onHeartbeat(node: string, hb: Heartbeat): void {
    this.heartbeats.set(node, { ts: Date.now(), stats: hb });
    if (this.options.routes?.onGatewayVersion(node, hb.routes_version) && this.drains.size > 0) this.trigger('gateway routes caught up');
    for (const r of hb.replicas) this.observe(node, r.id, r.generation, { state: r.state });
    const rec = this.store.nodes.liveness(node);
    if (!rec) return;
    if (rec.state === 'down') this.onNodeUp(node);
    if (hb.applied_revision >= rec.desired_revision) this.dropConfirmedStops(node, hb);
  }

  onStatus(node: string, st: ReplicaStatus): void {
    this.observe(node, st.replica_id, st.generation, { state: st.state, port: st.port ?? null, grpc_port: st.grpc_port ?? null, message: st.message ?? '' });
    if (st.state === 'failed') this.event('replica.failed', `replica/${st.replica_id}`, `replica ${st.replica_id} on ${node} failed: ${st.message ?? 'no reason given'}`);
    if (st.state === 'ready' || st.state === 'stopped' || st.state === 'failed') this.trigger('replica status');
  }

  /** A node removed from the fleet: nothing to publish to it any more. */
  forgetNode(node: string): void {
    this.published.delete(node);
    this.heartbeats.delete(node);
  }

  onNodeDown(node: string, reason: string): void {
    const rec = this.store.nodes.get(node);
    if (!rec || rec.state === 'down') return;
    this.store.nodes.setState(node, 'down');
    this.event('node.down', `node/${node}`, `node ${node} is down (${reason}); its replicas will be replaced`, { reason });
    this.trigger('node down');
  }

  onNodeUp(node: string): void {
    const rec = this.store.nodes.get(node);
    if (!rec || rec.state !== 'down') return;
    this.store.nodes.setState(node, 'ready');
    this.event('node.up', `node/${node}`, `node ${node} is back`);
    this.published.delete(node); // resend its (possibly emptied) desired state
    this.trigger('node up');
  }

  private observe(node: string, id: string, generation: number, o: { state: ReplicaRecord['state']; port?: number | null; grpc_port?: number | null; message?: string }): void {
    const key = `${o.state}:${o.port ?? ''}:${o.grpc_port ?? ''}:${o.message ?? ''}`;
    if (this.observed.get(id) === key && o.port === undefined) return;
    const r = this.store.replicas.get(id);
    if (!r || r.node !== node || r.generation !== generation) return; // stale report from a fenced agent
    if (r.state === o.state && o.port === undefined && o.message === undefined) {
      this.observed.set(id, key);
      return;
    }
    this.store.replicas.updateObserved(id, generation, o);
    this.observed.set(id, key);
  }

  /** A replica told to stop is gone once the node reports it applied the revision without it. */
  private dropConfirmedStops(node: string, hb: Heartbeat): void {
    const stopping = this.store.replicas.listStoppingByNode(node);
    if (stopping.length === 0) return;
    const reported = new Set(hb.replicas.filter((r) => r.state !== 'stopped').map((r) => r.id));
    for (const r of stopping) {
      if (!reported.has(r.id)) {
        this.store.replicas.remove(r.id);
        this.observed.delete(r.id);
      }
    }
  }

  private flushHeartbeats(): void {
    if (this.heartbeats.size === 0) return;
    const updates = [...this.heartbeats].map(([id, h]) => ({ id, ts: h.ts, stats: h.stats }));
    this.heartbeats.clear();
    this.store.nodes.recordHeartbeats(updates);
  }

  // ---- the reconcile pass ----

  reconcile(reason: string): void {
    if (this.running) return;
    this.running = true;
    try {
      this.flushHeartbeats();
      const nodes = this.store.transaction(() => {
        const deployments = this.store.deployments.list();
        // Node states do not change during a pass: read (and parse) them once, not once per deployment.
        const snapshot = deployments.length ? new Map(this.store.nodes.list().map((n) => [n.id, n])) : new Map<string, NodeRecord>();
        for (const d of deployments) this.reconcileDeployment(d, snapshot);
        this.finishDrains(snapshot);
        return snapshot;
      });
      this.publishChanged();
      this.options.routes?.refresh(nodes);
      this.stampDrains();
    } catch (err) {
      this.log.error({ err, reason }, 'reconcile pass failed');
    } finally {
      this.running = false;
      this.lastPassEnd = performance.now();
    }
  }

  private reconcileDeployment(d: DeploymentRecord, nodes: Map<string, NodeRecord>): void {
    const replicas = this.store.replicas.listByDeployment(d.name);
    this.releaseLost(d, replicas, nodes);
    const live = this.store.replicas.listByDeployment(d.name).filter((r) => r.desired === 'run');
    if (d.deleting) return this.finishDeletion(d, live);
    const movable = (r: ReplicaRecord) => r.version !== d.version || nodes.get(r.node)?.state === 'draining';
    const current = live.filter((r) => !movable(r));
    let old = live.filter(movable);
    const ports = d.spec.kind === 'container' ? hostPorts(d.spec) : [];
    if (old.length && ports.length) {
      // Old and new revisions cannot both hold a published node port: a container deployment that publishes some rolls out stop-first.
      this.retire(d, old, old.length, `replaced by ${revisionName(d)} (stop-first: it publishes node ports ${ports.join(', ')})`);
      old = [];
    }
    const missing = d.spec.replicas - current.length;
    if (missing > 0) this.place(d, missing, nodes);
    if (missing < 0) this.retire(d, current, -missing, 'scaled down');
    this.retireOld(d, current, old);
  }

  /** Replicas on down nodes serve nothing: forget them so they are placed again elsewhere. */
  private releaseLost(d: DeploymentRecord, replicas: ReplicaRecord[], nodes: Map<string, NodeRecord>): void {
    for (const r of replicas) {
      if (nodes.get(r.node)?.state !== 'down') continue;
      this.store.replicas.remove(r.id);
      this.observed.delete(r.id);
      if (r.desired === 'run') {
        this.event('replica.lost', `deployment/${d.name}`, `replica ${r.id} lost with node ${r.node} (node down); placing a replacement`, { replica: r.id, node: r.node });
      }
    }
  }

  private finishDeletion(d: DeploymentRecord, live: ReplicaRecord[]): void {
    this.retire(d, live, live.length, 'deployment deleted');
    if (this.store.replicas.listByDeployment(d.name).length === 0) {
      this.store.deployments.remove(d.name);
      this.event('deployment.deleted', `deployment/${d.name}`, `deployment ${d.name} removed: all replicas stopped`);
    }
  }

  private place(d: DeploymentRecord, count: number, nodes: Map<string, NodeRecord>): void {
    const result = schedule(d.name, d.spec, count, this.nodeViews(nodes));
    for (const p of result.placements) {
      const r = this.store.replicas.create({ deployment: d.name, node: p.node, version: d.version, generation: d.generation });
      this.event('replica.scheduled', `deployment/${d.name}`, `replica ${r.id} (${revisionName(d)}) placed: ${p.explanation}`, { replica: r.id, node: p.node });
    }
    if (result.unplaced > 0) {
      const message = `${result.unplaced} replica(s) of ${d.name} cannot be placed: ${result.refusals.join('; ') || 'no nodes'}`;
      if (this.lastWarning.get(d.name) !== message) {
        this.lastWarning.set(d.name, message);
        this.event('deployment.unschedulable', `deployment/${d.name}`, message);
      }
    } else {
      this.lastWarning.delete(d.name);
    }
  }

  private retire(d: DeploymentRecord, from: ReplicaRecord[], count: number, why: string): void {
    const notReady = from.filter((r) => r.state !== 'ready');
    const ready = from.filter((r) => r.state === 'ready');
    const victims = [...notReady, ...pickVictims(ready, Math.max(0, count - notReady.length))].slice(0, count);
    for (const r of victims) {
      // A ready replica may be serving requests: it drains first (see finishDrains). Gateways never route to app workloads.
      const drain = r.state === 'ready' && this.options.routes !== undefined && d.kind !== 'container';
      this.store.replicas.setDesired(r.id, drain ? 'drain' : 'stop');
      if (drain) this.drains.set(r.id, { since: Date.now() });
      const what = drain ? 'draining (gateways stop routing to it, then it stops)' : 'stopping';
      this.event(drain ? 'replica.draining' : 'replica.stopping', `deployment/${d.name}`, `replica ${r.id} on ${r.node} ${what}: ${why}`, { replica: r.id });
    }
  }

  /** The routing table version that first left the new drains out (published at the end of the pass that marked them). */
  private stampDrains(): void {
    const version = this.options.routes?.current?.version;
    if (version === undefined) return;
    for (const d of this.drains.values()) d.version ??= version;
  }

  /** Stops draining replicas once every live gateway routes without them, or the drain timed out. */
  private finishDrains(nodes: Map<string, NodeRecord>): void {
    if (this.drains.size === 0 && this.drainsLoaded) return;
    this.drainsLoaded = true;
    const now = Date.now();
    const live = [...nodes.values()].filter((n) => n.state !== 'down').map((n) => n.id);
    const draining = new Set<string>();
    for (const r of this.store.replicas.list()) {
      if (r.desired !== 'drain') continue;
      draining.add(r.id);
      let drain = this.drains.get(r.id);
      if (!drain) this.drains.set(r.id, drain = { since: now }); // draining before a control-plane restart
      const acked = !this.options.routes || (drain.version !== undefined && this.options.routes.acknowledged(drain.version, live));
      const expired = now - drain.since >= (this.options.drainTimeoutMs ?? 5000);
      if (!acked && !expired && r.state === 'ready') continue;
      this.store.replicas.setDesired(r.id, 'stop');
      this.drains.delete(r.id);
      const why = acked ? 'every gateway stopped routing to it' : r.state !== 'ready' ? `it is ${r.state}` : 'drain timeout (a gateway did not confirm)';
      this.event('replica.stopping', `deployment/${r.deployment}`, `replica ${r.id} on ${r.node} stopping: drained (${why})`, { replica: r.id });
    }
    for (const id of this.drains.keys()) if (!draining.has(id)) this.drains.delete(id);
  }

  /** Start-first: an old replica stops only when enough new ones are ready to keep capacity. */
  private retireOld(d: DeploymentRecord, current: ReplicaRecord[], old: ReplicaRecord[]): void {
    if (old.length === 0) return;
    const readyNew = current.filter((r) => r.state === 'ready').length;
    const readyOld = old.filter((r) => r.state === 'ready').length;
    const surplus = readyNew + readyOld - d.spec.replicas;
    const notReadyOld = old.filter((r) => r.state !== 'ready');
    this.retire(d, notReadyOld, notReadyOld.length, 'replaced (not serving)');
    if (surplus > 0) this.retire(d, old.filter((r) => r.state === 'ready'), Math.min(surplus, readyOld), `replaced by a ready replica of ${revisionName(d)}`);
  }

  private nodeViews(nodes: Map<string, NodeRecord>): NodeView[] {
    const specs = new Map<string, DeploymentRecord['spec'] | undefined>();
    const byNode = new Map<string, ReplicaRecord[]>();
    for (const r of this.store.replicas.list()) {
      if (r.desired === 'stop') continue; // draining replicas still hold their resources
      const list = byNode.get(r.node);
      if (list) list.push(r); else byNode.set(r.node, [r]);
    }
    return [...nodes.values()].map((n) => {
      const perDeployment = new Map<string, number>();
      const ports = new Map<number, string>();
      let cpu = 0;
      let memory = 0;
      for (const r of byNode.get(n.id) ?? []) {
        perDeployment.set(r.deployment, (perDeployment.get(r.deployment) ?? 0) + 1);
        if (!specs.has(r.deployment)) specs.set(r.deployment, this.store.deployments.get(r.deployment)?.spec);
        const spec = specs.get(r.deployment);
        cpu += spec?.resources.cpu ?? 0;
        memory += spec?.resources.memory_mb ?? 0;
        if (spec?.kind === 'container') for (const p of hostPorts(spec)) ports.set(p, r.deployment);
      }
      return {
        id: n.id, facts: n.facts, labels: n.labels, cordoned: n.cordoned, state: n.state,
        allocated: { cpu, memory_mb: memory }, replicas: perDeployment, cpu_percent: n.stats?.cpu_percent ?? 0, hostPorts: ports,
      };
    });
  }

  /** Sends each node whose share changed its new desired state. */
  private publishChanged(): void {
    const shares = replicasToRunByNode(this.store);
    for (const id of this.store.nodes.ids()) {
      const specs = shares.get(id) ?? { replicas: [], workloads: [] };
      const fp = fingerprint(specs);
      if (this.published.get(id) === fp) continue;
      const revision = this.store.nodes.bumpRevision(id);
      if (revision === undefined) continue;
      this.published.set(id, fp);
      void Promise.resolve(this.publisher.publishDesired(desiredState(id, revision, specs))).catch((err) => {
        this.published.delete(id);
        this.log.warn({ err, node: id }, 'desired state not published; will retry');
      });
    }
  }

  private event(kind: string, subject: string, message: string, data?: Record<string, unknown>): void {
    this.store.events.append({ kind, subject, message, data });
    this.log.info({ kind, subject }, message);
  }
}
