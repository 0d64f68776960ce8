/**
 * Worker thread that owns one ONNX Runtime session. onnxruntime-node's
 * `session.run` executes synchronously on the calling thread, so sessions live
 * in workers: the main thread keeps parsing requests while every instance
 * computes on its own core.
 */
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import type { WorkerReply, WorkerRequest, WireTensor, WorkerInit } from './onnx-worker-protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;

function toWire(name: string, t: ort.Tensor): { wire: WireTensor; transfer: ArrayBuffer[] } {
  if (t.type === 'string') return { wire: { name, type: 'string', dims: [...t.dims], data: t.data as string[] }, transfer: [] };
  const data = t.data as Float32Array;
  return { wire: { name, type: t.type, dims: [...t.dims], data }, transfer: [data.buffer as ArrayBuffer] };
}

function metadata(list: readonly ort.InferenceSession.ValueMetadata[]) {
  return list.map((m) => (m.isTensor ? { name: m.name, isTensor: true, type: m.type, shape: [...m.shape] } : { name: m.name, isTensor: false }));
}

async function main(): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(init.file, {
      intraOpNumThreads: init.threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
    });
  } catch (err) {
    port.postMessage({ kind: 'failed', error: (err as Error).message } satisfies WorkerReply);
    return;
  }
  port.postMessage({ kind: 'loaded', inputs: metadata(session.inputMetadata), outputs: metadata(session.outputMetadata) } satisfies WorkerReply);
  port.on('message', async (msg: WorkerRequest) => {
    if (msg.kind === 'close') {
      await session.release();
      port.close();
      return;
    }
    try {
      const feeds: Record<string, ort.Tensor> = {};
      for (const t of msg.inputs) feeds[t.name] = new ort.Tensor(t.type as ort.Tensor.Type, t.data as Float32Array, t.dims);
      const result = await session.run(feeds, msg.outputs);
      const wires = msg.outputs.map((n) => toWire(n, result[n] as ort.Tensor));
      port.postMessage({ kind: 'result', id: msg.id, outputs: wires.map((w) => w.wire) } satisfies WorkerReply, wires.flatMap((w) => w.transfer));
    } catch (err) {
      port.postMessage({ kind: 'error', id: msg.id, error: (err as Error).message } satisfies WorkerReply);
    }
  });
}

void main();
