/**
 * The gateway's gRPC transport: KServe's GRPCInferenceService, as `tern
 * serve` speaks it. Model-level calls (ModelInfer, ModelReady,
 * ModelMetadata) are forwarded as raw bytes: the gateway reads field 1 of the
 * request (the model name) to route it and never decodes the tensors. The
 * caller's deadline travels with the forwarded call. Server-level calls are
 * answered by the gateway itself.
 *
 * The client side, towards replicas, is plain node:http2
 * (grpc-unary-client.ts) rather than a grpc-js client, which costs three times
 * as much per call. Incoming calls stay on grpc-js's server, which measured
 * within 0.04 ms of a bare node:http2 server.
 */
import type { ClientHttp2Session } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { TernError } from '../protocol/errors.js';
import { SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION } from '../protocol/oip.js';
import type { RouteReplica } from '../protocol/routing.js';
import { DEFAULT_MAX_MESSAGE_BYTES, listenAddress, loadGrpcPackageDefinition } from '../serving/grpc/grpc-server.js';
import type { Gateway, Outcome } from './gateway.js';
import { connectGrpc, unaryCall } from './grpc-unary-client.js';

const FORWARDED = new Set(['ModelInfer', 'ModelReady', 'ModelMetadata']);
/** Replica answers worth another replica's try: it is unreachable, or failed in a way another may not. */
const RETRYABLE = new Set<number>([grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.UNKNOWN, grpc.status.RESOURCE_EXHAUSTED]);

interface GrpcAnswer {
  response?: Buffer;
  error?: Partial<grpc.StatusObject>;
}

const raw = (b: Buffer) => b;

/** Field 1 (a string) of a protobuf message: `model_name` of ModelInferRequest, `name` of ModelReady/MetadataRequest. */
export function fieldOne(message: Buffer): string {
  const reader = protobuf.Reader.create(message);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === 1 && (tag & 7) === 2) return reader.string();
    reader.skipType(tag & 7);
  }
  return '';
}

function deadlineOf(call: grpc.ServerUnaryCall<unknown, unknown>): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

export class GrpcGateway {
  private readonly sessions = new Map<string, ClientHttp2Session>();
  private server: grpc.Server | undefined;

  constructor(private readonly gateway: Gateway, private readonly options: { host: string; port: number }) {}

  async listen(): Promise<number> {
    const service = loadGrpcPackageDefinition()['inference.GRPCInferenceService'] as grpc.ServiceDefinition;
    const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const [method, def] of Object.entries(service)) {
      if (FORWARDED.has(method)) {
        definition[method] = { ...def, requestDeserialize: raw, responseSerialize: raw } as grpc.MethodDefinition<unknown, unknown>;
        implementation[method] = this.forwarder(def.path);
      } else {
        definition[method] = def;
        implementation[method] = this.local(method);
      }
    }
    const server = new grpc.Server({ 'grpc.max_receive_message_length': DEFAULT_MAX_MESSAGE_BYTES, 'grpc.max_send_message_length': DEFAULT_MAX_MESSAGE_BYTES });
    server.addService(definition, implementation);
    this.server = server;
    return new Promise<number>((resolve, reject) => {
      server.bindAsync(listenAddress(this.options.host, this.options.port), grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
    });
  }

  retain(replicas: RouteReplica[]): void {
    const keep = new Set(replicas.map(targetOf));
    for (const [target, session] of this.sessions) {
      if (keep.has(target)) continue;
      this.sessions.delete(target);
      session.close(); // in-flight calls finish; no new ones start
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), 5_000);
        server.tryShutdown(() => { clearTimeout(force); resolve(); });
      });
    }
    for (const session of this.sessions.values()) session.close();
    this.sessions.clear();
  }

  // ---------------------------------------------------------------------------

  private local(method: string): grpc.handleUnaryCall<unknown, unknown> {
    return (_call, callback) => {
      if (method === 'ServerLive') return callback(null, { live: true });
      if (method === 'ServerReady') return callback(null, { ready: this.gateway.version >= 0 });
      if (method === 'ServerMetadata') return callback(null, { name: SERVER_NAME, version: SERVER_VERSION, extensions: SERVER_EXTENSIONS });
      callback({ code: grpc.status.UNIMPLEMENTED, details: `${method} is not available through a tern gateway` });
    };
  }

  private forwarder(path: string): grpc.handleUnaryCall<Buffer, Buffer> {
    return (call, callback) => {
      const deployment = fieldOne(call.request);
      const deadline = deadlineOf(call);
      this.gateway.forward(deployment, (replica, signal) => this.send(replica, path, call.request, deadline, signal), deadline).then(
        ({ value, replica }) => {
          const md = new grpc.Metadata();
          md.set('tern-replica', replica.id);
          md.set('tern-node', replica.node);
          call.sendMetadata(md);
          if (value.error) callback(value.error);
          else callback(null, value.response);
        },
        (err: unknown) => {
          const e = err instanceof TernError ? err : new TernError('INTERNAL', (err as Error).message);
          callback({ code: e.grpcStatus as grpc.status, details: e.message });
        },
      );
    };
  }

  private session(replica: RouteReplica): ClientHttp2Session {
    const target = targetOf(replica);
    let session = this.sessions.get(target);
    if (!session || session.closed || session.destroyed) {
      const created = connectGrpc(target);
      // A failed or closed connection is dropped at once, so the next call reconnects (or fails fast and is retried elsewhere).
      const forget = () => { if (this.sessions.get(target) === created) this.sessions.delete(target); };
      created.on('error', forget);
      created.on('close', forget);
      created.on('goaway', forget);
      created.unref();
      this.sessions.set(target, session = created);
    }
    return session;
  }

  private async send(replica: RouteReplica, path: string, request: Buffer, deadline: number | undefined, signal: AbortSignal): Promise<Outcome<GrpcAnswer>> {
    let session: ClientHttp2Session;
    try {
      session = this.session(replica);
    } catch (err) {
      return { ok: false, kind: 'connect', error: err as Error };
    }
    const result = await unaryCall(session, path, request, { deadline, signal });
    if (result.kind !== 'answer') return { ok: false, kind: result.kind, error: result.error };
    const { code, details } = result;
    if (code === grpc.status.OK) return { ok: true, value: { response: result.message } };
    const answer: GrpcAnswer = { error: { code, details } };
    if (code === grpc.status.CANCELLED) return { ok: false, kind: 'cancelled', error: new Error(details) };
    if (!RETRYABLE.has(code)) return { ok: true, value: answer };
    return { ok: false, kind: code === grpc.status.UNAVAILABLE ? 'connect' : 'status', error: new Error(`gRPC status ${code}: ${details}`), value: answer };
  }
}

function targetOf(replica: RouteReplica): string {
  return `${replica.address}:${replica.grpc_port}`;
}
