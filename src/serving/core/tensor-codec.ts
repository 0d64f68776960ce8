/**
 * Conversions between wire encodings and in-memory tensors: JSON values (OIP v2,
 * TF Serving), raw little-endian bytes (OIP binary extension, gRPC raw contents)
 * and the BYTES element framing (4-byte little-endian length, then the bytes).
 * Every check names the tensor and what is wrong, because these messages go
 * straight back to the client.
 */
import { Float16Array } from '@petamoriken/float16';
import { DATATYPE_INFO, type DataType, type TensorData } from '../../protocol/datatypes.js';
import { badTensor } from '../../protocol/errors.js';
import type { Tensor } from './types.js';

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function validateShape(name: string, shape: unknown): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw badTensor(`input '${name}': shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  return shape as number[];
}

/** Flattens nested JSON arrays in row-major order. */
export function flattenJson(value: unknown, out: unknown[] = []): unknown[] {
  if (Array.isArray(value)) {
    for (const v of value) flattenJson(v, out);
  } else {
    out.push(value);
  }
  return out;
}

const INT_RANGES: Partial<Record<DataType, [number, number]>> = {
  UINT8: [0, 255], INT8: [-128, 127], UINT16: [0, 65535], INT16: [-32768, 32767],
  UINT32: [0, 4294967295], INT32: [-2147483648, 2147483647],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], UINT64: [0, Number.MAX_SAFE_INTEGER],
};

type FixedType = Exclude<DataType, 'BYTES'>;
type FixedStorage = Exclude<TensorData, Buffer[]>;
interface StorageConstructor {
  new (count: number): FixedStorage;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): FixedStorage;
}

/** The typed array that stores each fixed-size datatype (FP16 as raw uint16 bits). */
const STORAGE: Record<FixedType, StorageConstructor> = {
  BOOL: Uint8Array, UINT8: Uint8Array, INT8: Int8Array, UINT16: Uint16Array, FP16: Uint16Array, INT16: Int16Array,
  UINT32: Uint32Array, INT32: Int32Array, UINT64: BigUint64Array, INT64: BigInt64Array, FP32: Float32Array, FP64: Float64Array,
};

function allocate(datatype: DataType, count: number): FixedStorage {
  if (datatype === 'BYTES') throw new Error('BYTES tensors have no fixed-size storage');
  return new STORAGE[datatype](count);
}

function jsonToBytesElement(name: string, v: unknown): Buffer {
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  if (v !== null && typeof v === 'object' && typeof (v as { b64?: unknown }).b64 === 'string') {
    return Buffer.from((v as { b64: string }).b64, 'base64'); // TF Serving's binary convention
  }
  throw badTensor(`input '${name}': BYTES elements must be strings, got ${JSON.stringify(v)}`);
}

function jsonToNumber(name: string, datatype: DataType, v: unknown): number {
  if (datatype === 'BOOL') {
    if (typeof v === 'boolean') return v ? 1 : 0;
    if (v === 0 || v === 1) return v;
    throw badTensor(`input '${name}': BOOL elements must be true or false, got ${JSON.stringify(v)}`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw badTensor(`input '${name}': ${datatype} elements must be numbers, got ${JSON.stringify(v)}`);
  }
  const range = INT_RANGES[datatype];
  if (range && (!Number.isInteger(v) || v < range[0] || v > range[1])) {
    throw badTensor(`input '${name}': ${v} is not a valid ${datatype} value`);
  }
  return v;
}

/** Builds a tensor from JSON data (flat or nested) and checks the element count against the shape. */
export function tensorFromJson(name: string, datatype: DataType, shape: number[], data: unknown): Tensor {
  const flat = flattenJson(data);
  const expected = elementCount(shape);
  if (flat.length !== expected) {
    throw badTensor(`input '${name}': shape [${shape.join(',')}] needs ${expected} elements, got ${flat.length}`);
  }
  if (datatype === 'BYTES') {
    return { name, datatype, shape, data: flat.map((v) => jsonToBytesElement(name, v)) };
  }
  const numbers = flat.map((v) => jsonToNumber(name, datatype, v));
  return { name, datatype, shape, data: numbersToStorage(datatype, numbers) };
}

function numbersToStorage(datatype: DataType, numbers: number[]): Exclude<TensorData, Buffer[]> {
  if (datatype === 'FP16') return new Uint16Array(Float16Array.from(numbers).buffer);
  const out = allocate(datatype, numbers.length);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < numbers.length; i++) out[i] = BigInt(numbers[i]);
  } else {
    out.set(numbers);
  }
  return out;
}

/** JSON-friendly flat values: numbers, booleans, or strings for BYTES. */
export function tensorToJson(t: Tensor): unknown[] {
  const d = t.data;
  if (Array.isArray(d)) return d.map((b) => b.toString('utf8'));
  if (t.datatype === 'BOOL') return Array.from(d as Uint8Array, (v) => v !== 0);
  if (t.datatype === 'FP16') return Array.from(new Float16Array((d as Uint16Array).slice().buffer));
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Array.from(d, (v) => Number(v));
  return Array.from(d as Float32Array);
}

/** Splits BYTES framing: each element is a uint32 LE length followed by that many bytes. */
export function decodeBytesElements(name: string, raw: Buffer, count: number): Buffer[] {
  const out: Buffer[] = [];
  let offset = 0;
  while (offset < raw.length) {
    if (offset + 4 > raw.length) throw badTensor(`input '${name}': truncated BYTES length prefix at byte ${offset}`);
    const len = raw.readUInt32LE(offset);
    offset += 4;
    if (offset + len > raw.length) throw badTensor(`input '${name}': BYTES element of ${len} bytes overruns the data`);
    out.push(raw.subarray(offset, offset + len));
    offset += len;
  }
  if (out.length !== count) throw badTensor(`input '${name}': shape needs ${count} BYTES elements, got ${out.length}`);
  return out;
}

export function encodeBytesElements(elements: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of elements) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32LE(e.length, 0);
    parts.push(len, e);
  }
  return Buffer.concat(parts);
}

/**
 * Builds a tensor from raw little-endian bytes. The tensor is a view of the
 * request's bytes when they are aligned for the datatype (an image is then
 * not copied once more per request), and an aligned copy otherwise. Nothing
 * writes to an input tensor in place, so sharing the request's bytes is safe.
 */
export function tensorFromRaw(name: string, datatype: DataType, shape: number[], raw: Uint8Array): Tensor {
  const count = elementCount(shape);
  const buf = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (datatype === 'BYTES') return { name, datatype, shape, data: decodeBytesElements(name, buf, count) };
  const size = DATATYPE_INFO[datatype].size;
  if (buf.length !== count * size) {
    throw badTensor(`input '${name}': shape [${shape.join(',')}] of ${datatype} needs ${count * size} bytes, got ${buf.length}`);
  }
  if (buf.byteOffset % size === 0) return { name, datatype, shape, data: new STORAGE[datatype](buf.buffer, buf.byteOffset, count) };
  const data = allocate(datatype, count);
  new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(buf);
  return { name, datatype, shape, data };
}

/** Raw little-endian bytes of a tensor (a view, not a copy, for fixed-size types). */
export function tensorToRaw(t: Tensor): Buffer {
  if (Array.isArray(t.data)) return encodeBytesElements(t.data);
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

export function tensorByteSize(t: Tensor): number {
  if (Array.isArray(t.data)) return t.data.reduce((n, b) => n + b.length + 4, 0);
  return t.data.byteLength;
}

/** Concatenates tensors along the first (batch) dimension. All must share datatype and inner dims. */
export function concatBatch(parts: Tensor[]): Tensor {
  const first = parts[0];
  if (parts.length === 1) return first;
  const rows = parts.reduce((n, p) => n + p.shape[0], 0);
  const shape = [rows, ...first.shape.slice(1)];
  if (Array.isArray(first.data)) {
    return { ...first, shape, data: parts.flatMap((p) => p.data as Buffer[]) };
  }
  const total = parts.reduce((n, p) => n + (p.data as Float32Array).length, 0);
  const out = allocate(first.datatype, total);
  let offset = 0;
  for (const p of parts) {
    (out as Float32Array).set(p.data as Float32Array, offset);
    offset += (p.data as Float32Array).length;
  }
  return { name: first.name, datatype: first.datatype, shape, data: out, disposable: true };
}

/** Cuts `rows` rows starting at `start` out of a batched tensor (views, no copy). */
export function sliceBatch(t: Tensor, start: number, rows: number): Tensor {
  const shape = [rows, ...t.shape.slice(1)];
  if (t.shape[0] === rows && start === 0) return t;
  const per = elementCount(t.shape.slice(1));
  const data = Array.isArray(t.data)
    ? t.data.slice(start * per, (start + rows) * per)
    : (t.data as Float32Array).subarray(start * per, (start + rows) * per);
  return { ...t, shape, data };
}

/** Dimensions of a nested JSON array, read along its first elements (scalars and {"b64"} are leaves). */
export function jsonShape(value: unknown): number[] {
  const dims: number[] = [];
  let v = value;
  while (Array.isArray(v)) {
    dims.push(v.length);
    v = v[0];
  }
  return dims;
}

/** Nests flat row-major values into the given dims (inverse of flattenJson). */
export function reshapeJson(flat: unknown[], dims: number[]): unknown {
  if (dims.length === 0) return flat[0];
  if (dims.length === 1) return flat;
  const inner = dims.slice(1);
  const step = elementCount(inner);
  const out: unknown[] = [];
  for (let i = 0; i < dims[0]; i++) out.push(reshapeJson(flat.slice(i * step, (i + 1) * step), inner));
  return out;
}
