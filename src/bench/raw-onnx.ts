/**
 * The limit: ONNX Runtime's `InferenceSession.run` called in this process on
 * the very model.onnx tern serves, one call after another, in a session made
 * by tern's own createSession (src/serving/runtimes/onnx-session.ts), so the
 * session options are tern's.
 * intraOpNumThreads is the model's config `threads` x `instances`: all the
 * intra-op threads tern may use for the model, given to one session.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { ModelConfigSchema, type ModelConfig } from '../protocol/model-config.js';
import { createSession } from '../serving/runtimes/onnx-session.js';
import { newLatencyHistogram, summarize, type LatencySummary } from './load-generator.js';
import type { BenchTensor } from './model-inputs.js';

/** Fewest measured runs per batch size, however long one run takes. */
const MIN_RUNS = 3;

export interface ServingConfig {
  threads: number;
  instances: number;
  /** threads x instances (0 when threads is 0: ONNX Runtime's default). */
  intraOpThreads: number;
  maxBatchSize: number;
  batching: string;
  /** Where tern runs the sessions: `thread` (worker threads) or `inline` (main thread). */
  execution: string;
}

/** The model's config.json with the server's defaults applied. */
export async function readServingConfig(repository: string, model: string): Promise<ServingConfig> {
  const file = path.join(repository, model, 'config.json');
  const config: ModelConfig = ModelConfigSchema.parse(JSON.parse(await readFile(file, 'utf8')));
  const batching = config.dynamic_batching
    ? `dynamic (max_queue_delay ${config.dynamic_batching.max_queue_delay_us} µs)`
    : config.adaptive_batching ? `adaptive (slo ${config.adaptive_batching.slo_ms} ms)` : 'none';
  return {
    threads: config.threads,
    instances: config.instances,
    intraOpThreads: config.threads * config.instances,
    maxBatchSize: config.max_batch_size,
    batching: config.max_batch_size > 0 ? batching : 'none (max_batch_size 0)',
    execution: config.execution,
  };
}

export class RawSession {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async open(modelFile: string, intraOpThreads: number): Promise<RawSession> {
    return new RawSession(await createSession(modelFile, intraOpThreads));
  }

  /**
   * Back-to-back `session.run` calls on one prebuilt batch: warm-up runs (at
   * least one) for `warmupMs`, then measured runs (at least MIN_RUNS) for
   * `durationMs`. Throughput is runs over the time they took, exact for a
   * sequential loop even when one run lasts longer than the window.
   */
  async measure(inputs: BenchTensor[], warmupMs: number, durationMs: number, onProgress?: (elapsedMs: number) => void): Promise<LatencySummary> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of inputs) feeds[t.name] = new ort.Tensor('float32', t.data, t.shape);
    const t0 = performance.now();
    let reported = t0;
    const progress = (now: number) => {
      if (onProgress && now - reported >= 100) {
        reported = now;
        onProgress(now - t0);
      }
    };
    do {
      await this.session.run(feeds);
      progress(performance.now());
    } while (performance.now() - t0 < warmupMs);

    const histogram = newLatencyHistogram();
    const start = performance.now();
    let end = start;
    let runs = 0;
    while (runs < MIN_RUNS || end - start < durationMs) {
      const before = performance.now();
      await this.session.run(feeds);
      end = performance.now();
      histogram.recordValue(Math.max(1, Math.round((end - before) * 1000)));
      runs++;
      progress(end);
    }
    return summarize(histogram, 0, (end - start) / 1000);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
