/**
 * The node agent end to end, with real processes: a test control plane
 * (fastify + aedes, see agent-harness.ts), the agent in its own process, and
 * `tern serve` replicas it starts. The steps build on each other, in order.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { create as createTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoRepository } from '../src/models/demo-repository.js';
import { NodeFactsSchema, type DesiredState, type ReplicaSpec } from '../src/protocol/fleet.js';
import { alive, JOIN_TOKEN, replicaCgroupDirs, rssOf, sleep, startAgentProcess, TestControlPlane, until } from './agent-harness.js';

const IRIS_INPUT = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] }] };
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function infer(port: number, deployment = 'iris'): Promise<{ status: number; body: any }> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v2/models/${deployment}/infer`, { method: 'POST', body: JSON.stringify(IRIS_INPUT), signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.json() };
  } catch (err) {
    return { status: 0, body: String(err) };
  }
}

describe('node agent', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'tern-agent-it-'));
  const dataDir = path.join(tmp, 'agent-data');
  const logFile = path.join(tmp, 'agent.log');
  let cp: TestControlPlane;
  let agent: ReturnType<typeof startAgentProcess>;
  let node = '';
  let onnxSha = '';
  let tarSha = '';
  let config: Record<string, unknown> = {};
  const corruptSha = sha256(Buffer.from('the model the registry promised'));
  const portRange = { from: 22000, to: 22100 };
  const joinBackoff = { initialMs: 200, maxMs: 1000, factor: 2, jitter: 0 };

  const replica = (id: string, extra: Partial<ReplicaSpec> = {}): ReplicaSpec => ({
    id, deployment: 'iris', model: 'iris-logreg', version: '1', sha256: onnxSha, format: 'onnx', runtime: 'process',
    resources: { cpu: 1, memory_mb: 400 }, generation: 1, ...extra,
  });
  const desired = (revision: number, replicas: ReplicaSpec[]): DesiredState => ({ node, revision, replicas });
  const pidOf = (id: string) => {
    try {
      return Number(readFileSync(path.join(dataDir, 'replicas', id, 'pid'), 'utf8').trim());
    } catch {
      return 0;
    }
  };
  const readyStatus = (id: string, generation = 1) => {
    const s = cp.lastStatus(node, id);
    return s?.state === 'ready' && s.generation === generation ? s : undefined;
  };
  const showLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n') : '');

  beforeAll(async () => {
    const repo = path.join(tmp, 'repo');
    await writeDemoRepository(repo, { models: ['iris-logreg'] });
    const model = readFileSync(path.join(repo, 'iris-logreg', '1', 'model.onnx'));
    config = JSON.parse(readFileSync(path.join(repo, 'iris-logreg', 'config.json'), 'utf8')) as Record<string, unknown>;
    onnxSha = sha256(model);
    // A tar artifact: the model directory with its config.json, as `tern models push` packs one.
    const packDir = path.join(tmp, 'pack');
    mkdirSync(packDir);
    copyFileSync(path.join(repo, 'iris-logreg', '1', 'model.onnx'), path.join(packDir, 'model.onnx'));
    copyFileSync(path.join(repo, 'iris-logreg', 'config.json'), path.join(packDir, 'config.json'));
    const tarFile = path.join(tmp, 'model.tar.gz');
    await createTar({ file: tarFile, cwd: packDir, gzip: true }, ['model.onnx', 'config.json']);
    const tarBytes = readFileSync(tarFile);
    tarSha = sha256(tarBytes);

    cp = await TestControlPlane.start(500);
    cp.blobs.set(onnxSha, model);
    cp.blobs.set(tarSha, tarBytes);
    cp.blobs.set(corruptSha, Buffer.from('tampered on the way'));
    agent = startAgentProcess({ controlUrl: cp.url, token: JOIN_TOKEN, dataDir, portRange, lean: true, logFile, labels: { room: 'lab' }, site: 'home', joinBackoff });
  });

  afterAll(async () => {
    const pids = [pidOf('r1'), pidOf('r2')].filter((p) => p > 0);
    if (agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGTERM');
      await Promise.race([agent.exited, sleep(15_000)]);
    }
    for (const p of pids) expect(alive(p)).toBe(false);
    await cp?.close();
    if (process.env.TERN_TEST_KEEP) console.log(`kept ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  });

  it('joins with the join token and heartbeats over MQTT', async () => {
    expect(await until(() => cp.joins.length === 1 && cp.heartbeats.length >= 2, 30_000), showLog()).toBe(true);
    const join = cp.joins[0];
    node = join.answered;
    expect(join.token).toBe(JOIN_TOKEN);
    expect(join.node_id).toBeUndefined();
    expect(NodeFactsSchema.parse(join.facts)).toEqual(join.facts);
    expect(join.facts.cpu_score).toBeGreaterThan(1e6);
    expect(join.facts.labels).toEqual({ room: 'lab' });
    expect(join.facts.site).toBe('home');
    const identity = JSON.parse(readFileSync(path.join(dataDir, 'identity.json'), 'utf8'));
    expect(identity.node_id).toBe(node);
    const beats = cp.heartbeats.filter((h) => h.node === node).map((h) => h.hb);
    expect(beats[1].seq).toBeGreaterThan(beats[0].seq);
    expect(beats[0].agent_rss_bytes).toBeGreaterThan(0);
    expect(cp.presence.get(node)).toBe('online');
    expect(cp.invalid).toEqual([]);
  });

  it('runs a desired replica that answers inference on its port', async () => {
    await cp.publishDesired(desired(1, [replica('r1')]));
    expect(await until(() => readyStatus('r1') !== undefined, 60_000), showLog()).toBe(true);
    const status = readyStatus('r1')!;
    expect(status.port).toBeGreaterThanOrEqual(portRange.from);
    console.log(`replica r1 status: ${status.message}`);
    expect(status.message).toMatch(/^limits (enforced|not enforced): /);
    const res = await infer(status.port!);
    expect(res.status).toBe(200);
    expect(res.body.model_name).toBe('iris');
    expect(cp.blobRequests).toEqual([onnxSha]);
    // Heartbeats carry the replica with its usage, and the applied revision.
    expect(await until(() => {
      const hb = cp.lastHeartbeat(node);
      return hb?.applied_revision === 1 && hb.replicas.some((r) => r.id === 'r1' && r.state === 'ready' && (r.rss_bytes ?? 0) > 0);
    }, 10_000)).toBe(true);
    await sleep(3000); // let the agent settle with one replica running
    const hb = cp.lastHeartbeat(node)!;
    console.log(`agent RSS with 1 replica running (lean V8 flags): heartbeat ${mb(hb.agent_rss_bytes)}, /proc ${mb(rssOf(agent.pid!))}; replica RSS ${mb(hb.replicas[0].rss_bytes ?? 0)}`);
  });

  it('restarts a replica killed with SIGKILL', async () => {
    const before = pidOf('r1');
    const port = readyStatus('r1')!.port!;
    const seen = cp.statuses.length;
    process.kill(before, 'SIGKILL');
    expect(await until(() => cp.statuses.slice(seen).some((s) => s.status.replica_id === 'r1' && s.status.state === 'failed' && /SIGKILL/.test(s.status.message ?? '')), 10_000), showLog()).toBe(true);
    expect(await until(() => cp.statuses.slice(seen).some((s) => s.status.replica_id === 'r1' && s.status.state === 'ready'), 30_000), showLog()).toBe(true);
    expect(pidOf('r1')).not.toBe(before);
    expect(readyStatus('r1')!.port).toBe(port); // it keeps its port
    expect((await infer(port)).status).toBe(200);
  });

  it('restarts a replica on a restart-replica command, once per command id', async () => {
    const before = pidOf('r1');
    await cp.publishCommand(node, { id: 'cmd-restart-1', kind: 'restart-replica', replica_id: 'r1' });
    expect(await until(() => pidOf('r1') !== before && pidOf('r1') > 0 && readyStatus('r1') !== undefined, 30_000), showLog()).toBe(true);
    const after = pidOf('r1');
    await until(async () => (await infer(readyStatus('r1')!.port!)).status === 200, 10_000);
    await cp.publishCommand(node, { id: 'cmd-restart-1', kind: 'restart-replica', replica_id: 'r1' });
    await sleep(2500);
    expect(pidOf('r1')).toBe(after);
  });

  it('keeps serving, and restarts a crash, while the control plane is unreachable', async () => {
    const port = readyStatus('r1')!.port!;
    await cp.down();
    await sleep(1500);
    expect((await infer(port)).status).toBe(200);
    const before = pidOf('r1');
    process.kill(before, 'SIGKILL');
    expect(await until(async () => pidOf('r1') !== before && pidOf('r1') > 0 && (await infer(port)).status === 200, 30_000), showLog()).toBe(true);
    // The connection returns: heartbeats resume and the replica's state is reported again.
    const seen = cp.heartbeats.length;
    const seenStatus = cp.statuses.length;
    await cp.up();
    expect(await until(() => cp.heartbeats.length > seen + 1, 45_000), showLog()).toBe(true);
    expect(await until(() => cp.statuses.slice(seenStatus).some((s) => s.status.replica_id === 'r1' && s.status.state === 'ready'), 5000)).toBe(true);
  });

  it('ignores a desired state with an older revision', async () => {
    const pid = pidOf('r1');
    await cp.publishDesired(desired(0, []));
    await sleep(2500);
    expect(pidOf('r1')).toBe(pid);
    expect(cp.lastHeartbeat(node)!.applied_revision).toBe(1);
    expect((await infer(readyStatus('r1')!.port!)).status).toBe(200);
  });

  it('fails a replica whose download is corrupt, naming the checksum, and keeps the others', async () => {
    await cp.publishDesired(desired(2, [replica('r1'), replica('r2', { deployment: 'iris-b', sha256: corruptSha })]));
    expect(await until(() => cp.lastStatus(node, 'r2')?.state === 'failed', 20_000), showLog()).toBe(true);
    const message = cp.lastStatus(node, 'r2')!.message!;
    console.log(`replica r2 status: ${message}`);
    expect(message).toContain(`expected sha256 ${corruptSha}`);
    expect(message).toContain(sha256(Buffer.from('tampered on the way')));
    expect(existsSync(path.join(dataDir, 'cache', corruptSha))).toBe(false);
    expect((await infer(readyStatus('r1')!.port!)).status).toBe(200);
    expect(alive(agent.pid!)).toBe(true);
    const seen = cp.heartbeats.length;
    expect(await until(() => cp.heartbeats.length > seen && cp.lastHeartbeat(node)!.applied_revision === 2, 5000)).toBe(true);
  });

  it('restarts a replica whose generation grew, here with a tar artifact', async () => {
    const before = pidOf('r1');
    await cp.publishDesired(desired(3, [replica('r1', { generation: 2, sha256: tarSha, format: 'tar', config })]));
    expect(await until(() => readyStatus('r1', 2) !== undefined, 60_000), showLog()).toBe(true);
    expect(pidOf('r1')).not.toBe(before);
    expect((await infer(readyStatus('r1', 2)!.port!)).status).toBe(200);
    expect(await until(() => cp.lastStatus(node, 'r2')?.state === 'stopped', 10_000)).toBe(true);
    expect(existsSync(path.join(dataDir, 'replicas', 'r2'))).toBe(false);
  });

  it('drains on command, and runs replicas again with a newer revision', async () => {
    const port = readyStatus('r1', 2)!.port!;
    await cp.publishCommand(node, { id: 'cmd-drain-1', kind: 'drain' });
    expect(await until(() => cp.lastStatus(node, 'r1')?.state === 'stopped', 15_000), showLog()).toBe(true);
    expect((await infer(port)).status).toBe(0);
    await cp.publishDesired(desired(4, [replica('r1', { generation: 2, sha256: tarSha, format: 'tar', config })]));
    expect(await until(() => readyStatus('r1', 2) !== undefined, 60_000), showLog()).toBe(true);
    expect((await infer(readyStatus('r1', 2)!.port!)).status).toBe(200);
  });

  it('after an agent restart, serves the saved desired state without the control plane, then rejoins with its identity', async () => {
    const replicaPid = pidOf('r1');
    const port = readyStatus('r1', 2)!.port!;
    const groups = replicaCgroupDirs(replicaPid);
    if (readyStatus('r1', 2)!.message!.startsWith('limits enforced')) expect(groups.length).toBeGreaterThan(0);
    agent.kill('SIGKILL');
    await agent.exited;
    // Replicas never outlive their agent, and take their cgroups with them.
    expect(await until(() => !alive(replicaPid), 15_000)).toBe(true);
    for (const g of groups) expect(existsSync(g), g).toBe(false);
    await cp.down();
    const joins = cp.joins.length;
    agent = startAgentProcess({ controlUrl: cp.url, token: JOIN_TOKEN, dataDir, portRange, lean: true, mqttNoWriteCache: true, logFile, labels: { room: 'lab' }, site: 'home', joinBackoff });
    expect(await until(async () => (await infer(port)).status === 200, 60_000), showLog()).toBe(true);
    expect(cp.joins.length).toBe(joins);
    const seen = cp.heartbeats.length;
    await cp.up();
    expect(await until(() => cp.joins.length > joins && cp.heartbeats.length > seen, 60_000), showLog()).toBe(true);
    await sleep(3000);
    console.log(`agent RSS with 1 replica running (lean V8 flags, mqtt writeCache off): heartbeat ${mb(cp.lastHeartbeat(node)!.agent_rss_bytes)}, /proc ${mb(rssOf(agent.pid!))}`);
    const rejoin = cp.joins.at(-1)!;
    expect(rejoin.node_id).toBe(node);
    expect(rejoin.token).not.toBe(JOIN_TOKEN);
    expect(rejoin.answered).toBe(node);
    expect(cp.heartbeats.at(-1)!.node).toBe(node);
    expect(cp.lastHeartbeat(node)!.applied_revision).toBe(4);
    // The model came from the node's cache: no second download of the tar.
    expect(cp.blobRequests.filter((s) => s === tarSha)).toHaveLength(1);
  }, 150_000);

  it('stops the replica when the desired state is empty', async () => {
    const pid = pidOf('r1');
    const port = readyStatus('r1', 2)?.port ?? cp.statuses.filter((s) => s.status.replica_id === 'r1' && s.status.port).at(-1)!.status.port!;
    await cp.publishDesired(desired(5, []));
    expect(await until(() => cp.lastStatus(node, 'r1')?.state === 'stopped', 15_000), showLog()).toBe(true);
    expect(await until(() => !alive(pid), 5000)).toBe(true);
    expect((await infer(port)).status).toBe(0);
    expect(existsSync(path.join(dataDir, 'replicas', 'r1'))).toBe(false);
    expect(await until(() => cp.lastHeartbeat(node)?.applied_revision === 5 && cp.lastHeartbeat(node)!.replicas.length === 0, 5000)).toBe(true);
    expect(cp.invalid).toEqual([]);
  });
});
