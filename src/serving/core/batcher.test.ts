import { describe, expect, it } from 'vitest';
import { Batcher, type BatcherOptions, type RunBatch } from './batcher.js';
import type { Tensor } from './types.js';

const row = (value: number, width = 2): Tensor => ({ name: 'x', datatype: 'FP32', shape: [1, width], data: new Float32Array(width).fill(value) });

/** A model that doubles its input and records the batch sizes it ran, taking `msPerRow` per row. */
function doubler(msPerRow = 0): { run: RunBatch; batches: number[] } {
  const batches: number[] = [];
  const run: RunBatch = async ([x]) => {
    batches.push(x.shape[0]);
    if (msPerRow > 0) await new Promise((r) => setTimeout(r, msPerRow * x.shape[0]));
    return [{ ...x, name: 'y', data: (x.data as Float32Array).map((v) => v * 2) }];
  };
  return { run, batches };
}

const dynamic = (o: Partial<BatcherOptions> = {}): BatcherOptions => ({
  mode: 'dynamic', maxBatchSize: 8, maxQueueDelayMs: 50, preferredBatchSizes: [], maxQueueSize: 100, concurrency: 1, ...o,
});

describe('dynamic batching', () => {
  it('merges concurrent requests into one batch and gives each its own rows back', async () => {
    const m = doubler();
    const b = new Batcher(m.run, dynamic());
    const results = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((v) => b.submit([row(v)])));
    expect(m.batches).toEqual([8]);
    results.forEach((r, i) => {
      expect(Array.from(r.outputs[0].data as Float32Array)).toEqual([(i + 1) * 2, (i + 1) * 2]);
      expect(r.batchSize).toBe(8);
    });
  });

  it('dispatches at a preferred size without waiting for the delay', async () => {
    const m = doubler();
    const b = new Batcher(m.run, dynamic({ maxBatchSize: 16, preferredBatchSizes: [4], maxQueueDelayMs: 5_000 }));
    const started = performance.now();
    await Promise.all([1, 2, 3, 4].map((v) => b.submit([row(v)])));
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(m.batches).toEqual([4]);
  });

  it('dispatches a partial batch once the oldest request waited the max queue delay', async () => {
    const m = doubler();
    const b = new Batcher(m.run, dynamic({ maxQueueDelayMs: 30 }));
    const r = await b.submit([row(1)]);
    expect(m.batches).toEqual([1]);
    expect(r.queueMs).toBeGreaterThanOrEqual(25);
  });

  it('never mixes requests whose non-batch dims differ', async () => {
    const m = doubler();
    const b = new Batcher(m.run, dynamic({ maxQueueDelayMs: 20 }));
    await Promise.all([b.submit([row(1, 2)]), b.submit([row(2, 3)]), b.submit([row(3, 2)]), b.submit([row(4, 3)])]);
    expect(m.batches.sort()).toEqual([2, 2]);
  });

  it('batches requests whose inputs come in a different order, but not ones with a different input set', async () => {
    const batches: number[] = [];
    const b = new Batcher(async (inputs) => { batches.push(inputs[0].shape[0]); return inputs; }, dynamic({ maxQueueDelayMs: 20 }));
    const a = (v: number): Tensor => ({ ...row(v), name: 'a' });
    const results = await Promise.all([b.submit([row(1), a(2)]), b.submit([a(3), row(4)]), b.submit([row(5)])]);
    expect(batches.sort()).toEqual([1, 2]);
    expect(Array.from(results[1].outputs.find((t) => t.name === 'x')!.data as Float32Array)).toEqual([4, 4]);
  });

  it('reports idle only after everything queued and running has finished', async () => {
    const m = doubler(20);
    const b = new Batcher(m.run, dynamic({ maxBatchSize: 1, maxQueueDelayMs: 0 }));
    await b.whenIdle(); // nothing submitted yet
    const settled: number[] = [];
    const work = [1, 2, 3].map((v) => b.submit([row(v)]).then(() => settled.push(v)));
    await b.whenIdle();
    expect(settled.sort()).toEqual([1, 2, 3]);
    expect(b.queueLength).toBe(0);
    await Promise.all(work);
  });

  it('refuses requests beyond max_queue_size with QUEUE_FULL', async () => {
    const m = doubler(20);
    const b = new Batcher(m.run, dynamic({ maxBatchSize: 1, maxQueueSize: 2, maxQueueDelayMs: 0 }));
    const outcomes = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((v) => b.submit([row(v)])));
    const refused = outcomes.filter((o) => o.status === 'rejected') as PromiseRejectedResult[];
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0].reason.code).toBe('QUEUE_FULL');
    expect(refused[0].reason.message).toMatch(/queue is full/);
  });

  it('drops requests whose deadline passed while queued', async () => {
    const m = doubler(30);
    const b = new Batcher(m.run, dynamic({ maxBatchSize: 1, maxQueueDelayMs: 0 }));
    const first = b.submit([row(1)]);
    const late = b.submit([row(2)], Date.now() + 5);
    await expect(late).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    await first;
  });
});

describe('adaptive batching (AIMD)', () => {
  it('grows the batch while under the SLO and backs off above it', async () => {
    const m = doubler(2); // 2 ms per row: the SLO of 20 ms allows about 10 rows
    const b = new Batcher(m.run, { mode: 'adaptive', maxBatchSize: 64, maxQueueDelayMs: 0, preferredBatchSizes: [], maxQueueSize: 0, concurrency: 1, sloMs: 20, additiveStep: 2, backoffFactor: 0.5 });
    await Promise.all(Array.from({ length: 400 }, (_, i) => b.submit([row(i)])));
    expect(Math.max(...m.batches)).toBeGreaterThan(4); // grew beyond the initial cap
    expect(Math.max(...m.batches)).toBeLessThan(20); // backed off before 2x the SLO
    expect(b.adaptiveCap).toBeLessThanOrEqual(12);
  });
});
