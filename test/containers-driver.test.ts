/**
 * The container runtime driver against real engines, Podman's compatible
 * service and Docker Engine, unchanged: a replica of the model-server image
 * serves the same answers as `tern serve` in-process, its limits are applied
 * by the engine, its stats come from the engine, a second driver on the same
 * data directory adopts it, and bad input (unknown image, an image for
 * another architecture, a port in use) fails with a message that names the
 * problem and leaves no container behind.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerDriver } from '../src/agent/drivers/container-driver.js';
import type { BuiltImage } from '../src/containers/image-build.js';
import type { ReplicaSpec } from '../src/protocol/fleet.js';
import { ensureServeImage, removeOwned, requireEngine, startEngine, type EngineKind, type TestEngine } from './container-engines.js';
import { DEMO_REPO, IRIS_ROWS, removeDir, startTestServer } from './helpers.js';

const ENGINES: { kind: EngineKind; ports: number }[] = [{ kind: 'podman', ports: 25000 }, { kind: 'docker', ports: 25050 }];
const MODEL_DIR = path.join(DEMO_REPO, 'iris-logreg', '1');

function spec(overrides: Partial<ReplicaSpec> = {}): ReplicaSpec {
  const config = JSON.parse(readFileSync(path.join(DEMO_REPO, 'iris-logreg', 'config.json'), 'utf8')) as Record<string, unknown>;
  return {
    id: 'ternc-iris-1', deployment: 'iris', model: 'iris-logreg', version: '1', sha256: 'a'.repeat(64), format: 'onnx',
    runtime: 'container', resources: { cpu: 0.5, memory_mb: 256 }, config, generation: 1, ...overrides,
  };
}

const body = JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [IRIS_ROWS.length, 4], data: IRIS_ROWS.map((r) => r.features) }] });

async function infer(url: string, model: string): Promise<{ name: string; data: number[] }[]> {
  const res = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { outputs: { name: string; data: number[] }[] }).outputs;
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '0.0.0.0', () => resolve(s));
  });
}

for (const { kind, ports } of ENGINES) {
  describe.skipIf(!requireEngine(kind, `container driver on ${kind}`))(`container driver on ${kind}`, () => {
    let engine: TestEngine;
    let dataDir: string;
    let driver: ContainerDriver;
    let built: BuiltImage;

    beforeAll(async () => {
      engine = await startEngine(kind, `ternc-drv-${kind}`);
      built = await ensureServeImage(engine.engine);
      dataDir = mkdtempSync(path.join(tmpdir(), `ternc-drv-${kind}-`));
      driver = new ContainerDriver({ dataDir, engine: engine.url });
    }, 300_000);

    afterAll(async () => {
      if (engine) {
        if (driver) await removeOwned(engine.engine, driver.owner).catch(() => undefined);
        await engine.stop();
      }
      if (dataDir) removeDir(dataDir);
    }, 60_000);

    it('runs a replica that answers as tern serve does, with its limits and stats, and is adopted by a second driver', async () => {
      const started = performance.now();
      const handle = await driver.start(spec(), MODEL_DIR, ports);
      const coldMs = performance.now() - started;
      console.log(`${kind}: container replica ready in ${coldMs.toFixed(0)} ms (${handle.limits})`);
      expect(handle.limits).toMatch(new RegExp(`limits enforced: ${kind} .*cpu 0.5 cores, memory 256 MB`));

      const reference = await startTestServer({ repository: path.dirname(path.dirname(MODEL_DIR)) });
      try {
        const [fromContainer, fromProcess] = [await infer(`http://127.0.0.1:${ports}`, 'iris'), await infer(reference.url, 'iris-logreg')];
        expect(fromContainer.map((o) => o.name).sort()).toEqual(fromProcess.map((o) => o.name).sort());
        for (const out of fromProcess) {
          const other = fromContainer.find((o) => o.name === out.name)!;
          other.data.forEach((v, i) => expect(v).toBeCloseTo(out.data[i], 6));
        }
      } finally {
        await reference.close();
      }

      await handle.stats();
      await new Promise((r) => setTimeout(r, 1000));
      const usage = await handle.stats();
      expect(usage?.rss_bytes).toBeGreaterThan(10e6);
      expect(usage?.cpu_percent).toBeGreaterThanOrEqual(0);
      expect(usage?.cpu_percent).toBeLessThan(60); // at most its 0.5-core limit, plus sampling slack

      const again = new ContainerDriver({ dataDir, engine: engine.url });
      const adopted = await again.adopt();
      expect(adopted.map((a) => [a.replicaId, a.generation, a.handle.port])).toEqual([['ternc-iris-1', 1, ports]]);
      expect((await infer(`http://127.0.0.1:${adopted[0].handle.port}`, 'iris')).length).toBeGreaterThan(0);

      const exit = new Promise((resolve) => adopted[0].handle.onExit(resolve));
      await adopted[0].handle.stop(2000);
      expect(await exit).toMatchObject({ requested: true });
      expect(await removeOwned(engine.engine, driver.owner)).toBe(0);
    }, 180_000);

    it('refuses an unknown image, an image for another architecture and a port in use, leaving nothing behind', async () => {
      await expect(driver.start(spec({ image: 'tern/no-such-image:1' }), MODEL_DIR, ports + 2))
        .rejects.toThrow(/image tern\/no-such-image:1 is not on this node's container engine/);

      // A deployment naming the x86-64 image, placed on an arm64 node.
      const arm64Node = new ContainerDriver({ dataDir, engine: engine.url, platforms: ['linux/arm64'] });
      await expect(arm64Node.start(spec({ image: built.tag }), MODEL_DIR, ports + 2))
        .rejects.toThrow(/is built for linux\/amd64, but this node runs linux\/arm64/);

      const blocker = await listen(ports + 4);
      try {
        await expect(driver.start(spec(), MODEL_DIR, ports + 4)).rejects.toThrow(new RegExp(`port ${ports + 4} is already in use`));
      } finally {
        blocker.close();
      }
      expect(await removeOwned(engine.engine, driver.owner)).toBe(0);
    }, 60_000);
  });
}
