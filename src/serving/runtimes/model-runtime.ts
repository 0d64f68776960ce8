/**
 * A model runtime turns a version directory into something that can run a batch.
 * Like ONNX Runtime JS's backend registry: an interface here, one file per
 * runtime (`onnx-runtime.ts`, `ocr-runtime.ts`), and a registry by name.
 */
import type { ModelConfig, TensorSpec } from '../../protocol/model-config.js';
import type { InferRequest, InferResponse, Tensor } from '../core/types.js';

/** Lets a composite runtime (a pipeline) call other models through the server core. */
export interface InferenceHost {
  infer(request: InferRequest): Promise<InferResponse>;
}

export interface LoadOptions {
  /** `<repo>/<model>/<version>` */
  versionDir: string;
  modelName: string;
  version: string;
  config: ModelConfig;
  host: InferenceHost;
}

export interface LoadedModel {
  /** Tensor specs as the model itself declares them (full shapes incl. batch dim). */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** Run one (possibly batched) call. Must be safe to call concurrently. */
  run(inputs: Tensor[], outputNames: string[]): Promise<Tensor[]>;
  close(): Promise<void>;
}

export interface ModelRuntime {
  readonly name: string;
  load(options: LoadOptions): Promise<LoadedModel>;
}
