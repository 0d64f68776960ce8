/**
 * A running gateway: the core, its HTTP and gRPC transports, its metrics,
 * and the routing table's copy on disk. Agents and the control plane start
 * one each; they feed it tables (from MQTT or directly) through `apply`.
 */
import type { Logger } from 'pino';
import { readStateFile, writeStateFile } from '../agent/state-files.js';
import { RoutingTableSchema, type RoutingTable } from '../protocol/routing.js';
import { DEFAULT_BODY_LIMIT } from '../serving/limits.js';
import { Gateway } from './gateway.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { GrpcGateway } from './grpc-gateway.js';
import { HttpGateway } from './http-gateway.js';
import type { Locale } from './replica-picker.js';

export interface GatewayServerOptions {
  host?: string;
  /** HTTP port (0: any free port). */
  httpPort: number;
  /** gRPC port (0: any free port). */
  grpcPort: number;
  locale?: Locale;
  /** Where the last routing table is kept; loaded at start so routing works before the control plane answers. */
  cacheFile?: string;
  bodyLimit?: number;
  log: Logger;
}

export interface GatewayServer {
  readonly gateway: Gateway;
  readonly httpPort: number;
  readonly grpcPort: number;
  /** The table version routed by (-1: none yet). */
  readonly version: number;
  /** Takes a newer table (and saves it); false when it is not newer. */
  apply(table: RoutingTable): boolean;
  close(): Promise<void>;
}

export async function startGatewayServer(o: GatewayServerOptions): Promise<GatewayServer> {
  const log = o.log.child({ part: 'gateway' });
  const metrics = new GatewayMetrics();
  const gateway: Gateway = new Gateway({
    locale: o.locale, log, metrics,
    // Probes go over HTTP whatever protocol the traffic uses: /v2/health/ready is the replica's own verdict.
    probe: (replica, signal): Promise<void> => http.probe(replica, signal),
  });
  const http: HttpGateway = new HttpGateway(gateway, {
    host: o.host ?? '0.0.0.0', port: o.httpPort, bodyLimit: o.bodyLimit ?? DEFAULT_BODY_LIMIT,
    metrics: () => metrics.registry.metrics(), metricsContentType: metrics.registry.contentType,
  });
  const grpc = new GrpcGateway(gateway, { host: o.host ?? '0.0.0.0', port: o.grpcPort });

  let saving = Promise.resolve();
  const apply = (table: RoutingTable): boolean => {
    if (!gateway.apply(table)) return false;
    const replicas = table.routes.flatMap((r) => r.replicas);
    http.retain(replicas);
    grpc.retain(replicas);
    if (o.cacheFile) {
      const file = o.cacheFile;
      saving = saving.then(() => writeStateFile(file, table)).catch((err: unknown) => log.warn({ err }, 'could not save the routing table'));
    }
    log.debug({ version: table.version, deployments: table.routes.length }, 'routing table applied');
    return true;
  };

  if (o.cacheFile) {
    const cached = await readStateFile(o.cacheFile, RoutingTableSchema).catch((err: unknown) => {
      log.warn({ err: (err as Error).message }, 'ignoring the saved routing table');
      return undefined;
    });
    if (cached && gateway.apply(cached)) log.info({ version: cached.version }, 'routing by the saved routing table until the control plane sends a newer one');
  }
  const httpPort = await http.listen();
  let grpcPort: number;
  try {
    grpcPort = await grpc.listen();
  } catch (err) {
    await http.close();
    throw err;
  }
  log.info({ http: httpPort, grpc: grpcPort }, 'gateway listening');
  return {
    gateway, httpPort, grpcPort, apply,
    get version() { return gateway.version; },
    async close() {
      gateway.close();
      await Promise.all([http.close(), grpc.close()]);
      await saving;
    },
  };
}
