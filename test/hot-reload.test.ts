/**
 * Hot reload on a watched repository: new versions load and warm before taking
 * traffic, removed ones drain, broken ones become UNAVAILABLE with the reason
 * while every other model keeps serving.
 */
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REPO, IRIS_ROWS, getJson, postJson, removeDir, scratchRepository, startTestServer, waitFor } from './helpers.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
let repo: string;
const irisBody = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[0].features }] };

beforeAll(async () => {
  repo = scratchRepository(['iris-logreg', 'synthetic-small', 'synthetic-large']);
  server = await startTestServer({ repository: repo, watch: true });
});
afterAll(async () => {
  await server?.close();
  removeDir(repo);
});

/** Sends iris requests back to back until stopped; counts answers by status. */
function backgroundTraffic() {
  const counts = { sent: 0, ok: 0, failed: 0, versions: new Set<string>() };
  let running = true;
  const loop = (async () => {
    while (running) {
      counts.sent++;
      const r = await postJson(`${server.url}/v2/models/iris-logreg/infer`, irisBody).catch(() => ({ status: 0, body: {} as any }));
      if (r.status === 200) {
        counts.ok++;
        counts.versions.add(r.body.model_version);
      } else counts.failed++;
    }
  })();
  return { counts, stop: async () => { running = false; await loop; } };
}

const versionOf = async (model: string) => (await postJson(`${server.url}/v2/models/${model}/infer`, irisBody)).body.model_version;

describe('hot reload', () => {
  it('loads a new version and moves traffic to it without failing a request', async () => {
    const traffic = backgroundTraffic();
    mkdirSync(path.join(repo, 'iris-logreg', '2'));
    cpSync(path.join(DEMO_REPO, 'iris-forest', '1', 'model.onnx'), path.join(repo, 'iris-logreg', '2', 'model.onnx'));
    expect(await waitFor(async () => (await versionOf('iris-logreg')) === '2')).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    await traffic.stop();
    expect(traffic.counts.failed).toBe(0);
    expect(traffic.counts.ok).toBe(traffic.counts.sent);
    expect([...traffic.counts.versions].sort()).toEqual(['1', '2']);
  });

  it('falls back to the previous version when the newest is removed', async () => {
    const traffic = backgroundTraffic();
    rmSync(path.join(repo, 'iris-logreg', '2'), { recursive: true });
    expect(await waitFor(async () => (await versionOf('iris-logreg')) === '1')).toBe(true);
    await traffic.stop();
    expect(traffic.counts.failed).toBe(0);
    const status = await getJson(`${server.url}/v1/models/iris-logreg`);
    expect(status.body.model_version_status.map((v: { version: string }) => v.version)).toEqual(['1']);
  });

  it('marks a corrupt model UNAVAILABLE with the reason while others keep serving', async () => {
    mkdirSync(path.join(repo, 'synthetic-small', '2'));
    writeFileSync(path.join(repo, 'synthetic-small', '2', 'model.onnx'), 'this is not an onnx model');
    expect(await waitFor(async () => (await getJson(`${server.url}/v2/models/synthetic-small/versions/2/ready`)).status === 503
      && server.core.modelStatus().find((m) => m.name === 'synthetic-small')?.versions[0]?.state === 'UNAVAILABLE')).toBe(true);
    const index = await postJson(`${server.url}/v2/repository/index`, {});
    const entry = index.body.find((e: { name: string; version: string }) => e.name === 'synthetic-small' && e.version === '2');
    expect(entry.state).toBe('UNAVAILABLE');
    expect(entry.reason).toMatch(/failed to load/);
    const tf = await getJson(`${server.url}/v1/models/synthetic-small/versions/2`);
    expect(tf.body.model_version_status[0]).toMatchObject({ state: 'END', status: { error_code: 'UNKNOWN' } });
    const infer = await postJson(`${server.url}/v2/models/synthetic-small/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 64], data: new Array(64).fill(0) }] });
    expect(infer.status).toBe(503);
    expect(infer.body.error).toMatch(/failed to load/);
    expect((await postJson(`${server.url}/v2/models/iris-logreg/infer`, irisBody)).status).toBe(200);
  });

  it('reports a broken config.json and recovers when it is fixed', async () => {
    const cfg = path.join(repo, 'synthetic-small', 'config.json');
    rmSync(path.join(repo, 'synthetic-small', '2'), { recursive: true });
    writeFileSync(cfg, '{ "max_batch_size": ');
    expect(await waitFor(() => /not valid JSON/.test(server.core.modelStatus().find((m) => m.name === 'synthetic-small')?.error ?? ''))).toBe(true);
    const res = await postJson(`${server.url}/v2/models/synthetic-small/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 64], data: new Array(64).fill(0) }] });
    expect(res.status).toBe(503);
    expect(res.body.error).toMatch(/config.json is not valid JSON/);
    cpSync(path.join(DEMO_REPO, 'synthetic-small', 'config.json'), cfg);
    expect(await waitFor(() => server.core.isModelReady('synthetic-small'))).toBe(true);
  });

  it('picks up a new model directory and forgets a removed one', async () => {
    cpSync(path.join(DEMO_REPO, 'iris-forest'), path.join(repo, 'iris-forest'), { recursive: true });
    expect(await waitFor(() => server.core.isModelReady('iris-forest'))).toBe(true);
    rmSync(path.join(repo, 'iris-forest'), { recursive: true });
    expect(await waitFor(async () => (await getJson(`${server.url}/v2/models/iris-forest`)).status === 404)).toBe(true);
  });

  it('lets in-flight requests finish when their model is removed', async () => {
    const meta = server.core.modelMetadata('synthetic-large');
    const shape = [1, ...meta.inputs[0].shape.slice(1)];
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.2);
    // core.infer enters the version synchronously, so all 8 are in flight before the removal.
    const pending = Array.from({ length: 8 }, () => server.core.infer({ model: 'synthetic-large', inputs: [{ name: meta.inputs[0].name, datatype: 'FP32', shape, data }] }));
    rmSync(path.join(repo, 'synthetic-large'), { recursive: true });
    await server.core.manager.reload();
    const results = await Promise.allSettled(pending);
    expect(results.map((r) => r.status)).toEqual(new Array(8).fill('fulfilled'));
    expect(server.core.manager.models.has('synthetic-large')).toBe(false);
    expect((await getJson(`${server.url}/v2/models/synthetic-large`)).status).toBe(404);
  });
});
