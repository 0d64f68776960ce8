/**
 * The routing table, computed from the store: per model deployment, its
 * routing policy and every replica that is ready, still wanted ('run', not
 * 'drain') and on a node that is not down, with the address gateways reach it
 * on. Container deployments (app workloads) are not in it: gateways route
 * inference requests, which only model replicas answer.
 */
import { DEFAULT_ROUTING_POLICY, isCloudNode, type Route, type RouteReplica } from '../../protocol/routing.js';
import type { NodeRecord, Store } from '../store/store.js';

function routeReplica(r: { id: string; node: string; port: number; grpc_port: number | null; version: string }, n: NodeRecord): RouteReplica {
  return {
    id: r.id, node: r.node, address: n.facts.address, port: r.port, grpc_port: r.grpc_port ?? r.port + 1,
    ...(n.facts.site ? { site: n.facts.site } : {}), ...(n.facts.zone ? { zone: n.facts.zone } : {}),
    cloud: isCloudNode(n.facts.site, n.labels), version: r.version,
  };
}

/**
 * Routes sorted by deployment and replica id, so equal tables serialise equally. `nodes`: the
 * reconcile pass's snapshot, when it has one (parsing 1000 nodes' facts again costs milliseconds).
 */
export function computeRoutes(store: Store, nodes: Map<string, NodeRecord> = new Map(store.nodes.list().map((n) => [n.id, n]))): Route[] {
  const byDeployment = new Map<string, RouteReplica[]>();
  for (const r of store.replicas.list()) {
    const n = nodes.get(r.node);
    if (r.desired !== 'run' || r.state !== 'ready' || r.port === null || !n || n.state === 'down') continue;
    const list = byDeployment.get(r.deployment) ?? [];
    list.push(routeReplica({ ...r, port: r.port }, n));
    byDeployment.set(r.deployment, list);
  }
  return store.deployments.list().flatMap((d) => (d.spec.kind === 'container' ? [] : [{
    deployment: d.name,
    policy: d.spec.routing ?? DEFAULT_ROUTING_POLICY, // specs stored before routing policies existed
    replicas: (byDeployment.get(d.name) ?? []).sort((a, b) => a.id.localeCompare(b.id)),
  }]));
}
