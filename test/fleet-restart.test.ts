/**
 * The control plane is killed with SIGKILL right after acknowledging a
 * deployment; restarted on the same data directory it still has it, the agents
 * reconnect, and the fleet converges to exactly the desired replicas.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REPO, freePort, removeDir, waitFor } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const PASSWORD = 'restart-test-password';
const children: ChildProcess[] = [];
let dataDir: string;
let apiPort: number;
let mqttPort: number;
let token = '';

function start(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TERN_LOG_LEVEL: 'warn' } });
  child.stderr?.on('data', (d: Buffer) => process.env.TERN_TEST_LOG && process.stderr.write(d));
  children.push(child);
  return child;
}

function startControl(): ChildProcess {
  return start(['control', '--data-dir', path.join(dataDir, 'control'), '--host', '127.0.0.1', '--port', String(apiPort), '--mqtt-port', String(mqttPort), '--admin-password', PASSWORD, '--gateway-port', '0', '--gateway-grpc-port', '0']);
}

async function api<T = any>(method: string, route: string, body?: unknown, raw?: Uint8Array<ArrayBuffer>): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${apiPort}/api/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(raw ? { 'content-type': 'application/octet-stream' } : body ? { 'content-type': 'application/json' } : {}) },
    body: raw ?? (body ? JSON.stringify(body) : undefined),
  });
  return { status: res.status, body: (await res.json()) as T };
}

const controlUp = () => waitFor(async () => (await fetch(`http://127.0.0.1:${apiPort}/healthz`).catch(() => undefined))?.ok === true, 20_000);

async function readyReplicas(): Promise<number> {
  const r = await api('GET', '/deployments/iris').catch(() => undefined);
  return r?.status === 200 ? r.body.status.ready : -1;
}

describe('control plane restart', () => {
  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'tern-restart-'));
    apiPort = await freePort();
    mqttPort = await freePort();
    startControl();
    expect(await controlUp()).toBe(true);
    token = (await api('POST', '/auth/login', { username: 'admin', password: PASSWORD })).body.token;
    // A real model through the real chunked upload.
    const model = readFileSync(path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'));
    const sha256 = createHash('sha256').update(model).digest('hex');
    const upload = await api('POST', '/models/iris-logreg/uploads', { sha256, size: model.length, format: 'onnx' });
    expect(upload.status).toBe(201);
    expect((await api('PUT', `/uploads/${upload.body.id}?offset=0`, undefined, new Uint8Array(model))).status).toBe(200);
    expect((await api('POST', `/uploads/${upload.body.id}/complete`)).status).toBe(201);
    const join = await api('POST', '/join-tokens', { ttl_s: 600 });
    for (const name of ['a', 'b']) {
      start(['agent', '--control', `http://127.0.0.1:${apiPort}`, '--token', join.body.token, '--data-dir', path.join(dataDir, name), '--address', '127.0.0.1', '--gateway-port', '0', '--gateway-grpc-port', '0']);
    }
    const joined = await waitFor(async () => (await api('GET', '/nodes')).body.nodes.filter((n: any) => n.state === 'ready').length === 2, 30_000);
    expect(joined, JSON.stringify((await api('GET', '/nodes')).body).slice(0, 500)).toBe(true);
  }, 90_000);

  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
    if (dataDir) removeDir(dataDir);
  });

  it('keeps an acknowledged deployment across SIGKILL and converges again', async () => {
    const created = await api('POST', '/deployments', { name: 'iris', model: 'iris-logreg', replicas: 2, resources: { cpu: 0.25, memory_mb: 128 } });
    expect(created.status).toBe(201);
    children[0].kill('SIGKILL'); // the control plane, right after the acknowledgement
    await new Promise((r) => children[0].once('exit', r));
    startControl();
    expect(await controlUp()).toBe(true);
    expect((await api('GET', '/deployments/iris')).status).toBe(200);
    expect(await waitFor(async () => (await readyReplicas()) === 2, 40_000, 250)).toBe(true);
    // Converged means exactly the desired replicas: none duplicated by the restart.
    const detail = (await api('GET', '/deployments/iris')).body;
    const running = detail.replicas.filter((r: any) => r.desired === 'run');
    expect(running).toHaveLength(2);
    const nodes = (await api('GET', '/nodes')).body.nodes;
    const reported = nodes.flatMap((n: any) => (n.stats?.replicas ?? []).filter((r: any) => r.state !== 'stopped'));
    expect(await waitFor(async () => {
      const ns = (await api('GET', '/nodes')).body.nodes;
      return ns.flatMap((n: any) => (n.stats?.replicas ?? []).filter((r: any) => r.state === 'ready')).length === 2;
    }, 10_000)).toBe(true);
    expect(reported.length).toBeLessThanOrEqual(2);
  }, 90_000);
});
