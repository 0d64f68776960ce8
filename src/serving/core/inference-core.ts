/**
 * The inference core: model lookup, request validation, cache, batching and
 * metrics behind one in-process API. REST, gRPC, TF Serving and Clipper
 * transports are thin translators onto it.
 */
import { pino, type Logger } from 'pino';
import type { TensorSpec } from '../../protocol/model-config.js';
import { TernError, badTensor, asTernError } from '../../protocol/errors.js';
import type { InferenceHost } from '../runtimes/model-runtime.js';
import { ServingMetrics } from './metrics.js';
import { ModelManager, type ModelEntry, type ModelStatus } from './model-manager.js';
import type { ModelVersion } from './model-version.js';
import { PredictionCache } from './prediction-cache.js';
import type { InferRequest, InferResponse, Tensor } from './types.js';

export { SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION } from '../../protocol/oip.js';

export interface CoreOptions {
  repository: string;
  /** Watch the repository and hot-reload changes (default true). */
  watch?: boolean;
  logger?: Logger;
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** The version these specs describe. */
  version: string;
  max_batch_size: number;
}

export class InferenceCore implements InferenceHost {
  readonly metrics = new ServingMetrics(() => this.manager.queueLengths());
  readonly manager: ModelManager;
  readonly log: Logger;
  private started = false;
  private closing = false;

  private constructor(readonly options: CoreOptions) {
    this.log = options.logger ?? pino({ level: process.env.TERN_LOG_LEVEL ?? 'info' });
    this.manager = new ModelManager(options.repository, this, this.metrics, this.log);
  }

  static async start(options: CoreOptions): Promise<InferenceCore> {
    const core = new InferenceCore(options);
    await core.manager.reload();
    if (options.watch !== false) await core.manager.watch();
    core.started = true;
    return core;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.manager.close();
  }

  isLive(): boolean { return !this.closing; }

  /** Ready once the initial repository load finished and until shutdown starts. */
  isReady(): boolean { return this.started && !this.closing; }

  modelStatus(): ModelStatus[] { return this.manager.status(); }

  requireModel(model: string): ModelEntry {
    const e = this.manager.models.get(model);
    if (!e) {
      const known = [...this.manager.models.keys()].sort().join(', ') || 'none';
      throw new TernError('MODEL_NOT_FOUND', `unknown model '${model}' (available: ${known})`);
    }
    return e;
  }

  /** The version that serves a request: the named one, or the highest READY one. */
  resolveVersion(model: string, version?: string): ModelVersion {
    return versionOf(this.requireModel(model), version);
  }

  isModelReady(model: string, version?: string): boolean {
    try {
      this.resolveVersion(model, version);
      return true;
    } catch {
      return false;
    }
  }

  modelMetadata(model: string, version?: string): ModelMetadata {
    const v = this.resolveVersion(model, version);
    const e = this.requireModel(model);
    return {
      name: model,
      versions: [...e.versions.keys()].sort((a, b) => Number(a) - Number(b)),
      platform: e.config.backend === 'onnx' ? 'onnxruntime_onnx' : e.config.backend,
      inputs: v.inputs,
      outputs: v.outputs,
      version: v.version,
      max_batch_size: e.config.max_batch_size,
    };
  }

  async infer(request: InferRequest): Promise<InferResponse> {
    const started = performance.now();
    const protocol = request.protocol ?? 'inprocess';
    try {
      const entry = this.requireModel(request.model);
      const v = versionOf(entry, request.version);
      validateInputs(v, request.inputs);
      const wanted = selectOutputs(v, request.outputs);
      const served = this.metrics.forRequests(request.model, protocol);
      const cacheKey = entry.cache ? PredictionCache.key(request.model, v.version, request.inputs) : undefined;
      const cached = cacheKey !== undefined ? entry.cache!.get(cacheKey) : undefined;
      if (cacheKey !== undefined) (cached ? this.metrics.forBatches(request.model).cacheHits : this.metrics.forBatches(request.model).cacheMisses).inc();
      let outputs: Tensor[];
      let timing: InferResponse['timing'];
      if (cached) {
        outputs = cached;
        timing = { queue_ms: 0, compute_ms: 0, batch_size: 0, cache_hit: true };
      } else {
        if (request.deadline !== undefined && request.deadline <= Date.now()) {
          throw new TernError('DEADLINE_EXCEEDED', 'request deadline passed before inference started');
        }
        const result = await v.infer(request.inputs, request.deadline);
        served.queue.observe(result.queueMs / 1000);
        if (cacheKey !== undefined) entry.cache!.set(cacheKey, result.outputs);
        outputs = result.outputs;
        timing = { queue_ms: result.queueMs, compute_ms: result.computeMs, batch_size: result.batchSize, cache_hit: false };
      }
      served.served(v.version, (performance.now() - started) / 1000);
      return {
        model: request.model, version: v.version, ...(request.id !== undefined ? { id: request.id } : {}),
        outputs: wanted ? pick(outputs, wanted) : outputs,
        timing,
      };
    } catch (err) {
      const e = asTernError(err);
      this.metrics.failures.inc({ model: request.model, protocol, code: e.code });
      throw e;
    }
  }
}

/** The named version of a model, or its highest READY one. */
function versionOf(e: ModelEntry, version: string | undefined): ModelVersion {
  const model = e.name;
  if (e.error) throw new TernError('MODEL_UNAVAILABLE', `model '${model}' is unavailable: ${e.error}`);
  if (version !== undefined && version !== '') {
    const v = e.versions.get(version);
    if (!v) {
      throw new TernError('VERSION_NOT_FOUND', `model '${model}' has no version '${version}' (served: ${[...e.versions.keys()].join(', ') || 'none'})`);
    }
    if (v.state !== 'READY') {
      throw new TernError('MODEL_UNAVAILABLE', `model '${model}' version ${version} is ${v.state}${v.reason ? `: ${v.reason}` : ''}`);
    }
    return v;
  }
  // A loop rather than filter + sort: this runs on every request.
  let newest: ModelVersion | undefined;
  for (const v of e.versions.values()) {
    if (v.state === 'READY' && (newest === undefined || Number(v.version) > Number(newest.version))) newest = v;
  }
  if (newest === undefined) {
    const why = [...e.versions.values()].map((v) => `v${v.version} ${v.state}${v.reason ? ` (${v.reason})` : ''}`).join('; ');
    throw new TernError('MODEL_UNAVAILABLE', `model '${model}' has no ready version${why ? `: ${why}` : ''}`);
  }
  return newest;
}

function pick(outputs: Tensor[], names: string[]): Tensor[] {
  return names.map((n) => outputs.find((o) => o.name === n)!).filter(Boolean);
}

/** The outputs a request asked for by name, or undefined for all of them. */
function selectOutputs(v: ModelVersion, requested?: string[]): string[] | undefined {
  if (!requested || requested.length === 0) return undefined;
  for (const name of requested) {
    if (!v.outputs.some((o) => o.name === name)) {
      throw badTensor(`unknown output '${name}' (model '${v.modelName}' has: ${v.outputs.map((o) => o.name).join(', ')})`);
    }
  }
  return requested;
}

function specNamed(specs: TensorSpec[], name: string): TensorSpec | undefined {
  for (const s of specs) if (s.name === name) return s;
  return undefined;
}

/**
 * Checks names, datatypes, ranks, fixed dims and the batch size against the
 * version's specs. Plain loops: this runs on every request.
 */
export function validateInputs(v: ModelVersion, inputs: Tensor[]): void {
  const modelNames = () => v.inputs.map((i) => i.name).join(', ');
  checkNoDuplicates(inputs, v.inputs.length);
  for (const spec of v.inputs) {
    if (!inputs.some((t) => t.name === spec.name)) throw badTensor(`missing input '${spec.name}' (model '${v.modelName}' takes: ${modelNames()})`);
  }
  for (const t of inputs) {
    const spec = specNamed(v.inputs, t.name);
    if (!spec) throw badTensor(`unexpected input '${t.name}' (model '${v.modelName}' takes: ${modelNames()})`);
    checkTensorAgainstSpec(t, spec);
  }
  checkBatch(v, inputs);
}

/** Pairwise while the request has no more inputs than the model takes (a handful); a Set beyond, so a flood of inputs cannot cost quadratic time. */
function checkNoDuplicates(inputs: Tensor[], modelInputs: number): void {
  const duplicate = (name: string) => badTensor(`input '${name}' is given more than once`);
  if (inputs.length > modelInputs) {
    const seen = new Set<string>();
    for (const t of inputs) {
      if (seen.has(t.name)) throw duplicate(t.name);
      seen.add(t.name);
    }
    return;
  }
  for (let i = 0; i < inputs.length; i++) {
    for (let j = 0; j < i; j++) if (inputs[j].name === inputs[i].name) throw duplicate(inputs[i].name);
  }
}

const fmtShape = (s: number[]) => `[${s.join(',')}]`;

function checkTensorAgainstSpec(t: Tensor, spec: TensorSpec): void {
  if (t.datatype !== spec.datatype) {
    throw badTensor(`input '${t.name}': datatype ${t.datatype} does not match the model's ${spec.datatype}`);
  }
  if (spec.shape.length > 0 && t.shape.length !== spec.shape.length) {
    throw badTensor(`input '${t.name}': shape ${fmtShape(t.shape)} has rank ${t.shape.length}, the model expects rank ${spec.shape.length} ${fmtShape(spec.shape)}`);
  }
  for (let k = 0; k < spec.shape.length; k++) {
    const d = spec.shape[k];
    if (d >= 0 && t.shape[k] !== d) {
      throw badTensor(`input '${t.name}': shape ${fmtShape(t.shape)} does not match the model's ${fmtShape(spec.shape)} at dimension ${k}`);
    }
  }
}

function checkBatch(v: ModelVersion, inputs: Tensor[]): void {
  const max = v.config.max_batch_size;
  if (max === 0 || inputs.length === 0) return;
  const rows = inputs[0].shape[0];
  for (const t of inputs) {
    if (t.shape[0] !== rows) throw badTensor(`inputs disagree on the batch size: '${inputs[0].name}' has ${rows}, '${t.name}' has ${t.shape[0]}`);
  }
  if (rows < 1) throw badTensor(`batch size must be at least 1, got ${rows}`);
  if (rows > max) throw badTensor(`batch size ${rows} exceeds the model's max_batch_size ${max}`);
}
