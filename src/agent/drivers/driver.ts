/**
 * Runtime drivers: how a replica runs on a node. One interface, a registry by
 * name, one file per driver (as ONNX Runtime JS keeps backends behind one
 * API): `process` (a `tern serve` child per replica), `container` (Docker
 * Engine API); `microvm` registers itself here when it lands.
 */
import type { Logger } from 'pino';
import type { ReplicaSpec, WorkloadReplicaSpec } from '../../protocol/fleet.js';

export type RuntimeName = ReplicaSpec['runtime'];

export interface ReplicaExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the driver was asked to stop it. */
  requested: boolean;
  /** The replica's last output lines (stderr first), for the status message. */
  lastLines: string[];
}

export interface ReplicaUsage {
  /** Of one core (up to 100 x cores). */
  cpu_percent: number;
  rss_bytes: number;
  /** Network bytes received and sent (containers with their own network namespace). */
  net_rx_bytes?: number;
  net_tx_bytes?: number;
}

/** A replica's exit, told once to every `onExit` caller, whether it asked before or after the exit. */
export class ExitNotice {
  private exit: ReplicaExit | undefined;
  private readonly waiting: ((exit: ReplicaExit) => void)[] = [];

  get value(): ReplicaExit | undefined {
    return this.exit;
  }

  settle(exit: ReplicaExit): void {
    this.exit = exit;
    for (const cb of this.waiting.splice(0)) cb(exit);
  }

  onExit(cb: (exit: ReplicaExit) => void): void {
    if (this.exit) cb(this.exit);
    else this.waiting.push(cb);
  }
}

/** A running replica. */
export interface ReplicaHandle {
  readonly pid?: number;
  /** HTTP port (OIP v2 REST, TF Serving REST, app endpoints); an app workload's first node port, 0 when it publishes none. */
  readonly port: number;
  readonly grpcPort?: number;
  /** How CPU and memory limits apply, e.g. "limits enforced: cgroup v2: cpu 0.5 cores, memory 256 MB" or "limits not enforced: <reason>". */
  readonly limits: string;
  /** Graceful stop (SIGTERM or the runtime's equivalent), forced after `graceMs`. Resolves once it is gone. */
  stop(graceMs?: number): Promise<void>;
  /** Called once when the replica ends, whether asked to or not. */
  onExit(cb: (exit: ReplicaExit) => void): void;
  stats(): Promise<ReplicaUsage | undefined>;
}

export interface StartOptions {
  /** Aborting cancels a start in progress: the workload is stopped and start rejects. */
  signal?: AbortSignal;
}

/** A workload found running from before an agent restart, now supervised again. */
export interface AdoptedReplica {
  replicaId: string;
  generation: number;
  handle: ReplicaHandle;
}

export interface RuntimeDriver {
  readonly name: RuntimeName;
  /**
   * Starts a replica serving the model in `modelDir` under the deployment's
   * name on `port`; resolves once it is ready for inference.
   */
  start(spec: ReplicaSpec, modelDir: string, port: number, options?: StartOptions): Promise<ReplicaHandle>;
  /** Starts a replica of an app workload (a container deployment); resolves once it runs and its published TCP ports accept connections. */
  startWorkload?(spec: WorkloadReplicaSpec, options?: StartOptions): Promise<ReplicaHandle>;
  /** Called once at agent start: take over (or clean up) workloads of a previous agent run. */
  adopt?(): Promise<AdoptedReplica[]>;
  /** Removes what a replica left on disk once it is no longer desired. */
  remove?(replicaId: string): Promise<void>;
  /** Stops every replica it runs (agent shutdown). */
  close?(graceMs?: number): Promise<void>;
  /**
   * True when its workloads outlive the agent (containers, owned by the
   * engine): an agent that shuts down leaves them running, and adopts them
   * when it starts again.
   */
  readonly outlivesAgent?: boolean;
}

/** What every driver gets from the agent. */
export interface DriverContext {
  dataDir: string;
  log?: Logger;
  /** The node this agent is, once known (labels workloads). */
  nodeId?: () => string | undefined;
  /** The control plane and this node's token, once joined (image archives for nodes without a registry). */
  control?: () => { controlUrl: string; token: string } | undefined;
}

export type DriverFactory = (context: DriverContext) => RuntimeDriver;

const factories = new Map<RuntimeName, DriverFactory>();

export function registerDriver(name: RuntimeName, factory: DriverFactory): void {
  factories.set(name, factory);
}

export function driverNames(): RuntimeName[] {
  return [...factories.keys()];
}

export function createDriver(name: RuntimeName, context: DriverContext): RuntimeDriver {
  const factory = factories.get(name);
  if (!factory) {
    throw new Error(`runtime '${name}' is not available on this node (available: ${driverNames().join(', ') || 'none'})`);
  }
  return factory(context);
}

/** Safe as one path segment and a cgroup name: ids from the control plane are not trusted blindly. */
export function replicaDirName(replicaId: string): string {
  const name = replicaId.replace(/[^A-Za-z0-9_.-]/g, '_');
  return name === '.' || name === '..' || name === '' ? `_${name}` : name;
}
