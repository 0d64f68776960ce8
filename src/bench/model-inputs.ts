/**
 * What the benchmark sends to a model: its input tensors, read from the
 * server's OIP v2 metadata (`GET /v2/models/{m}`) rather than hard-coded, and
 * filled once with random but fixed values. From those the request bodies of
 * every transport are prebuilt, so the load generator spends no time encoding.
 */
import { request } from 'undici';
import { createPrng } from '../models/prng.js';

export interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** One input, resolved for a batch size: concrete shape and values. */
export interface BenchTensor {
  name: string;
  datatype: 'FP32';
  shape: number[];
  data: Float32Array;
}

/** Stand-ins for dynamic non-batch dimensions: images are 48 high and 320 wide (an OCR text line). */
export const DYNAMIC_HEIGHT = 48;
export const DYNAMIC_WIDTH = 320;

export async function fetchModelMetadata(baseUrl: string, model: string): Promise<ModelMetadata> {
  const res = await request(`${baseUrl}/v2/models/${encodeURIComponent(model)}`);
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`GET /v2/models/${model} answered ${res.statusCode}: ${text}`);
  return JSON.parse(text) as ModelMetadata;
}

/**
 * The concrete shape for `batch` rows. A leading -1 is the batch dimension;
 * other -1s are the width (last) and height (second to last) of an image, else 1.
 */
export function concreteShape(shape: readonly number[], batch: number): number[] {
  return shape.map((d, k) => {
    if (d >= 0) return d;
    if (k === 0) return batch;
    if (k === shape.length - 1) return DYNAMIC_WIDTH;
    if (k === shape.length - 2) return DYNAMIC_HEIGHT;
    return 1;
  });
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Whether the model takes a leading batch dimension (metadata shape starts with -1). */
export function hasBatchDim(meta: ModelMetadata): boolean {
  return meta.inputs.every((i) => i.shape[0] === -1);
}

/** Random inputs in [-1, 1) for `batch` rows; the same seed gives the same values. */
export function buildInputs(meta: ModelMetadata, batch: number, seed = 12345): BenchTensor[] {
  const random = createPrng(seed);
  return meta.inputs.map((input) => {
    if (input.datatype !== 'FP32') {
      throw new Error(`model '${meta.name}' input '${input.name}' is ${input.datatype}; the serving bench sends FP32 inputs only`);
    }
    const shape = concreteShape(input.shape, batch);
    const data = new Float32Array(elementCount(shape));
    for (let i = 0; i < data.length; i++) data[i] = random() * 2 - 1;
    return { name: input.name, datatype: 'FP32', shape, data };
  });
}

/** Little-endian element bytes (the host's order; every target platform of tern is little-endian). */
export function rawBytes(t: BenchTensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** OIP v2 REST JSON body: every value inline. */
export function jsonInferBody(inputs: BenchTensor[]): Buffer {
  return Buffer.from(JSON.stringify({
    inputs: inputs.map((t) => ({ name: t.name, shape: t.shape, datatype: t.datatype, data: Array.from(t.data) })),
  }));
}

/** OIP v2 binary tensor extension: JSON header, then raw input bytes; all outputs asked back as binary. */
export function binaryInferBody(inputs: BenchTensor[]): { body: Buffer; headerLength: number } {
  const header = Buffer.from(JSON.stringify({
    inputs: inputs.map((t) => ({
      name: t.name, shape: t.shape, datatype: t.datatype, parameters: { binary_data_size: t.data.byteLength },
    })),
    parameters: { binary_data_output: true },
  }));
  return { body: Buffer.concat([header, ...inputs.map(rawBytes)]), headerLength: header.length };
}

/** A ModelInferRequest (proto-loader object form, keepCase) with raw_input_contents. */
export function grpcInferMessage(model: string, inputs: BenchTensor[]): Record<string, unknown> {
  return {
    model_name: model,
    inputs: inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape })),
    raw_input_contents: inputs.map(rawBytes),
  };
}
