/**
 * `tern control`: wires the parts of the control plane together — the SQLite
 * store, the model registry, the MQTT broker (embedded, or an external one by
 * URL), the fleet hub that hears agents, the reconciler that acts, the
 * routing table and the control plane's own gateway, and the REST API. Each part knows nothing of the others; this file is the only place that
 * connects them.
 */
import { randomBytes } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { ensureFirstAdmin, type FirstAdmin } from './auth/accounts.js';
import { verifyNodeToken } from './auth/principal.js';
import { buildControlApi } from './api/control-api.js';
import { placeholderPage } from './dashboard-placeholder.js';
import { CONTROL_USERNAME, fleetBrokerAuth, startEmbeddedBroker, type EmbeddedBroker } from './mqtt/embedded-broker.js';
import { FleetHub } from './mqtt/fleet-hub.js';
import { NodeRpc } from './mqtt/node-rpc.js';
import { Reconciler } from './reconciler/reconciler.js';
import { RoutesPublisher } from './routing/routes-publisher.js';
import { startGatewayServer, type GatewayServer } from '../gateway/gateway-server.js';
import { MosquittoDynsec } from './mqtt/mosquitto-dynsec.js';
import { ModelRegistry } from './registry/model-registry.js';
import { ImageStore } from './registry/image-store.js';
import { Store } from './store/store.js';

export interface ControlOptions {
  dataDir: string;
  host?: string;
  /** REST API and dashboard port (default 7000; 0 = any free port). */
  port?: number;
  /** Embedded broker port (default 7883; 0 = any free port). Ignored with mqttUrl. */
  mqttPort?: number;
  /** Use this external broker (e.g. Mosquitto) instead of the embedded one. */
  mqttUrl?: string;
  mqttUsername?: string;
  mqttPassword?: string;
  /**
   * Manage node accounts on the external broker through Mosquitto's dynamic-security
   * plugin (mqttUsername must be its admin): see mosquitto-dynsec.ts.
   */
  mqttDynsec?: boolean;
  /** Host agents use to reach this machine's broker (default: first non-internal IPv4, else the listen host). */
  advertiseHost?: string;
  adminUsername?: string;
  adminPassword?: string;
  heartbeatMs?: number;
  heartbeatTimeoutMs?: number;
  /** Run a gateway in the control plane too (off unless given: `tern control` turns it on). */
  gateway?: { httpPort: number; grpcPort: number };
  /** The event log keeps this many newest events (default 200,000; pruned at start and hourly). */
  maxEvents?: number;
  /** Unfinished uploads older than this are removed (default 24 h; checked at start and hourly). */
  uploadMaxAgeMs?: number;
  /** How long a retired replica may take to leave every gateway's table before it is stopped anyway (default 5 s). */
  drainTimeoutMs?: number;
  log?: Logger;
}

export interface ControlPlane {
  url: string;
  port: number;
  mqttUrl: string;
  admin: FirstAdmin;
  store: Store;
  registry: ModelRegistry;
  hub: FleetHub;
  reconciler: Reconciler;
  routes: RoutesPublisher;
  /** Calls to node agents (container operations). */
  rpc: NodeRpc;
  /** The control plane's own gateway, when started. */
  gateway?: GatewayServer;
  api: FastifyInstance;
  close(): Promise<void>;
}

function defaultAdvertiseHost(listenHost: string): string {
  if (listenHost !== '0.0.0.0' && listenHost !== '::') return listenHost;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

async function startBroker(o: ControlOptions, store: Store, controlPassword: string, log: Logger): Promise<EmbeddedBroker | undefined> {
  if (o.mqttUrl) return undefined;
  return startEmbeddedBroker({
    host: o.host ?? '0.0.0.0',
    port: o.mqttPort ?? 7883,
    log: log.child({ part: 'broker' }),
    auth: fleetBrokerAuth({ controlPassword, verifyNodeToken: (node, token) => verifyNodeToken(store, node, token) }),
    onAccessDenied: (d) => store.events.append({
      kind: 'mqtt.denied', subject: d.principal.kind === 'node' ? `node/${d.principal.node}` : 'control',
      message: `MQTT ${d.action} on ${d.topic} refused for ${d.principal.kind === 'node' ? `node ${d.principal.node}` : 'control'}`,
    }),
  });
}

function wireHub(hub: FleetHub, reconciler: Reconciler): void {
  hub.on('heartbeat', (node, hb) => reconciler.onHeartbeat(node, hb));
  hub.on('status', (node, st) => reconciler.onStatus(node, st));
  hub.on('nodeDown', (node, info) => reconciler.onNodeDown(node, info.reason));
  hub.on('nodeUp', (node) => reconciler.onNodeUp(node));
}

export async function startControlPlane(o: ControlOptions): Promise<ControlPlane> {
  const log = o.log ?? pino({ level: process.env.TERN_LOG_LEVEL ?? 'info' });
  // First, so that a broker refusing us fails the start before anything is opened.
  const dynsec = await connectDynsec(o, log);
  const store = Store.open(path.join(o.dataDir, 'tern.db'));
  const admin = await ensureFirstAdmin(store, { username: o.adminUsername, password: o.adminPassword });
  const registry = new ModelRegistry({ store, dataDir: path.join(o.dataDir, 'registry') });
  // The control plane's own broker identity lives only as long as this process.
  const controlPassword = randomBytes(24).toString('base64url');
  const broker = await startBroker(o, store, controlPassword, log);
  const host = o.host ?? '0.0.0.0';
  const mqttUrl = o.mqttUrl ?? `mqtt://${o.advertiseHost ?? defaultAdvertiseHost(host)}:${broker!.port}`;
  const hub = await FleetHub.connect({
    // The broker listens where the API does: loopback only when that is every interface.
    url: broker ? `mqtt://${host === '0.0.0.0' ? '127.0.0.1' : host}:${broker.port}` : o.mqttUrl!,
    username: broker ? CONTROL_USERNAME : dynsec?.control.username ?? o.mqttUsername,
    password: broker ? controlPassword : dynsec?.control.password ?? o.mqttPassword,
    // 2.5 s of silence plus one probe round keeps a hung node's detection under 3 s.
    heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 2500,
    log: log.child({ part: 'hub' }),
  });
  const routes = new RoutesPublisher(store, hub, log.child({ part: 'routes' }));
  const reconciler = new Reconciler(store, hub, log.child({ part: 'reconciler' }), { routes, drainTimeoutMs: o.drainTimeoutMs });
  wireHub(hub, reconciler);
  // Nodes the store knows but that never speak again must still be declared down.
  hub.expectNodes(store.nodes.list().filter((n) => n.state !== 'down').map((n) => n.id));
  const rpc = new NodeRpc(hub, log.child({ part: 'rpc' }));
  const api = await buildControlApi({
    store, registry, rpc, images: new ImageStore(path.join(o.dataDir, 'registry'), store), log: log.child({ part: 'api' }), mqttUrl: () => mqttUrl, heartbeatMs: o.heartbeatMs ?? 1000,
    hooks: {
      desiredStateChanged: (reason) => reconciler.trigger(reason),
      nodeCredentials: dynsec ? (node, token) => dynsec.upsertNode(node, token) : undefined,
      nodeRemoved: (node) => {
        void dynsec?.removeNode(node).catch((err: Error) => log.warn({ err: err.message, node }, 'could not delete the removed node\'s broker account'));
        hub.forgetNode(node);
        routes.forgetNode(node);
        reconciler.forgetNode(node);
        void hub.clearDesired(node).catch((err: unknown) => log.warn({ err, node }, 'could not clear the removed node\'s desired state'));
      },
    },
    routes: () => routes.current,
  });
  api.get('/', { config: { access: 'public' } }, async (_req, reply) => reply.type('text/html').send(placeholderPage({
    nodes: store.nodes.list().length, deployments: store.deployments.list().length, models: store.models.list().length,
  })));
  await api.listen({ host, port: o.port ?? 7000 });
  const port = (api.server.address() as { port: number }).port;
  const gateway = o.gateway
    ? await startGatewayServer({ host, httpPort: o.gateway.httpPort, grpcPort: o.gateway.grpcPort, cacheFile: path.join(o.dataDir, 'routes.json'), log })
    : undefined;
  const unsubscribe = gateway ? routes.subscribe((table) => gateway.apply(table)) : undefined;
  reconciler.start();
  // Housekeeping: bounded event log, and resumable uploads nobody finished within a day
  // (a client resuming later starts over) plus staging files a crash left behind.
  const housekeeping = async () => {
    const removed = store.events.prune(o.maxEvents ?? 200_000);
    if (removed > 0) log.info({ removed }, 'pruned the oldest events');
    const uploads = await registry.uploads.purge(o.uploadMaxAgeMs ?? 24 * 3600_000).catch((err: Error) => {
      log.warn({ err: err.message }, 'could not purge stale uploads');
      return 0;
    });
    if (uploads > 0) log.info({ uploads }, 'removed stale unfinished uploads');
  };
  await housekeeping();
  const pruneTimer = setInterval(() => void housekeeping(), 3600_000);
  pruneTimer.unref();
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`, port, mqttUrl, admin, store, registry, hub, reconciler, routes, rpc, gateway, api,
    async close() {
      clearInterval(pruneTimer);
      reconciler.stop();
      unsubscribe?.();
      await gateway?.close();
      await api.close();
      await hub.close();
      await dynsec?.close();
      await broker?.close();
      store.close();
    },
  };
}

async function connectDynsec(o: ControlOptions, log: Logger): Promise<MosquittoDynsec | undefined> {
  if (!o.mqttDynsec) return undefined;
  if (!o.mqttUrl || !o.mqttUsername || !o.mqttPassword) {
    throw new Error('--mqtt-dynsec needs --mqtt-url and the plugin admin\'s --mqtt-username and password (TERN_MQTT_PASSWORD)');
  }
  return MosquittoDynsec.connect({ url: o.mqttUrl, username: o.mqttUsername, password: o.mqttPassword, log: log.child({ part: 'dynsec' }) });
}
