/**
 * The fleet on separate hosts: the control plane on the host, three agents each
 * in its own network namespace, a deployment spread across them serving real
 * inferences, and a node killed with SIGKILL whose replica is replaced on the
 * others with the event log saying why.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJoinToken } from '../src/control/auth/accounts.js';
import { startControlPlane, type ControlPlane } from '../src/control/control-plane.js';
import { DEMO_REPO, IRIS_ROWS, postJson, removeDir, waitFor } from './helpers.js';
import { createTestNetwork, netnsUnavailable, type TestNetwork } from './netns.js';

const CLI = path.resolve('dist/cli/main.js');
const unavailable = netnsUnavailable();
if (unavailable) {
  if (process.env.CI) throw new Error(`the multi-node fleet test must run in CI, but: ${unavailable}`);
  console.warn(`SKIPPED fleet multi-node test: ${unavailable}`);
}

let net: TestNetwork;
let cp: ControlPlane;
let dataDir: string;
let token: string;
const agents = new Map<string, ChildProcess>();

async function api<T = any>(method: string, route: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${cp.url}/api/v1${route}`, {
    method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json()) as T };
}

function readyReplicas(deployment: string) {
  return cp.store.replicas.listByDeployment(deployment).filter((r) => r.desired === 'run' && r.state === 'ready');
}

describe.skipIf(!!unavailable)('fleet across network namespaces', () => {
  beforeAll(async () => {
    net = createTestNetwork('ternt', 77, 3);
    dataDir = mkdtempSync(path.join(tmpdir(), 'tern-fleet-'));
    cp = await startControlPlane({
      dataDir: path.join(dataDir, 'control'), host: '0.0.0.0', port: 0, mqttPort: 0, advertiseHost: net.hostAddress,
      adminPassword: 'fleet-test-password', log: pino({ level: process.env.TERN_TEST_LOG ?? 'silent' }),
    });
    const login = await fetch(`${cp.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'fleet-test-password' }) });
    token = ((await login.json()) as { token: string }).token;
    await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'), { format: 'onnx' });
    const controlUrl = `http://${net.hostAddress}:${cp.port}`;
    for (const n of net.nodes) {
      const join = createJoinToken(cp.store, 600, `test ${n.name}`);
      const child = net.spawnIn(n.name, process.execPath, [CLI, 'agent', '--control', controlUrl, '--token', join.token, '--data-dir', path.join(dataDir, n.name), '--address', n.address, '--site', 'lab'], { TERN_LOG_LEVEL: 'warn' });
      child.stderr?.on('data', (d: Buffer) => process.env.TERN_TEST_LOG && process.stderr.write(`[${n.name}] ${d}`));
      agents.set(n.name, child);
    }
    expect(await waitFor(() => cp.store.nodes.list().filter((n) => n.state === 'ready').length === 3, 30_000)).toBe(true);
  }, 90_000);

  afterAll(async () => {
    for (const a of agents.values()) a.kill('SIGKILL');
    await cp?.close();
    net?.teardown();
    if (dataDir) removeDir(dataDir);
  });

  it('spreads a 3-replica deployment over the three nodes, each serving inferences', async () => {
    const created = await api('POST', '/deployments', { name: 'iris', model: 'iris-logreg', replicas: 3, resources: { cpu: 0.25, memory_mb: 128 } });
    expect(created.status).toBe(201);
    expect(await waitFor(() => readyReplicas('iris').length === 3, 40_000)).toBe(true);
    const replicas = readyReplicas('iris');
    expect(new Set(replicas.map((r) => r.node)).size).toBe(3);
    for (const r of replicas) {
      const node = cp.store.nodes.get(r.node)!;
      const res = await postJson(`http://${node.facts.address}:${r.port}/v2/models/iris/infer`, {
        inputs: [{ name: 'input', datatype: 'FP32', shape: [IRIS_ROWS.length, 4], data: IRIS_ROWS.map((x) => x.features) }], outputs: [{ name: 'label' }],
      });
      expect(res.status).toBe(200);
      expect(res.body.outputs[0].data).toEqual(IRIS_ROWS.map((x) => x.label));
    }
  }, 60_000);

  it('replaces the replicas of a SIGKILLed node on the others within 5 s, and says why', async () => {
    const victim = readyReplicas('iris')[0];
    const victimNs = net.nodes.find((n) => n.address === cp.store.nodes.get(victim.node)!.facts.address)!.name;
    const killedAt = Date.now();
    agents.get(victimNs)!.kill('SIGKILL');
    const replaced = await waitFor(() => {
      const ready = readyReplicas('iris');
      return ready.length === 3 && ready.every((r) => r.node !== victim.node);
    }, 15_000, 50);
    const tookMs = Date.now() - killedAt;
    console.log(`replica of the killed node ${victim.node} replaced and ready after ${tookMs} ms`);
    expect(replaced).toBe(true);
    expect(tookMs).toBeLessThan(5_000);
    const events = cp.store.events.query({ limit: 1000 }).filter((e) => e.ts >= killedAt);
    expect(events.some((e) => e.kind === 'node.down' && e.subject === `node/${victim.node}` && /last-will|heartbeat-timeout/.test(e.message))).toBe(true);
    expect(events.some((e) => e.kind === 'replica.lost' && e.message.includes(victim.id))).toBe(true);
    expect(events.some((e) => e.kind === 'replica.scheduled' && /chosen \(score/.test(e.message))).toBe(true);
  }, 30_000);

  it('fences a node that comes back after being declared dead: no duplicate replicas stay running', async () => {
    const victim = readyReplicas('iris')[0];
    const victimNs = net.nodes.find((n) => n.address === cp.store.nodes.get(victim.node)!.facts.address)!.name;
    const agent = agents.get(victimNs)!;
    const frozenAt = Date.now();
    agent.kill('SIGSTOP'); // silent but connected: only missed heartbeats reveal it; its replicas keep running
    expect(await waitFor(() => cp.store.nodes.get(victim.node)?.state === 'down', 10_000, 50)).toBe(true);
    expect(await waitFor(() => readyReplicas('iris').length === 3 && readyReplicas('iris').every((r) => r.node !== victim.node), 15_000, 50)).toBe(true);
    agent.kill('SIGCONT');
    expect(await waitFor(() => cp.store.nodes.get(victim.node)?.state === 'ready', 20_000, 100)).toBe(true);
    // The returned node learns (newer revision) that its old replicas are no longer its own and stops them.
    expect(await waitFor(() => {
      const reported = cp.store.nodes.get(victim.node)?.stats?.replicas ?? [];
      return reported.filter((r) => r.state !== 'stopped').length === 0;
    }, 20_000, 100)).toBe(true);
    // Live nodes only: the node SIGKILLed by the previous test stays down with its last (stale) stats.
    const running = cp.store.nodes.list().filter((n) => n.state !== 'down').flatMap((n) => n.stats?.replicas ?? []).filter((r) => r.state === 'ready');
    expect(running).toHaveLength(3);
    const events = cp.store.events.query({ limit: 1000 }).filter((e) => e.ts >= frozenAt);
    expect(events.some((e) => e.kind === 'node.down' && /heartbeat-timeout/.test(e.message))).toBe(true);
    expect(events.some((e) => e.kind === 'node.up' && e.subject === `node/${victim.node}`)).toBe(true);
  }, 60_000);

  it('rolls a new version out start-first: ready capacity never drops below the desired count', async () => {
    await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-forest', '1', 'model.onnx'), { format: 'onnx', version: '2' });
    let minReady = Infinity;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        minReady = Math.min(minReady, readyReplicas('iris').length);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    expect((await api('POST', '/deployments/iris/rollout', { version: '2' })).status).toBe(200);
    const done = await waitFor(() => {
      const all = cp.store.replicas.listByDeployment('iris');
      return all.length === 3 && all.every((r) => r.version === '2' && r.state === 'ready');
    }, 40_000, 100);
    watching = false;
    await watcher;
    expect(done).toBe(true);
    expect(minReady).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('drains a node: its replicas move to the others, new ones ready first', async () => {
    const busiest = readyReplicas('iris')[0].node;
    expect((await api('POST', `/nodes/${busiest}/drain`)).status).toBe(200);
    expect(await waitFor(() => {
      const all = cp.store.replicas.listByDeployment('iris');
      return all.length === 3 && all.every((r) => r.node !== busiest && r.state === 'ready');
    }, 40_000, 100)).toBe(true);
    const events = cp.store.events.query({ subject: 'deployment/iris', limit: 1000 });
    // Ready replicas drain first (gateways stop routing to them), so the reason is on the draining event.
    expect(events.some((e) => e.kind === 'replica.draining' && /replaced by a ready replica/.test(e.message))).toBe(true);
    expect((await api('POST', `/nodes/${busiest}/uncordon`)).status).toBe(200);
  }, 60_000);

  it('scales 3 -> 1 and stops the surplus replica processes', async () => {
    expect((await api('POST', '/deployments/iris/scale', { replicas: 1 })).status).toBe(200);
    expect(await waitFor(() => cp.store.replicas.listByDeployment('iris').length === 1 && readyReplicas('iris').length === 1, 30_000, 100)).toBe(true);
    // The nodes confirm it too: their heartbeats list one running replica in all.
    expect(await waitFor(() => cp.store.nodes.list().filter((n) => n.state === 'ready')
      .flatMap((n) => n.stats?.replicas ?? []).filter((r) => r.state !== 'stopped').length === 1, 10_000)).toBe(true);
  }, 45_000);
});
