/**
 * The container runtime in the fleet: an agent in its own network namespace,
 * with Podman's service running in that namespace, gets a deployment with
 * `runtime: container`; the replica is served through the node's gateway, its
 * 0.5-core CPU limit shows in the heartbeat stats under load (0.45-0.55 of a
 * core), and an agent restart adopts the running container instead of
 * starting a second one, while a stray container of the same agent is removed.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildInputs, fetchModelMetadata } from '../src/bench/model-inputs.js';
import { restBinaryClient } from '../src/bench/protocol-clients.js';
import { runClosedLoop } from '../src/bench/load-generator.js';
import { buildImage } from '../src/containers/image-build.js';
import { LABELS } from '../src/containers/labels.js';
import type { ControlPlane } from '../src/control/control-plane.js';
import { DeploymentSpecSchema } from '../src/protocol/fleet.js';
import { ContainerFleet, containerFleetEnabled, runTern as tern } from './container-fleet.js';
import type { TestEngine } from './container-engines.js';
import { DEMO_REPO, waitFor } from './helpers.js';
import type { TestNetwork } from './netns.js';

const enabled = containerFleetEnabled('container fleet test');

let fleet: ContainerFleet;
let net: TestNetwork;
let engine: TestEngine;
let cp: ControlPlane;
let dataDir: string;

const gatewayUrl = () => `http://${net.nodes[0].address}:8000`;
const ready = (name: string) => waitFor(() => {
  const rs = cp.store.replicas.listByDeployment(name);
  return rs.length === 1 && rs[0].state === 'ready' && (cp.routes.current?.routes.find((r) => r.deployment === name)?.replicas.length ?? 0) === 1;
}, 90_000, 200);

/** Cumulative CPU time (ns) of a container, read from its cgroup (v1 cpuacct or v2 cpu.stat). */
async function containerCpuNs(id: string): Promise<number> {
  const pid = (await engine.engine.docker.getContainer(id).inspect()).State.Pid;
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const v1 = lines.find((l) => /^\d+:[^:]*cpuacct[^:]*:/.test(l));
  if (v1) {
    const rel = v1.split(':')[2];
    const mount = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' '))
      .find((m) => m[2] === 'cgroup' && m[3]?.split(',').includes('cpuacct'))!;
    return Number(readFileSync(path.join(mount[1], rel, 'cpuacct.usage'), 'utf8'));
  }
  const rel = lines.find((l) => l.startsWith('0::'))!.slice(3);
  return Number(/usage_usec (\d+)/.exec(readFileSync(path.join('/sys/fs/cgroup', rel, 'cpu.stat'), 'utf8'))![1]) * 1000;
}

const ownedContainers = () => fleet.ownedContainers();

describe.skipIf(!enabled)('container runtime in the fleet (Podman in a network namespace)', () => {
  beforeAll(async () => {
    fleet = await ContainerFleet.start({ prefix: 'ternc', subnet: 78, replicaPorts: '25100-25199', adminPassword: 'containers-fleet', gateway: true });
    ({ net, engine, cp, dataDir } = fleet);
    for (const m of ['synthetic-medium', 'iris-logreg']) {
      const config = JSON.parse(readFileSync(path.join(DEMO_REPO, m, 'config.json'), 'utf8')) as Record<string, unknown>;
      delete config.name;
      await cp.registry.importFile(m, path.join(DEMO_REPO, m, '1', 'model.onnx'), { format: 'onnx', config });
    }
  }, 300_000);

  afterAll(async () => {
    await fleet?.close();
  }, 60_000);

  it('serves a container replica through the node\'s gateway and its heartbeat CPU shows the 0.5-core limit under load', async () => {
    cp.store.deployments.create(DeploymentSpecSchema.parse({ name: 'cnn', model: 'synthetic-medium', replicas: 1, runtime: 'container', resources: { cpu: 0.5, memory_mb: 512 } }), '1');
    cp.reconciler.trigger('test');
    expect(await ready('cnn')).toBe(true);
    const replica = cp.store.replicas.listByDeployment('cnn')[0];
    expect(replica.message ?? '').toMatch(/limits enforced: podman .*cpu 0.5 cores/);
    const containers = await ownedContainers();
    expect(containers.map((c) => c.Labels[LABELS.replica])).toEqual([replica.id]);

    expect(await waitFor(async () => (await fetch(`${gatewayUrl()}/v2/models/cnn/ready`).catch(() => undefined))?.status === 200, 30_000, 200)).toBe(true);
    const pool = new Pool(gatewayUrl(), { connections: 8 });
    try {
      const meta = await fetchModelMetadata(gatewayUrl(), 'cnn');
      // Big batches from few clients: the replica always has work queued while the client and gateway stay cheap.
      const client = restBinaryClient(pool, 'cnn', buildInputs(meta, 16));
      expect(await client.verify()).toMatch(/output FP32 \[16,10\]/);
      const cgroupBefore = await containerCpuNs(containers[0].Id);
      const wallBefore = performance.now();
      // Samples the replica's CPU from the heartbeats the control plane stores, while 6 clients keep it busy.
      const samples = new Map<number, number>();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const hb = cp.store.nodes.get(replica.node)?.stats;
          const cpu = hb?.replicas.find((r) => r.id === replica.id)?.cpu_percent;
          if (hb && cpu !== undefined) samples.set(hb.seq, cpu);
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      const load = await runClosedLoop({ concurrency: 3, warmupMs: 0, durationMs: 9000, send: () => client.send() });
      sampling = false;
      await sampler;
      // The kernel's own account of the container's CPU over the whole run, to check the heartbeat figures against.
      const kernel = ((await containerCpuNs(containers[0].Id)) - cgroupBefore) / 1e6 / (performance.now() - wallBefore);
      // The first seconds include ramp-up; the limit shows once the replica is saturated.
      const steady = [...samples.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v).slice(2);
      const mean = steady.reduce((s, v) => s + v, 0) / steady.length;
      const median = [...steady].sort((a, b) => a - b)[Math.floor(steady.length / 2)];
      console.log(`container replica under load through the gateway: ${load.requests} requests of 16, ${load.errors} errors, p50 ${load.p50Ms.toFixed(0)} ms; `
        + `heartbeat cpu% ${steady.map((v) => v.toFixed(0)).join(' ')} (median ${median.toFixed(1)}, mean ${mean.toFixed(1)}% of one core); kernel cgroup account ${(kernel * 100).toFixed(1)}%`);
      expect(load.errors).toBe(0);
      expect(load.requests).toBeGreaterThan(10);
      expect(steady.length).toBeGreaterThanOrEqual(4);
      // The heartbeat figures agree with the kernel's account (Podman's system counter is not used)...
      expect(Math.abs(mean / 100 - kernel)).toBeLessThan(0.05);
      // ...and show the limit: a saturated replica gets half a core, not more, not much less.
      expect(median / 100).toBeGreaterThanOrEqual(0.45);
      expect(median / 100).toBeLessThanOrEqual(0.55);
    } finally {
      await pool.close();
    }
  }, 180_000);

  it('an image archive uploaded to the control plane (resumed, verified) reaches a node whose engine lacks it', async () => {
    const tag = 'tern/serve:ternc-archive';
    const built = await buildImage({ platform: 'linux/amd64', projectRoot: path.resolve('.'), tag });
    await engine.engine.docker.getImage(tag).remove({ force: true }).catch(() => undefined);
    const env = { TERN_CONFIG: path.join(dataDir, 'creds.json'), TERN_URL: '', TERN_TOKEN: '' };
    expect((await tern(env, 'login', '--url', `http://127.0.0.1:${cp.port}`, '--password', 'containers-fleet')).code).toBe(0);
    const { token } = JSON.parse(readFileSync(env.TERN_CONFIG, 'utf8')) as { token: string };

    // An upload cut off after its first MiB: the CLI goes on from there.
    const sha256 = createHash('sha256').update(readFileSync(built.archive)).digest('hex');
    const first = readFileSync(built.archive).subarray(0, 1 << 20);
    const put = await fetch(`http://127.0.0.1:${cp.port}/api/v1/images/uploads/${sha256}?offset=0`, {
      method: 'PUT', body: first, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    });
    expect(put.status).toBe(200);
    const upload = await tern(env, 'image', 'upload', built.archive, '--no-progress');
    expect(upload.stderr).toBe('');
    expect(upload.stdout).toMatch(new RegExp(`uploaded ${tag} \\(linux/amd64, \\d+ bytes, sha256 ${sha256.slice(0, 12)}\\), resumed at byte ${1 << 20}`));
    const wrong = await tern(env, 'image', 'upload', path.join(dataDir, 'no-such.tar'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^tern: image archive '.*no-such.tar' does not exist\n$/);

    cp.store.deployments.create(DeploymentSpecSchema.parse({ name: 'packed', model: 'iris-logreg', replicas: 1, runtime: 'container', image: tag, resources: { cpu: 0.25, memory_mb: 256 } }), '1');
    cp.reconciler.trigger('test');
    expect(await ready('packed')).toBe(true);
    expect((await engine.engine.docker.getImage(tag).inspect()).RepoTags.some((t) => t.endsWith(tag))).toBe(true);
    expect(await waitFor(async () => (await fetch(`${gatewayUrl()}/v2/models/packed/ready`).catch(() => undefined))?.status === 200, 30_000, 200)).toBe(true);

    expect((await tern(env, 'deployments', 'rm', 'packed')).code).toBe(0);
    expect(await waitFor(async () => (await ownedContainers()).length === 1, 60_000, 200)).toBe(true);
  }, 240_000);

  it('app containers on the node\'s engine appear in its heartbeats with their CPU and memory', async () => {
    const image = (await engine.engine.docker.listImages()).flatMap((i) => i.RepoTags ?? []).find((t) => t.endsWith('tern/serve:0.1.0-amd64'))!;
    const env = { DOCKER_HOST: engine.url };
    const run = await tern(env, 'run', image, '--name', 'ternc-busy', '--cpus', '0.25', '--entrypoint', '/usr/local/bin/node', '--', '-e', 'for (;;) {}');
    expect(run.code, run.stderr).toBe(0);
    const node = cp.store.nodes.list()[0].id;
    const samples: number[] = [];
    let memory = 0;
    const seen = new Set<number>();
    expect(await waitFor(() => {
      const hb = cp.store.nodes.get(node)?.stats;
      const c = hb?.containers?.find((x) => x.name === 'ternc-busy-ternc-busy-1');
      if (hb && c?.cpu_percent !== undefined && !seen.has(hb.seq)) {
        seen.add(hb.seq);
        samples.push(c.cpu_percent);
        memory = c.memory_bytes ?? 0;
      }
      return samples.length >= 5;
    }, 30_000, 200)).toBe(true);
    const median = [...samples].sort((a, b) => a - b)[2];
    console.log(`app container in heartbeats: cpu% ${samples.map((v) => v.toFixed(0)).join(' ')} (limit 25%), memory ${(memory / 1e6).toFixed(1)} MB`);
    expect(median).toBeGreaterThan(18);
    expect(median).toBeLessThan(30);
    expect(memory).toBeGreaterThan(1e6);
    expect((await tern(env, 'compose', 'down', '--project', 'ternc-busy')).code).toBe(0);
  }, 90_000);

  it('an agent restarted while the control plane is away adopts its running container (same container, no duplicate) and removes a stray one', async () => {
    const replica = cp.store.replicas.listByDeployment('cnn')[0];
    const before = (await ownedContainers()).map((c) => c.Id);
    expect(before).toHaveLength(1);
    // Edge autonomy: with the control plane up, a stopped agent is a down node and its replicas are placed anew;
    // adoption matters when the agent restarts on its own (an upgrade, a crash) and must not start duplicates.
    await fleet.closeControlPlane();
    await fleet.stopAgent();
    // The container outlives its agent and keeps serving on its port.
    expect((await fetch(`http://${net.nodes[0].address}:${replica.port}/v2/models/cnn/ready`)).status).toBe(200);

    // A stray container labelled as this agent's, for a replica nobody wants: the restarted agent must remove it.
    await fleet.startStray({
      kind: 'model', replica: 'stray-replica', labels: { [LABELS.port]: '25198', [LABELS.grpcPort]: '25199' },
      Cmd: ['serve', '--model-repository', '/tmp', '--http-port', '25198', '--grpc-port', '25199'],
    });
    expect(await ownedContainers()).toHaveLength(2);

    fleet.startAgent();
    expect(await waitFor(async () => (await ownedContainers()).length === 1, 60_000, 200)).toBe(true);
    expect(await waitFor(async () => (await fetch(`${gatewayUrl()}/v2/models/cnn/ready`).catch(() => undefined))?.status === 200, 30_000, 200)).toBe(true);
    expect((await ownedContainers()).map((c) => c.Id)).toEqual(before);
    // Still the same one a few heartbeats later: nothing restarted it behind the gateway's back.
    await new Promise((r) => setTimeout(r, 2000));
    expect((await ownedContainers()).map((c) => c.Id)).toEqual(before);
  }, 180_000);
});
