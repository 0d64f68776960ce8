/**
 * The load generator's clients, one per transport: OIP v2 REST with JSON
 * tensors, REST with the binary tensor extension, and gRPC ModelInfer with
 * raw_input_contents. Each request body is built once; `send` posts it and
 * reads the whole answer without decoding it (so the client's CPU, which this
 * machine shares with the server, goes to the server), while `verify` sends
 * one request and decodes and checks the answer before any load is applied.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ClientHttp2Session } from 'node:http2';
import type { Dispatcher, Pool } from 'undici';
import { connectGrpc, unaryCall } from '../gateway/grpc-unary-client.js';
import { binaryInferBody, elementCount, grpcInferMessage, jsonInferBody, type BenchTensor } from './model-inputs.js';

export const TRANSPORTS = ['rest-json', 'rest-binary', 'grpc'] as const;
export type Transport = (typeof TRANSPORTS)[number];

export interface BenchClient {
  /** One request; rejects on a transport error or a non-success status. */
  send(): Promise<void>;
  /** One request whose answer is decoded and checked; returns a one-line description of it. */
  verify(): Promise<string>;
}

/** Generous: a slow request is a figure to report, not a failure. */
const REQUEST_TIMEOUT_MS = 120_000;

interface OutputJson { name: string; datatype: string; shape: number[]; data?: unknown[]; parameters?: { binary_data_size?: number } }

function describeOutputs(outputs: OutputJson[]): string {
  return outputs.map((o) => `${o.name} ${o.datatype} [${o.shape.join(',')}]`).join(', ');
}

function checkBatch(outputs: OutputJson[], rows: number): void {
  if (outputs.length === 0) throw new Error('the answer has no outputs');
  for (const o of outputs) {
    if (o.shape[0] !== rows) throw new Error(`output '${o.name}' has shape [${o.shape.join(',')}], expected ${rows} row(s)`);
  }
}

async function drain(body: Dispatcher.ResponseData['body']): Promise<void> {
  for await (const _chunk of body) { /* read to the end, keep nothing */ }
}

async function expectOk(res: Dispatcher.ResponseData): Promise<void> {
  if (res.statusCode === 200) return;
  const text = await res.body.text();
  throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`);
}

function inferPath(model: string): string {
  return `/v2/models/${encodeURIComponent(model)}/infer`;
}

/** A REST client whose load requests only drain the answer; `check` decodes one answer in `verify`. */
function restClient(pool: Pool, options: Dispatcher.RequestOptions, check: (res: Dispatcher.ResponseData) => Promise<string>): BenchClient {
  return {
    async send() {
      const res = await pool.request(options);
      await expectOk(res);
      await drain(res.body);
    },
    async verify() {
      const res = await pool.request(options);
      await expectOk(res);
      return check(res);
    },
  };
}

/** OIP v2 REST with JSON tensors (also what the naive server speaks). */
export function restJsonClient(pool: Pool, model: string, inputs: BenchTensor[]): BenchClient {
  const options: Dispatcher.RequestOptions = {
    path: inferPath(model), method: 'POST', headers: { 'content-type': 'application/json' }, body: jsonInferBody(inputs),
    headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS,
  };
  const rows = inputs[0].shape[0];
  return restClient(pool, options, async (res) => {
    const answer = (await res.body.json()) as { outputs?: OutputJson[] };
    const outputs = answer.outputs ?? [];
    checkBatch(outputs, rows);
    for (const o of outputs) {
      if (!Array.isArray(o.data) || o.data.length !== elementCount(o.shape)) {
        throw new Error(`output '${o.name}': shape [${o.shape.join(',')}] but ${Array.isArray(o.data) ? o.data.length : 'no'} JSON values`);
      }
    }
    return describeOutputs(outputs);
  });
}

/** The request a binary REST client sends: OIP v2 infer with the binary tensor data extension. */
export function restBinaryRequest(model: string, inputs: BenchTensor[]): Dispatcher.RequestOptions {
  const { body, headerLength } = binaryInferBody(inputs);
  return {
    path: inferPath(model), method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
    body, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS,
  };
}

/** OIP v2 REST with the binary tensor data extension, both ways. */
export function restBinaryClient(pool: Pool, model: string, inputs: BenchTensor[]): BenchClient {
  const options = restBinaryRequest(model, inputs);
  const rows = inputs[0].shape[0];
  return restClient(pool, options, async (res) => {
    const raw = Buffer.from(await res.body.arrayBuffer());
    const lengthHeader = res.headers['inference-header-content-length'];
    if (lengthHeader === undefined) throw new Error('the answer has no Inference-Header-Content-Length: outputs did not come back binary');
    const jsonLength = Number(lengthHeader);
    const header = JSON.parse(raw.subarray(0, jsonLength).toString('utf8')) as { outputs?: OutputJson[] };
    const outputs = header.outputs ?? [];
    checkBatch(outputs, rows);
    const claimed = outputs.reduce((n, o) => n + (o.parameters?.binary_data_size ?? 0), 0);
    if (claimed !== raw.length - jsonLength) throw new Error(`binary outputs claim ${claimed} bytes, the body carries ${raw.length - jsonLength}`);
    return describeOutputs(outputs);
  });
}

/**
 * grpc_predict_v2.proto stays in src/ (tsc copies no .proto files): from
 * dist/bench/ climb to the package root and back down; from src/bench/ it is a sibling folder.
 */
export function protoPath(): string {
  const candidates = [
    fileURLToPath(new URL('../../src/serving/grpc/grpc_predict_v2.proto', import.meta.url)),
    fileURLToPath(new URL('../serving/grpc/grpc_predict_v2.proto', import.meta.url)),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`grpc_predict_v2.proto not found (looked in ${candidates.join(', ')})`);
  return found;
}

interface ModelInferResponseMsg {
  outputs?: { name: string; datatype: string; shape: (string | number)[] }[];
  raw_output_contents?: Buffer[];
}

/** ModelInfer's definition (path, serializers) from the KServe proto. */
function modelInferDefinition(): protoLoader.MethodDefinition<object, object> {
  const definition = protoLoader.loadSync(protoPath(), { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true });
  const service = definition['inference.GRPCInferenceService'] as protoLoader.ServiceDefinition;
  return service.ModelInfer as protoLoader.MethodDefinition<object, object>;
}

/** What a gRPC bench client needs from its connection: ModelInfer's serializers and a unary call with a serialized request. */
export interface InferChannel {
  readonly modelInfer: protoLoader.MethodDefinition<object, object>;
  call<T>(payload: Buffer, deserialize: (b: Buffer) => T): Promise<T>;
  close(): void;
}

/** One grpc-js channel to a GRPCInferenceService, shared by every gRPC client of a run. */
export class GrpcChannel implements InferChannel {
  readonly client: grpc.Client;
  readonly modelInfer = modelInferDefinition();

  constructor(address: string) {
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
  }

  /** A unary ModelInfer with an already serialized request; the answer is decoded only if asked to. */
  call<T>(payload: Buffer, deserialize: (b: Buffer) => T): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        this.modelInfer.path, (b: Buffer) => b, deserialize, payload,
        { deadline: Date.now() + REQUEST_TIMEOUT_MS },
        (err, value) => (err ? reject(new Error(`gRPC ${grpc.status[err.code] ?? err.code}: ${err.details}`)) : resolve(value as T)),
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

/**
 * The same calls over one node:http2 session with tern's own gRPC client
 * (the gateway's, grpc-unary-client.ts). grpc-js's client costs about 0.45
 * ms more per call on a 2-core VM, which would be charged to the server under
 * test; KServe's and Triton's own load generators use C++ gRPC for the same
 * reason.
 */
export class H2GrpcChannel implements InferChannel {
  readonly modelInfer = modelInferDefinition();
  private readonly session: ClientHttp2Session;

  constructor(address: string) {
    this.session = connectGrpc(address);
    this.session.on('error', () => { /* each call reports its own failure */ });
  }

  async call<T>(payload: Buffer, deserialize: (b: Buffer) => T): Promise<T> {
    const r = await unaryCall(this.session, this.modelInfer.path, payload, { deadline: Date.now() + REQUEST_TIMEOUT_MS });
    if (r.kind !== 'answer') throw r.error;
    if (r.code !== grpc.status.OK) throw new Error(`gRPC ${grpc.status[r.code] ?? r.code}: ${r.details}`);
    return deserialize(r.message!);
  }

  close(): void {
    this.session.close();
  }
}

/** gRPC ModelInfer with raw_input_contents; the request message is serialized once. */
export function grpcClient(channel: InferChannel, model: string, inputs: BenchTensor[]): BenchClient {
  const payload = channel.modelInfer.requestSerialize(grpcInferMessage(model, inputs));
  const rows = inputs[0].shape[0];
  const keepBytes = (b: Buffer) => b;
  return {
    async send() {
      await channel.call(payload, keepBytes);
    },
    async verify() {
      const res = await channel.call(payload, (b) => channel.modelInfer.responseDeserialize(b) as ModelInferResponseMsg);
      const outputs: OutputJson[] = (res.outputs ?? []).map((o) => ({ ...o, shape: o.shape.map(Number) }));
      checkBatch(outputs, rows);
      const raw = res.raw_output_contents ?? [];
      outputs.forEach((o, k) => {
        const expected = elementCount(o.shape) * 4;
        if (o.datatype === 'FP32' && raw[k]?.length !== expected) {
          throw new Error(`output '${o.name}': shape [${o.shape.join(',')}] needs ${expected} raw bytes, got ${raw[k]?.length ?? 'none'}`);
        }
      });
      return describeOutputs(outputs);
    },
  };
}
