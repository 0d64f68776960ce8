/**
 * The gateway on one machine: a control plane with its own gateway and two
 * agents (their gateways are child processes), a deployment with a replica on
 * each, and every protocol of `tern serve` spoken through a gateway, with the
 * headers that say where a request went, the metrics, the errors of the
 * gateway's own, and the drain protocol of a scale-down.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../src/agent/agent.js';
import { createJoinToken } from '../src/control/auth/accounts.js';
import { startControlPlane, type ControlPlane } from '../src/control/control-plane.js';
import { DeploymentSpecSchema } from '../src/protocol/fleet.js';
import { grpcProtoPath } from '../src/serving/grpc/grpc-server.js';
import { DEMO_REPO, IRIS_ROWS, getJson, postJson, removeDir, waitFor } from './helpers.js';

let cp: ControlPlane;
let dir: string;
const agents: RunningAgent[] = [];
const log = pino({ level: process.env.TERN_TEST_LOG ?? 'silent' });
const irisInput = (rows = IRIS_ROWS) => ({ inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, 4], data: rows.map((r) => r.features) }], outputs: [{ name: 'label' }] });

function gatewayUrl(a: RunningAgent): string {
  return `http://127.0.0.1:${a.gateway!.httpPort}`;
}

/** Every gateway routes by the control plane's newest table and it lists `count` replicas of the deployment. */
async function routed(deployment: string, count: number): Promise<boolean> {
  return waitFor(() => {
    const table = cp.routes.current;
    const n = table?.routes.find((r) => r.deployment === deployment)?.replicas.length;
    return n === count && agents.every((a) => a.gateway!.version >= table!.version) && cp.gateway!.version >= table!.version;
  }, 40_000, 50);
}

/** The pid of the first agent's replica of a deployment (the one local-first picks there). */
async function localReplicaPid(deployment: string): Promise<number> {
  const local = cp.store.replicas.listByDeployment(deployment).find((r) => r.node === agents[0].nodeId)!;
  // On a loaded machine a replica may be mid-restart (its pid file comes back with the new process).
  const pidFile = path.join(dir, 'a', 'replicas', local.id, 'pid');
  expect(await waitFor(() => existsSync(pidFile), 10_000)).toBe(true);
  return Number(readFileSync(pidFile, 'utf8'));
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'tern-gateway-'));
  cp = await startControlPlane({
    dataDir: path.join(dir, 'control'), host: '127.0.0.1', port: 0, mqttPort: 0, adminPassword: 'gateway-test', log,
    gateway: { httpPort: 0, grpcPort: 0 },
  });
  const config = JSON.parse(readFileSync(path.join(DEMO_REPO, 'iris-logreg', 'config.json'), 'utf8')) as Record<string, unknown>;
  delete config.name;
  await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'), { format: 'onnx', config });
  for (const name of ['a', 'b']) {
    agents.push(await startAgent({
      controlUrl: cp.url, token: createJoinToken(cp.store, 600).token, dataDir: path.join(dir, name), address: '127.0.0.1', site: 'lab',
      gateway: { host: '127.0.0.1', httpPort: 0, grpcPort: 0 }, portRange: { from: 24000, to: 24199 }, log,
    }));
  }
  const version = cp.store.models.latestVersion('iris-logreg')!.version;
  cp.store.deployments.create(DeploymentSpecSchema.parse({ name: 'iris', model: 'iris-logreg', replicas: 2, resources: { cpu: 0.25, memory_mb: 128 }, app: { slo_ms: 2000, default_output: -1, output_name: 'label' } }), version);
  cp.reconciler.trigger('test');
  const ok = await routed('iris', 2);
  if (!ok) console.log(JSON.stringify({ table: cp.routes.current, versions: agents.map((a) => a.gateway!.version), cpgw: cp.gateway!.version, replicas: cp.store.replicas.list() }));
  expect(ok).toBe(true);
}, 90_000);

afterAll(async () => {
  for (const a of agents) await a.close();
  await cp?.close();
  if (dir) removeDir(dir);
});

describe('the gateway speaks every protocol of tern serve', () => {
  it('OIP v2 REST JSON, answered by this node\'s own replica (local-first) with headers saying where it went', async () => {
    for (const a of agents) {
      const res = await postJson(`${gatewayUrl(a)}/v2/models/iris/infer`, irisInput());
      expect(res.status).toBe(200);
      expect(res.body.outputs[0].data).toEqual(IRIS_ROWS.map((r) => r.label));
      expect(res.headers.get('tern-node')).toBe(a.nodeId);
      expect(res.headers.get('tern-replica')).toMatch(/^iris-/);
    }
  });

  it('OIP v2 REST with the binary tensor extension, bytes unchanged both ways', async () => {
    const rows = IRIS_ROWS.slice(0, 3);
    const header = Buffer.from(JSON.stringify({
      inputs: [{ name: 'input', datatype: 'FP32', shape: [3, 4], parameters: { binary_data_size: 48 } }],
      outputs: [{ name: 'probabilities', parameters: { binary_data: true } }],
    }));
    const data = Buffer.from(new Float32Array(rows.flatMap((r) => r.features)).buffer);
    const res = await fetch(`${gatewayUrl(agents[0])}/v2/models/iris/infer`, {
      method: 'POST', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, data]),
    });
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    const json = Number(res.headers.get('inference-header-content-length'));
    expect(JSON.parse(body.subarray(0, json).toString()).outputs[0].parameters.binary_data_size).toBe(36);
    const raw = body.subarray(json);
    const probs = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    for (let r = 0; r < 3; r++) {
      const row = Array.from(probs.slice(r * 3, r * 3 + 3));
      expect(row.indexOf(Math.max(...row))).toBe(rows[r].label);
    }
  });

  it('TF Serving REST (row form), Clipper app, model metadata and readiness', async () => {
    const url = gatewayUrl(agents[1]);
    const tf = await postJson(`${url}/v1/models/iris:predict`, { instances: IRIS_ROWS.map((r) => ({ input: r.features })) });
    expect(tf.status).toBe(200);
    expect(tf.body.predictions.map((p: { label: number }) => p.label)).toEqual(IRIS_ROWS.map((r) => r.label));
    const app = await postJson(`${url}/iris/predict`, { input: IRIS_ROWS[0].features });
    expect(app.status).toBe(200);
    expect(app.body.default).toBe(false);
    expect(app.body.output).toBe(IRIS_ROWS[0].label);
    const meta = await getJson(`${url}/v2/models/iris`);
    expect(meta.status).toBe(200);
    expect(meta.body.inputs[0]).toMatchObject({ name: 'input', datatype: 'FP32' });
    expect((await getJson(`${url}/v2/models/iris/ready`)).status).toBe(200);
    expect((await getJson(`${url}/v2/health/ready`)).body).toEqual({ ready: true });
  });

  it('OIP v2 gRPC ModelInfer, ModelMetadata and server calls, with the caller\'s deadline', async () => {
    const definition = protoLoader.loadSync(grpcProtoPath(), { keepCase: true, longs: String, defaults: false, oneofs: true });
    const pkg = grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject;
    const Service = pkg.GRPCInferenceService as grpc.ServiceClientConstructor;
    const client = new Service(`127.0.0.1:${agents[0].gateway!.grpcPort}`, grpc.credentials.createInsecure());
    const call = <T>(method: string, req: unknown, deadlineMs = 10_000) => new Promise<{ res?: T; err?: grpc.ServiceError; md?: grpc.Metadata }>((resolve) => {
      let md: grpc.Metadata | undefined;
      const c = (client[method] as (...args: unknown[]) => grpc.ClientUnaryCall)(req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => resolve({ res, err: err ?? undefined, md }));
      c.on('metadata', (m: grpc.Metadata) => { md = m; });
    });
    try {
      expect((await call('ServerLive', {})).res).toEqual({ live: true });
      expect((await call<{ name: string }>('ServerMetadata', {})).res?.name).toBe('tern');
      const rows = IRIS_ROWS;
      const infer = await call<{ outputs: { name: string }[]; raw_output_contents: Buffer[] }>('ModelInfer', {
        model_name: 'iris',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [rows.length, 4], contents: { fp32_contents: rows.flatMap((r) => r.features) } }],
        outputs: [{ name: 'label' }],
      });
      expect(infer.err).toBeUndefined();
      const labels = infer.res!.raw_output_contents[0];
      expect(Array.from(new BigInt64Array(labels.buffer.slice(labels.byteOffset, labels.byteOffset + labels.byteLength)), Number)).toEqual(rows.map((r) => r.label));
      expect(infer.md?.get('tern-node')).toEqual([agents[0].nodeId]);
      expect((await call<{ name: string }>('ModelMetadata', { name: 'iris' })).res?.name).toBe('iris');
      const late = await call('ModelInfer', { model_name: 'iris', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] }, 0);
      expect(late.err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      // The replica's own error comes through unchanged (status and message), not retried elsewhere.
      const bad = await call('ModelInfer', { model_name: 'iris', inputs: [{ name: 'wrong', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] });
      expect(bad.err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(bad.err?.details).toMatch(/missing input 'input'/);
      const unknown = await call('ModelInfer', { model_name: 'nope', inputs: [] });
      expect(unknown.err?.code).toBe(grpc.status.NOT_FOUND);
      expect(unknown.err?.details).toMatch(/deployment nope is unknown to this gateway/);
    } finally {
      client.close();
    }
  });

  it('the control plane runs a gateway too', async () => {
    const res = await postJson(`http://127.0.0.1:${cp.gateway!.httpPort}/v2/models/iris/infer`, irisInput());
    expect(res.status).toBe(200);
    expect(agents.map((a) => a.nodeId)).toContain(res.headers.get('tern-node'));
  });
});

describe('errors of the gateway\'s own, and the replica\'s passed through unchanged', () => {
  it('names an unknown deployment, an unknown route, and passes a replica\'s 400 on', async () => {
    const url = gatewayUrl(agents[0]);
    const unknown = await postJson(`${url}/v2/models/nope/infer`, irisInput());
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatch(/deployment nope is unknown to this gateway \(routing table version \d+\)/);
    const route = await getJson(`${url}/v3/whatever`);
    expect(route.status).toBe(404);
    expect(route.body.error).toBe('no route for GET /v3/whatever');
    const bad = await fetch(`${url}/v2/models/iris/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"inputs": [' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/JSON/i);
    const shape = await postJson(`${url}/v2/models/iris/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] });
    expect(shape.status).toBe(400);
  });

  it('answers 504 when the request\'s timeout parameter runs out', async () => {
    // The local replica (local-first picks it) is stopped, so no answer can beat the deadline;
    // a 1 µs timeout instead raced a fast replica on a quiet machine.
    const pid = await localReplicaPid('iris');
    process.kill(pid, 'SIGSTOP');
    try {
      const started = performance.now();
      const res = await postJson(`${gatewayUrl(agents[0])}/v2/models/iris/infer`, { ...irisInput(), parameters: { timeout: 300_000 } });
      const ms = performance.now() - started;
      expect(res.status).toBe(504);
      expect(res.body.error).toMatch(/no answer before the request's deadline/);
      expect(ms).toBeGreaterThanOrEqual(290); // the deadline, not an early give-up
      expect(ms).toBeLessThan(5_000); // nor the 30 s hang limit
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('exports per-deployment and per-replica metrics', async () => {
    const text = await (await fetch(`${gatewayUrl(agents[0])}/metrics`)).text();
    expect(text).toMatch(/tern_gateway_requests_total\{deployment="iris",replica="iris-[^"]+",outcome="ok"\} [1-9]/);
    expect(text).toMatch(/tern_gateway_request_duration_seconds_bucket\{le="0.005",deployment="iris",replica="iris-/);
    expect(text).toMatch(/tern_gateway_failed_requests_total\{deployment="nope",code="MODEL_NOT_FOUND"\} [1-9]/);
  });
});

describe('hedged requests', () => {
  it('a replica that stops answering (SIGSTOP) costs a hedge delay, not a failure', async () => {
    const version = cp.store.models.latestVersion('iris-logreg')!.version;
    cp.store.deployments.create(DeploymentSpecSchema.parse({
      name: 'hedged', model: 'iris-logreg', replicas: 2, resources: { cpu: 0.25, memory_mb: 128 }, routing: { locality: 'local-first', hedge: true },
    }), version);
    cp.reconciler.trigger('test');
    expect(await routed('hedged', 2)).toBe(true);
    const url = `${gatewayUrl(agents[0])}/v2/models/hedged/infer`;
    for (let i = 0; i < 80; i++) expect((await postJson(url, irisInput())).status).toBe(200); // learn the p95
    const pid = await localReplicaPid('hedged');
    process.kill(pid, 'SIGSTOP');
    try {
      const nodes = new Set<string>();
      const started = performance.now();
      for (let i = 0; i < 50; i++) {
        const res = await postJson(url, irisInput());
        expect(res.status).toBe(200);
        nodes.add(res.headers.get('tern-node') ?? '');
      }
      const perRequestMs = (performance.now() - started) / 50;
      expect([...nodes]).toEqual([agents[1].nodeId]);
      expect(perRequestMs).toBeLessThan(500);
      const text = await (await fetch(`${gatewayUrl(agents[0])}/metrics`)).text();
      expect(text).toMatch(/tern_gateway_hedges_total\{deployment="hedged",winner="hedge"\} [1-9]/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    cp.store.deployments.markDeleting('hedged');
    cp.reconciler.trigger('test');
  }, 60_000);
});

describe('drain protocol', () => {
  it('a scale-down first takes the replica out of every gateway, then stops it', async () => {
    const since = Date.now();
    cp.store.deployments.scale('iris', 1);
    cp.reconciler.trigger('test');
    expect(await routed('iris', 1)).toBe(true);
    expect(await waitFor(() => cp.store.replicas.listByDeployment('iris').length === 1, 20_000)).toBe(true);
    const events = cp.store.events.query({ limit: 100 }).filter((e) => e.ts >= since).map((e) => `${e.kind}: ${e.message}`);
    const draining = events.findIndex((e) => e.startsWith('replica.draining'));
    const stopping = events.findIndex((e) => /^replica.stopping: .* drained \(every gateway stopped routing to it\)/.test(e));
    expect(draining, events.join('\n')).toBeGreaterThanOrEqual(0);
    expect(stopping, events.join('\n')).toBeGreaterThanOrEqual(0);
    // Every gateway keeps answering from the one that is left.
    for (const a of agents) expect((await postJson(`${gatewayUrl(a)}/v2/models/iris/infer`, irisInput())).status).toBe(200);
  }, 40_000);
});
