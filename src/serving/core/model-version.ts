/**
 * One version of one model, from loading to unloading. Holds the loaded runtime
 * and its batcher, so that a version being removed stops taking new requests
 * and unloads only after its batcher has run everything queued.
 */
import type { ModelConfig, TensorSpec } from '../../protocol/model-config.js';
import { Batcher, type BatcherOptions, type BatchObserver, type BatchResult } from './batcher.js';
import type { LoadedModel, ModelRuntime, InferenceHost } from '../runtimes/model-runtime.js';
import type { Tensor } from './types.js';

export type VersionState = 'LOADING' | 'READY' | 'UNAVAILABLE' | 'UNLOADING' | 'UNLOADED';

export interface VersionStatus {
  version: string;
  state: VersionState;
  reason?: string;
}

/** Full shapes (with the batch dim) of the tensors clients exchange with this version. */
export function effectiveSpecs(config: ModelConfig, declared: TensorSpec[] | undefined, fromModel: TensorSpec[], kind: string): TensorSpec[] {
  if (!declared) return fromModel;
  return declared.map((spec) => {
    const inModel = fromModel.find((m) => m.name === spec.name);
    if (!inModel) {
      throw new Error(`config ${kind} '${spec.name}' does not exist in the model (it has: ${fromModel.map((m) => m.name).join(', ')})`);
    }
    const shape = config.max_batch_size > 0 ? [-1, ...spec.shape] : spec.shape;
    return { ...spec, shape };
  });
}

function batcherOptions(config: ModelConfig): BatcherOptions {
  const base = { maxBatchSize: config.max_batch_size, concurrency: config.instances, preferredBatchSizes: [] as number[] };
  if (config.adaptive_batching && config.max_batch_size > 0) {
    const a = config.adaptive_batching;
    return { ...base, mode: 'adaptive', maxQueueDelayMs: 0, maxQueueSize: a.max_queue_size, sloMs: a.slo_ms, additiveStep: a.additive_step, backoffFactor: a.backoff_factor };
  }
  if (config.dynamic_batching && config.max_batch_size > 0) {
    const d = config.dynamic_batching;
    return { ...base, mode: 'dynamic', maxQueueDelayMs: d.max_queue_delay_us / 1000, preferredBatchSizes: d.preferred_batch_sizes, maxQueueSize: d.max_queue_size };
  }
  const maxQueueSize = config.dynamic_batching?.max_queue_size ?? config.adaptive_batching?.max_queue_size ?? 1024;
  return { ...base, mode: 'none', maxQueueDelayMs: 0, maxQueueSize };
}

export class ModelVersion {
  state: VersionState = 'LOADING';
  reason?: string;
  inputs: TensorSpec[] = [];
  outputs: TensorSpec[] = [];
  private model?: LoadedModel;
  private batcher?: Batcher;

  constructor(
    readonly modelName: string,
    readonly version: string,
    readonly versionDir: string,
    readonly config: ModelConfig,
    readonly fingerprint: string,
  ) {}

  get status(): VersionStatus {
    return { version: this.version, state: this.state, ...(this.reason ? { reason: this.reason } : {}) };
  }

  get queueLength(): number { return this.batcher?.queueLength ?? 0; }

  /** Loads and checks the model; on failure the version is UNAVAILABLE with the reason. */
  async load(runtime: ModelRuntime, host: InferenceHost, observe: BatchObserver): Promise<void> {
    try {
      this.model = await runtime.load({ versionDir: this.versionDir, modelName: this.modelName, version: this.version, config: this.config, host });
      this.inputs = effectiveSpecs(this.config, this.config.inputs, this.model.inputs, 'input');
      this.outputs = effectiveSpecs(this.config, this.config.outputs, this.model.outputs, 'output');
      const allOutputs = this.outputs.map((o) => o.name);
      const model = this.model;
      this.batcher = new Batcher((inputs) => model.run(inputs, allOutputs), batcherOptions(this.config), observe);
    } catch (err) {
      this.state = 'UNAVAILABLE';
      this.reason = `failed to load: ${(err as Error).message}`;
      await this.model?.close().catch(() => undefined);
      this.model = undefined;
    }
  }

  markReady(): void {
    if (this.state === 'LOADING') this.state = 'READY';
  }

  /** Runs one request through the batcher; callers must have checked the inputs. */
  infer(inputs: Tensor[], deadline?: number): Promise<BatchResult> {
    return this.batcher!.submit(inputs, deadline);
  }

  /** Runs a batch straight on the model (warm-up), bypassing the queue. */
  async runDirect(inputs: Tensor[]): Promise<Tensor[]> {
    return this.model!.run(inputs, this.outputs.map((o) => o.name));
  }

  /** Stops taking requests, waits for in-flight ones, then frees the runtime. */
  async unload(): Promise<void> {
    if (this.state === 'UNLOADED') return;
    this.state = 'UNLOADING';
    await this.batcher?.whenIdle();
    await this.model?.close().catch(() => undefined);
    this.model = undefined;
    this.state = 'UNLOADED';
  }
}
