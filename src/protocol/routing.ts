/**
 * The gateway's routing table: which ready replicas serve each deployment and
 * where, with the deployment's routing policy. The control plane computes it
 * and publishes it retained on `ROUTES_TOPIC`; every gateway applies only
 * newer versions and keeps the last one on disk, so it routes on while the
 * control plane is down (edge autonomy).
 */
import { z } from 'zod';

/** One shared retained topic: every node reads the same table (the broker ACL grants read only). */
export const ROUTES_TOPIC = 'tern/routes';

export const LocalitySchema = z.enum(['local-first', 'fastest', 'cloud-only']);
export type Locality = z.infer<typeof LocalitySchema>;

export const RoutingPolicySchema = z.object({
  /**
   * local-first: this node's replicas, then its site/zone, then any (default);
   * fastest: every replica, by measured latency and load;
   * cloud-only: only replicas on cloud nodes (site "cloud" or label tier=cloud).
   */
  locality: LocalitySchema.default('local-first'),
  /** Send a second copy to another replica when the first has not answered by the deployment's p95 (Clipper's straggler mitigation). */
  hedge: z.boolean().default(false),
}).strict();
export type RoutingPolicy = z.infer<typeof RoutingPolicySchema>;
export const DEFAULT_ROUTING_POLICY: RoutingPolicy = { locality: 'local-first', hedge: false };

export const RouteReplicaSchema = z.object({
  id: z.string(),
  node: z.string(),
  /** Host the node's replicas are reached on. */
  address: z.string(),
  /** HTTP port (OIP v2 REST, TF Serving REST, apps). */
  port: z.number().int().positive(),
  /** gRPC port (as the replica reported it; usually port + 1, see agent/port-allocator.ts). */
  grpc_port: z.number().int().positive(),
  site: z.string().optional(),
  zone: z.string().optional(),
  cloud: z.boolean(),
  version: z.string(),
});
export type RouteReplica = z.infer<typeof RouteReplicaSchema>;

export const RouteSchema = z.object({
  deployment: z.string(),
  policy: RoutingPolicySchema,
  replicas: z.array(RouteReplicaSchema),
});
export type Route = z.infer<typeof RouteSchema>;

export const RoutingTableSchema = z.object({
  /** Grows with every change (a millisecond clock, kept increasing across control-plane restarts). */
  version: z.number().int().nonnegative(),
  generated_at: z.number(),
  routes: z.array(RouteSchema),
});
export type RoutingTable = z.infer<typeof RoutingTableSchema>;

/** Whether a node counts as cloud for the cloud-only policy. */
export function isCloudNode(site: string | undefined, labels: Record<string, string>): boolean {
  return site === 'cloud' || labels.tier === 'cloud';
}
