/**
 * The model-server image built for linux/arm64 runs on this x86-64 machine
 * under qemu-user emulation (binfmt_misc, set up here) through the same
 * container driver, and answers the same inputs with the same outputs as the
 * x86-64 image, within 1e-4 (a CNN: convolutions, pooling, dense layers).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerDriver } from '../src/agent/drivers/container-driver.js';
import type { ReplicaHandle } from '../src/agent/drivers/driver.js';
import { buildInputs, fetchModelMetadata, jsonInferBody } from '../src/bench/model-inputs.js';
import type { BuiltImage } from '../src/containers/image-build.js';
import type { ReplicaSpec } from '../src/protocol/fleet.js';
import { enableArm64Emulation, ensureServeImage, removeOwned, requireEngine, startEngine, type TestEngine } from './container-engines.js';
import { DEMO_REPO, removeDir } from './helpers.js';

const MODEL = 'synthetic-medium';
const MODEL_DIR = path.join(DEMO_REPO, MODEL, '1');
const PORTS = { amd64: 25070, arm64: 25072 };

let emulationWhy: string | undefined;
const enabled = requireEngine('podman', 'arm64 image under emulation') && (() => {
  emulationWhy = enableArm64Emulation();
  if (!emulationWhy) return true;
  if (process.env.CI) throw new Error(`the arm64 image test must run in CI, but: ${emulationWhy}`);
  console.warn(`SKIPPED arm64 image under emulation: ${emulationWhy}`);
  return false;
})();

function spec(arch: 'amd64' | 'arm64', image: string): ReplicaSpec {
  const config = JSON.parse(readFileSync(path.join(DEMO_REPO, MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  return {
    id: `ternc-${arch}`, deployment: 'cnn', model: MODEL, version: '1', sha256: 'b'.repeat(64), format: 'onnx', image,
    runtime: 'container', resources: { cpu: 1, memory_mb: 1024 }, config, generation: 1,
  };
}

async function outputs(port: number, body: Buffer): Promise<{ values: number[]; ms: number }> {
  const started = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/v2/models/cnn/infer`, { method: 'POST', body: body.toString('utf8'), headers: { 'content-type': 'application/json' } });
  const ms = performance.now() - started;
  expect(res.status).toBe(200);
  const json = (await res.json()) as { outputs: { data: number[] }[] };
  return { values: json.outputs.flatMap((o) => o.data), ms };
}

describe.skipIf(!enabled)('arm64 image under qemu-user emulation', () => {
  let engine: TestEngine;
  let dataDir: string;
  let driver: ContainerDriver;
  const images: Partial<Record<'amd64' | 'arm64', BuiltImage>> = {};
  const handles: ReplicaHandle[] = [];

  beforeAll(async () => {
    engine = await startEngine('podman', 'ternc-arm');
    images.amd64 = await ensureServeImage(engine.engine, 'linux/amd64');
    images.arm64 = await ensureServeImage(engine.engine, 'linux/arm64');
    dataDir = mkdtempSync(path.join(tmpdir(), 'ternc-arm-'));
    driver = new ContainerDriver({ dataDir, engine: engine.url, platforms: ['linux/amd64', 'linux/arm64'], readyTimeoutMs: 240_000 });
  }, 300_000);

  afterAll(async () => {
    await Promise.all(handles.map((h) => h.stop(2000).catch(() => undefined)));
    if (engine) {
      await removeOwned(engine.engine, driver.owner).catch(() => undefined);
      await engine.stop();
    }
    if (dataDir) removeDir(dataDir);
  }, 60_000);

  it('answers the same inputs with the same outputs as the x86-64 image (within 1e-4)', async () => {
    console.log(`images: amd64 ${(images.amd64!.sizeBytes / 1e6).toFixed(1)} MB, arm64 ${(images.arm64!.sizeBytes / 1e6).toFixed(1)} MB`);
    const startedArm = performance.now();
    handles.push(await driver.start(spec('arm64', images.arm64!.tag), MODEL_DIR, PORTS.arm64));
    const armReadyMs = performance.now() - startedArm;
    handles.push(await driver.start(spec('amd64', images.amd64!.tag), MODEL_DIR, PORTS.amd64));

    const meta = await fetchModelMetadata(`http://127.0.0.1:${PORTS.amd64}`, 'cnn');
    const body = jsonInferBody(buildInputs(meta, 4, 777));
    const x86 = await outputs(PORTS.amd64, body);
    const arm = await outputs(PORTS.arm64, body);
    const armAgain = await outputs(PORTS.arm64, body);
    expect(arm.values).toHaveLength(40);
    expect(arm.values.length).toBe(x86.values.length);
    const maxDiff = Math.max(...arm.values.map((v, i) => Math.abs(v - x86.values[i])));
    console.log(`arm64 (emulated) vs x86-64: max |diff| ${maxDiff.toExponential(2)} over ${arm.values.length} outputs; `
      + `arm64 ready in ${(armReadyMs / 1000).toFixed(1)} s; inference ${armAgain.ms.toFixed(0)} ms emulated vs ${x86.ms.toFixed(0)} ms native (first request)`);
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
    // Different answers for different rows: the comparison is not between two constant outputs.
    expect(new Set(x86.values.map((v) => v.toFixed(4))).size).toBeGreaterThan(10);
  }, 300_000);
});
