/**
 * Translates OIP v2 gRPC ModelInfer messages (as @grpc/proto-loader hands
 * them over: snake_case keys, int64 as decimal strings, bytes as Buffers,
 * unset fields absent) to and from the core's tensors. The raw path
 * (raw_input_contents / raw_output_contents) is the hot one and does no more
 * than one copy per input; typed `contents` are converted element by element.
 */
import { Float16Array } from '@petamoriken/float16';
import { isDataType, type DataType, type TensorData } from '../../protocol/datatypes.js';
import { badTensor } from '../../protocol/errors.js';
import { elementCount, tensorFromRaw, tensorToRaw } from '../core/tensor-codec.js';
import type { InferRequest, InferResponse, Tensor } from '../core/types.js';

/** int64 / uint64 fields arrive as decimal strings (longs: String) so no precision is lost. */
type Int64 = string | number;

export interface InferParameterMsg {
  bool_param?: boolean;
  int64_param?: Int64;
  string_param?: string;
  parameter_choice?: 'bool_param' | 'int64_param' | 'string_param';
}

export interface InferTensorContentsMsg {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: Int64[];
  uint_contents?: number[];
  uint64_contents?: Int64[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

export interface InferInputTensorMsg {
  name?: string;
  datatype?: string;
  shape?: Int64[];
  parameters?: Record<string, InferParameterMsg>;
  contents?: InferTensorContentsMsg;
}

export interface ModelInferRequestMsg {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, InferParameterMsg>;
  inputs?: InferInputTensorMsg[];
  outputs?: { name?: string; parameters?: Record<string, InferParameterMsg> }[];
  raw_input_contents?: Buffer[];
}

export interface InferOutputTensorMsg {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelInferResponseMsg {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: InferOutputTensorMsg[];
  raw_output_contents: Buffer[];
}

type ContentsField = keyof InferTensorContentsMsg;

/** Which typed-contents field carries each datatype (OIP v2 gRPC spec; FP16 is a tern leniency, see below). */
const CONTENTS_FIELD: Record<DataType, ContentsField> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents', INT16: 'int_contents', INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents', UINT16: 'uint_contents', UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP16: 'fp32_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

const INT_RANGES: Partial<Record<DataType, [number, number]>> = {
  INT8: [-128, 127], INT16: [-32768, 32767], UINT8: [0, 255], UINT16: [0, 65535],
};

function parseShape(name: string, shape: Int64[] | undefined): number[] {
  if (!shape) return [];
  const out = new Array<number>(shape.length);
  for (let k = 0; k < shape.length; k++) {
    const d = Number(shape[k]);
    if (!Number.isSafeInteger(d) || d < 0) {
      throw badTensor(`input '${name}': shape must be a list of non-negative integers, got [${shape.join(',')}]`);
    }
    out[k] = d;
  }
  return out;
}

function parseInt64(name: string, datatype: DataType, v: Int64): bigint {
  try {
    return BigInt(v);
  } catch {
    throw badTensor(`input '${name}': ${JSON.stringify(v)} is not a valid ${datatype} value`);
  }
}

/** Storage for typed contents whose field and element count are already checked. */
function typedStorage(name: string, datatype: DataType, values: unknown[]): TensorData {
  switch (datatype) {
    case 'BOOL': return Uint8Array.from(values as boolean[], (b) => (b ? 1 : 0));
    case 'INT32': return Int32Array.from(values as number[]);
    case 'UINT32': return Uint32Array.from(values as number[]);
    case 'FP32': return Float32Array.from(values as number[]);
    case 'FP64': return Float64Array.from(values as number[]);
    // FP16 has no typed field in the spec (raw contents only); tern also takes
    // it as fp32_contents and rounds to half precision, as several clients send it.
    case 'FP16': return new Uint16Array(Float16Array.from(values as number[]).buffer);
    case 'INT64': return BigInt64Array.from(values as Int64[], (v) => parseInt64(name, datatype, v));
    case 'UINT64': return BigUint64Array.from(values as Int64[], (v) => parseInt64(name, datatype, v));
    case 'BYTES': return values as Buffer[];
    case 'INT8': case 'INT16': case 'UINT8': case 'UINT16': {
      const [lo, hi] = INT_RANGES[datatype]!;
      for (const v of values as number[]) {
        if (v < lo || v > hi) throw badTensor(`input '${name}': ${v} is not a valid ${datatype} value`);
      }
      const ctor = { INT8: Int8Array, INT16: Int16Array, UINT8: Uint8Array, UINT16: Uint16Array }[datatype];
      return ctor.from(values as number[]);
    }
  }
}

function tensorFromContents(name: string, datatype: DataType, shape: number[], contents: InferTensorContentsMsg | undefined): Tensor {
  const field = CONTENTS_FIELD[datatype];
  const values = contents?.[field] as unknown[] | undefined;
  const expected = elementCount(shape);
  if (!values || values.length === 0) {
    const other = contents && (Object.keys(contents) as ContentsField[]).find((k) => (contents[k]?.length ?? 0) > 0);
    if (other) throw badTensor(`input '${name}': datatype ${datatype} takes its data in ${field}, got ${other}`);
    if (expected !== 0) {
      throw badTensor(`input '${name}' has no data (give contents.${field} or raw_input_contents)`);
    }
  }
  const count = values?.length ?? 0;
  if (count !== expected) {
    throw badTensor(`input '${name}': shape [${shape.join(',')}] needs ${expected} elements, got ${count} in ${field}`);
  }
  return { name, datatype, shape, data: typedStorage(name, datatype, values ?? []) };
}

/** Triton's `timeout` request parameter, in microseconds. */
function timeoutDeadline(parameters: Record<string, InferParameterMsg> | undefined): number | undefined {
  const p = parameters?.timeout;
  if (p === undefined) return undefined;
  const us = Number(p.int64_param);
  if (p.int64_param === undefined || !(us > 0)) {
    throw badTensor(`parameter 'timeout' must be a positive int64_param in microseconds`);
  }
  return Date.now() + us / 1000;
}

/**
 * A core request from a ModelInfer message. `callDeadline` is the gRPC
 * deadline in ms since epoch (Infinity when the client set none); the
 * earlier of it and a `timeout` parameter wins.
 */
export function decodeInferRequest(msg: ModelInferRequestMsg, callDeadline: number): InferRequest {
  const model = msg.model_name ?? '';
  if (model === '') throw badTensor('model_name is required');
  const inputs = msg.inputs ?? [];
  const raw = msg.raw_input_contents;
  const useRaw = raw !== undefined && raw.length > 0;
  if (useRaw && raw.length !== inputs.length) {
    throw badTensor(`raw_input_contents has ${raw.length} entries for ${inputs.length} inputs (give one per input, in input order)`);
  }
  const tensors = new Array<Tensor>(inputs.length);
  for (let i = 0; i < inputs.length; i++) {
    const input = inputs[i];
    const name = input.name ?? '';
    if (name === '') throw badTensor(`input ${i} has no name`);
    const datatype = input.datatype ?? '';
    if (!isDataType(datatype)) throw badTensor(`input '${name}': unknown datatype '${datatype}'`);
    const shape = parseShape(name, input.shape);
    if (useRaw) {
      if (input.contents !== undefined) {
        throw badTensor(`input '${name}' has typed contents, but the request uses raw_input_contents (use one or the other for all inputs)`);
      }
      tensors[i] = tensorFromRaw(name, datatype, shape, raw[i]);
    } else {
      tensors[i] = tensorFromContents(name, datatype, shape, input.contents);
    }
  }
  const request: InferRequest = { model, inputs: tensors, protocol: 'grpc' };
  if (msg.model_version) request.version = msg.model_version;
  if (msg.id) request.id = msg.id;
  if (msg.outputs && msg.outputs.length > 0) {
    request.outputs = msg.outputs.map((o, k) => {
      if (!o.name) throw badTensor(`requested output ${k} has no name`);
      return o.name;
    });
  }
  const timeout = timeoutDeadline(msg.parameters);
  const deadline = Math.min(callDeadline, timeout ?? Infinity);
  if (Number.isFinite(deadline)) request.deadline = deadline;
  return request;
}

/** A ModelInferResponse with every output as raw bytes (as Triton answers). */
export function encodeInferResponse(res: InferResponse): ModelInferResponseMsg {
  const n = res.outputs.length;
  const outputs = new Array<InferOutputTensorMsg>(n);
  const raw = new Array<Buffer>(n);
  for (let i = 0; i < n; i++) {
    const t = res.outputs[i];
    outputs[i] = { name: t.name, datatype: t.datatype, shape: t.shape };
    raw[i] = tensorToRaw(t);
  }
  const msg: ModelInferResponseMsg = { model_name: res.model, model_version: res.version, outputs, raw_output_contents: raw };
  if (res.id !== undefined) msg.id = res.id;
  return msg;
}
