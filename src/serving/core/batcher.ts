/**
 * Request scheduler for one model version. Three modes share one queue:
 *  - none: every request runs alone, up to `concurrency` at once;
 *  - dynamic (Triton): requests with the same non-batch dims are merged until the
 *    batch reaches a preferred size or the max, or the oldest request has waited
 *    `maxQueueDelayMs`;
 *  - adaptive (Clipper AIMD): a batch takes whatever is queued up to a cap; the cap
 *    grows additively while batches finish under the SLO and shrinks
 *    multiplicatively when one does not.
 * It knows nothing of transports: items carry tensors and promises.
 */
import { TernError } from '../../protocol/errors.js';
import { concatBatch, sliceBatch } from './tensor-codec.js';
import type { Tensor } from './types.js';

export type RunBatch = (inputs: Tensor[]) => Promise<Tensor[]>;

export interface BatcherOptions {
  mode: 'none' | 'dynamic' | 'adaptive';
  maxBatchSize: number;
  maxQueueDelayMs: number;
  preferredBatchSizes: number[];
  /** 0 = unbounded. */
  maxQueueSize: number;
  /** Batches in flight at once (model instances). */
  concurrency: number;
  sloMs?: number;
  additiveStep?: number;
  backoffFactor?: number;
}

export interface BatchResult {
  outputs: Tensor[];
  queueMs: number;
  computeMs: number;
  batchSize: number;
}

interface Item {
  inputs: Tensor[];
  rows: number;
  enqueuedAt: number;
  deadline?: number;
  resolve: (r: BatchResult) => void;
  reject: (e: unknown) => void;
}

export interface BatchObserver {
  (batch: { size: number; computeMs: number; failed: boolean }): void;
}

/**
 * Requests may share a batch only when everything but the batch dimension
 * matches. Compared in place (no key strings) because it runs per request.
 */
function compatible(a: Tensor[], b: Tensor[]): boolean {
  if (a.length !== b.length) return false;
  for (const x of a) {
    let y: Tensor | undefined;
    for (const t of b) if (t.name === x.name) y = t;
    if (!y || y.datatype !== x.datatype || y.shape.length !== x.shape.length) return false;
    for (let k = 1; k < x.shape.length; k++) if (y.shape[k] !== x.shape[k]) return false;
  }
  return true;
}

export class Batcher {
  private queue: Item[] = [];
  private running = 0;
  private timerArmed = false;
  /** Current AIMD cap (adaptive mode). */
  private cap: number;
  /** Preferred batch sizes, largest first. */
  private readonly preferred: number[];
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly run: RunBatch,
    private readonly options: BatcherOptions,
    private readonly observe?: BatchObserver,
  ) {
    this.cap = Math.min(4, this.maxRows());
    this.preferred = [...options.preferredBatchSizes].sort((a, b) => b - a);
  }

  get queueLength(): number { return this.queue.length; }
  get inFlight(): number { return this.running; }

  /** Resolves once nothing is queued or running. */
  whenIdle(): Promise<void> {
    if (this.queue.length === 0 && this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }
  get adaptiveCap(): number { return this.cap; }

  private maxRows(): number {
    return this.options.maxBatchSize > 0 ? this.options.maxBatchSize : 1;
  }

  submit(inputs: Tensor[], deadline?: number): Promise<BatchResult> {
    const { maxQueueSize } = this.options;
    if (maxQueueSize > 0 && this.queue.length >= maxQueueSize) {
      return Promise.reject(new TernError('QUEUE_FULL',
        `queue is full: ${this.queue.length} requests are waiting (max_queue_size ${maxQueueSize}); retry later`));
    }
    const rows = this.options.mode === 'none' || this.options.maxBatchSize === 0 ? 1 : inputs[0]?.shape[0] ?? 1;
    return new Promise<BatchResult>((resolve, reject) => {
      this.queue.push({ inputs, rows, enqueuedAt: performance.now(), deadline, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.options.concurrency && this.queue.length > 0) {
      this.dropExpired();
      if (this.queue.length === 0) break;
      const batch = this.takeBatch();
      if (!batch) {
        this.armTimer();
        return;
      }
      void this.dispatch(batch);
    }
    if (this.running === 0 && this.queue.length === 0 && this.idleWaiters.length > 0) this.notifyIdle();
  }

  private dropExpired(): void {
    const now = Date.now();
    if (!this.queue.some((item) => item.deadline !== undefined && item.deadline <= now)) return;
    this.queue = this.queue.filter((item) => {
      if (item.deadline === undefined || item.deadline > now) return true;
      item.reject(new TernError('DEADLINE_EXCEEDED', 'request deadline passed while queued'));
      return false;
    });
  }

  /** Picks the next batch, or returns undefined when dynamic batching should wait for more. */
  private takeBatch(): Item[] | undefined {
    const { mode } = this.options;
    if (mode === 'none' || this.options.maxBatchSize === 0) return [this.queue.shift()!];
    const limit = mode === 'adaptive' ? this.cap : this.maxRows();
    const picked = this.pickCompatible(limit);
    const rows = picked.reduce((n, i) => n + this.queue[i].rows, 0);
    if (mode === 'dynamic' && !this.readyToDispatch(rows)) return undefined;
    const chosen = mode === 'dynamic' ? this.trimToPreferred(picked) : picked;
    // Usually every queued request fits: then the batch is a prefix of the queue.
    if (chosen[chosen.length - 1] === chosen.length - 1) return this.queue.splice(0, chosen.length);
    const items = chosen.map((i) => this.queue[i]);
    const taken = new Set(chosen);
    this.queue = this.queue.filter((_, i) => !taken.has(i));
    return items;
  }

  /** Indexes of queued items compatible with the head, in arrival order, fitting in `limit` rows. */
  private pickCompatible(limit: number): number[] {
    const head = this.queue[0];
    const picked = [0];
    let rows = head.rows;
    for (let i = 1; i < this.queue.length && rows < limit; i++) {
      const item = this.queue[i];
      if (rows + item.rows <= limit && compatible(item.inputs, head.inputs)) {
        picked.push(i);
        rows += item.rows;
      }
    }
    return picked;
  }

  private readyToDispatch(rows: number): boolean {
    if (rows >= this.maxRows()) return true;
    if (this.preferred.includes(rows)) return true;
    return performance.now() - this.queue[0].enqueuedAt >= this.options.maxQueueDelayMs;
  }

  /** Triton: when the delay has expired, prefer the largest preferred size that fits. */
  private trimToPreferred(picked: number[]): number[] {
    const preferred = this.preferred;
    if (preferred.length === 0) return picked;
    const total = picked.reduce((n, i) => n + this.queue[i].rows, 0);
    if (preferred.length === 0 || preferred.includes(total)) return picked;
    for (const size of preferred) {
      if (size > total) continue;
      let rows = 0;
      const out: number[] = [];
      for (const i of picked) {
        if (rows + this.queue[i].rows > size) break;
        out.push(i);
        rows += this.queue[i].rows;
      }
      if (rows === size) return out;
    }
    return picked;
  }

  /**
   * Waits out the rest of the head's queue delay. Node timers have 1 ms
   * granularity, so sub-millisecond delays re-check on the next event-loop
   * turn (setImmediate), which also lets arriving requests join the batch.
   */
  private armTimer(): void {
    if (this.timerArmed) return;
    this.timerArmed = true;
    const remaining = this.options.maxQueueDelayMs - (performance.now() - this.queue[0].enqueuedAt);
    const fire = (): void => { this.timerArmed = false; this.pump(); };
    if (remaining >= 2) setTimeout(fire, remaining - 1);
    else setImmediate(fire);
  }

  private async dispatch(items: Item[]): Promise<void> {
    this.running++;
    const start = performance.now();
    const size = items.reduce((n, i) => n + i.rows, 0);
    try {
      const inputs = this.options.mode === 'none' || items.length === 1 ? items[0].inputs : mergeInputs(items);
      const outputs = await this.run(inputs);
      const computeMs = performance.now() - start;
      this.adapt(size, computeMs);
      this.observe?.({ size, computeMs, failed: false });
      splitOutputs(items, outputs, size).forEach((out, k) => {
        items[k].resolve({ outputs: out, queueMs: start - items[k].enqueuedAt, computeMs, batchSize: size });
      });
    } catch (err) {
      this.observe?.({ size, computeMs: performance.now() - start, failed: true });
      for (const item of items) item.reject(err);
    } finally {
      this.running--;
      this.pump();
    }
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private adapt(size: number, computeMs: number): void {
    const { mode, sloMs, additiveStep = 2, backoffFactor = 0.9 } = this.options;
    if (mode !== 'adaptive' || sloMs === undefined) return;
    if (computeMs > sloMs) this.cap = Math.max(1, Math.floor(this.cap * backoffFactor));
    else if (size >= this.cap) this.cap = Math.min(this.maxRows(), this.cap + additiveStep);
  }
}

function mergeInputs(items: Item[]): Tensor[] {
  return items[0].inputs.map((t) => concatBatch(items.map((i) => i.inputs.find((x) => x.name === t.name)!)));
}

/** Gives each item its rows of every output; outputs without a batch dim go to all. */
function splitOutputs(items: Item[], outputs: Tensor[], size: number): Tensor[][] {
  if (items.length === 1) return [outputs];
  let start = 0;
  return items.map((item) => {
    const mine = outputs.map((o) => (o.shape[0] === size ? sliceBatch(o, start, item.rows) : o));
    start += item.rows;
    return mine;
  });
}
