/**
 * The control plane's REST API end to end: real fastify (inject, and a real
 * socket where the transport matters), real SQLite and real files in a temp dir.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { c as createTar } from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../src/control/store/migrations.js';
import { buildControlApi } from '../src/control/api/control-api.js';
import { ensureFirstAdmin } from '../src/control/auth/accounts.js';
import { hashToken } from '../src/control/auth/tokens.js';
import { ModelRegistry } from '../src/control/registry/model-registry.js';
import { Store } from '../src/control/store/store.js';

const ADMIN_PASSWORD = 'correct horse battery staple';
const FACTS = {
  hostname: 'Pi-4 Kitchen', arch: 'arm64', os: 'linux', cpus: 4, memory_bytes: 4e9, cpu_score: 1200,
  address: '10.0.0.2', agent_version: '0.1.0', labels: { board: 'rpi4' },
};

interface Fixture {
  dir: string;
  store: Store;
  registry: ModelRegistry;
  app: FastifyInstance;
  hookCalls: string[];
  admin: string;
}

async function makeFixture(dir = mkdtempSync(path.join(tmpdir(), 'tern-control-'))): Promise<Fixture> {
  const store = Store.open(path.join(dir, 'control.db'));
  const registry = new ModelRegistry({ dataDir: dir, store });
  const hookCalls: string[] = [];
  const app = await buildControlApi({
    store, registry, log: pino({ level: process.env.TERN_TEST_LOG ?? 'silent' }),
    mqttUrl: () => 'mqtt://127.0.0.1:18830', heartbeatMs: 1000,
    hooks: { desiredStateChanged: (reason) => hookCalls.push(reason) },
    chunkLimit: 64 * 1024,
  });
  await ensureFirstAdmin(store, { password: ADMIN_PASSWORD });
  const f: Fixture = { dir, store, registry, app, hookCalls, admin: '' };
  f.admin = (await call(f, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: ADMIN_PASSWORD } })).body.token;
  return f;
}

async function closeFixture(f: Fixture): Promise<void> {
  await f.app.close();
  f.store.close();
  rmSync(f.dir, { recursive: true, force: true });
}

interface CallOptions { body?: unknown; token?: string; raw?: Buffer | string; contentType?: string }

async function call(f: Fixture, method: string, url: string, o: CallOptions = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (o.token) headers.authorization = `Bearer ${o.token}`;
  let payload: Buffer | string | undefined;
  if (o.raw !== undefined) { payload = o.raw; headers['content-type'] = o.contentType ?? 'application/octet-stream'; }
  if (o.body !== undefined) { payload = JSON.stringify(o.body); headers['content-type'] = 'application/json'; }
  const res = await f.app.inject({ method: method as 'GET', url, headers, payload });
  const text = res.body;
  return { status: res.statusCode, body: text && res.headers['content-type']?.toString().includes('json') ? JSON.parse(text) : text };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A model directory packed as tar (real tar via the tar package). */
async function packModel(files: Record<string, string | Buffer>): Promise<Buffer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-model-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  const out = path.join(dir, '..', `${path.basename(dir)}.tar`);
  await createTar({ file: out, cwd: dir }, Object.keys(files));
  const data = readFileSync(out);
  rmSync(dir, { recursive: true, force: true });
  rmSync(out, { force: true });
  return data;
}

/** Uploads a whole file in one chunk and completes it. */
async function pushModel(f: Fixture, name: string, data: Buffer, format: 'onnx' | 'tar' = 'onnx', version?: string): Promise<any> {
  const up = await call(f, 'POST', `/api/v1/models/${name}/uploads`, { token: f.admin, body: { sha256: sha256(data), size: data.length, format, ...(version ? { version } : {}) } });
  expect(up.status).toBe(201);
  if (!up.body.deduplicated) {
    const put = await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=0`, { token: f.admin, raw: data });
    expect(put.status).toBe(200);
  }
  return call(f, 'POST', `/api/v1/uploads/${up.body.id}/complete`, { token: f.admin });
}

async function viewerToken(f: Fixture): Promise<string> {
  const r = await call(f, 'POST', '/api/v1/tokens', { token: f.admin, body: { name: 'dashboard', role: 'viewer' } });
  expect(r.status).toBe(201);
  return r.body.token;
}

async function joinToken(f: Fixture, ttl_s = 3600): Promise<{ id: string; token: string }> {
  const r = await call(f, 'POST', '/api/v1/join-tokens', { token: f.admin, body: { ttl_s, description: 'lab' } });
  expect(r.status).toBe(201);
  return r.body;
}

async function joinNode(f: Fixture): Promise<{ node_id: string; node_token: string }> {
  const jt = await joinToken(f);
  const r = await call(f, 'POST', '/api/v1/join', { body: { token: jt.token, facts: FACTS } });
  expect(r.status).toBe(200);
  return r.body;
}

function eventKinds(f: Fixture): string[] {
  return f.store.events.query({ limit: 1000 }).map((e) => e.kind);
}

describe('control API', () => {
  let f: Fixture;
  beforeEach(async () => { f = await makeFixture(); });
  afterEach(async () => { await closeFixture(f); });

  describe('auth', () => {
    it('logs in with the right password and tells who is calling', async () => {
      const me = await call(f, 'GET', '/api/v1/auth/whoami', { token: f.admin });
      expect(me).toMatchObject({ status: 200, body: { kind: 'user', name: 'admin', role: 'admin' } });
      expect(f.admin).toMatch(/^tern_session_/);
      expect(eventKinds(f)).toContain('auth.login');
    });

    it('refuses a wrong password and an unknown user with the same clear 401', async () => {
      const bad = await call(f, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 'nope' } });
      const ghost = await call(f, 'POST', '/api/v1/auth/login', { body: { username: 'ghost', password: 'nope' } });
      expect(bad).toEqual({ status: 401, body: { error: 'invalid username or password' } });
      expect(ghost).toEqual(bad);
      expect(eventKinds(f).filter((k) => k === 'auth.login_failed')).toHaveLength(2);
    });

    it('requires a bearer token and names what is wrong with it', async () => {
      const none = await call(f, 'GET', '/api/v1/nodes');
      expect(none.status).toBe(401);
      expect(none.body.error).toMatch(/missing bearer token/);
      const junk = await call(f, 'GET', '/api/v1/nodes', { token: 'tern_api_nonsense' });
      expect(junk).toEqual({ status: 401, body: { error: 'invalid token' } });
    });

    it('lets a viewer read but not deploy (403 naming the role)', async () => {
      const viewer = await viewerToken(f);
      expect((await call(f, 'GET', '/api/v1/deployments', { token: viewer })).status).toBe(200);
      const r = await call(f, 'POST', '/api/v1/deployments', { token: viewer, body: { name: 'web', model: 'iris', replicas: 1 } });
      expect(r.status).toBe(403);
      expect(r.body.error).toBe('role viewer may not call POST /api/v1/deployments: it needs the admin role');
    });

    it('refuses a revoked API token and lists tokens without secrets', async () => {
      const created = await call(f, 'POST', '/api/v1/tokens', { token: f.admin, body: { name: 'ci', role: 'admin' } });
      const { id, token } = created.body;
      expect((await call(f, 'GET', '/api/v1/auth/whoami', { token })).body).toEqual({ kind: 'token', name: 'ci', role: 'admin' });
      const list = await call(f, 'GET', '/api/v1/tokens', { token: f.admin });
      expect(list.body.tokens).toHaveLength(1);
      expect(JSON.stringify(list.body)).not.toContain(token);
      expect(JSON.stringify(list.body)).not.toContain(hashToken(token));
      expect((await call(f, 'DELETE', `/api/v1/tokens/${id}`, { token: f.admin })).body.revoked_at).toBeTypeOf('number');
      const after = await call(f, 'GET', '/api/v1/auth/whoami', { token });
      expect(after.status).toBe(401);
      expect(after.body.error).toBe(`token ${id} (ci) has been revoked`);
      expect(eventKinds(f)).toEqual(expect.arrayContaining(['token.created', 'token.revoked']));
    });

    it('rejects bad auth bodies with the zod path', async () => {
      expect(await call(f, 'POST', '/api/v1/auth/login', { raw: '{"username":', contentType: 'application/json' }))
        .toEqual({ status: 400, body: { error: expect.stringMatching(/^request body is not valid JSON/) } });
      expect(await call(f, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password: 5 } }))
        .toEqual({ status: 400, body: { error: 'invalid request body: password: Invalid input: expected string, received number' } });
      expect((await call(f, 'POST', '/api/v1/tokens', { token: f.admin, body: { name: 'x', role: 'root' } })).body.error)
        .toMatch(/^invalid request body: role: /);
      expect((await call(f, 'DELETE', '/api/v1/tokens/zzz', { token: f.admin })).body.error)
        .toBe('invalid path parameter: id: token ids are 12 hex digits');
      expect((await call(f, 'POST', '/api/v1/auth/login', {})).body.error).toMatch(/request body is empty|unsupported content-type/);
    });
  });

  describe('join', () => {
    it('joins with a join token, then rejoins with node id and node token', async () => {
      const joined = await joinNode(f);
      expect(joined.node_id).toMatch(/^pi-4-kitchen-[a-f0-9]{6}$/);
      expect(joined.node_token).toMatch(/^tern_node_/);
      const node = await call(f, 'GET', `/api/v1/nodes/${joined.node_id}`, { token: f.admin });
      expect(node.body).toMatchObject({ id: joined.node_id, state: 'ready', cordoned: false, labels: { board: 'rpi4' }, replicas: [] });

      const again = await call(f, 'POST', '/api/v1/join', { body: { token: joined.node_token, node_id: joined.node_id, facts: { ...FACTS, cpus: 8 } } });
      expect(again.body).toEqual({ node_id: joined.node_id, node_token: joined.node_token, mqtt_url: 'mqtt://127.0.0.1:18830', heartbeat_ms: 1000 });
      expect(f.store.nodes.get(joined.node_id)!.facts.cpus).toBe(8);
      expect(eventKinds(f)).toEqual(expect.arrayContaining(['join_token.created', 'node.joined', 'node.rejoined']));
      expect(f.hookCalls.filter((c) => c.includes('joined'))).toHaveLength(2);
    });

    it('refuses an expired join token (401 "join token expired")', async () => {
      f.store.joinTokens.create({ tokenHash: hashToken('tern_join_old'), expiresAt: Date.now() - 1000 });
      const r = await call(f, 'POST', '/api/v1/join', { body: { token: 'tern_join_old', facts: FACTS } });
      expect(r.status).toBe(401);
      expect(r.body.error).toMatch(/^join token expired/);
      expect(f.store.nodes.list()).toHaveLength(0);
    });

    it('refuses a revoked join token and shows status, not secrets, in the list', async () => {
      const jt = await joinToken(f);
      await call(f, 'DELETE', `/api/v1/join-tokens/${jt.id}`, { token: f.admin });
      const r = await call(f, 'POST', '/api/v1/join', { body: { token: jt.token, facts: FACTS } });
      expect(r).toEqual({ status: 401, body: { error: `join token ${jt.id} revoked` } });
      const list = await call(f, 'GET', '/api/v1/join-tokens', { token: f.admin });
      expect(list.body.join_tokens).toEqual([expect.objectContaining({ id: jt.id, status: 'revoked', description: 'lab' })]);
      expect(JSON.stringify(list.body)).not.toContain(jt.token);
    });

    it('keeps nodes to joining and blob downloads', async () => {
      const joined = await joinNode(f);
      const r = await call(f, 'GET', '/api/v1/deployments', { token: joined.node_token });
      expect(r.status).toBe(403);
      expect(r.body.error).toMatch(/node tokens may only join and download blobs/);
      const stolen = await call(f, 'POST', '/api/v1/join', { body: { token: joined.node_token, node_id: 'other-node', facts: FACTS } });
      expect(stolen).toEqual({ status: 401, body: { error: `this node token belongs to node ${joined.node_id}, not other-node` } });
      const joinAsApi = await call(f, 'GET', '/api/v1/nodes', { token: (await joinToken(f)).token });
      expect(joinAsApi.body.error).toBe('join tokens can only be used with POST /api/v1/join');
    });

    it('serves blobs to nodes, whole or by range, and 404/416 for what it cannot', async () => {
      const data = randomBytes(5000);
      await pushModel(f, 'iris', data);
      const { node_token } = await joinNode(f);
      const get = (url: string, range?: string) => f.app.inject({ url, headers: { authorization: `Bearer ${node_token}`, ...(range ? { range } : {}) } });
      const whole = await get(`/api/v1/blobs/${sha256(data)}`);
      expect(whole.statusCode).toBe(200);
      expect(whole.headers['content-length']).toBe('5000');
      expect(sha256(whole.rawPayload)).toBe(sha256(data));
      const tail = await get(`/api/v1/blobs/${sha256(data)}`, 'bytes=4000-');
      expect(tail.statusCode).toBe(206);
      expect(tail.headers['content-range']).toBe('bytes 4000-4999/5000');
      expect(tail.rawPayload).toEqual(data.subarray(4000));
      expect((await get(`/api/v1/blobs/${sha256(data)}`, 'bytes=9000-')).statusCode).toBe(416);
      expect((await get(`/api/v1/blobs/${sha256(data)}`, 'lines=1-2')).json().error).toMatch(/^unsupported Range/);
      const missing = await get(`/api/v1/blobs/${'0'.repeat(64)}`);
      expect(missing.json()).toEqual({ error: `blob ${'0'.repeat(64)} not found in the registry` });
      expect((await get('/api/v1/blobs/not-a-digest')).json().error).toMatch(/^invalid path parameter: sha256: /);
    });

    it('rejects malformed join requests with the zod path', async () => {
      const r = await call(f, 'POST', '/api/v1/join', { body: { token: 'x', facts: { ...FACTS, cpus: 'four' } } });
      expect(r).toEqual({ status: 400, body: { error: 'invalid request body: facts.cpus: Invalid input: expected number, received string' } });
      const bad = await call(f, 'POST', '/api/v1/join-tokens', { token: f.admin, body: { ttl_s: -5 } });
      expect(bad.body.error).toMatch(/^invalid request body: ttl_s: /);
      const id = await call(f, 'POST', '/api/v1/join', { body: { token: 'x', node_id: 'Bad/Id', facts: FACTS } });
      expect(id.status).toBe(400);
      expect(id.body.error).toMatch(/invalid node_id "Bad\/Id"/);
    });
  });

  describe('nodes', () => {
    it('labels, cordons, drains and uncordons with events and hooks', async () => {
      const { node_id } = await joinNode(f);
      const base = `/api/v1/nodes/${node_id}`;
      const labeled = await call(f, 'PATCH', `${base}/labels`, { token: f.admin, body: { labels: { zone: 'kitchen', board: null } } });
      expect(labeled.body.labels).toEqual({ zone: 'kitchen' });
      expect((await call(f, 'POST', `${base}/cordon`, { token: f.admin })).body).toMatchObject({ cordoned: true, state: 'ready' });
      expect((await call(f, 'POST', `${base}/drain`, { token: f.admin })).body).toMatchObject({ cordoned: true, state: 'draining' });
      expect((await call(f, 'POST', `${base}/uncordon`, { token: f.admin })).body).toMatchObject({ cordoned: false, state: 'ready' });
      const events = await call(f, 'GET', `/api/v1/events?subject=node/${node_id}&kind=node`, { token: f.admin });
      expect(events.body.events.map((e: any) => e.kind)).toEqual(['node.joined', 'node.labeled', 'node.cordoned', 'node.draining', 'node.uncordoned']);
      expect(events.body.events[1].data.by).toBe('user/admin');
      expect(f.hookCalls).toEqual(expect.arrayContaining([`node ${node_id} cordon`, `node ${node_id} drain`, `node ${node_id} uncordon`]));
    });

    it('answers 404 for an unknown node and 400 for bad labels', async () => {
      const r = await call(f, 'POST', '/api/v1/nodes/ghost-1/cordon', { token: f.admin });
      expect(r).toEqual({ status: 404, body: { error: 'node ghost-1 not found' } });
      const { node_id } = await joinNode(f);
      const bad = await call(f, 'PATCH', `/api/v1/nodes/${node_id}/labels`, { token: f.admin, body: { labels: { 'bad key!': 'x' } } });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatch(/^invalid request body: labels\.bad key!: /);
      const wrong = await call(f, 'PATCH', `/api/v1/nodes/${node_id}/labels`, { token: f.admin, body: { labels: { zone: 3 } } });
      expect(wrong.body.error).toMatch(/^invalid request body: labels\.zone: /);
    });

    it('removes a node only when it is down or runs nothing; its token stops working', async () => {
      const { node_id, node_token } = await joinNode(f);
      f.store.models.addVersion({ model: 'm', sha256: 'a'.repeat(64), size: 1, format: 'onnx' });
      f.store.deployments.create({ name: 'd', model: 'm', replicas: 1, runtime: 'process', resources: { cpu: 0.5, memory_mb: 256 }, selector: {}, spread: 'node', routing: { locality: 'local-first', hedge: false } }, '1');
      f.store.replicas.create({ id: 'd-1', deployment: 'd', node: node_id, version: '1', generation: 1 });
      const busy = await call(f, 'DELETE', `/api/v1/nodes/${node_id}`, { token: f.admin });
      expect(busy.status).toBe(409);
      expect(busy.body.error).toBe(`node ${node_id} is ready and runs 1 replica(s): drain it first (tern nodes drain ${node_id}) or stop its agent`);
      f.store.nodes.setState(node_id, 'down');
      expect(await call(f, 'DELETE', `/api/v1/nodes/${node_id}`, { token: f.admin })).toEqual({ status: 200, body: { id: node_id, removed: true } });
      expect(f.store.replicas.get('d-1')).toBeUndefined();
      expect(f.hookCalls).toContain(`node ${node_id} removed`);
      const rejoin = await call(f, 'POST', '/api/v1/join', { body: { token: node_token, node_id, facts: FACTS } });
      expect(rejoin.status).toBe(401);
      expect((await call(f, 'DELETE', `/api/v1/nodes/${node_id}`, { token: f.admin })).status).toBe(404);
    });
  });

  describe('users', () => {
    it('admins create, list and remove users; a viewer may only read; the last admin stays', async () => {
      const created = await call(f, 'POST', '/api/v1/users', { token: f.admin, body: { username: 'vera', password: 'viewer-pass-1' } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ username: 'vera', role: 'viewer' });
      const vera = (await call(f, 'POST', '/api/v1/auth/login', { body: { username: 'vera', password: 'viewer-pass-1' } })).body.token;
      expect((await call(f, 'GET', '/api/v1/nodes', { token: vera })).status).toBe(200);
      expect((await call(f, 'POST', '/api/v1/users', { token: vera, body: { username: 'x', password: '12345678' } })).status).toBe(403);
      expect((await call(f, 'GET', '/api/v1/users', { token: f.admin })).body.users.map((u: any) => u.username)).toEqual(['admin', 'vera']);
      // Vera changes her own password, not the admin's.
      expect((await call(f, 'PUT', '/api/v1/users/vera/password', { token: vera, body: { password: 'new-pass-22' } })).status).toBe(200);
      const notHers = await call(f, 'PUT', '/api/v1/users/admin/password', { token: vera, body: { password: 'new-pass-22' } });
      expect(notHers).toEqual({ status: 403, body: { error: "only an admin or admin may change admin's password" } });
      expect((await call(f, 'POST', '/api/v1/auth/login', { body: { username: 'vera', password: 'new-pass-22' } })).status).toBe(200);
      expect((await call(f, 'DELETE', '/api/v1/users/vera', { token: f.admin })).body).toEqual({ username: 'vera', removed: true });
      expect((await call(f, 'GET', '/api/v1/nodes', { token: vera })).status).toBe(401); // her sessions ended with her
      const last = await call(f, 'DELETE', '/api/v1/users/admin', { token: f.admin });
      expect(last).toEqual({ status: 409, body: { error: 'user admin is the last admin: create another admin first' } });
    });

    it('refuses a duplicate user, a short password, a bad name and an unknown user, naming the problem', async () => {
      await call(f, 'POST', '/api/v1/users', { token: f.admin, body: { username: 'dup', password: 'password-1' } });
      const dup = await call(f, 'POST', '/api/v1/users', { token: f.admin, body: { username: 'dup', password: 'password-1' } });
      expect(dup).toEqual({ status: 409, body: { error: 'user dup already exists' } });
      const short = await call(f, 'POST', '/api/v1/users', { token: f.admin, body: { username: 'sam', password: 'short' } });
      expect(short.status).toBe(400);
      expect(short.body.error).toMatch(/password: passwords need at least 8 characters/);
      const badName = await call(f, 'POST', '/api/v1/users', { token: f.admin, body: { username: 'a b', password: 'password-1', role: 'root' } });
      expect(badName.body.error).toMatch(/username: usernames are 1-64/);
      expect(badName.body.error).toMatch(/role: /);
      expect((await call(f, 'DELETE', '/api/v1/users/ghost', { token: f.admin })).body).toEqual({ error: 'user ghost not found' });
    });
  });

  describe('model registry', () => {
    it('uploads in 3 chunks, resuming after a chunk lost mid-transfer', async () => {
      const data = randomBytes(150_000);
      const up = await call(f, 'POST', '/api/v1/models/iris/uploads', { token: f.admin, body: { sha256: sha256(data), size: data.length, format: 'onnx' } });
      expect(up.body).toMatchObject({ received: 0, model: 'iris', chunk_limit: 64 * 1024 });
      const id = up.body.id;
      const chunks = [data.subarray(0, 60_000), data.subarray(60_000, 120_000), data.subarray(120_000)];
      expect((await call(f, 'PUT', `/api/v1/uploads/${id}?offset=0`, { token: f.admin, raw: chunks[0] })).body.received).toBe(60_000);

      // The second chunk dies half way (a real socket, closed mid-body): nothing of it is kept.
      await f.app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = f.app.server.address() as { port: number };
      await sendHalfAndHangUp(port, `/api/v1/uploads/${id}?offset=60000`, f.admin, chunks[1]);
      const status = await call(f, 'GET', `/api/v1/uploads/${id}`, { token: f.admin });
      expect(status.body.received).toBe(60_000);

      for (const c of chunks.slice(1)) {
        const offset = (await call(f, 'GET', `/api/v1/uploads/${id}`, { token: f.admin })).body.received;
        expect((await call(f, 'PUT', `/api/v1/uploads/${id}?offset=${offset}`, { token: f.admin, raw: c })).status).toBe(200);
      }
      const done = await call(f, 'POST', `/api/v1/uploads/${id}/complete`, { token: f.admin });
      expect(done).toMatchObject({ status: 201, body: { model: 'iris', version: '1', sha256: sha256(data), size: data.length, format: 'onnx' } });
      const blob = await fetch(`http://127.0.0.1:${port}/api/v1/blobs/${sha256(data)}`, { headers: { authorization: `Bearer ${f.admin}` } });
      expect(sha256(Buffer.from(await blob.arrayBuffer()))).toBe(sha256(data));
      expect((await call(f, 'GET', `/api/v1/uploads/${id}`, { token: f.admin })).status).toBe(404);
      expect(eventKinds(f)).toContain('model.version_created');
    });

    it('refuses a chunk at the wrong offset with 409 naming the expected offset', async () => {
      const data = randomBytes(1000);
      const up = await call(f, 'POST', '/api/v1/models/iris/uploads', { token: f.admin, body: { sha256: sha256(data), size: 1000, format: 'onnx' } });
      await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=0`, { token: f.admin, raw: data.subarray(0, 400) });
      const r = await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=300`, { token: f.admin, raw: data.subarray(300, 600) });
      expect(r).toEqual({ status: 409, body: { error: `wrong offset 300 for upload ${up.body.id}: expected offset 400 (bytes received so far)` } });
      const past = await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=400`, { token: f.admin, raw: randomBytes(700) });
      expect(past.status).toBe(400);
      expect(past.body.error).toMatch(/goes past the declared size of 1000 bytes/);
    });

    it('discards an upload whose checksum does not match, storing nothing', async () => {
      const data = randomBytes(2000);
      const claimed = sha256(Buffer.from('something else'));
      const up = await call(f, 'POST', '/api/v1/models/iris/uploads', { token: f.admin, body: { sha256: claimed, size: 2000, format: 'onnx' } });
      await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=0`, { token: f.admin, raw: data });
      const r = await call(f, 'POST', `/api/v1/uploads/${up.body.id}/complete`, { token: f.admin });
      expect(r.status).toBe(400);
      expect(r.body.error).toBe(`checksum mismatch: expected ${claimed}, got ${sha256(data)}; the upload was discarded`);
      expect(readdirSync(path.join(f.dir, 'blobs', 'sha256'))).toEqual([]);
      expect(readdirSync(path.join(f.dir, 'uploads'))).toEqual([]);
      expect(f.store.models.list()).toEqual([]);
      expect((await call(f, 'GET', `/api/v1/uploads/${up.body.id}`, { token: f.admin })).status).toBe(404);
      expect(eventKinds(f)).toContain('model.upload_failed');
    });

    it('refuses a tar without model.onnx (400) and accepts one with it', async () => {
      const bad = await pushModel(f, 'ocr', await packModel({ 'config.json': '{}', 'weights/model.onnx': 'x' }), 'tar');
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatch(/^tar archive has no model\.onnx at its top level \(it holds config\.json, weights/);
      expect(readdirSync(path.join(f.dir, 'blobs', 'sha256'))).toEqual([]);
      const notTar = await pushModel(f, 'ocr', Buffer.from('definitely not a tar archive, just text'), 'tar');
      expect(notTar.status).toBe(400);
      expect(notTar.body.error).toMatch(/^upload is not a readable tar archive/);
      const good = await pushModel(f, 'ocr', await packModel({ 'model.onnx': randomBytes(100), 'config.json': '{}' }), 'tar');
      expect(good).toMatchObject({ status: 201, body: { model: 'ocr', version: '1', format: 'tar' } });
    });

    it('lists and shows models; versions count up and may share a blob', async () => {
      const data = randomBytes(500);
      expect((await pushModel(f, 'iris', data)).body.version).toBe('1');
      expect((await pushModel(f, 'iris', randomBytes(300))).body.version).toBe('2');
      const dup = await pushModel(f, 'iris-copy', data, 'onnx', '7');
      expect(dup.body).toMatchObject({ version: '7', sha256: sha256(data) });
      expect(readdirSync(path.join(f.dir, 'blobs', 'sha256'))).toHaveLength(2);
      const list = await call(f, 'GET', '/api/v1/models', { token: f.admin });
      expect(list.body.models).toEqual([
        expect.objectContaining({ name: 'iris', versions: 2, latest: '2', total_bytes: 800 }),
        expect.objectContaining({ name: 'iris-copy', versions: 1, latest: '7' }),
      ]);
      const taken = await call(f, 'POST', '/api/v1/models/iris/uploads', { token: f.admin, body: { sha256: sha256(data), size: 500, format: 'onnx', version: '2' } });
      expect(taken).toEqual({ status: 409, body: { error: 'model iris version 2 already exists' } });
      expect((await call(f, 'GET', '/api/v1/models/nope', { token: f.admin }))).toEqual({ status: 404, body: { error: 'model nope not found' } });
    });

    it('refuses to delete a deployed version (409) and collects the blob once free', async () => {
      const data = randomBytes(400);
      await pushModel(f, 'iris', data);
      await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'web', model: 'iris', replicas: 2 } });
      const r = await call(f, 'DELETE', '/api/v1/models/iris/versions/1', { token: f.admin });
      expect(r).toEqual({ status: 409, body: { error: 'model iris version 1 is used by deployment web; delete or roll those out first' } });
      expect((await call(f, 'DELETE', '/api/v1/models/iris', { token: f.admin })).status).toBe(409);
      expect((await call(f, 'DELETE', '/api/v1/deployments/web', { token: f.admin })).body).toEqual({ deleted: 'web' });
      expect((await call(f, 'DELETE', '/api/v1/models/iris/versions/1', { token: f.admin })).status).toBe(200);
      expect(readdirSync(path.join(f.dir, 'blobs', 'sha256'))).toEqual([]);
      expect(eventKinds(f)).toEqual(expect.arrayContaining(['deployment.deleted', 'model.version_deleted']));
    });

    it('rejects bad upload requests with the zod path', async () => {
      const r = await call(f, 'POST', '/api/v1/models/iris/uploads', { token: f.admin, body: { sha256: 'abc', size: -1, format: 'zip' } });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(/^invalid request body: sha256: sha256 must be 64 lower-case hex digits; size: .*; format: /);
      const name = await call(f, 'POST', '/api/v1/models/Bad Name/uploads', { token: f.admin, body: {} });
      expect(name.body.error).toMatch(/^invalid path parameter: name: names are 1-63 lower-case/);
      const up = await call(f, 'POST', '/api/v1/models/iris/uploads', { token: f.admin, body: { sha256: sha256(Buffer.from('x')), size: 1, format: 'onnx' } });
      const noOffset = await call(f, 'PUT', `/api/v1/uploads/${up.body.id}`, { token: f.admin, raw: Buffer.from('x') });
      expect(noOffset.body.error).toMatch(/^invalid query string: offset: /);
      const json = await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=0`, { token: f.admin, body: { bytes: 'x' } });
      expect(json).toEqual({ status: 415, body: { error: 'upload chunks must be sent as application/octet-stream' } });
      const big = await call(f, 'PUT', `/api/v1/uploads/${up.body.id}?offset=0`, { token: f.admin, raw: randomBytes(65 * 1024) });
      expect(big).toEqual({ status: 413, body: { error: 'request body is larger than the limit of 65536 bytes' } });
      const early = await call(f, 'POST', `/api/v1/uploads/${up.body.id}/complete`, { token: f.admin });
      expect(early.body.error).toBe(`upload ${up.body.id} is incomplete: received 0 of 1 bytes; continue at offset 0`);
      expect((await call(f, 'GET', '/api/v1/uploads/0123456789abcdef0123456789abcdef', { token: f.admin })).status).toBe(404);
    });
  });

  describe('deployments', () => {
    it('creates, shows, scales, rolls out and deletes, each recorded and signalled', async () => {
      await pushModel(f, 'iris', randomBytes(100));
      await pushModel(f, 'iris', randomBytes(100));
      const created = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'web', model: 'iris', version: '1', replicas: 2 } });
      expect(created).toMatchObject({ status: 201, body: { name: 'web', version: '1', generation: 1, spec: { runtime: 'process', spread: 'node' }, replicas: [] } });
      const dup = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'web', model: 'iris', replicas: 1 } });
      expect(dup).toEqual({ status: 409, body: { error: 'deployment web already exists' } });
      expect((await call(f, 'POST', '/api/v1/deployments/web/scale', { token: f.admin, body: { replicas: 5 } })).body.spec.replicas).toBe(5);
      const rolled = await call(f, 'POST', '/api/v1/deployments/web/rollout', { token: f.admin, body: { version: '2' } });
      expect(rolled.body).toMatchObject({ version: '2', generation: 2, spec: { version: '2', replicas: 5 } });
      const list = await call(f, 'GET', '/api/v1/deployments', { token: f.admin });
      expect(list.body.deployments).toEqual([expect.objectContaining({ name: 'web', status: { desired: 5, ready: 0, current_generation: 0, total: 0 } })]);

      // With a replica placed (by the scheduler, here by hand) deletion waits for the reconciler.
      const { node_id } = await joinNode(f);
      f.store.replicas.create({ deployment: 'web', node: node_id, version: '2', generation: 2 });
      const del = await call(f, 'DELETE', '/api/v1/deployments/web', { token: f.admin });
      expect(del).toMatchObject({ status: 202, body: { deleting: true } });
      expect((await call(f, 'POST', '/api/v1/deployments/web/scale', { token: f.admin, body: { replicas: 1 } })).status).toBe(409);
      expect(f.hookCalls).toEqual(expect.arrayContaining(['deployment web created', 'deployment web scaled', 'deployment web rollout', 'deployment web deleting']));
      const kinds = (await call(f, 'GET', '/api/v1/events?subject=deployment/web', { token: f.admin })).body.events.map((e: any) => e.kind);
      expect(kinds).toEqual(['deployment.created', 'deployment.scaled', 'deployment.rollout', 'deployment.deleting']);
    });

    it('answers 404 naming an unknown model or version', async () => {
      const r = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'web', model: 'resnet', replicas: 1 } });
      expect(r).toEqual({ status: 404, body: { error: 'model resnet not found in the registry' } });
      await pushModel(f, 'iris', randomBytes(10));
      const v = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'web', model: 'iris', version: '9', replicas: 1 } });
      expect(v).toEqual({ status: 404, body: { error: 'model iris has no version 9' } });
      expect((await call(f, 'GET', '/api/v1/deployments/none', { token: f.admin }))).toEqual({ status: 404, body: { error: 'deployment none not found' } });
      expect(f.hookCalls.filter((c) => c.startsWith('deployment'))).toEqual([]);
    });

    it('rejects bad deployment bodies with zod paths', async () => {
      const r = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'Web!', model: 'iris', replicas: 'two', extra: 1 } });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(/^invalid request body: .*name: names are 1-63/);
      expect(r.body.error).toMatch(/replicas: Invalid input: expected number, received string/);
      expect(r.body.error).toMatch(/Unrecognized key: "extra"/);
      const nested = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { name: 'web', model: 'iris', replicas: 1, resources: { cpu: -1 } } });
      expect(nested.body.error).toMatch(/^invalid request body: resources\.cpu: /);
      const scale = await call(f, 'POST', '/api/v1/deployments/web/scale', { token: f.admin, body: { replicas: 1.5 } });
      expect(scale.body.error).toMatch(/^invalid request body: replicas: /);
      const empty = await call(f, 'POST', '/api/v1/deployments/web/rollout', { token: f.admin, raw: '', contentType: 'application/json' });
      expect(empty).toEqual({ status: 400, body: { error: 'request body is empty; a JSON object is required' } });
      const malformed = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, raw: '{"name": "web",', contentType: 'application/json' });
      expect(malformed.body.error).toMatch(/^request body is not valid JSON/);
    });
  });

  describe('container deployments', () => {
    const APP = { kind: 'container', name: 'shop', image: 'tern/shop:1', replicas: 2, ports: [{ container: 26080 }], env: { MODE: 'edge' } };

    it('creates, scales, rolls out a new image and deletes a deployment of kind container', async () => {
      const created = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: APP });
      expect(created).toMatchObject({ status: 201, body: { name: 'shop', kind: 'container', model: null, version: '1', generation: 1 } });
      expect(created.body.spec).toEqual({ ...APP, ports: [{ container: 26080, protocol: 'tcp' }], network: 'host', volumes: [], runtime: 'container',
        resources: { cpu: 0.5, memory_mb: 256 }, selector: {}, spread: 'node' });
      expect((await call(f, 'POST', '/api/v1/deployments/shop/scale', { token: f.admin, body: { replicas: 0 } })).body.spec.replicas).toBe(0);
      const rolled = await call(f, 'POST', '/api/v1/deployments/shop/rollout', { token: f.admin, body: { image: 'tern/shop:2' } });
      expect(rolled.body).toMatchObject({ version: '2', generation: 2, spec: { image: 'tern/shop:2', replicas: 0 } });
      const wrong = await call(f, 'POST', '/api/v1/deployments/shop/rollout', { token: f.admin, body: { version: '3' } });
      expect(wrong).toEqual({ status: 400, body: { error: 'deployment shop is a container deployment: roll out a new image ({"image": "..."}), not a version' } });
      const both = await call(f, 'POST', '/api/v1/deployments/shop/rollout', { token: f.admin, body: { version: '3', image: 'x:1' } });
      expect(both.body.error).toMatch(/send either version \(model deployments\) or image \(container deployments\)/);
      const list = (await call(f, 'GET', '/api/v1/deployments', { token: f.admin })).body.deployments;
      expect(list.map((d: any) => [d.name, d.kind])).toEqual([['shop', 'container']]);
      const events = (await call(f, 'GET', '/api/v1/events?subject=deployment/shop', { token: f.admin })).body.events.map((e: any) => e.message);
      expect(events[0]).toBe('deployment shop created: image tern/shop:1 x2 (container)');
      expect(events[2]).toBe('deployment shop rolling out image tern/shop:2 (from image tern/shop:1), generation 2');
      expect((await call(f, 'DELETE', '/api/v1/deployments/shop', { token: f.admin })).body).toEqual({ deleted: 'shop' });
    });

    it('refuses bad container specs with a 400 naming each problem, storing nothing', async () => {
      const bad = async (body: Record<string, unknown>) => {
        const r = await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body });
        expect(r.status).toBe(400);
        return r.body.error as string;
      };
      expect(await bad({ kind: 'container', name: 'a', replicas: 1 })).toBe('invalid request body: image: an image is required (the container image to run)');
      expect(await bad({ ...APP, model: 'iris', restart: 'always' })).toBe('invalid request body: (root): Unrecognized keys: "model", "restart"');
      expect(await bad({ ...APP, network: 'bridge', ports: [{ container: 70000 }, { container: 80, published: 0 }] }))
        .toBe('invalid request body: ports.0.container: ports are 1-65535; ports.1.published: ports are 1-65535');
      expect(await bad({ ...APP, ports: [{ container: 80, published: 26080 }] }))
        .toBe("invalid request body: ports.0.published: with host networking the container listens on the node's port itself: published (26080) must equal container (80) or be left out");
      expect(await bad({ ...APP, network: 'bridge', ports: [{ container: 80, published: 26080 }, { container: 81, published: 26080 }] }))
        .toBe('invalid request body: ports: node port 26080 is published twice; one replica cannot take a node port two times');
      expect(await bad({ ...APP, volumes: ['data:/data'] })).toMatch(/volumes\.0: volumes look like \/node\/path:\/container\/path\[:ro\]/);
      expect(await bad({ ...APP, runtime: 'process' })).toMatch(/runtime: a container deployment runs on the container runtime/);
      expect(await bad({ ...APP, kind: 'vm' })).toMatch(/^invalid request body: kind: Invalid discriminator value. Expected 'model' \| 'undefined' \| 'container'/);
      expect((await call(f, 'GET', '/api/v1/deployments', { token: f.admin })).body.deployments).toEqual([]);
      expect(f.hookCalls.filter((c) => c.startsWith('deployment'))).toEqual([]);
    });

    it('a model deployment still rolls out versions, not images', async () => {
      await pushModel(f, 'iris', randomBytes(10));
      expect((await call(f, 'POST', '/api/v1/deployments', { token: f.admin, body: { kind: 'model', name: 'web', model: 'iris', replicas: 1 } })).body.kind).toBe('model');
      const r = await call(f, 'POST', '/api/v1/deployments/web/rollout', { token: f.admin, body: { image: 'x:1' } });
      expect(r).toEqual({ status: 400, body: { error: 'deployment web serves model iris: roll out a version ({"version": "..."}), not an image' } });
    });
  });

  describe('events, health and OpenAPI', () => {
    it('follows events by id and rejects bad queries', async () => {
      await joinNode(f);
      const all = await call(f, 'GET', '/api/v1/events?limit=2', { token: f.admin });
      expect(all.body.events).toHaveLength(2);
      const since = all.body.events[0].id;
      const after = await call(f, 'GET', `/api/v1/events?since=${since}`, { token: f.admin });
      expect(after.body.events.every((e: any) => e.id > since)).toBe(true);
      expect(after.body.last_id).toBe(f.store.events.lastId());
      const bad = await call(f, 'GET', '/api/v1/events?limit=abc&since=', { token: f.admin });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatch(/^invalid query string: since: expected a non-negative integer; limit: /);
      expect((await call(f, 'GET', '/api/v1/events?limit=5000', { token: f.admin })).status).toBe(400);
    });

    it('serves health and an OpenAPI document listing the routes with request schemas', async () => {
      expect(await call(f, 'GET', '/healthz')).toEqual({ status: 200, body: { status: 'ok', schema_version: MIGRATIONS.length } });
      const doc = (await call(f, 'GET', '/openapi.json')).body;
      expect(doc.openapi).toMatch(/^3\./);
      for (const p of ['/api/v1/auth/login', '/api/v1/join', '/api/v1/nodes/{id}/cordon', '/api/v1/models/{name}/uploads', '/api/v1/uploads/{id}',
        '/api/v1/deployments', '/api/v1/deployments/{name}/rollout', '/api/v1/events', '/api/v1/blobs/{sha256}']) {
        expect(doc.paths[p], p).toBeDefined();
      }
      const deploy = doc.paths['/api/v1/deployments'].post.requestBody.content['application/json'].schema;
      // One body shape per kind: a model deployment (kind may be left out) or a container deployment.
      expect(deploy.oneOf.map((o: { required: string[] }) => [...o.required].sort())).toEqual([['model', 'name', 'replicas'], ['image', 'kind', 'name', 'replicas']]);
      expect(doc.paths['/api/v1/uploads/{id}'].put.requestBody.content['application/octet-stream']).toBeDefined();
      expect(doc.paths['/api/v1/auth/login'].post.security).toEqual([]);
      expect(doc.security).toEqual([{ bearer: [] }]);
      expect((await call(f, 'GET', '/api/v1/nowhere', { token: f.admin }))).toEqual({ status: 404, body: { error: 'no route for GET /api/v1/nowhere' } });
    });
  });
});

/** Sends headers and half of `body`, then destroys the socket: a chunk lost mid-transfer. */
function sendHalfAndHangUp(port: number, url: string, token: string, body: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const req = http.request({ port, host: '127.0.0.1', method: 'PUT', path: url, headers: {
      authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': body.length,
    } });
    req.on('error', () => resolve());
    req.write(body.subarray(0, body.length >> 1), () => setTimeout(() => { req.destroy(); setTimeout(resolve, 100); }, 50));
  });
}

describe('durability', () => {
  it('keeps an acknowledged deployment when the control plane is killed with SIGKILL', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tern-durable-'));
    const seed = await makeFixture(dir);
    await pushModel(seed, 'iris', randomBytes(64));
    await seed.app.close();
    seed.store.close();

    const child = spawn(process.execPath, ['--input-type=module', '-e', childScript(dir)], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { const m = /PORT (\d+)/.exec(d.toString()); if (m) resolve(Number(m[1])); });
      child.on('exit', (code) => reject(new Error(`control plane child exited early (${code})`)));
    });
    const base = `http://127.0.0.1:${port}/api/v1`;
    const login = await (await fetch(`${base}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: ADMIN_PASSWORD }) })).json() as any;
    const res = await fetch(`${base}/deployments`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${login.token}` },
      body: JSON.stringify({ name: 'survivor', model: 'iris', replicas: 3 }),
    });
    expect(res.status).toBe(201);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));

    const reopened = Store.open(path.join(dir, 'control.db'));
    try {
      expect(reopened.deployments.get('survivor')).toMatchObject({ model: 'iris', version: '1', spec: { replicas: 3 } });
      expect(reopened.events.query({ subject: 'deployment/survivor' }).map((e) => e.kind)).toEqual(['deployment.created']);
    } finally {
      reopened.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A control API in its own process, from the compiled build (the global setup runs tsc). */
function childScript(dir: string): string {
  const dist = (p: string) => JSON.stringify(path.resolve('dist', p));
  return `
    import { pino } from 'pino';
    const { Store } = await import(${dist('control/store/store.js')});
    const { ModelRegistry } = await import(${dist('control/registry/model-registry.js')});
    const { buildControlApi } = await import(${dist('control/api/control-api.js')});
    const store = Store.open(${JSON.stringify(path.join(dir, 'control.db'))});
    const registry = new ModelRegistry({ dataDir: ${JSON.stringify(dir)}, store });
    const app = await buildControlApi({ store, registry, log: pino({ level: 'silent' }), mqttUrl: () => 'mqtt://x', heartbeatMs: 1000,
      hooks: { desiredStateChanged() {} } });
    await app.listen({ port: 0, host: '127.0.0.1' });
    console.log('PORT ' + app.server.address().port);
  `;
}
