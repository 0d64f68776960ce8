/** Batching and the prediction cache on a real server. */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IRIS_ROWS, postJson, removeDir, scratchRepository, startTestServer } from './helpers.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
let repo: string;

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

beforeAll(async () => {
  repo = scratchRepository(['synthetic-medium', 'synthetic-large', 'iris-forest']);
  // A deliberately tiny queue on the slow model so overload is visible.
  const cfgPath = path.join(repo, 'synthetic-large', 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  cfg.dynamic_batching = { max_queue_delay_us: 0, max_queue_size: 2 };
  cfg.max_batch_size = 1;
  writeFileSync(cfgPath, JSON.stringify(cfg));
  // The demo config batches only what queues while a batch runs (no delay); on a loaded CI
  // machine 48 requests may then trickle in one by one. A 20 ms window makes batches form
  // from arrivals alone, which is the behaviour under test.
  const mediumPath = path.join(repo, 'synthetic-medium', 'config.json');
  const medium = JSON.parse(readFileSync(mediumPath, 'utf8'));
  medium.dynamic_batching = { ...medium.dynamic_batching, max_queue_delay_us: 20_000 };
  writeFileSync(mediumPath, JSON.stringify(medium));
  writeFileSync(path.join(repo, 'apps.json'), JSON.stringify({ apps: [
    { name: 'slow', model: 'synthetic-large', slo_ms: 5, default_output: 'busy' },
    { name: 'ghost', model: 'not-deployed', slo_ms: 50, default_output: [0, 0] },
  ] }));
  server = await startTestServer({ repository: repo });
});
afterAll(async () => {
  await server?.close();
  removeDir(repo);
});

describe('batching on a real server', () => {
  it('forms batches larger than one under concurrent load', async () => {
    const meta = server.core.modelMetadata('synthetic-medium');
    const inner = meta.inputs[0].shape.slice(1);
    const count = inner.reduce((a, b) => a * b, 1);
    const body = { inputs: [{ name: meta.inputs[0].name, datatype: 'FP32', shape: [1, ...inner], data: new Array(count).fill(0.1) }] };
    const replies = await Promise.all(Array.from({ length: 48 }, () => postJson(`${server.url}/v2/models/synthetic-medium/infer`, body)));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    const text = await server.core.metrics.text();
    const batches = metric(text, 'tern_batch_size_count', 'model="synthetic-medium"');
    const rows = metric(text, 'tern_batch_size_sum', 'model="synthetic-medium"');
    // Warm-up ran one batch outside the batcher; 48 requests must have needed far fewer than 48 batches.
    expect(batches).toBeGreaterThan(0);
    expect(rows / batches).toBeGreaterThan(2);
  });

  it('answers 503 with a clear message when the queue is full', async () => {
    const meta = server.core.modelMetadata('synthetic-large');
    const inner = meta.inputs[0].shape.slice(1);
    const count = inner.reduce((a, b) => a * b, 1);
    const body = { inputs: [{ name: meta.inputs[0].name, datatype: 'FP32', shape: [1, ...inner], data: new Array(count).fill(0.1) }] };
    const replies = await Promise.all(Array.from({ length: 12 }, () => postJson(`${server.url}/v2/models/synthetic-large/infer`, body)));
    const full = replies.filter((r) => r.status === 503);
    expect(full.length).toBeGreaterThan(0);
    expect(full[0].body.error).toMatch(/queue is full.*max_queue_size 2/);
    expect(replies.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(3);
    expect(replies.every((r) => r.status === 200 || r.status === 503)).toBe(true);
  });
});

describe('prediction cache', () => {
  it('serves a repeated request from the cache with the same answer', async () => {
    const body = { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[3].features }] };
    const first = await postJson(`${server.url}/v2/models/iris-forest/infer`, body);
    const before = metric(await server.core.metrics.text(), 'tern_cache_hits_total', 'model="iris-forest"');
    const second = await postJson(`${server.url}/v2/models/iris-forest/infer`, body);
    const after = metric(await server.core.metrics.text(), 'tern_cache_hits_total', 'model="iris-forest"');
    expect(second.body.outputs).toEqual(first.body.outputs);
    expect(after).toBe(before + 1);
    // A different input is a miss, not a stale hit.
    const other = await postJson(`${server.url}/v2/models/iris-forest/infer`, { inputs: [{ ...body.inputs[0], data: IRIS_ROWS[5].features }] });
    expect(other.body.outputs.find((o: { name: string }) => o.name === 'label').data).toEqual([2]);
    expect(metric(await server.core.metrics.text(), 'tern_cache_hits_total', 'model="iris-forest"')).toBe(after);
  });
});

describe('application SLOs', () => {
  it('returns the default output when the model cannot answer within the SLO', async () => {
    const meta = server.core.modelMetadata('synthetic-large');
    const inner = meta.inputs[0].shape.slice(1);
    const input = reshape(new Array(inner.reduce((a, b) => a * b, 1)).fill(0.3), inner);
    const started = Date.now();
    const { status, body } = await postJson(`${server.url}/slow/predict`, { input });
    expect(status).toBe(200);
    expect(body).toMatchObject({ output: 'busy', default: true });
    expect(body.default_explanation).toMatch(/SLO/);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('returns the default output, not an error, when the model of the app is not loaded', async () => {
    const { status, body } = await postJson(`${server.url}/ghost/predict`, { input: [1, 2] });
    expect(status).toBe(200);
    expect(body).toMatchObject({ output: [0, 0], default: true });
    expect(body.default_explanation).toMatch(/unknown model 'not-deployed'/);
  });
});

function reshape(flat: number[], dims: number[]): unknown {
  if (dims.length <= 1) return flat;
  const step = flat.length / dims[0];
  return Array.from({ length: dims[0] }, (_, i) => reshape(flat.slice(i * step, (i + 1) * step), dims.slice(1)));
}
