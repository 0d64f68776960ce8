/**
 * Worker thread that owns one ONNX Runtime session. onnxruntime-node's
 * `session.run` executes synchronously on the calling thread, so sessions live
 * in workers: the main thread keeps parsing requests while every instance
 * computes on its own core.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type ort from 'onnxruntime-node';
import { createSession, describeValues, runSession } from './onnx-session.js';
import type { WorkerReply, WorkerRequest, WorkerInit } from './onnx-worker-protocol.js';

const init = workerData as WorkerInit;
const port = parentPort!;

async function main(): Promise<void> {
  let session: ort.InferenceSession;
  try {
    session = await createSession(init.file, init.threads);
  } catch (err) {
    port.postMessage({ kind: 'failed', error: (err as Error).message } satisfies WorkerReply);
    return;
  }
  port.postMessage({ kind: 'loaded', inputs: describeValues(session.inputMetadata), outputs: describeValues(session.outputMetadata) } satisfies WorkerReply);
  port.on('message', async (msg: WorkerRequest) => {
    if (msg.kind === 'close') {
      await session.release();
      port.close();
      return;
    }
    try {
      const { outputs, transfer } = await runSession(session, msg.inputs, msg.outputs);
      port.postMessage({ kind: 'result', id: msg.id, outputs } satisfies WorkerReply, transfer);
    } catch (err) {
      port.postMessage({ kind: 'error', id: msg.id, error: (err as Error).message } satisfies WorkerReply);
    }
  });
}

void main();
