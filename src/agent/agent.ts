/**
 * `tern agent`: the node agent. Wires its modules (messages.ts lists them and
 * what they say to each other):
 *
 *   identity    join / rejoin, identity.json            (identity.ts)
 *   facts       NodeFacts and the CPU score at join     (facts.ts, facts-probe.ts)
 *   hub         the MQTT session                        (hub.ts)
 *   supervisor  replicas, drivers, model cache, ports   (replica-supervisor.ts)
 *   commands    drain / restart-replica, once per id    (commands.ts)
 *   rpc         the control plane's calls: container    (rpc-server.ts,
 *               operations on this node's engine         container-rpc.ts)
 *   heartbeat   stats every heartbeat interval          (stats.ts)
 *   gateway     the node's inference entry point, a     (gateway-process.ts)
 *               child process (../gateway/)
 *
 * With an identity and a saved desired state, the agent serves those replicas
 * at once and reaches the control plane in the background (edge autonomy);
 * without an identity it first joins with the join token.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import type { Heartbeat, NodeFacts } from '../protocol/fleet.js';
import { Backoff, sleep, type BackoffConfig } from './backoff.js';
import { CommandLog, type AgentCommand } from './commands.js';
import './drivers/builtin.js';
import type { ProcessDriverConfig } from './drivers/process-driver.js';
import { ProcessDriver } from './drivers/process-driver.js';
import { ContainerDriver, type ContainerDriverConfig } from './drivers/container-driver.js';
import { createDriver, type RuntimeName } from './drivers/driver.js';
import { collectFacts, type FactsConfig } from './facts.js';
import { Hub } from './hub.js';
import { join, JoinRefusedError, loadIdentity, type Identity } from './identity.js';
import { AgentBus, MESSAGES } from './messages.js';
import { DEFAULT_CACHE_BYTES, ModelCache } from './model-cache.js';
import { DEFAULT_PORT_RANGE, PortAllocator, type PortRange } from './port-allocator.js';
import { ReplicaSupervisor } from './replica-supervisor.js';
import { containerHandlers } from './container-rpc.js';
import { RpcServer } from './rpc-server.js';
import { STATE_FILES } from './state-files.js';
import { StatsSampler } from './stats.js';
import { GatewayProcess, type GatewayPorts } from './gateway-process.js';

export interface AgentOptions extends FactsConfig {
  /** The control plane's base URL, e.g. http://control:7000. */
  controlUrl: string;
  /** Join token; optional when `<dataDir>/identity.json` exists. */
  token?: string;
  dataDir: string;
  /** Heartbeat interval; default: what the control plane says at join, else 1000 ms. */
  heartbeatMs?: number;
  /** Ports for replicas (each takes a pair). */
  portRange?: PortRange;
  /** Model cache budget in bytes. */
  cacheBytes?: number;
  log?: Logger;
  /** Module settings (defaults suit a Raspberry Pi). */
  joinBackoff?: BackoffConfig;
  restartBackoff?: BackoffConfig;
  /** A replica that stayed ready this long starts its restart backoff afresh. */
  stableAfterMs?: number;
  stopGraceMs?: number;
  processDriver?: Omit<ProcessDriverConfig, 'dataDir' | 'log'>;
  /** The container runtime's engine and image; when set, the agent adopts its containers at start (else dockerode is never loaded unless a container replica arrives). */
  containerDriver?: Omit<ContainerDriverConfig, 'dataDir' | 'log' | 'nodeId'>;
  /** Run the node's gateway on these ports (`tern agent` does by default; off when absent). */
  gateway?: GatewayPorts;
}

export interface RunningAgent {
  readonly nodeId: string;
  /** True while the MQTT session to the control plane is up. */
  readonly connected: boolean;
  readonly supervisor: ReplicaSupervisor;
  readonly bus: AgentBus;
  /** The node's gateway, when it runs one. */
  readonly gateway?: GatewayProcess;
  /** Resolves once joined (at once when it already was). */
  readonly joined: Promise<void>;
  /** Stops heartbeats, says "offline", stops the replicas (desired.json stays for the next start). */
  close(): Promise<void>;
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  const log = options.log ?? pino({ level: process.env.TERN_LOG_LEVEL ?? 'info' }).child({ component: 'agent' });
  const dataDir = path.resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const bus = new AgentBus();
  const lifetime = new AbortController();

  let identity: Identity | undefined = await loadIdentity(dataDir);
  // The gateway routes by its saved table from the start: clients keep being served while the control plane is away.
  const gateway = options.gateway
    ? new GatewayProcess({
      host: options.gateway.host ?? '0.0.0.0', httpPort: options.gateway.httpPort, grpcPort: options.gateway.grpcPort,
      cacheFile: path.join(dataDir, STATE_FILES.routes), locale: { node: identity?.node_id, site: options.site, zone: options.zone },
      logLevel: log.level,
    }, log)
    : undefined;
  await gateway?.start();
  bus.on(MESSAGES.routes, (table) => gateway?.apply(table));
  const controlUrl = options.controlUrl;
  const cache = new ModelCache({
    dir: path.join(dataDir, STATE_FILES.cache),
    maxBytes: options.cacheBytes ?? DEFAULT_CACHE_BYTES,
    source: () => (identity ? { controlUrl, token: identity.node_token } : undefined),
    log,
  });
  const supervisor = new ReplicaSupervisor({
    dataDir, cache,
    ports: new PortAllocator(options.portRange ?? DEFAULT_PORT_RANGE),
    report: (status) => bus.emit(MESSAGES.replicaStatus, status),
    driver: (name: RuntimeName) => {
      const nodeId = () => identity?.node_id;
      if (name === 'process') return new ProcessDriver({ ...options.processDriver, dataDir, log });
      const control = () => (identity ? { controlUrl, token: identity.node_token } : undefined);
      if (name === 'container') return new ContainerDriver({ ...options.containerDriver, dataDir, log, nodeId, control });
      return createDriver(name, { dataDir, log, nodeId });
    },
    restartBackoff: options.restartBackoff,
    stableAfterMs: options.stableAfterMs,
    stopGraceMs: options.stopGraceMs,
    log,
  });
  // Workloads of a previous agent run: adopted by drivers that can, cleaned up by the others.
  await supervisor.adopt(['process']);
  if (options.containerDriver) {
    await supervisor.adopt(['container']).catch((err: unknown) => log.error({ err: (err as Error).message }, 'cannot list the containers of a previous agent run'));
  }

  // Edge autonomy: with an identity, serve the saved desired state before reaching the control plane.
  if (identity) {
    supervisor.setNode(identity.node_id);
    const restored = await supervisor.restore();
    if (restored) log.info({ node: identity.node_id, revision: restored.revision, replicas: restored.replicas.length }, 'serving the saved desired state');
  }
  await supervisor.removeOrphans();


  let facts: Promise<NodeFacts> | undefined;
  const getFacts = () => {
    // An engine runs model replicas in containers and app workloads (container deployments) alike.
    const engine = options.containerDriver !== undefined;
    facts ??= collectFacts({ ...options, runtimes: engine ? ['process', 'container'] : ['process'], ...(engine ? { workloads: ['container'] } : {}) }).catch((err: unknown) => {
      facts = undefined;
      throw err;
    });
    return facts;
  };

  const commands = new CommandLog(dataDir);
  await commands.load();
  const onCommand = (command: AgentCommand) => {
    void (async () => {
      if (!(await commands.record(command.id))) {
        log.info({ id: command.id, kind: command.kind }, 'command already handled');
        return;
      }
      log.info({ id: command.id, kind: command.kind }, 'command');
      if (command.kind === 'drain') await supervisor.drain();
      else if (!(await supervisor.restartReplica(command.replica_id))) log.warn({ id: command.id, replica: command.replica_id }, 'restart-replica: this node does not run that replica');
    })().catch((err: unknown) => log.error({ err, id: command.id }, 'command failed'));
  };
  bus.on(MESSAGES.command, onCommand);
  bus.on(MESSAGES.desiredState, (desired) => {
    supervisor.apply(desired).catch((err: unknown) => log.error({ err, revision: desired.revision }, 'cannot apply the desired state'));
  });

  // App containers on the node's engine, when the agent runs the container runtime.
  const appContainerStats = async () => (options.containerDriver
    ? (supervisor.driver('container') as ContainerDriver).appStats().catch((err: unknown) => {
      log.debug({ err: (err as Error).message }, 'no app container stats');
      return undefined;
    })
    : undefined);

  let hub: Hub | undefined;
  // The operator's container operations, run on this node's engine for the control plane.
  const containerEngine = () => (options.containerDriver ? (supervisor.driver('container') as ContainerDriver).engine() : undefined);
  const rpc = new RpcServer(containerHandlers(containerEngine, () => identity?.node_id), (frame) => hub?.publishRpc(frame), log);
  let heartbeatMs = options.heartbeatMs ?? 1000;
  const stats = new StatsSampler();
  let seq = 0;
  let heartbeatTimer: NodeJS.Timeout | undefined;
  const beat = async () => {
    if (!hub?.connected) return;
    const [node, replicas, containers] = await Promise.all([stats.sample(), supervisor.replicaStats(), appContainerStats()]);
    const heartbeat: Heartbeat = {
      seq: seq++, ts: Date.now(), ...node,
      applied_revision: Math.max(0, supervisor.appliedRevision),
      ...(gateway && gateway.version >= 0 ? { routes_version: gateway.version } : {}),
      replicas,
      ...(containers ? { containers } : {}),
    };
    hub.publishHeartbeat(heartbeat);
  };
  const scheduleBeat = () => {
    if (lifetime.signal.aborted) return;
    heartbeatTimer = setTimeout(() => {
      beat().catch((err: unknown) => log.warn({ err }, 'heartbeat failed')).finally(scheduleBeat);
    }, heartbeatMs);
  };

  const connect = async (background: boolean) => {
    const backoff = new Backoff({ initialMs: 5000, maxMs: 60_000, factor: 2, jitter: 0.2 });
    for (;;) {
      try {
        const res = await join({
          controlUrl, dataDir, token: options.token, facts: getFacts, backoff: options.joinBackoff, signal: lifetime.signal, log,
        });
        identity = { node_id: res.node_id, node_token: res.node_token };
        supervisor.setNode(res.node_id);
        gateway?.setLocale({ node: res.node_id, site: options.site, zone: options.zone });
        if (options.heartbeatMs === undefined) heartbeatMs = res.heartbeat_ms;
        if (lifetime.signal.aborted) return;
        hub = new Hub({
          bus, url: res.mqtt_url, node: res.node_id, token: res.node_token, log,
          appliedRevision: supervisor.appliedRevision >= 0 ? supervisor.appliedRevision : undefined,
          statuses: () => supervisor.statuses(),
          rpc,
        });
        scheduleBeat();
        return;
      } catch (err) {
        if (lifetime.signal.aborted) return;
        if (!background || !(err instanceof JoinRefusedError)) throw err;
        // Already serving: keep serving, and keep asking (an operator can fix the token or the node).
        const delay = backoff.next();
        log.error({ err: err.message, retry_ms: delay }, 'the control plane refused this node; still serving the saved desired state');
        await sleep(delay, lifetime.signal);
      }
    }
  };

  let joined: Promise<void>;
  if (identity) {
    joined = connect(true);
    joined.catch((err: unknown) => log.error({ err }, 'joining failed'));
  } else {
    await connect(false);
    joined = Promise.resolve();
  }
  const nodeId = identity?.node_id;
  if (!nodeId) throw new Error('agent closed before it joined');

  let closing: Promise<void> | undefined;
  return {
    nodeId,
    supervisor,
    bus,
    gateway,
    joined,
    get connected() {
      return hub?.connected ?? false;
    },
    close() {
      closing ??= (async () => {
        lifetime.abort();
        clearTimeout(heartbeatTimer);
        await gateway?.close().catch((err: unknown) => log.warn({ err }, 'closing the gateway failed'));
        await hub?.close().catch((err: unknown) => log.warn({ err }, 'closing the MQTT session failed'));
        await supervisor.close(options.stopGraceMs);
        bus.removeAllListeners();
        log.info({ node: nodeId }, 'agent stopped');
      })();
      return closing;
    },
  };
}
