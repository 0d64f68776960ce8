/**
 * The gateway across hosts: three agents in their own network namespaces, a
 * deployment with replicas on two of them, and a client sending continuous
 * requests to the third node's gateway. It must see zero failures while a
 * replica is killed with SIGKILL, a rollout runs, and the deployment scales
 * 3 -> 1. Then locality (a replica on the caller's node and one behind a
 * 40 ms link) and edge autonomy (the control plane stopped, the caller's
 * agent restarted: its gateway routes by the table it saved).
 *
 * Node 1 is reached through a delay proxy on the host (its agent advertises
 * the proxy's address); the proxy adds no delay until the locality test.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJoinToken } from '../src/control/auth/accounts.js';
import { startControlPlane, type ControlPlane } from '../src/control/control-plane.js';
import { DeploymentSpecSchema } from '../src/protocol/fleet.js';
import { startDelayProxy, type DelayProxy } from './delay-proxy.js';
import { DEMO_REPO, IRIS_ROWS, removeDir, waitFor } from './helpers.js';
import { createTestNetwork, netnsUnavailable, type TestNetwork } from './netns.js';

const CLI = path.resolve('dist/cli/main.js');
const unavailable = netnsUnavailable();
if (unavailable) {
  if (process.env.CI) throw new Error(`the gateway fleet test must run in CI, but: ${unavailable}`);
  console.warn(`SKIPPED gateway fleet test: ${unavailable}`);
}

const NODE1_PORTS = { from: 21000, to: 21019 };
let net: TestNetwork;
let cp: ControlPlane;
let cpClosed = false;
let proxy: DelayProxy;
let dataDir: string;
const agents = new Map<string, ChildProcess>();
const nodeIds = new Map<string, string>();
const log = pino({ level: process.env.TERN_TEST_LOG ?? 'silent' });
const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4], data: IRIS_ROWS.slice(0, 2).map((r) => r.features) }], outputs: [{ name: 'label' }] });
const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 10_000 });

function spawnAgent(ns: string, args: string[]): ChildProcess {
  const child = net.spawnIn(ns, process.execPath, [CLI, 'agent', '--data-dir', path.join(dataDir, ns), ...args], { TERN_LOG_LEVEL: 'warn' });
  child.stderr?.on('data', (d: Buffer) => process.env.TERN_TEST_LOG && process.stderr.write(`[${ns}] ${d}`));
  agents.set(ns, child);
  return child;
}

function gateway(ns: string): string {
  return `http://${net.nodes.find((n) => n.name === ns)!.address}:8000`;
}

async function infer(url: string, deployment = 'iris'): Promise<{ ok: boolean; node?: string; why?: string }> {
  try {
    const res = await fetch(`${url}/v2/models/${deployment}/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, dispatcher } as RequestInit);
    const text = await res.text();
    if (res.status !== 200) return { ok: false, why: `HTTP ${res.status}: ${text}` };
    const labels = (JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0].data;
    return labels.length === 2 ? { ok: true, node: res.headers.get('tern-node') ?? undefined } : { ok: false, why: `wrong answer ${text}` };
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
}

/** Closed-loop clients hammering one gateway until stopped; counts every request sent and every failure. */
function startLoad(url: string, clients = 4) {
  const tally = { sent: 0, ok: 0, failed: 0, failures: [] as string[], nodes: new Map<string, number>() };
  let running = true;
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      tally.sent += 1;
      const r = await infer(url);
      if (r.ok) {
        tally.ok += 1;
        tally.nodes.set(r.node ?? '?', (tally.nodes.get(r.node ?? '?') ?? 0) + 1);
      } else {
        tally.failed += 1;
        if (tally.failures.length < 10) tally.failures.push(r.why ?? '');
      }
    }
  });
  return { tally, stop: async () => { running = false; await Promise.all(loops); return tally; } };
}

function replicas(deployment: string) {
  return cp.store.replicas.listByDeployment(deployment);
}

const settled = (deployment: string, count: number, version?: string) => waitFor(() => {
  const all = replicas(deployment);
  return all.length === count && all.every((r) => r.desired === 'run' && r.state === 'ready' && (!version || r.version === version))
    && (cp.routes.current?.routes.find((x) => x.deployment === deployment)?.replicas.length ?? 0) === count;
}, 60_000, 100);

describe.skipIf(!!unavailable)('gateway across network namespaces', () => {
  beforeAll(async () => {
    net = createTestNetwork('terng', 76, 3);
    dataDir = mkdtempSync(path.join(tmpdir(), 'tern-gwfleet-'));
    cp = await startControlPlane({
      dataDir: path.join(dataDir, 'control'), host: '0.0.0.0', port: 0, mqttPort: 0, advertiseHost: net.hostAddress,
      adminPassword: 'gateway-fleet', log,
    });
    const config = JSON.parse(readFileSync(path.join(DEMO_REPO, 'iris-logreg', 'config.json'), 'utf8')) as Record<string, unknown>;
    delete config.name;
    await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'), { format: 'onnx', config });
    await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-forest', '1', 'model.onnx'), { format: 'onnx', version: '2', config });
    proxy = await startDelayProxy(net.hostAddress, net.nodes[0].address, NODE1_PORTS);
    const controlUrl = `http://${net.hostAddress}:${cp.port}`;
    const roles = [
      ['--label', 'role=serve', '--label', 'near=yes', '--address', net.hostAddress, '--replica-ports', `${NODE1_PORTS.from}-${NODE1_PORTS.to}`],
      ['--label', 'role=serve', '--address', net.nodes[1].address],
      ['--label', 'role=client', '--label', 'near=yes', '--address', net.nodes[2].address],
    ];
    net.nodes.forEach((n, i) => spawnAgent(n.name, ['--control', controlUrl, '--token', createJoinToken(cp.store, 600).token, '--site', 'lab', ...roles[i]]));
    expect(await waitFor(() => cp.store.nodes.list().filter((n) => n.state === 'ready').length === 3, 40_000)).toBe(true);
    for (const n of cp.store.nodes.list()) nodeIds.set(n.labels.role === 'client' ? 'terng3' : n.facts.address === net.hostAddress ? 'terng1' : 'terng2', n.id);
    const v1 = DeploymentSpecSchema.parse({ name: 'iris', model: 'iris-logreg', version: '1', replicas: 3, selector: { role: 'serve' }, resources: { cpu: 0.25, memory_mb: 128 } });
    cp.store.deployments.create(v1, '1');
    cp.reconciler.trigger('test');
    expect(await settled('iris', 3)).toBe(true);
    expect(await waitFor(async () => (await infer(gateway('terng3'))).ok, 20_000)).toBe(true);
  }, 120_000);

  afterAll(async () => {
    for (const a of agents.values()) a.kill('SIGKILL');
    await proxy?.close();
    if (!cpClosed) await cp?.close();
    await dispatcher.close();
    net?.teardown();
    if (dataDir) removeDir(dataDir);
  });

  it('a client of a third node\'s gateway sees zero failures through kill -9, a rollout and a scale-down 3 -> 1', async () => {
    const load = startLoad(gateway('terng3'));
    await new Promise((r) => setTimeout(r, 1000));

    // (a) SIGKILL one replica: its in-flight requests are retried on another, and it is ejected until it is back.
    const victim = replicas('iris')[0];
    const ns = [...nodeIds].find(([, id]) => id === victim.node)![0];
    const pid = Number(readFileSync(path.join(dataDir, ns, 'replicas', victim.id, 'pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    expect(await waitFor(() => cp.store.replicas.get(victim.id)?.state !== 'ready', 10_000, 20)).toBe(true);
    expect(await settled('iris', 3)).toBe(true);
    const afterKill = { ...load.tally };

    // (b) Roll out version 2 start-first; old replicas drain before they stop.
    cp.store.deployments.rollout('iris', '2');
    cp.reconciler.trigger('test');
    expect(await settled('iris', 3, '2')).toBe(true);
    const afterRollout = { ...load.tally };

    // (c) Scale 3 -> 1: two replicas drain and stop.
    cp.store.deployments.scale('iris', 1);
    cp.reconciler.trigger('test');
    expect(await settled('iris', 1, '2')).toBe(true);
    await new Promise((r) => setTimeout(r, 1000));
    const total = await load.stop();

    console.log(`gateway under churn: ${total.sent} requests sent, ${total.ok} ok, ${total.failed} failed `
      + `(after kill: ${afterKill.sent}, after rollout: ${afterRollout.sent}); answered by ${JSON.stringify(Object.fromEntries(total.nodes))}`);
    expect(total.failures).toEqual([]);
    expect(total.failed).toBe(0);
    expect(total.ok).toBe(total.sent);
    expect(total.sent).toBeGreaterThan(200);
    expect(afterKill.sent).toBeGreaterThan(0);
    expect(total.nodes.has(nodeIds.get('terng3')!)).toBe(false); // node 3 runs no replica of it: everything was forwarded
    const events = cp.store.events.query({ limit: 500 }).map((e) => e.kind);
    expect(events).toContain('replica.draining');
  }, 180_000);

  it('local-first keeps > 95% of requests on the caller\'s node while a remote replica sits behind 40 ms', async () => {
    cp.store.deployments.create(DeploymentSpecSchema.parse({ name: 'near', model: 'iris-logreg', replicas: 2, selector: { near: 'yes' }, resources: { cpu: 0.25, memory_mb: 128 } }), '1');
    cp.reconciler.trigger('test');
    expect(await settled('near', 2)).toBe(true);
    expect(new Set(replicas('near').map((r) => r.node))).toEqual(new Set([nodeIds.get('terng1'), nodeIds.get('terng3')]));
    proxy.delayMs = 20; // each way: 40 ms round trip to node 1
    const started = performance.now();
    const remote = await infer(`http://${net.hostAddress}:${replicas('near').find((r) => r.node === nodeIds.get('terng1'))!.port}`, 'near');
    const rttMs = performance.now() - started;
    expect(remote.ok).toBe(true);
    expect(rttMs).toBeGreaterThan(40);
    expect(await waitFor(async () => (await infer(gateway('terng3'), 'near')).ok, 20_000)).toBe(true);
    let local = 0;
    const N = 300;
    for (let i = 0; i < N; i++) {
      const r = await infer(gateway('terng3'), 'near');
      expect(r.ok, r.why).toBe(true);
      if (r.node === nodeIds.get('terng3')) local += 1;
    }
    console.log(`local-first: ${local}/${N} requests answered on the caller's node (remote replica ${rttMs.toFixed(0)} ms away)`);
    expect(local / N).toBeGreaterThan(0.95);
    proxy.delayMs = 0;
  }, 120_000);

  it('with the control plane stopped, a restarted agent\'s gateway routes by its saved table', async () => {
    cpClosed = true;
    await cp.close();
    const agent = agents.get('terng3')!;
    const exited = new Promise((resolve) => agent.once('exit', resolve));
    agent.kill('SIGTERM');
    await exited;
    spawnAgent('terng3', ['--control', `http://${net.hostAddress}:1`, '--site', 'lab', '--address', net.nodes[2].address]);
    expect(await waitFor(async () => (await infer(gateway('terng3'))).ok, 30_000, 200)).toBe(true);
    let ok = 0;
    for (let i = 0; i < 50; i++) if ((await infer(gateway('terng3'))).ok) ok += 1;
    expect(ok).toBe(50);
  }, 60_000);
});
