/** What the control API needs from the rest of the control plane (wired by control-plane.ts). */
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { RoutingTable } from '../../protocol/routing.js';
import type { ModelRegistry } from '../registry/model-registry.js';
import type { ImageStore } from '../registry/image-store.js';
import type { NodeRpc } from '../mqtt/node-rpc.js';
import type { Store } from '../store/store.js';

export interface ControlApiHooks {
  /** Desired state changed (deployment or node scheduling flags); the reconciler re-plans. */
  desiredStateChanged(reason: string): void;
  /** A node was given a token: make it valid on the broker before the node is told to connect. */
  nodeCredentials?(node: string, token: string): Promise<void>;
  /** A node left the fleet: forget its MQTT session, clear its retained desired state. */
  nodeRemoved?(node: string): void;
}

export interface ControlApiDeps {
  store: Store;
  registry: ModelRegistry;
  /** Container image archives for nodes without a registry (absent: the image routes answer 404). */
  images?: ImageStore;
  log: Logger;
  /** The MQTT URL agents should connect to (known only once the broker listens). */
  mqttUrl: () => string;
  heartbeatMs: number;
  hooks: ControlApiHooks;
  /** Calls to node agents (container operations); absent: those routes answer 404. */
  rpc?: NodeRpc;
  /** The gateways' current routing table (undefined before the first reconcile pass). */
  routes?: () => RoutingTable | undefined;
  /** Largest upload chunk in bytes (default 16 MiB). */
  chunkLimit?: number;
  /** Lifetime of login sessions (default 30 days). */
  sessionTtlMs?: number;
}

export type ApiApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, ZodTypeProvider>;
