/**
 * OIP v2 gRPC (KServe's inference.GRPCInferenceService) against a real server
 * on demo models, through a real @grpc/grpc-js client built from the same
 * .proto file.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { grpcProtoPath } from '../src/serving/grpc/grpc-server.js';
import { tensorToRaw } from '../src/serving/core/tensor-codec.js';
import type { InferRequest } from '../src/serving/core/types.js';
import type { RunningServer } from '../src/serving/server.js';
import { IRIS_ROWS, removeDir } from './helpers.js';

type Callback = (err: grpc.ServiceError | null, res?: unknown) => void;
type UnaryMethod = (req: object, meta: grpc.Metadata, options: grpc.CallOptions, cb: Callback) => grpc.ClientUnaryCall;

/** What the client sees of a response: int64 as strings (longs: String), bytes as Buffers. */
interface InferResponseMsg {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: { name: string; datatype: string; shape: string[] }[];
  raw_output_contents: Buffer[];
}

let repo: string;
let server: RunningServer;
let client: grpc.Client;

async function rpc<T = Record<string, unknown>>(method: string, request: object, options: grpc.CallOptions = {}): Promise<T> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  return new Promise<T>((resolve, reject) => {
    fn.call(client, request, new grpc.Metadata(), options, (err, res) => (err ? reject(err) : resolve(res as T)));
  });
}

/** The rejected call's gRPC status code and details. */
async function rpcError(method: string, request: object, options: grpc.CallOptions = {}): Promise<{ code: number; details: string }> {
  try {
    await rpc(method, request, options);
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error(`${method} succeeded, expected an error`);
}

const float32Bytes = (values: number[]) => Buffer.from(Float32Array.from(values).buffer);
const smallValues = (rows: number) => Array.from({ length: rows * 64 }, (_, i) => Math.sin(i) * 0.5);

beforeAll(async () => {
  repo = mkdtempSync(path.join(tmpdir(), 'tern-grpc-'));
  const { writeDemoRepository } = await import('../src/models/demo-repository.js');
  await writeDemoRepository(repo, { models: ['iris-logreg', 'synthetic-small'] });
  const { startServer } = await import('../src/serving/server.js');
  server = await startServer({
    repository: repo, host: '127.0.0.1', httpPort: 0, grpcPort: 0, watch: false,
    logger: pino({ level: process.env.TERN_TEST_LOG ?? 'silent' }),
  });
  expect(server.grpcPort).toBeGreaterThan(0);
  const definition = protoLoader.loadSync(grpcProtoPath(), { keepCase: true, longs: String, defaults: false, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition).inference as grpc.GrpcObject;
  const Service = pkg.GRPCInferenceService as grpc.ServiceClientConstructor;
  client = new Service(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.close();
  if (repo) removeDir(repo);
});

describe('OIP v2 gRPC: health and metadata', () => {
  it('reports the server live and ready, with its metadata', async () => {
    expect(await rpc('ServerLive', {})).toEqual({ live: true });
    expect(await rpc('ServerReady', {})).toEqual({ ready: true });
    const meta = await rpc<{ name: string; version: string; extensions: string[] }>('ServerMetadata', {});
    expect(meta.name).toBe('tern');
    expect(meta.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(meta.extensions).toContain('binary_tensor_data');
  });

  it('describes a model with batch dimension -1', async () => {
    const meta = await rpc<{ name: string; versions: string[]; platform: string; inputs: { name: string; datatype: string; shape: string[] }[]; outputs: { name: string }[] }>(
      'ModelMetadata', { name: 'iris-logreg' });
    expect(meta.name).toBe('iris-logreg');
    expect(meta.versions).toEqual(['1']);
    expect(meta.platform).toBe('onnxruntime_onnx');
    expect(meta.inputs.map((i) => ({ ...i, shape: i.shape.map(Number) }))).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 4] }]);
    expect(meta.outputs.map((o) => o.name).sort()).toEqual(['label', 'probabilities']);
    const pinned = await rpc<{ name: string }>('ModelMetadata', { name: 'iris-logreg', version: '1' });
    expect(pinned.name).toBe('iris-logreg');
  });

  it('answers model readiness, and NOT_FOUND for unknown models and versions', async () => {
    expect(await rpc('ModelReady', { name: 'iris-logreg' })).toEqual({ ready: true });
    expect(await rpc('ModelReady', { name: 'synthetic-small', version: '1' })).toEqual({ ready: true });
    const ready = await rpcError('ModelReady', { name: 'no-such-model' });
    expect(ready.code).toBe(grpc.status.NOT_FOUND);
    expect(ready.details).toContain('no-such-model');
    expect((await rpcError('ModelMetadata', { name: 'no-such-model' })).code).toBe(grpc.status.NOT_FOUND);
    expect((await rpcError('ModelMetadata', { name: 'iris-logreg', version: '9' })).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('OIP v2 gRPC: ModelInfer', () => {
  it('takes raw_input_contents and returns the same raw bytes as the core', async () => {
    const values = smallValues(2);
    const res = await rpc<InferResponseMsg>('ModelInfer', {
      model_name: 'synthetic-small', id: 'g1',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 64] }],
      raw_input_contents: [float32Bytes(values)],
    });
    expect(res.model_name).toBe('synthetic-small');
    expect(res.model_version).toBe('1');
    expect(res.id).toBe('g1');
    expect(res.outputs).toEqual([{ name: 'output', datatype: 'FP32', shape: ['2', '10'] }]);
    expect(res.raw_output_contents).toHaveLength(1);
    expect(res.raw_output_contents[0].length).toBe(2 * 10 * 4);

    const direct = await server.core.infer({
      model: 'synthetic-small',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 64], data: Float32Array.from(values) }],
    });
    expect(Buffer.compare(res.raw_output_contents[0], tensorToRaw(direct.outputs[0]))).toBe(0);
  });

  it('takes typed fp32_contents and returns INT64 labels as raw bytes', async () => {
    const res = await rpc<InferResponseMsg>('ModelInfer', {
      model_name: 'iris-logreg', model_version: '1',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [IRIS_ROWS.length, 4], contents: { fp32_contents: IRIS_ROWS.flatMap((r) => r.features) } }],
    });
    const k = res.outputs.findIndex((o) => o.name === 'label');
    expect(k).toBeGreaterThanOrEqual(0);
    expect(res.outputs[k]).toEqual({ name: 'label', datatype: 'INT64', shape: [String(IRIS_ROWS.length)] });
    expect(res.raw_output_contents).toHaveLength(res.outputs.length);
    const raw = res.raw_output_contents[k];
    const labels = new BigInt64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    expect(Array.from(labels, Number)).toEqual(IRIS_ROWS.map((r) => r.label));
  });

  it('returns only the requested outputs', async () => {
    const res = await rpc<InferResponseMsg>('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4] }],
      outputs: [{ name: 'probabilities' }],
      raw_input_contents: [float32Bytes(IRIS_ROWS.slice(0, 2).flatMap((r) => r.features))],
    });
    expect(res.outputs).toEqual([{ name: 'probabilities', datatype: 'FP32', shape: ['2', '3'] }]);
    const probs = new Float32Array(res.raw_output_contents[0].buffer.slice(res.raw_output_contents[0].byteOffset, res.raw_output_contents[0].byteOffset + 24));
    expect(probs[0] + probs[1] + probs[2]).toBeCloseTo(1, 4);
  });

  it('passes the call deadline and the protocol to the core', async () => {
    const spy = vi.spyOn(server.core, 'infer');
    try {
      const before = Date.now();
      await rpc('ModelInfer', {
        model_name: 'synthetic-small',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 64] }],
        raw_input_contents: [float32Bytes(smallValues(1))],
      }, { deadline: before + 5_000 });
      const request = spy.mock.calls[0][0];
      expect(request.protocol).toBe('grpc');
      expect(request.deadline).toBeGreaterThan(before + 3_000);
      expect(request.deadline).toBeLessThanOrEqual(before + 5_100);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('OIP v2 gRPC: errors', () => {
  const irisRaw = (rows: number) => float32Bytes(IRIS_ROWS.slice(0, rows).flatMap((r) => r.features));

  it('answers NOT_FOUND for an unknown model', async () => {
    const e = await rpcError('ModelInfer', {
      model_name: 'no-such-model',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
      raw_input_contents: [irisRaw(1)],
    });
    expect(e.code).toBe(grpc.status.NOT_FOUND);
    expect(e.details).toContain("unknown model 'no-such-model'");
  });

  it('answers INVALID_ARGUMENT naming the input for a wrong datatype', async () => {
    const e = await rpcError('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FP64', shape: [1, 4], contents: { fp64_contents: IRIS_ROWS[0].features } }],
    });
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain("input 'input'");
    expect(e.details).toContain('FP64');
  });

  it('answers INVALID_ARGUMENT for raw contents of the wrong size or count', async () => {
    const short = await rpcError('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4] }],
      raw_input_contents: [irisRaw(1)],
    });
    expect(short.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(short.details).toContain("input 'input'");
    expect(short.details).toContain('needs 32 bytes, got 16');
    const missing = await rpcError('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
      raw_input_contents: [irisRaw(1), irisRaw(1)],
    });
    expect(missing.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(missing.details).toContain('raw_input_contents has 2 entries for 1 inputs');
  });

  it('answers INVALID_ARGUMENT for typed contents in the wrong field or of the wrong length', async () => {
    const field = await rpcError('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], contents: { int_contents: [1, 2, 3, 4] } }],
    });
    expect(field.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(field.details).toContain('fp32_contents');
    const count = await rpcError('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3] } }],
    });
    expect(count.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(count.details).toContain('needs 4 elements, got 3');
    const unknownType = await rpcError('ModelInfer', {
      model_name: 'iris-logreg',
      inputs: [{ name: 'input', datatype: 'FLOAT', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }],
    });
    expect(unknownType.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(unknownType.details).toContain("unknown datatype 'FLOAT'");
  });

  it('answers DEADLINE_EXCEEDED for a deadline already past', async () => {
    const e = await rpcError('ModelInfer', {
      model_name: 'synthetic-small',
      inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 64] }],
      raw_input_contents: [float32Bytes(smallValues(1))],
    }, { deadline: Date.now() - 1_000 });
    expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('answers DEADLINE_EXCEEDED when the deadline passes before inference, and the core refuses the work', async () => {
    const original = server.core.infer.bind(server.core);
    const outcomes: string[] = [];
    // Hold the request on the server until its (tiny) deadline has passed, then hand it to the core.
    const spy = vi.spyOn(server.core, 'infer').mockImplementation(async (request: InferRequest) => {
      if (request.id !== 'held') return original(request);
      while (request.deadline !== undefined && Date.now() <= request.deadline) { /* wait out the deadline */ }
      try {
        const res = await original(request);
        outcomes.push('ok');
        return res;
      } catch (err) {
        outcomes.push((err as { code?: string }).code ?? 'unknown');
        throw err;
      }
    });
    try {
      const e = await rpcError('ModelInfer', {
        model_name: 'synthetic-small', id: 'held',
        inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 64] }],
        // Values no other test sends, so no cached answer short-cuts the deadline check.
        raw_input_contents: [float32Bytes(smallValues(1).map((v) => v + 0.25))],
      }, { deadline: Date.now() + 50 });
      expect(e.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(outcomes).toEqual(['DEADLINE_EXCEEDED']);
    } finally {
      spy.mockRestore();
    }
  });
});
