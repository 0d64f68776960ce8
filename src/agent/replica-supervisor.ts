/**
 * The workload manager: makes the node's desired state real, locally.
 *
 * - starts missing replicas (model from the cache, a port pair from the range,
 *   the replica's runtime driver), stops replicas no longer desired;
 * - restarts a replica that exits with exponential backoff, with or without
 *   the control plane (edge autonomy);
 * - fences by revision (an older desired state is ignored) and by generation
 *   (a replica id whose generation grew is restarted with the new spec);
 * - reports every state change as a ReplicaStatus on the bus;
 * - persists the last applied desired state to `<dataDir>/desired.json`, so a
 *   restarted agent serves again before it reaches the control plane;
 * - takes back workloads that outlived the previous agent run (containers):
 *   a desired replica of the same generation is supervised again instead of
 *   being started twice, any other is an orphan and is removed.
 *
 * App workload replicas (the desired state's `workloads`, from container
 * deployments) live the same life without a model or a port from the range:
 * they publish the node ports their spec names.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  DesiredStateSchema, hostPorts, type DesiredState, type ReplicaSpec, type ReplicaState, type ReplicaStatus, type WorkloadReplicaSpec,
} from '../protocol/fleet.js';
import { Backoff, DEFAULT_BACKOFF, sleep, type BackoffConfig } from './backoff.js';
import { createDriver, type AdoptedReplica, type ReplicaHandle, type RuntimeDriver, type RuntimeName } from './drivers/driver.js';
import type { ModelCache, CachedModel } from './model-cache.js';
import type { PortAllocator } from './port-allocator.js';
import { readStateFile, STATE_FILES, writeStateFile } from './state-files.js';

export interface SupervisorConfig {
  dataDir: string;
  cache: ModelCache;
  ports: PortAllocator;
  /** Called on every replica state change. */
  report: (status: ReplicaStatus) => void;
  /** Drivers by runtime name; default: from the driver registry. */
  driver?: (name: RuntimeName) => RuntimeDriver;
  /** Between restarts of a failing replica. */
  restartBackoff?: BackoffConfig;
  /** A replica that stayed ready this long starts its backoff afresh after a crash. */
  stableAfterMs?: number;
  /** Grace period between SIGTERM and SIGKILL when stopping a replica. */
  stopGraceMs?: number;
  log?: Logger;
}

/** Errors that retrying cannot fix (the spec itself is unusable on this node). */
export class PermanentReplicaError extends Error {}

/** What the supervisor runs: a model replica or an app workload replica. */
type RunSpec = ReplicaSpec | WorkloadReplicaSpec;

function isWorkload(spec: RunSpec): spec is WorkloadReplicaSpec {
  return 'workload' in spec;
}

const SavedStateSchema = z.object({
  desired: DesiredStateSchema,
  /** Set by a drain command: desired states up to this revision are not run. */
  drained_revision: z.number().int().optional(),
  /** The port each replica last served on, kept across agent restarts (routes stay valid). */
  ports: z.record(z.string(), z.number().int()).optional(),
  saved_at: z.string().optional(),
});

function describeExit(code: number | null, signal: string | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

interface RunnerDeps {
  cache: ModelCache;
  ports: PortAllocator;
  driver: (name: RuntimeName) => RuntimeDriver;
  backoff: BackoffConfig;
  stableAfterMs: number;
  stopGraceMs: number;
  emit: (status: ReplicaStatus) => void;
  /** The port a replica had before (kept across restarts), and where it got one. */
  lastPort: (id: string) => number | undefined;
  portAssigned: (id: string, port: number) => void;
  log?: Logger;
}

/** One replica's life on this node: download, start, watch, restart, stop. */
class ReplicaRunner {
  state: ReplicaState = 'pending';
  port: number | undefined;
  grpcPort: number | undefined;
  message: string | undefined;
  restarts = 0;
  private handle: ReplicaHandle | undefined;
  private model: CachedModel | undefined;
  private readonly backoff: Backoff;
  private readonly lifetime = new AbortController();
  private wake = new AbortController();
  private restartNow = false;
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  /** `adopted`: the replica's workload, still running from the previous agent run. */
  constructor(readonly spec: RunSpec, private readonly deps: RunnerDeps, private adopted?: ReplicaHandle) {
    this.backoff = new Backoff(deps.backoff);
  }

  get stopped(): boolean {
    return this.lifetime.signal.aborted;
  }

  status(): ReplicaStatus {
    return {
      replica_id: this.spec.id, generation: this.spec.generation, state: this.state,
      port: this.port, ...(this.grpcPort !== undefined ? { grpc_port: this.grpcPort } : {}), message: this.message, ts: Date.now(),
    };
  }

  private set(state: ReplicaState, message?: string): void {
    if (state === this.state && message === this.message) return;
    this.state = state;
    this.message = message;
    this.deps.log?.info({ replica: this.spec.id, generation: this.spec.generation, state, port: this.port, message }, 'replica state');
    this.deps.emit(this.status());
  }

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    const { spec, deps } = this;
    while (!this.stopped) {
      let delay: number;
      try {
        const adopted = this.adopted;
        this.adopted = undefined;
        const handle = isWorkload(spec) ? await this.launchWorkload(spec, adopted) : await this.launchModel(spec, adopted);
        if (!handle) break;
        if (this.stopped) {
          await handle.stop(deps.stopGraceMs);
          break;
        }
        this.handle = handle;
        this.grpcPort = handle.grpcPort;
        const readyAt = Date.now();
        this.set('ready', handle.limits);
        const exit = await new Promise<Parameters<Parameters<ReplicaHandle['onExit']>[0]>[0]>((resolve) => handle.onExit(resolve));
        this.handle = undefined;
        if (this.stopped) break;
        if (this.restartNow) {
          this.restartNow = false;
          this.backoff.reset();
          this.restarts++;
          continue;
        }
        if (Date.now() - readyAt >= deps.stableAfterMs) this.backoff.reset();
        delay = this.backoff.next();
        this.restarts++;
        const lines = exit.lastLines.slice(-3).join(' | ');
        this.set('failed', `process ${describeExit(exit.code, exit.signal)}; restarting in ${seconds(delay)} (restart #${this.restarts})${lines ? `: ${lines}` : ''}`);
      } catch (err) {
        if (this.stopped) break;
        const message = (err as Error).message;
        if (err instanceof PermanentReplicaError || /is not available on this node/.test(message)) {
          this.set('failed', message);
          await new Promise<void>((resolve) => this.lifetime.signal.addEventListener('abort', () => resolve(), { once: true }));
          break;
        }
        delay = this.backoff.next();
        this.set('failed', `${message}; retrying in ${seconds(delay)}`);
      }
      await sleep(delay, AbortSignal.any([this.lifetime.signal, this.wake.signal]));
      if (this.wake.signal.aborted) this.wake = new AbortController();
    }
  }

  /** The model from the cache and a port pair from the range; undefined when stopped meanwhile. */
  private async launchModel(spec: ReplicaSpec, adopted: ReplicaHandle | undefined): Promise<ReplicaHandle | undefined> {
    const { deps } = this;
    const driver = deps.driver(spec.runtime); // an unavailable runtime fails before any download
    if (!this.model) {
      const cached = await deps.cache.has(spec.sha256);
      this.set('pending', cached ? 'model cached' : `downloading model ${spec.model}:${spec.version} (${spec.sha256.slice(0, 12)})`);
      this.model = await deps.cache.acquire({ sha256: spec.sha256, format: spec.format });
      if (this.stopped) return undefined;
    }
    const lastPort = this.port ?? deps.lastPort(spec.id);
    if (adopted) {
      deps.ports.claim(spec.id, adopted.port);
      this.port = adopted.port;
    } else {
      deps.ports.release(spec.id);
      this.port = await deps.ports.allocate(spec.id, lastPort);
      this.set('starting', this.restarts > 0 ? `restart #${this.restarts}` : undefined);
    }
    if (this.port !== lastPort) deps.portAssigned(spec.id, this.port);
    return adopted ?? driver.start(spec, this.model.dir, this.port, { signal: this.lifetime.signal });
  }

  /** No model and no port from the range: the workload publishes the node ports its spec names. */
  private async launchWorkload(spec: WorkloadReplicaSpec, adopted: ReplicaHandle | undefined): Promise<ReplicaHandle> {
    this.port = hostPorts(spec.workload)[0];
    if (adopted) return adopted;
    this.set('starting', this.restarts > 0 ? `restart #${this.restarts}` : undefined);
    const driver = this.deps.driver(spec.runtime);
    if (!driver.startWorkload) throw new PermanentReplicaError(`the ${spec.runtime} runtime of this agent cannot run app workloads`);
    return driver.startWorkload(spec, { signal: this.lifetime.signal });
  }

  /** Restarts now: stops the running process (it is started again at once) or cuts a backoff wait short. */
  async restart(): Promise<void> {
    if (this.stopped) return;
    if (this.handle) {
      this.restartNow = true;
      await this.handle.stop(this.deps.stopGraceMs);
    } else {
      this.backoff.reset();
      this.wake.abort();
    }
  }

  stop(graceMs = this.deps.stopGraceMs): Promise<void> {
    this.stopping ??= (async () => {
      this.set('stopping');
      this.lifetime.abort();
      await this.handle?.stop(graceMs);
      await this.loop;
      this.model?.release();
      this.model = undefined;
      this.deps.ports.release(this.spec.id);
      this.set('stopped');
    })();
    return this.stopping;
  }

  /** Lets go of a workload that outlives the agent (agent shutdown): it keeps running, to be adopted by the next agent run. */
  detach(): void {
    this.lifetime.abort();
    this.model?.release();
    this.model = undefined;
    this.deps.ports.release(this.spec.id);
  }

  async stats(): Promise<{ cpu_percent?: number; rss_bytes?: number; net_rx_bytes?: number; net_tx_bytes?: number }> {
    const usage = await this.handle?.stats().catch(() => undefined);
    return usage ?? {};
  }
}

export class ReplicaSupervisor {
  private readonly runners = new Map<string, ReplicaRunner>();
  private readonly drivers = new Map<RuntimeName, RuntimeDriver>();
  private desired: DesiredState | undefined;
  private drainedRevision: number | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private writing: Promise<void> = Promise.resolve();
  private readonly ports = new Map<string, number>();
  private closed = false;
  private nodeId: string | undefined;
  /** Workloads of the previous agent run, by replica id, until a desired replica claims them. */
  private readonly adopted = new Map<string, AdoptedReplica & { runtime: RuntimeName }>();
  private readonly file: string;
  private readonly deps: RunnerDeps;

  constructor(private readonly config: SupervisorConfig) {
    this.file = path.join(config.dataDir, STATE_FILES.desired);
    this.deps = {
      cache: config.cache,
      ports: config.ports,
      driver: (name) => this.driver(name),
      backoff: config.restartBackoff ?? DEFAULT_BACKOFF,
      stableAfterMs: config.stableAfterMs ?? 60_000,
      stopGraceMs: config.stopGraceMs ?? 5000,
      emit: (status) => config.report(status),
      lastPort: (id) => this.ports.get(id),
      portAssigned: (id, port) => {
        this.ports.set(id, port);
        void this.persist();
      },
      log: config.log,
    };
  }

  /** The driver for a runtime, created on first use. */
  driver(name: RuntimeName): RuntimeDriver {
    let d = this.drivers.get(name);
    if (!d) {
      d = this.config.driver ? this.config.driver(name) : createDriver(name, { dataDir: this.config.dataDir, log: this.config.log, nodeId: () => this.nodeId });
      this.drivers.set(name, d);
    }
    return d;
  }

  /**
   * Asks the drivers for workloads of the previous agent run (call before
   * restore()): process replicas are cleaned up, running containers are kept
   * to be claimed by the desired state.
   */
  async adopt(runtimes: RuntimeName[]): Promise<number> {
    for (const runtime of runtimes) {
      for (const a of (await this.driver(runtime).adopt?.()) ?? []) this.adopted.set(a.replicaId, { ...a, runtime });
    }
    return this.adopted.size;
  }

  /** Removes adopted workloads no desired replica claimed (call after restore()). */
  removeOrphans(): Promise<string[]> {
    return this.serial(async () => {
      const orphans = [...this.adopted.values()];
      this.adopted.clear();
      for (const o of orphans) {
        this.config.log?.info({ replica: o.replicaId, generation: o.generation, runtime: o.runtime }, 'removing an orphaned workload of a previous agent run');
        await o.handle.stop(this.deps.stopGraceMs).catch(() => undefined);
        await this.driver(o.runtime).remove?.(o.replicaId).catch(() => undefined);
      }
      return orphans.map((o) => o.replicaId);
    });
  }

  /** The revision of the desired state being applied (-1 before any). */
  get appliedRevision(): number {
    return this.desired?.revision ?? -1;
  }

  get drained(): boolean {
    return this.drainedRevision !== undefined;
  }

  /** Runs `fn` after every earlier apply/drain/close step: one reconciliation at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Sets the node this agent is; a saved or incoming desired state for another
   * node (an agent that had to join afresh) is not run.
   */
  setNode(nodeId: string): void {
    this.nodeId = nodeId;
  }

  /**
   * Loads `<dataDir>/desired.json` and runs it (edge autonomy across agent
   * restarts). Returns what was restored.
   */
  async restore(): Promise<DesiredState | undefined> {
    let saved: z.infer<typeof SavedStateSchema> | undefined;
    try {
      saved = await readStateFile(this.file, SavedStateSchema);
    } catch (err) {
      this.config.log?.warn({ err: (err as Error).message }, 'ignoring the saved desired state');
      return undefined;
    }
    if (!saved) return undefined;
    if (this.nodeId && saved.desired.node !== this.nodeId) {
      this.config.log?.warn({ saved: saved.desired.node, node: this.nodeId }, 'the saved desired state is for another node; not running it');
      return undefined;
    }
    this.drainedRevision = saved.drained_revision;
    for (const [id, port] of Object.entries(saved.ports ?? {})) this.ports.set(id, port);
    await this.apply(saved.desired, { persist: false });
    return saved.desired;
  }

  /**
   * Applies a desired state; resolves once replicas that must go are stopped
   * and missing ones are starting. Returns false when it was ignored (an older
   * revision than the one applied, or another node's).
   */
  apply(desired: DesiredState, options: { persist?: boolean } = {}): Promise<boolean> {
    return this.serial(async () => {
      if (this.closed) return false;
      if (this.nodeId && desired.node !== this.nodeId) {
        this.config.log?.warn({ node: desired.node, self: this.nodeId }, 'ignoring a desired state for another node');
        return false;
      }
      if (this.desired && desired.revision < this.desired.revision) {
        this.config.log?.info({ revision: desired.revision, applied: this.desired.revision }, 'ignoring an older desired state');
        return false;
      }
      if (this.drainedRevision !== undefined && desired.revision > this.drainedRevision) this.drainedRevision = undefined;
      this.desired = desired;
      if (options.persist !== false) await this.persist();
      await this.reconcile();
      return true;
    });
  }

  /** Writes desired.json; writes are chained and each writes the state as it is when its turn comes. */
  private persist(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.desired) return;
      const ids = new Set(this.desired.replicas.map((r) => r.id));
      for (const id of this.ports.keys()) if (!ids.has(id)) this.ports.delete(id);
      await writeStateFile(this.file, {
        desired: this.desired, drained_revision: this.drainedRevision, ports: Object.fromEntries(this.ports), saved_at: new Date().toISOString(),
      }).catch((err: unknown) => this.config.log?.error({ err }, 'cannot save the desired state'));
    });
    return this.writing;
  }

  private async reconcile(): Promise<void> {
    const wanted = new Map<string, RunSpec>();
    if (this.drainedRevision === undefined) {
      for (const spec of [...this.desired?.replicas ?? [], ...this.desired?.workloads ?? []]) wanted.set(spec.id, spec);
    }
    const stops: Promise<void>[] = [];
    for (const [id, runner] of this.runners) {
      const spec = wanted.get(id);
      if (!spec) {
        stops.push(this.remove(id, runner));
      } else if (spec.generation > runner.spec.generation) {
        this.config.log?.info({ replica: id, from: runner.spec.generation, to: spec.generation }, 'replica generation changed: restarting it');
        stops.push(runner.stop().then(() => {
          if (this.runners.get(id) === runner) this.runners.delete(id);
        }));
      } else if (spec.generation < runner.spec.generation) {
        this.config.log?.warn({ replica: id, running: runner.spec.generation, desired: spec.generation }, 'desired state names an older generation than the one running; keeping it');
      }
    }
    await Promise.all(stops);
    for (const [id, spec] of wanted) {
      if (this.runners.has(id)) continue;
      const runner = new ReplicaRunner(spec, this.deps, this.claimAdopted(spec));
      this.runners.set(id, runner);
      runner.start();
    }
  }

  private claimAdopted(spec: RunSpec): ReplicaHandle | undefined {
    const a = this.adopted.get(spec.id);
    if (!a || a.runtime !== spec.runtime || a.generation !== spec.generation) return undefined;
    this.adopted.delete(spec.id);
    this.config.log?.info({ replica: spec.id, generation: spec.generation, port: a.handle.port }, 'supervising a replica adopted from the previous agent run');
    return a.handle;
  }

  private async remove(id: string, runner: ReplicaRunner): Promise<void> {
    await runner.stop();
    if (this.runners.get(id) === runner) this.runners.delete(id);
    await this.driver(runner.spec.runtime).remove?.(id).catch(() => undefined);
  }

  /** Restarts one replica now; false when this node does not run it. */
  restartReplica(id: string): Promise<boolean> {
    return this.serial(async () => {
      const runner = this.runners.get(id);
      if (!runner) return false;
      await runner.restart();
      return true;
    });
  }

  /** Stops every replica and runs none until a newer desired state arrives. */
  drain(): Promise<void> {
    return this.serial(async () => {
      this.drainedRevision = Math.max(0, this.appliedRevision);
      await this.persist();
      await this.reconcile();
    });
  }

  /** Current status of every replica (re-reported when the session to the control plane returns). */
  statuses(): ReplicaStatus[] {
    return [...this.runners.values()].map((r) => r.status());
  }

  /** Heartbeat entries: state plus CPU and RSS of each replica. */
  async replicaStats(): Promise<{ id: string; generation: number; state: ReplicaState; cpu_percent?: number; rss_bytes?: number }[]> {
    return Promise.all([...this.runners.values()].map(async (r) => ({
      id: r.spec.id, generation: r.spec.generation, state: r.state, ...(await r.stats()),
    })));
  }

  /**
   * Stops every replica (agent shutdown); desired.json stays, so the next start
   * serves them again. Workloads that outlive the agent (containers) are left
   * running for the next start to adopt.
   */
  close(graceMs?: number): Promise<void> {
    return this.serial(async () => {
      this.closed = true;
      const runners = [...this.runners.values()];
      for (const r of runners) if (this.driver(r.spec.runtime).outlivesAgent) r.detach();
      await Promise.all(runners.filter((r) => !this.driver(r.spec.runtime).outlivesAgent).map((r) => r.stop(graceMs)));
      this.runners.clear();
      await Promise.all([...this.drivers.values()].map((d) => d.close?.(graceMs)));
    });
  }
}
