/**
 * The in-process inference API (Triton's "core"): every transport (REST, gRPC,
 * TF Serving, Clipper apps) translates its wire format into these types and
 * back. Nothing here knows about HTTP or gRPC.
 */
import type { DataType, TensorData } from '../../protocol/datatypes.js';

export interface Tensor {
  name: string;
  datatype: DataType;
  /** Full shape, including the batch dimension when the model batches. */
  shape: number[];
  data: TensorData;
  /**
   * Set when `data` is a scratch buffer the core made for one run (a merged
   * batch) that nothing reads afterwards: a runtime may then move it to
   * another thread instead of copying it.
   */
  disposable?: boolean;
}

export interface InferRequest {
  model: string;
  /** Absent: the server's default (highest ready) version. */
  version?: string;
  id?: string;
  inputs: Tensor[];
  /** Output names to return; absent or empty: all outputs. */
  outputs?: string[];
  /** Absolute time (ms since epoch) after which the caller no longer wants an answer. */
  deadline?: number;
  /** Which wire protocol carried it, for metrics. */
  protocol?: string;
}

export interface InferResponse {
  model: string;
  version: string;
  id?: string;
  outputs: Tensor[];
  /** Where the time went, for logs, headers and metrics. */
  timing: { queue_ms: number; compute_ms: number; batch_size: number; cache_hit: boolean };
}
