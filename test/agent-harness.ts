/**
 * Test harness for the node agent: a small real control plane (fastify with
 * just `POST /api/v1/join` and `GET /api/v1/blobs/:sha256`, and an anonymous
 * aedes broker on TCP) that can be stopped and started again on the same ports,
 * a control-side MQTT client recording what agents publish, and the agent run
 * as its own process from dist/ (as `tern agent` runs it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, closeSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { freePort } from './helpers.js';
import path from 'node:path';
import { Aedes } from 'aedes';
import Fastify, { type FastifyInstance } from 'fastify';
import { connect, type MqttClient } from 'mqtt';
import {
  HeartbeatSchema, JoinRequestSchema, ReplicaStatusSchema, parseNodeTopic, topics,
  type DesiredState, type Heartbeat, type NodeFacts, type ReplicaStatus,
} from '../src/protocol/fleet.js';

export const JOIN_TOKEN = 'join-secret';


export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000, everyMs = 100): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return true;
    await sleep(everyMs);
  }
  return check();
}

export interface JoinRecord { token: string; node_id?: string; facts: NodeFacts; answered: string }

export class TestControlPlane {
  readonly blobs = new Map<string, Buffer>();
  readonly joins: JoinRecord[] = [];
  readonly blobRequests: string[] = [];
  readonly heartbeats: { node: string; hb: Heartbeat }[] = [];
  readonly statuses: { node: string; status: ReplicaStatus }[] = [];
  readonly presence = new Map<string, string>();
  /** Messages from agents that did not match protocol/fleet.ts. */
  readonly invalid: string[] = [];
  /** node id -> node token */
  private readonly nodes = new Map<string, string>();
  private http: FastifyInstance | undefined;
  private broker: Aedes | undefined;
  private mqttServer: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private client: MqttClient | undefined;
  private nextNode = 1;

  private constructor(readonly httpPort: number, readonly mqttPort: number, readonly heartbeatMs: number) {}

  static async start(heartbeatMs = 500): Promise<TestControlPlane> {
    const cp = new TestControlPlane(await freePort(), await freePort(), heartbeatMs);
    cp.broker = await Aedes.createBroker();
    await cp.up();
    return cp;
  }

  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  get mqttUrl(): string {
    return `mqtt://127.0.0.1:${this.mqttPort}`;
  }

  get running(): boolean {
    return this.http !== undefined;
  }

  /** Starts (again) the HTTP API and the broker's listener on their ports; the broker keeps its retained messages and sessions. */
  async up(): Promise<void> {
    const app = Fastify({ logger: false });
    app.post('/api/v1/join', async (req, reply) => {
      const parsed = JoinRequestSchema.safeParse(req.body);
      if (!parsed.success) return reply.code(400).send({ error: `invalid join request: ${parsed.error.message}` });
      const { token, node_id, facts } = parsed.data;
      let id: string;
      let nodeToken: string;
      if (node_id && this.nodes.get(node_id) === token) {
        id = node_id;
        nodeToken = token;
      } else if (token === JOIN_TOKEN) {
        id = node_id ?? `node-${this.nextNode++}`;
        nodeToken = `node-token-${randomBytes(8).toString('hex')}`;
        this.nodes.set(id, nodeToken);
      } else {
        return reply.code(401).send({ error: 'invalid join token' });
      }
      this.joins.push({ token, node_id, facts, answered: id });
      return { node_id: id, node_token: nodeToken, mqtt_url: this.mqttUrl, heartbeat_ms: this.heartbeatMs };
    });
    app.get<{ Params: { sha: string } }>('/api/v1/blobs/:sha', async (req, reply) => {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      if (!token || ![...this.nodes.values()].includes(token)) return reply.code(401).send({ error: 'unknown node token' });
      this.blobRequests.push(req.params.sha);
      const blob = this.blobs.get(req.params.sha);
      if (!blob) return reply.code(404).send({ error: `blob ${req.params.sha} not found` });
      return reply.type('application/octet-stream').send(blob);
    });
    await app.listen({ host: '127.0.0.1', port: this.httpPort });
    this.http = app;

    const broker = this.broker!;
    this.mqttServer = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      broker.handle(socket);
    });
    await new Promise<void>((resolve) => this.mqttServer!.listen(this.mqttPort, '127.0.0.1', resolve));

    if (!this.client) {
      // A persistent session: what agents publish while this client reconnects after an outage is kept for it.
      this.client = connect(this.mqttUrl, { clientId: 'test-control', clean: false, reconnectPeriod: 200, protocolVersion: 4 });
      this.client.on('error', () => undefined);
      this.client.on('connect', () => this.client!.subscribe(`tern/nodes/+/+`, { qos: 1 }));
      this.client.on('message', (topic, payload) => this.record(topic, payload));
      await new Promise<void>((resolve) => this.client!.once('connect', () => resolve()));
    }
  }

  /** The control plane becomes unreachable: API down, broker listener closed, every MQTT connection cut. */
  async down(): Promise<void> {
    await this.http?.close();
    this.http = undefined;
    const server = this.mqttServer;
    this.mqttServer = undefined;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private record(topic: string, payload: Buffer): void {
    const t = parseNodeTopic(topic);
    if (!t) return;
    const text = payload.toString('utf8');
    if (t.kind === 'heartbeat') {
      const hb = HeartbeatSchema.safeParse(JSON.parse(text));
      if (hb.success) this.heartbeats.push({ node: t.node, hb: hb.data });
      else this.invalid.push(`invalid heartbeat from ${t.node}: ${hb.error.message}`);
    } else if (t.kind === 'status') {
      const st = ReplicaStatusSchema.safeParse(JSON.parse(text));
      if (st.success) this.statuses.push({ node: t.node, status: st.data });
      else this.invalid.push(`invalid status from ${t.node}: ${st.error.message}`);
    } else if (t.kind === 'presence') {
      this.presence.set(t.node, text);
    }
  }

  async publishDesired(desired: DesiredState): Promise<void> {
    await this.client!.publishAsync(topics.desired(desired.node), JSON.stringify(desired), { qos: 1, retain: true });
  }

  async publishCommand(node: string, command: Record<string, unknown>): Promise<void> {
    await this.client!.publishAsync(topics.commands(node), JSON.stringify(command), { qos: 1 });
  }

  lastStatus(node: string, replica: string): ReplicaStatus | undefined {
    return this.statuses.filter((s) => s.node === node && s.status.replica_id === replica).at(-1)?.status;
  }

  lastHeartbeat(node: string): Heartbeat | undefined {
    return this.heartbeats.filter((h) => h.node === node).at(-1)?.hb;
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true).catch(() => undefined);
    await this.down();
    await new Promise<void>((resolve) => (this.broker ? this.broker.close(() => resolve()) : resolve()));
  }
}

export interface AgentProcessOptions {
  controlUrl: string;
  token?: string;
  dataDir: string;
  portRange?: { from: number; to: number };
  /** Run with the lean V8 flags `tern agent` uses (footprint.ts). */
  lean?: boolean;
  /** Turn off mqtt-packet's number cache, as mqtt.js's `writeCache: false` would. */
  mqttNoWriteCache?: boolean;
  logFile: string;
  [key: string]: unknown;
}

const DIST = path.resolve('dist');

/** Runs `startAgent` from dist/ in its own process, logging to `logFile`. */
export function startAgentProcess(options: AgentProcessOptions): ChildProcess & { exited: Promise<number | null> } {
  const runner = path.join(path.dirname(options.logFile), 'agent-runner.mjs');
  writeFileSync(runner, `
const opts = JSON.parse(process.env.TERN_AGENT_OPTIONS);
if (opts.lean) (await import(${JSON.stringify(`${DIST}/agent/footprint.js`)})).useLeanRuntime();
// What mqtt.js's writeCache: false does (the link does not set it yet): no 65536 pre-built packet-id buffers (~6 MB of heap).
if (opts.mqttNoWriteCache) {
  const { createRequire } = await import('node:module');
  createRequire(${JSON.stringify(path.resolve('package.json'))})('mqtt-packet').writeToStream.cacheNumbers = false;
}
const { startAgent } = await import(${JSON.stringify(`${DIST}/agent/agent.js`)});
const agent = await startAgent(opts);
const stop = async () => { await agent.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (opts.memLog) {
  const v8 = await import('node:v8');
  setInterval(() => console.log(JSON.stringify({ mem: process.memoryUsage(), spaces: v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]) })), 2000).unref();
}
`);
  const out = openSync(options.logFile, 'a');
  const child = spawn(process.execPath, [runner], {
    stdio: ['ignore', out, out],
    env: { ...process.env, TERN_AGENT_OPTIONS: JSON.stringify(options), TERN_LOG_LEVEL: 'info' },
  });
  closeSync(out);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return Object.assign(child, { exited });
}

export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** The cgroup directories a process is in whose path runs through a `tern` parent (replica groups). */
export function replicaCgroupDirs(pid: number): string[] {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
  const out: string[] = [];
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean)) {
    const [id, controllers, ...rest] = line.split(':');
    const rel = rest.join(':');
    if (!/\/tern\/[^/]+$/.test(rel)) continue;
    const mount = id === '0' && controllers === ''
      ? mounts.find((m) => m[2] === 'cgroup2')
      : mounts.find((m) => m[2] === 'cgroup' && controllers.split(',').some((c) => m[3].split(',').includes(c)));
    if (mount) out.push(path.join(mount[1], rel));
  }
  return out;
}
