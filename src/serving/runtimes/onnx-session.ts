/**
 * One ONNX Runtime session and how it is run, shared by both ways of hosting
 * it: inline on the main thread (`execution: "inline"`) and in a worker thread
 * (`execution: "thread"`, see onnx-worker.ts).
 */
import ort from 'onnxruntime-node';
import type { WireMetadata, WireTensor } from './onnx-worker-protocol.js';

export function createSession(file: string, threads: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(file, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
}

export function describeValues(list: readonly ort.InferenceSession.ValueMetadata[]): WireMetadata[] {
  return list.map((m) => (m.isTensor ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] } : { name: m.name, isTensor: false }));
}

/** Runs the session on wire tensors; returns the outputs and the buffers that may be transferred. */
export async function runSession(session: ort.InferenceSession, inputs: WireTensor[], outputs: string[]): Promise<{ outputs: WireTensor[]; transfer: ArrayBuffer[] }> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of inputs) feeds[t.name] = new ort.Tensor(t.type as ort.Tensor.Type, t.data as Float32Array, t.dims);
  const result = await session.run(feeds, outputs);
  const wires: WireTensor[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const name of outputs) {
    const t = result[name] as ort.Tensor;
    wires.push({ name, type: t.type, dims: [...t.dims], data: t.data as Float32Array | string[] });
    if (t.type !== 'string') transfer.push((t.data as Float32Array).buffer as ArrayBuffer);
  }
  return { outputs: wires, transfer };
}
