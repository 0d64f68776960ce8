/**
 * The `onnx` runtime: `<version>/model.onnx` run by onnxruntime-node. By
 * default each configured instance is a worker thread with its own session
 * (see onnx-worker.ts for why), so up to `instances` batches compute in
 * parallel while the main thread keeps serving requests. Models that compute
 * in microseconds can run `inline`, where the thread hop would cost more than
 * the inference.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { TensorSpec } from '../../protocol/model-config.js';
import { dataTypeFromOrt, DATATYPE_INFO, type DataType } from '../../protocol/datatypes.js';
import { TernError } from '../../protocol/errors.js';
import type { Tensor } from '../core/types.js';
import type { LoadedModel, LoadOptions, ModelRuntime } from './model-runtime.js';
import type { WireMetadata, WireTensor, WorkerReply, WorkerRequest } from './onnx-worker-protocol.js';
import { createSession, describeValues, runSession } from './onnx-session.js';
import type ort from 'onnxruntime-node';

export const MODEL_FILE = 'model.onnx';

/**
 * The worker must be JavaScript. Compiled code finds it beside itself; code run
 * from src/ by the test runner uses the build in dist/ (the test setup compiles).
 */
function workerScript(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const beside = path.join(here, 'onnx-worker.js');
  if (existsSync(beside)) return beside;
  return path.resolve(here, '../../../dist/serving/runtimes/onnx-worker.js');
}

function specFromMetadata(meta: WireMetadata): TensorSpec {
  if (!meta.isTensor) throw new Error(`'${meta.name}' is not a tensor (sequences and maps are not served)`);
  const datatype = dataTypeFromOrt(meta.type!);
  if (!datatype) throw new Error(`'${meta.name}' has unsupported ONNX type ${meta.type}`);
  // Symbolic dims ("batch", "N") and unknown dims become -1.
  const shape = meta.shape!.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
  return { name: meta.name, datatype, shape };
}

/**
 * Inputs cross to the worker by structured clone, which copies a view's whole
 * ArrayBuffer. A merged batch the core marked disposable is moved (transferred)
 * as it is. A view into a larger buffer is first cut to a compact copy, which
 * is then moved instead of copied again. Other buffers belong to the caller,
 * who may reuse them: they are copied.
 */
function toWire(t: Tensor): { wire: WireTensor; transfer: ArrayBuffer[] } {
  const base = { name: t.name, type: DATATYPE_INFO[t.datatype].ort, dims: t.shape };
  if (Array.isArray(t.data)) return { wire: { ...base, data: t.data.map((b) => b.toString('utf8')) }, transfer: [] };
  const whole = t.data.byteOffset === 0 && t.data.byteLength === t.data.buffer.byteLength;
  if (whole && t.disposable && t.data.buffer instanceof ArrayBuffer) return { wire: { ...base, data: t.data }, transfer: [t.data.buffer] };
  if (whole) return { wire: { ...base, data: t.data }, transfer: [] };
  const copy = (t.data as Float32Array).slice();
  return { wire: { ...base, data: copy }, transfer: [copy.buffer] };
}

/** One session, wherever it runs. */
interface SessionInstance {
  metadata(): Promise<{ inputs: WireMetadata[]; outputs: WireMetadata[] }>;
  run(inputs: Tensor[], outputs: string[]): Promise<WireTensor[]>;
  close(): Promise<void>;
}

/** A session on the main thread: no hop, but its runs block the event loop. */
class InlineSession implements SessionInstance {
  private readonly session: Promise<ort.InferenceSession>;
  /** The session once created; run() uses it directly rather than awaiting the settled promise each time. */
  private ready?: ort.InferenceSession;
  constructor(file: string, threads: number) {
    this.session = createSession(file, threads);
    this.session.then((s) => { this.ready = s; }, () => undefined);
  }
  async metadata() {
    const s = await this.session;
    return { inputs: describeValues(s.inputMetadata), outputs: describeValues(s.outputMetadata) };
  }
  async run(inputs: Tensor[], outputs: string[]): Promise<WireTensor[]> {
    try {
      return (await runSession(this.ready ?? await this.session, inputs.map((t) => toWire(t).wire), outputs)).outputs;
    } catch (err) {
      throw new TernError('INFERENCE_FAILED', `inference failed: ${(err as Error).message}`);
    }
  }
  async close(): Promise<void> {
    await (await this.session.catch(() => undefined))?.release();
  }
}

class SessionWorker implements SessionInstance {
  private pending = new Map<number, { resolve: (t: WireTensor[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private loaded: Promise<{ inputs: WireMetadata[]; outputs: WireMetadata[] }>;
  private readonly worker: Worker;
  private dead?: Error;

  constructor(file: string, threads: number) {
    this.worker = new Worker(workerScript(), { workerData: { file, threads } });
    this.loaded = new Promise((resolve, reject) => {
      this.worker.on('message', (msg: WorkerReply) => {
        if (msg.kind === 'loaded') resolve(msg);
        else if (msg.kind === 'failed') reject(new Error(msg.error));
        else this.settle(msg);
      });
      this.worker.on('error', (err) => { this.fail(err); reject(err); });
      this.worker.on('exit', (code) => this.fail(new Error(`session worker exited with code ${code}`)));
    });
  }

  metadata() { return this.loaded; }

  private settle(msg: Extract<WorkerReply, { kind: 'result' | 'error' }>): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.kind === 'result') p.resolve(msg.outputs);
    else p.reject(new TernError('INFERENCE_FAILED', `inference failed: ${msg.error}`));
  }

  private fail(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  run(inputs: Tensor[], outputs: string[]): Promise<WireTensor[]> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    const wires = inputs.map(toWire);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ kind: 'run', id, inputs: wires.map((w) => w.wire), outputs } satisfies WorkerRequest, wires.flatMap((w) => w.transfer));
    });
  }

  async close(): Promise<void> {
    if (this.dead) return;
    this.worker.postMessage({ kind: 'close' } satisfies WorkerRequest);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => void this.worker.terminate().then(() => resolve()), 2000);
      this.worker.once('exit', () => { clearTimeout(t); resolve(); });
    });
  }
}

class OnnxModel implements LoadedModel {
  private free: SessionInstance[];
  private waiters: ((s: SessionInstance) => void)[] = [];

  constructor(private readonly workers: SessionInstance[], readonly inputs: TensorSpec[], readonly outputs: TensorSpec[]) {
    this.free = [...workers];
  }

  private waitForFree(): Promise<SessionInstance> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(w: SessionInstance): void {
    const next = this.waiters.shift();
    if (next) next(w);
    else this.free.push(w);
  }

  async run(inputs: Tensor[], outputNames: string[]): Promise<Tensor[]> {
    // Taken synchronously when one is free: the common case needs no extra turn.
    const worker = this.free.pop() ?? await this.waitForFree();
    try {
      const wires = await worker.run(inputs, outputNames);
      return wires.map((w) => this.fromWire(w));
    } finally {
      this.release(worker);
    }
  }

  private fromWire(w: WireTensor): Tensor {
    let datatype: DataType | undefined;
    for (const o of this.outputs) if (o.name === w.name) datatype = o.datatype;
    datatype ??= dataTypeFromOrt(w.type) ?? 'FP32';
    if (datatype === 'BYTES') return { name: w.name, datatype, shape: w.dims, data: (w.data as string[]).map((s) => Buffer.from(s, 'utf8')) };
    return { name: w.name, datatype, shape: w.dims, data: w.data as Float32Array };
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}

export const onnxRuntime: ModelRuntime = {
  name: 'onnx',
  async load({ versionDir, config }: LoadOptions): Promise<LoadedModel> {
    const file = path.join(versionDir, MODEL_FILE);
    if (!existsSync(file)) throw new Error(`${MODEL_FILE} is missing in ${versionDir}`);
    const inline = config.execution === 'inline';
    const workers: SessionInstance[] = Array.from({ length: config.instances }, () => (inline ? new InlineSession(file, config.threads) : new SessionWorker(file, config.threads)));
    try {
      const metas = await Promise.all(workers.map((w) => w.metadata()));
      return new OnnxModel(workers, metas[0].inputs.map(specFromMetadata), metas[0].outputs.map(specFromMetadata));
    } catch (err) {
      await Promise.all(workers.map((w) => w.close().catch(() => undefined)));
      throw err;
    }
  },
};
