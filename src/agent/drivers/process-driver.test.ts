import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeDemoRepository } from '../../models/demo-repository.js';
import type { ReplicaSpec } from '../../protocol/fleet.js';
import { PortAllocator } from '../port-allocator.js';
import type { ReplicaExit } from './driver.js';
import { ProcessDriver } from './process-driver.js';

const IRIS_INPUT = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] }] };

function spec(id: string, extra: Partial<ReplicaSpec> = {}): ReplicaSpec {
  return {
    id, deployment: 'flowers', model: 'iris-logreg', version: '3', sha256: 'a'.repeat(64), format: 'onnx',
    runtime: 'process', resources: { cpu: 0.5, memory_mb: 300 }, generation: 1, ...extra,
  };
}

describe('process driver', () => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'tern-driver-'));
  const dataDir = path.join(tmp, 'data');
  let modelDir = '';
  let config: Record<string, unknown>;
  const driver = new ProcessDriver({ dataDir, readyTimeoutMs: 30_000, stopGraceMs: 3000 });
  const ports = new PortAllocator({ from: 21000, to: 21100 });

  beforeAll(async () => {
    const repo = path.join(tmp, 'repo');
    await writeDemoRepository(repo, { models: ['iris-logreg'] });
    modelDir = path.join(repo, 'iris-logreg', '1');
    config = JSON.parse(readFileSync(path.join(repo, 'iris-logreg', 'config.json'), 'utf8')) as Record<string, unknown>;
  });
  afterAll(async () => {
    await driver.close(1000);
    rmSync(tmp, { recursive: true, force: true });
  });

  it('serves the model under the deployment name, within limits where the machine allows', async () => {
    const port = await ports.allocate('r1');
    const handle = await driver.start(spec('r1', { config: { ...config, name: 'iris-logreg' } }), modelDir, port);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/models/flowers/infer`, { method: 'POST', body: JSON.stringify(IRIS_INPUT) });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { model_name: string; outputs: { name: string; data: number[] }[] };
      expect(body.model_name).toBe('flowers');
      expect(body.outputs.length).toBeGreaterThan(0);
      // The repository is hard links into the cache, config named for the deployment.
      const repoModel = path.join(dataDir, 'replicas', 'r1', 'repo', 'flowers', '3', 'model.onnx');
      expect(existsSync(repoModel)).toBe(true);
      expect(JSON.parse(readFileSync(path.join(dataDir, 'replicas', 'r1', 'repo', 'flowers', 'config.json'), 'utf8')).name).toBeUndefined();
      expect(handle.limits).toMatch(/^limits (enforced: cgroup v[12]: cpu 0.5 cores, memory 300 MB|not enforced: .+)$/);
      console.log(`process driver on this machine: ${handle.limits}`);
      if (handle.limits.startsWith('limits enforced')) {
        const procs = readFileSync(`/proc/${handle.pid}/cgroup`, 'utf8');
        expect(procs).toMatch(/tern\/r1/);
      }
      const usage = await handle.stats();
      expect(usage?.rss_bytes).toBeGreaterThan(20e6);
      expect(handle.grpcPort).toBe(port + 1);
    } finally {
      const exited = new Promise<ReplicaExit>((r) => handle.onExit(r));
      await handle.stop();
      const exit = await exited;
      expect(exit.requested).toBe(true);
    }
    expect(await handle.stats()).toBeUndefined();
    expect(existsSync(`/proc/${handle.pid}`)).toBe(false);
  });

  it('reports an unexpected exit with the replica\'s last output', async () => {
    const port = await ports.allocate('r2');
    const handle = await driver.start(spec('r2'), modelDir, port);
    const exited = new Promise<ReplicaExit>((r) => handle.onExit(r));
    process.kill(handle.pid!, 'SIGKILL');
    const exit = await exited;
    expect(exit).toMatchObject({ requested: false, signal: 'SIGKILL' });
  });

  it('fails a replica that never becomes ready, quoting its output', async () => {
    const broken = path.join(tmp, 'broken');
    mkdirSync(broken, { recursive: true });
    writeFileSync(path.join(broken, 'model.onnx'), 'this is not an ONNX model');
    const quick = new ProcessDriver({ dataDir, readyTimeoutMs: 8000 });
    const port = await ports.allocate('r3');
    const err = await quick.start(spec('r3'), broken, port).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/not ready after 8 s|exited/);
    expect((err as Error).message.length).toBeGreaterThan(60);
    await quick.close();
  });

  it('cancels a start when asked', async () => {
    const port = await ports.allocate('r4');
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 100);
    await expect(driver.start(spec('r4'), modelDir, port, { signal: abort.signal })).rejects.toThrow(/cancelled/);
  });
});
