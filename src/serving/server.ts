/**
 * `tern serve`: the inference core with its HTTP and gRPC transports.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { AppRegistry } from './core/apps.js';
import { InferenceCore } from './core/inference-core.js';
import { buildHttpServer, DEFAULT_BODY_LIMIT } from './http/http-server.js';
import { startGrpcServer, type GrpcServerHandle } from './grpc/grpc-server.js';
import './runtimes/ocr-runtime.js';

export interface ServeOptions {
  repository: string;
  host?: string;
  /** 0 picks a free port. */
  httpPort?: number;
  /** 0 picks a free port; -1 disables gRPC. */
  grpcPort?: number;
  bodyLimit?: number;
  watch?: boolean;
  logger?: Logger;
}

export interface RunningServer {
  core: InferenceCore;
  apps: AppRegistry;
  http: FastifyInstance;
  httpPort: number;
  grpcPort?: number;
  close(): Promise<void>;
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const core = await InferenceCore.start({ repository: options.repository, watch: options.watch, logger: options.logger });
  const apps = new AppRegistry(core);
  await apps.reload();
  core.manager.onReloaded = () => apps.reload();
  const host = options.host ?? '0.0.0.0';
  const http = buildHttpServer(core, apps, { bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT });
  await http.listen({ host, port: options.httpPort ?? 8000 });
  const httpPort = (http.server.address() as { port: number }).port;
  let grpc: GrpcServerHandle | undefined;
  if (options.grpcPort !== -1) grpc = await startGrpcServer(core, { host, port: options.grpcPort ?? 8001 });
  return {
    core, apps, http, httpPort, grpcPort: grpc?.port,
    async close() {
      await grpc?.close();
      await http.close();
      await core.close();
    },
  };
}
