/**
 * The Open Inference Protocol v2 gRPC transport (KServe's
 * inference.GRPCInferenceService): a thin translator onto the inference core,
 * as Triton's gRPC frontend is onto its core. Unary calls only; methods the
 * service does not define (Triton's ModelStreamInfer, repository calls) are
 * answered UNIMPLEMENTED by grpc-js itself.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { asTernError } from '../../protocol/errors.js';
import { SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION } from '../../protocol/oip.js';
import type { InferenceCore } from '../core/inference-core.js';
import { decodeInferRequest, encodeInferResponse, type ModelInferRequestMsg, type ModelInferResponseMsg } from './infer-messages.js';

export interface GrpcServerHandle {
  port: number;
  close(): Promise<void>;
}

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Largest request or response message (default 64 MiB, as the HTTP body limit). */
  maxMessageBytes?: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/** How long close() lets in-flight calls finish before cutting connections. */
const SHUTDOWN_GRACE_MS = 5_000;

/**
 * proto-loader options. longs: String keeps int64/uint64 contents exact (a
 * Number would round values beyond 2^53); shapes are converted with Number().
 * bytes: Buffer keeps bytes fields as Buffers (views into the received
 * message, no base64). defaults: false leaves unset fields out, so handlers
 * see `undefined` rather than zero values and the decoder does no work for
 * them; oneofs: true names the set member of InferParameter.parameter_choice.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
};

/**
 * Where grpc_predict_v2.proto lives. Under vitest this module runs from
 * src/serving/grpc/, next to the .proto. Compiled, it runs from
 * dist/serving/grpc/, and `tsc` copies no .proto files to dist/, so the
 * fallback climbs from dist/serving/grpc/ to the package root and back down
 * into src/serving/grpc/ (the published package ships src/ as well).
 */
export function grpcProtoPath(): string {
  const candidates = [
    fileURLToPath(new URL('./grpc_predict_v2.proto', import.meta.url)),
    fileURLToPath(new URL('../../../src/serving/grpc/grpc_predict_v2.proto', import.meta.url)),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`grpc_predict_v2.proto not found (looked in ${candidates.join(', ')})`);
  return found;
}

let cachedDefinition: protoLoader.PackageDefinition | undefined;

/** The loaded proto, parsed once per process; serializers are compiled once by protobufjs. */
export function loadGrpcPackageDefinition(): protoLoader.PackageDefinition {
  cachedDefinition ??= protoLoader.loadSync(grpcProtoPath(), PROTO_LOADER_OPTIONS);
  return cachedDefinition;
}

function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const e = asTernError(err);
  return { code: e.grpcStatus as grpc.status, details: e.message };
}

function deadlineMs(call: grpc.ServerUnaryCall<unknown, unknown>): number {
  const d = call.getDeadline();
  return d instanceof Date ? d.getTime() : d;
}

interface NamedVersion { name?: string; version?: string }

/** The handlers, one per rpc of GRPCInferenceService. */
function buildImplementation(core: InferenceCore): grpc.UntypedServiceImplementation {
  const log = core.log.child({ transport: 'grpc' });
  /** Runs a synchronous handler body and maps a throw onto a gRPC status. */
  const unary = <Req, Res>(method: string, body: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      let result: Res;
      try {
        result = body(call.request);
      } catch (err) {
        const status = toServiceError(err);
        if (status.code === grpc.status.INTERNAL) log.error({ err, method }, 'grpc call failed');
        callback(status);
        return;
      }
      callback(null, result);
    };

  const modelInfer: grpc.handleUnaryCall<ModelInferRequestMsg, ModelInferResponseMsg> = (call, callback) => {
    let request;
    try {
      request = decodeInferRequest(call.request, deadlineMs(call));
    } catch (err) {
      callback(toServiceError(err));
      return;
    }
    // The deadline timer or the client may have ended the call already: skip the work.
    if (call.cancelled) return;
    core.infer(request).then(
      (res) => callback(null, encodeInferResponse(res)),
      (err: unknown) => {
        const status = toServiceError(err);
        if (status.code === grpc.status.INTERNAL) log.error({ err, model: request.model }, 'grpc ModelInfer failed');
        callback(status);
      },
    );
  };

  return {
    ServerLive: unary('ServerLive', () => ({ live: core.isLive() })),
    ServerReady: unary('ServerReady', () => ({ ready: core.isReady() })),
    ServerMetadata: unary('ServerMetadata', () => ({ name: SERVER_NAME, version: SERVER_VERSION, extensions: SERVER_EXTENSIONS })),
    ModelReady: unary('ModelReady', (req: NamedVersion) => {
      const name = req.name ?? '';
      core.requireModel(name); // NOT_FOUND for unknown models; known but not ready answers ready: false
      return { ready: core.isModelReady(name, req.version || undefined) };
    }),
    ModelMetadata: unary('ModelMetadata', (req: NamedVersion) => {
      const m = core.modelMetadata(req.name ?? '', req.version || undefined);
      return { name: m.name, versions: m.versions, platform: m.platform, inputs: m.inputs, outputs: m.outputs };
    }),
    ModelInfer: modelInfer,
  };
}

export function listenAddress(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

export async function startGrpcServer(core: InferenceCore, options: GrpcServerOptions): Promise<GrpcServerHandle> {
  const service = loadGrpcPackageDefinition()['inference.GRPCInferenceService'] as grpc.ServiceDefinition;
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxBytes,
    'grpc.max_send_message_length': maxBytes,
  });
  server.addService(service, buildImplementation(core));
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(listenAddress(options.host, options.port), grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(err);
      else resolve(bound);
    });
  });
  core.log.info({ host: options.host, port }, 'gRPC (OIP v2) listening');
  let closing: Promise<void> | undefined;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      return closing;
    },
  };
}
