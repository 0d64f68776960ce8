/** Messages between the onnx runtime and its session workers. */

export interface WorkerInit {
  file: string;
  threads: number;
}

export interface WireTensor {
  name: string;
  /** ONNX Runtime type name (float32, int64, string, ...). */
  type: string;
  dims: number[];
  data: ArrayBufferView | string[];
}

export interface WireMetadata {
  name: string;
  isTensor: boolean;
  type?: string;
  shape?: (number | string)[];
}

export type WorkerRequest =
  | { kind: 'run'; id: number; inputs: WireTensor[]; outputs: string[] }
  | { kind: 'close' };

export type WorkerReply =
  | { kind: 'loaded'; inputs: WireMetadata[]; outputs: WireMetadata[] }
  | { kind: 'failed'; error: string }
  | { kind: 'result'; id: number; outputs: WireTensor[] }
  | { kind: 'error'; id: number; error: string };
