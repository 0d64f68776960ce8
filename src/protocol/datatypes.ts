/**
 * Tensor datatypes as named by the Open Inference Protocol v2 (KServe / Triton).
 * This is the one place that maps them to ONNX Runtime type names, TypedArray
 * constructors and element sizes; every transport and runtime goes through it.
 */
import { z } from 'zod';

export const DATATYPES = [
  'BOOL', 'UINT8', 'UINT16', 'UINT32', 'UINT64', 'INT8', 'INT16', 'INT32', 'INT64',
  'FP16', 'FP32', 'FP64', 'BYTES',
] as const;

export const DataTypeSchema = z.enum(DATATYPES);
export type DataType = z.infer<typeof DataTypeSchema>;

/** Element storage for a tensor of each datatype. FP16 is kept as raw uint16 bits. */
export type TensorData =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | BigUint64Array | BigInt64Array | Float32Array | Float64Array
  | Buffer[]; // BYTES: one buffer per element

interface DataTypeInfo {
  /** Name used by onnxruntime-node's Tensor type. */
  ort: string;
  /** Bytes per element in the raw little-endian encoding; 0 for BYTES. */
  size: number;
  /** Name used by TF Serving's metadata (DT_*). */
  tf: string;
}

export const DATATYPE_INFO: Record<DataType, DataTypeInfo> = {
  BOOL: { ort: 'bool', size: 1, tf: 'DT_BOOL' },
  UINT8: { ort: 'uint8', size: 1, tf: 'DT_UINT8' },
  UINT16: { ort: 'uint16', size: 2, tf: 'DT_UINT16' },
  UINT32: { ort: 'uint32', size: 4, tf: 'DT_UINT32' },
  UINT64: { ort: 'uint64', size: 8, tf: 'DT_UINT64' },
  INT8: { ort: 'int8', size: 1, tf: 'DT_INT8' },
  INT16: { ort: 'int16', size: 2, tf: 'DT_INT16' },
  INT32: { ort: 'int32', size: 4, tf: 'DT_INT32' },
  INT64: { ort: 'int64', size: 8, tf: 'DT_INT64' },
  FP16: { ort: 'float16', size: 2, tf: 'DT_HALF' },
  FP32: { ort: 'float32', size: 4, tf: 'DT_FLOAT' },
  FP64: { ort: 'float64', size: 8, tf: 'DT_DOUBLE' },
  BYTES: { ort: 'string', size: 0, tf: 'DT_STRING' },
};

const ORT_TO_DATATYPE = new Map<string, DataType>(
  DATATYPES.map((d) => [DATATYPE_INFO[d].ort, d]),
);

export function dataTypeFromOrt(ortType: string): DataType | undefined {
  return ORT_TO_DATATYPE.get(ortType);
}

export function isDataType(value: unknown): value is DataType {
  return typeof value === 'string' && (DATATYPES as readonly string[]).includes(value);
}
