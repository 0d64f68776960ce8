/**
 * The baseline the serving bench compares tern with: the model server a user
 * writes alone in an afternoon. fastify + onnxruntime-node, one
 * `session.run` per request on the main thread, JSON tensors in and out in
 * the OIP v2 shape, no batching, no worker threads. Run as a child process:
 *
 *   node dist/bench/naive-server.js --model-file m.onnx --model-name m --threads 1 --port 8100
 */
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import ort from 'onnxruntime-node';

interface InferInput { name: string; shape: number[]; datatype: string; data: unknown[] }
interface InferBody { inputs: InferInput[] }

const { values } = parseArgs({
  options: {
    'model-file': { type: 'string' },
    'model-name': { type: 'string' },
    threads: { type: 'string', default: '1' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8100' },
  },
});

const modelFile = values['model-file'];
const modelName = values['model-name'];
if (!modelFile || !modelName) {
  process.stderr.write('usage: naive-server --model-file <model.onnx> --model-name <name> [--threads N] [--host H] [--port P]\n');
  process.exit(2);
}

const session = await ort.InferenceSession.create(modelFile, { intraOpNumThreads: Number(values.threads) });
// Request bodies of image models are megabytes of JSON.
const app = Fastify({ logger: false, bodyLimit: 256 * 1024 * 1024 });

app.get('/v2/health/ready', async () => ({ ready: true }));

app.post<{ Params: { model: string }; Body: InferBody }>('/v2/models/:model/infer', async (req, reply) => {
  if (req.params.model !== modelName) return reply.code(404).send({ error: `unknown model '${req.params.model}'` });
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of req.body.inputs) {
    if (input.datatype !== 'FP32') return reply.code(400).send({ error: `input '${input.name}': only FP32 is supported` });
    feeds[input.name] = new ort.Tensor('float32', Float32Array.from(input.data.flat(Infinity) as number[]), input.shape);
  }
  const results = await session.run(feeds);
  return {
    model_name: modelName,
    model_version: '1',
    outputs: Object.entries(results).map(([name, t]) => ({
      name, datatype: 'FP32', shape: [...t.dims], data: Array.from(t.data as Float32Array),
    })),
  };
});

const stop = async () => {
  await app.close();
  await session.release();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());

await app.listen({ host: values.host, port: Number(values.port) });
