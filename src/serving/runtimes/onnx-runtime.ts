/**
 * The `onnx` runtime: `<version>/model.onnx` run by onnxruntime-node. One
 * InferenceSession per configured instance, so up to `instances` batches run
 * at once (ORT runs each `run()` off the JS thread).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import type { TensorSpec } from '../../protocol/model-config.js';
import { dataTypeFromOrt, DATATYPE_INFO, type DataType } from '../../protocol/datatypes.js';
import type { Tensor } from '../core/types.js';
import type { LoadedModel, LoadOptions, ModelRuntime } from './model-runtime.js';

export const MODEL_FILE = 'model.onnx';

function specFromMetadata(meta: ort.InferenceSession.ValueMetadata): TensorSpec {
  if (!meta.isTensor) throw new Error(`'${meta.name}' is not a tensor (sequences and maps are not served)`);
  const datatype = dataTypeFromOrt(meta.type);
  if (!datatype) throw new Error(`'${meta.name}' has unsupported ONNX type ${meta.type}`);
  // Symbolic dims ("batch", "N") and unknown dims become -1.
  const shape = meta.shape.map((d) => (typeof d === 'number' && d >= 0 ? d : -1));
  return { name: meta.name, datatype, shape };
}

function toOrt(t: Tensor): ort.Tensor {
  const type = DATATYPE_INFO[t.datatype].ort as ort.Tensor.Type;
  if (Array.isArray(t.data)) return new ort.Tensor('string', t.data.map((b) => b.toString('utf8')), t.shape);
  if (t.datatype === 'BOOL') return new ort.Tensor('bool', t.data as Uint8Array, t.shape);
  return new ort.Tensor(type, t.data as Float32Array, t.shape);
}

function fromOrt(name: string, value: ort.Tensor, datatype: DataType): Tensor {
  const shape = [...value.dims];
  if (datatype === 'BYTES') return { name, datatype, shape, data: (value.data as string[]).map((s) => Buffer.from(s, 'utf8')) };
  return { name, datatype, shape, data: value.data as Float32Array };
}

class OnnxModel implements LoadedModel {
  private free: ort.InferenceSession[];
  private waiters: ((s: ort.InferenceSession) => void)[] = [];

  constructor(
    private readonly sessions: ort.InferenceSession[],
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
  ) {
    this.free = [...sessions];
  }

  private acquire(): Promise<ort.InferenceSession> {
    const s = this.free.pop();
    if (s) return Promise.resolve(s);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private release(s: ort.InferenceSession): void {
    const next = this.waiters.shift();
    if (next) next(s);
    else this.free.push(s);
  }

  async run(inputs: Tensor[], outputNames: string[]): Promise<Tensor[]> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of inputs) feeds[t.name] = toOrt(t);
    const session = await this.acquire();
    try {
      const result = await session.run(feeds, outputNames);
      return outputNames.map((n) => {
        const spec = this.outputs.find((o) => o.name === n);
        return fromOrt(n, result[n] as ort.Tensor, spec?.datatype ?? 'FP32');
      });
    } finally {
      this.release(session);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.release()));
  }
}

export const onnxRuntime: ModelRuntime = {
  name: 'onnx',
  async load({ versionDir, config }: LoadOptions): Promise<LoadedModel> {
    const file = path.join(versionDir, MODEL_FILE);
    if (!existsSync(file)) throw new Error(`${MODEL_FILE} is missing in ${versionDir}`);
    const options: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: config.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    };
    const sessions: ort.InferenceSession[] = [];
    for (let i = 0; i < config.instances; i++) sessions.push(await ort.InferenceSession.create(file, options));
    const first = sessions[0];
    return new OnnxModel(sessions, first.inputMetadata.map(specFromMetadata), first.outputMetadata.map(specFromMetadata));
  },
};
