import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerDeploymentSpecSchema, type DeploymentSpec, type Heartbeat, type NodeFacts } from '../../protocol/fleet.js';
import Database from 'better-sqlite3';
import { MIGRATIONS, migrate } from './migrations.js';
import { Store } from './store.js';

const FACTS: NodeFacts = {
  hostname: 'jetson', arch: 'arm64', os: 'linux', cpus: 6, cpu_model: '', memory_bytes: 8e9, cpu_score: 900,
  accelerators: ['cuda'], labels: { board: 'jetson', tier: 'edge' }, address: '10.0.0.3', agent_version: '0.1.0',
};
const SPEC: DeploymentSpec = {
  name: 'web', model: 'iris', replicas: 2, runtime: 'process', resources: { cpu: 0.5, memory_mb: 256 }, selector: {}, spread: 'node',
  routing: { locality: 'local-first', hedge: false },
};
const SHA = 'a'.repeat(64);

function heartbeat(seq: number): Heartbeat {
  return { seq, ts: seq, cpu_percent: 10, memory_used_bytes: 1, memory_total_bytes: 2, load1: 0.1, agent_rss_bytes: 3, applied_revision: 0, replicas: [] };
}

describe('Store', () => {
  let dir: string;
  let file: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tern-store-'));
    file = path.join(dir, 'control.db');
    store = Store.open(file);
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('migrates once, records the version, and refuses a newer schema', () => {
    expect(store.schemaVersion()).toBe(MIGRATIONS.length);
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
    store.close();
    store = Store.open(file);
    expect(store.db.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get()).toEqual({ n: MIGRATIONS.length });
    store.db.prepare('INSERT INTO schema_migrations VALUES (99, ?, 0)').run('from the future');
    expect(() => migrate(store.db)).toThrow(/schema version 99 is newer than this tern understands/);
  });

  it('migrates a version-1 database to replicas that can drain, keeping its rows', () => {
    // A database as the first release left it, written with that release's schema only.
    const file1 = path.join(dir, 'v1.db');
    const old = new Database(file1);
    migrate(old, MIGRATIONS.filter((m) => m.version === 1));
    old.exec(`INSERT INTO nodes (id, facts, node_token_hash, joined_at, updated_at) VALUES ('n1', '${JSON.stringify(FACTS)}', 'h1', 0, 0);
      INSERT INTO models (name, created_at) VALUES ('iris', 0);
      INSERT INTO model_versions (model, version, sha256, size, format, created_at) VALUES ('iris', 1, '${'a'.repeat(64)}', 10, 'onnx', 0);
      INSERT INTO deployments (name, spec, model, version, created_at, updated_at) VALUES ('web', '${JSON.stringify(SPEC)}', 'iris', 1, 0, 0);
      INSERT INTO replicas (id, deployment, node, version, generation, created_at, updated_at) VALUES ('web-1', 'web', 'n1', 1, 1, 0, 0);`);
    expect(() => old.prepare("UPDATE replicas SET desired = 'drain'").run()).toThrow(/CHECK constraint/);
    old.close();
    store.close();
    store = Store.open(file1);
    expect(store.schemaVersion()).toBe(MIGRATIONS.length);
    expect(store.replicas.get('web-1')).toMatchObject({ deployment: 'web', node: 'n1', desired: 'run', grpc_port: null });
    expect(store.replicas.setDesired('web-1', 'drain')).toBe(true);
    expect(store.replicas.listByNode('n1').map((r) => r.desired)).toEqual(['drain']);
  });

  it('migrates a version-4 database to deployments of two kinds, keeping deployments and replicas', () => {
    const file4 = path.join(dir, 'v4.db');
    const old = new Database(file4);
    old.pragma('foreign_keys = ON');
    migrate(old, MIGRATIONS.filter((m) => m.version <= 4));
    old.exec(`INSERT INTO nodes (id, facts, node_token_hash, joined_at, updated_at) VALUES ('n1', '${JSON.stringify(FACTS)}', 'h1', 0, 0);
      INSERT INTO models (name, created_at) VALUES ('iris', 0);
      INSERT INTO model_versions (model, version, sha256, size, format, created_at) VALUES ('iris', 1, '${SHA}', 10, 'onnx', 0);
      INSERT INTO deployments (name, spec, model, version, generation, created_at, updated_at) VALUES ('web', '${JSON.stringify(SPEC)}', 'iris', 1, 3, 0, 0);
      INSERT INTO replicas (id, deployment, node, version, generation, desired, state, port, grpc_port, created_at, updated_at)
        VALUES ('web-1', 'web', 'n1', 1, 3, 'drain', 'ready', 20000, 20001, 0, 0);`);
    expect(() => old.exec("INSERT INTO deployments (name, spec, model, version, created_at, updated_at) VALUES ('app', '{}', NULL, NULL, 0, 0)")).toThrow(/NOT NULL/);
    old.close();
    store.close();
    store = Store.open(file4);
    expect(store.schemaVersion()).toBe(MIGRATIONS.length);
    expect(store.deployments.get('web')).toMatchObject({ kind: 'model', model: 'iris', version: '1', generation: 3 });
    expect(store.replicas.get('web-1')).toMatchObject({ deployment: 'web', node: 'n1', desired: 'drain', state: 'ready', port: 20000, grpc_port: 20001 });
    // The foreign keys still hold: a model deployment names a registered version, and replicas go with their deployment.
    expect(() => store.db.exec("INSERT INTO deployments (name, kind, spec, model, version, created_at, updated_at) VALUES ('x', 'model', '{}', 'iris', 9, 0, 0)")).toThrow(/FOREIGN KEY/);
    expect(() => store.db.exec("INSERT INTO deployments (name, kind, spec, created_at, updated_at) VALUES ('y', 'model', '{}', 0, 0)")).toThrow(/CHECK/);
    store.deployments.remove('web');
    expect(store.replicas.get('web-1')).toBeUndefined();
  });

  it('stores a container deployment without a model; its version is its revision, which a new image bumps', () => {
    const app = ContainerDeploymentSpecSchema.parse({ kind: 'container', name: 'app', image: 'tern/app:1', replicas: 1, ports: [{ container: 8080 }] });
    expect(store.deployments.create(app)).toMatchObject({ kind: 'container', model: null, version: '1', generation: 1, spec: { image: 'tern/app:1', runtime: 'container' } });
    expect(store.deployments.rolloutImage('app', 'tern/app:2')).toMatchObject({ version: '2', generation: 2, spec: { image: 'tern/app:2', replicas: 1 } });
    store.nodes.upsertOnJoin('n1', FACTS, 'h1');
    store.replicas.create({ id: 'app-1', deployment: 'app', node: 'n1', version: '2', generation: 2 });
    expect(store.replicas.listByDeployment('app').map((r) => r.version)).toEqual(['2']);
  });

  it('keeps labels, cordon, drain and revision when a node rejoins', () => {
    expect(store.nodes.upsertOnJoin('n1', FACTS, 'h1').created).toBe(true);
    store.nodes.patchLabels('n1', { zone: 'a', tier: null });
    store.nodes.setCordoned('n1', true);
    store.nodes.setState('n1', 'draining');
    expect(store.nodes.bumpRevision('n1')).toBe(1);
    const { node, created } = store.nodes.upsertOnJoin('n1', { ...FACTS, cpus: 12 }, 'h2');
    expect(created).toBe(false);
    expect(node).toMatchObject({ labels: { board: 'jetson', zone: 'a' }, cordoned: true, state: 'draining', desired_revision: 1 });
    expect(node.facts.cpus).toBe(12);
    expect(store.nodes.findIdByTokenHash('h2')).toBe('n1');
    expect(store.nodes.tokenMatches('n1', 'h1')).toBe(false);
  });

  it('records heartbeats one by one and in batches, ignoring unknown nodes', () => {
    store.nodes.upsertOnJoin('n1', FACTS, 'h1');
    store.nodes.upsertOnJoin('n2', FACTS, 'h2');
    expect(store.nodes.recordHeartbeat('n1', heartbeat(1), 1000)).toBe(true);
    expect(store.nodes.recordHeartbeat('ghost', heartbeat(1), 1000)).toBe(false);
    const applied = store.nodes.recordHeartbeats([
      { id: 'n1', ts: 2000, stats: heartbeat(2) }, { id: 'n2', ts: 2001, stats: heartbeat(7) }, { id: 'ghost', ts: 1, stats: heartbeat(1) },
    ]);
    expect(applied).toBe(2);
    expect(store.nodes.get('n1')).toMatchObject({ last_heartbeat_ms: 2000, stats: { seq: 2 } });
    expect(store.nodes.get('n2')!.stats!.seq).toBe(7);
  });

  it('keeps the desired-state revision monotonic across a reopen', () => {
    store.nodes.upsertOnJoin('n1', FACTS, 'h1');
    store.nodes.bumpRevision('n1');
    store.nodes.bumpRevision('n1');
    store.close();
    store = Store.open(file);
    expect(store.nodes.bumpRevision('n1')).toBe(3);
    expect(store.nodes.bumpRevision('ghost')).toBeUndefined();
  });

  it('numbers model versions, refuses a taken one and knows who uses a version', () => {
    expect(store.models.addVersion({ model: 'iris', sha256: SHA, size: 10, format: 'onnx' }).version).toBe('1');
    expect(store.models.addVersion({ model: 'iris', sha256: SHA, size: 10, format: 'onnx' }).version).toBe('2');
    expect(() => store.models.addVersion({ model: 'iris', version: 2, sha256: SHA, size: 10, format: 'onnx' })).toThrow('model iris version 2 already exists');
    store.deployments.create(SPEC, '1');
    store.nodes.upsertOnJoin('n1', FACTS, 'h1');
    store.replicas.create({ deployment: 'web', node: 'n1', version: '1', generation: 1 });
    store.deployments.rollout('web', '2');
    // Mid-rollout the old replica still runs version 1, so version 1 is still in use.
    expect(store.models.usedBy('iris', '1')).toEqual(['web']);
    expect(store.models.usedBy('iris', '2')).toEqual(['web']);
    expect(store.models.usedBy('iris', '3')).toEqual([]);
    expect(store.models.latestVersion('iris')!.version).toBe('2');
    expect(store.models.isBlobReferenced(SHA)).toBe(true);
  });

  it('creates deployments once, scales, and starts a generation per rollout', () => {
    store.models.addVersion({ model: 'iris', sha256: SHA, size: 10, format: 'onnx' });
    store.models.addVersion({ model: 'iris', sha256: SHA, size: 10, format: 'onnx' });
    expect(store.deployments.create(SPEC, '1')).toMatchObject({ name: 'web', version: '1', generation: 1, deleting: false });
    expect(() => store.deployments.create(SPEC, '1')).toThrow('deployment web already exists');
    expect(store.deployments.scale('web', 7)!.spec.replicas).toBe(7);
    expect(store.deployments.rollout('web', '2')).toMatchObject({ version: '2', generation: 2, spec: { version: '2', replicas: 7 } });
    expect(store.deployments.scale('ghost', 1)).toBeUndefined();
  });

  it('fences replica reports by generation and removes replicas with their deployment', () => {
    store.models.addVersion({ model: 'iris', sha256: SHA, size: 10, format: 'onnx' });
    store.deployments.create(SPEC, '1');
    store.nodes.upsertOnJoin('n1', FACTS, 'h1');
    const r = store.replicas.create({ deployment: 'web', node: 'n1', version: '1', generation: 3 });
    expect(r).toMatchObject({ state: 'pending', desired: 'run', port: null });
    expect(store.replicas.updateObserved(r.id, 2, { state: 'ready', port: 9000 })).toBe(false);
    expect(store.replicas.updateObserved(r.id, 3, { state: 'ready', port: 9000 })).toBe(true);
    expect(store.replicas.updateObserved(r.id, 3, { state: 'failed', message: 'exit 1' })).toBe(true);
    expect(store.replicas.get(r.id)).toMatchObject({ state: 'failed', port: 9000, message: 'exit 1' });
    store.replicas.setDesired(r.id, 'stop');
    expect(store.replicas.listByNode('n1')[0].desired).toBe('stop');
    store.deployments.remove('web');
    expect(store.replicas.list()).toEqual([]);
  });

  it('queries events by cursor, subject prefix and kind family', () => {
    store.events.append({ kind: 'node.joined', subject: 'node/a', message: 'a joined' });
    store.events.append({ kind: 'node.cordoned', subject: 'node/a', message: 'a cordoned' });
    store.events.append({ kind: 'deployment.created', subject: 'deployment/web', message: 'web', data: { replicas: 2 } });
    store.events.append({ kind: 'nodeish', subject: 'nodes-x', message: 'not a node event' });
    expect(store.events.query({ subject: 'node/' }).map((e) => e.message)).toEqual(['a joined', 'a cordoned']);
    expect(store.events.query({ kind: 'node' }).map((e) => e.kind)).toEqual(['node.joined', 'node.cordoned']);
    expect(store.events.query({ since: 2 }).map((e) => e.id)).toEqual([3, 4]);
    expect(store.events.query({ limit: 2 }).map((e) => e.id)).toEqual([3, 4]);
    expect(store.events.query({ since: 0, limit: 1 })[0]).toMatchObject({ id: 1, data: null });
    expect(store.events.query({ subject: 'deployment/web' })[0].data).toEqual({ replicas: 2 });
    expect(store.events.prune(1)).toBe(3);
    expect(store.events.lastId()).toBe(4);
  });

  it('stores token hashes, never secrets, and reports join token status', () => {
    store.users.create('alice', 'scrypt$hash', 'viewer');
    const t = store.apiTokens.create({ tokenHash: 'hash-1', kind: 'session', name: 'login alice', role: 'viewer', username: 'alice' });
    expect(JSON.stringify(store.apiTokens.get(t.id))).not.toContain('hash-1');
    expect(store.apiTokens.findByHash('hash-1')).toMatchObject({ id: t.id, username: 'alice', role: 'viewer' });
    expect(store.apiTokens.revoke(t.id)).toBe(true);
    expect(store.apiTokens.revoke(t.id)).toBe(false);
    const now = 1_000_000;
    store.joinTokens.create({ tokenHash: 'j1', expiresAt: now + 10 }, now);
    store.joinTokens.create({ tokenHash: 'j2', expiresAt: now - 10 }, now);
    expect(store.joinTokens.list(now).map((j) => j.status)).toEqual(['active', 'expired']);
    expect(store.joinTokens.findByHash('j1', now + 20)!.status).toBe('expired');
  });
});
