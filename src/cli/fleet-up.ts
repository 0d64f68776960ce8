/**
 * `tern control`, `tern agent` and `tern up`. `up` runs the embedded defaults in
 * one process tree: the control plane (SQLite, embedded MQTT), a local agent
 * with the process runtime, and the demo model deployed, then prints where to
 * look and how to send an inference.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startAgent, type RunningAgent } from '../agent/agent.js';
import { createApiToken, createJoinToken } from '../control/auth/accounts.js';
import { startControlPlane, type ControlOptions, type ControlPlane } from '../control/control-plane.js';
import { writeDemoRepository } from '../models/demo-repository.js';
import { DeploymentSpecSchema } from '../protocol/fleet.js';
import { pino } from 'pino';
import { saveCredentials } from './api-client.js';

export interface ControlFlags {
  dataDir: string; host: string; port: number; mqttPort: number; mqttUrl?: string; mqttUsername?: string; mqttDynsec?: boolean; advertise?: string; adminPassword?: string;
  gateway: boolean; gatewayPort: number; gatewayGrpcPort: number;
}

function onSignals(stop: () => Promise<void>): void {
  const handler = () => void stop().then(() => process.exit(0), () => process.exit(1));
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

function announceAdmin(cp: ControlPlane): void {
  if (cp.admin.created && cp.admin.generated) {
    process.stdout.write(`first start: admin user '${cp.admin.username}' created with password ${cp.admin.password} (shown once)\n`);
  }
}

function controlOptions(f: ControlFlags): ControlOptions {
  return { dataDir: f.dataDir, host: f.host, port: f.port, mqttPort: f.mqttPort, mqttUrl: f.mqttUrl,
    // A password on the command line would show in `ps`: it comes from the environment.
    mqttUsername: f.mqttUsername, mqttPassword: process.env.TERN_MQTT_PASSWORD || undefined, mqttDynsec: f.mqttDynsec,
    advertiseHost: f.advertise, adminPassword: f.adminPassword };
}

function gatewayPorts(f: ControlFlags): { httpPort: number; grpcPort: number } | undefined {
  return f.gateway ? { httpPort: f.gatewayPort, grpcPort: f.gatewayGrpcPort } : undefined;
}

export async function runControl(f: ControlFlags): Promise<void> {
  const cp = await startControlPlane({ ...controlOptions(f), gateway: gatewayPorts(f) });
  announceAdmin(cp);
  const gw = cp.gateway ? `, gateway HTTP ${cp.gateway.httpPort} gRPC ${cp.gateway.grpcPort}` : '';
  process.stdout.write(`tern control listening on ${cp.url} (API ${cp.url}/api/v1, MQTT ${cp.mqttUrl}${gw})\n`);
  onSignals(() => cp.close());
}

const DEMO_MODEL = 'iris-forest';
const DEMO_DEPLOYMENT = 'iris';

/** Registers the demo model and deploys it once; later starts find both in the store. */
async function deployDemo(cp: ControlPlane): Promise<void> {
  if (!cp.store.models.exists(DEMO_MODEL)) {
    const tmp = await mkdtemp(path.join(tmpdir(), 'tern-demo-'));
    try {
      await writeDemoRepository(tmp, { models: [DEMO_MODEL] });
      const dir = path.join(tmp, DEMO_MODEL);
      const config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      delete config.name; // the replica serves it under the deployment's name
      await cp.registry.importFile(DEMO_MODEL, path.join(dir, '1', 'model.onnx'), { format: 'onnx', config });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  if (!cp.store.deployments.get(DEMO_DEPLOYMENT)) {
    const version = cp.store.models.listVersions(DEMO_MODEL).at(-1)!.version;
    cp.store.deployments.create(DeploymentSpecSchema.parse({ name: DEMO_DEPLOYMENT, model: DEMO_MODEL, replicas: 1, resources: { cpu: 0.25, memory_mb: 128 } }), version);
    cp.store.events.append({ kind: 'deployment.created', subject: `deployment/${DEMO_DEPLOYMENT}`, message: `tern up deployed the demo model ${DEMO_MODEL} v${version}` });
    cp.reconciler.trigger('demo deployment');
  }
}

/** Waits until the demo deployment is routable: a ready replica in the routing table (and in the local gateway's, when it runs one). */
async function waitForRoute(cp: ControlPlane, agent: RunningAgent, timeoutMs: number): Promise<{ node: string; port: number } | undefined> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const table = cp.routes.current;
    const replica = table?.routes.find((r) => r.deployment === DEMO_DEPLOYMENT)?.replicas[0];
    if (replica && (!agent.gateway || agent.gateway.version >= table!.version)) return { node: replica.node, port: replica.port };
    await new Promise((res) => setTimeout(res, 200));
  }
  return undefined;
}

export async function runUp(f: ControlFlags): Promise<void> {
  // One terminal shows everything here: keep it to warnings unless asked (TERN_LOG_LEVEL=info).
  const log = pino({ level: process.env.TERN_LOG_LEVEL ?? 'warn' });
  const cp = await startControlPlane({ ...controlOptions(f), advertiseHost: f.advertise ?? '127.0.0.1', log });
  announceAdmin(cp);
  const { token } = createApiToken(cp.store, `tern-up-${Date.now()}`, 'admin', 'tern up');
  await saveCredentials({ url: cp.url, token });
  let agent: RunningAgent | undefined;
  try {
    const join = createJoinToken(cp.store, 600, 'tern up local agent');
    // One machine: the local agent's gateway is this node's entry point (the control plane runs none here).
    agent = await startAgent({
      controlUrl: cp.url, token: join.token, dataDir: path.join(f.dataDir, 'agent'), address: '127.0.0.1', site: 'local',
      gateway: gatewayPorts(f), log: log.child({ component: 'agent' }),
    });
    await deployDemo(cp);
  } catch (err) {
    await agent?.close();
    await cp.close();
    throw err;
  }
  onSignals(async () => { await agent?.close(); await cp.close(); });
  const ready = await waitForRoute(cp, agent, 60_000);
  const inferUrl = agent.gateway ? `localhost:${agent.gateway.httpPort}` : `localhost:${ready?.port}`;
  process.stdout.write([
    '',
    `tern is up: control plane ${cp.url}, node ${agent.nodeId}, deployment '${DEMO_DEPLOYMENT}' (${DEMO_MODEL})`,
    `  dashboard      ${cp.url}/`,
    `  API            ${cp.url}/api/v1 (the CLI is logged in: try \`./tern nodes\`, \`./tern deployments\`, \`./tern events\`)`,
    ready
      ? `  inference      curl -s -X POST ${inferUrl}/v2/models/${DEMO_DEPLOYMENT}/infer -d '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[6.3,3.3,6.0,2.5]}]}'${agent.gateway ? ' (the gateway; replica direct on port ' + ready.port + ')' : ''}`
      : '  the demo replica is not ready yet: watch `./tern deployments show iris`',
    '',
  ].join('\n'));
}
