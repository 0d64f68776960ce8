/**
 * Container deployments through a real reconciler and store: their replicas
 * reach the node as `workloads` (not `replicas`, which agents from before
 * would refuse), gateways' routing table leaves them out, a replica that
 * cannot get its node port is refused with the reason in the events, and a
 * new image replaces replicas stop-first when they publish node ports.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContainerDeploymentSpecSchema, DeploymentSpecSchema, DesiredStateSchema, type DesiredState, type NodeFacts } from '../../protocol/fleet.js';
import type { RoutingTable } from '../../protocol/routing.js';
import { RoutesPublisher } from '../routing/routes-publisher.js';
import { Store } from '../store/store.js';
import { Reconciler } from './reconciler.js';

const FACTS: NodeFacts = {
  hostname: 'edge', arch: 'x64', os: 'linux', cpus: 4, cpu_model: '', memory_bytes: 8e9, cpu_score: 900,
  accelerators: [], labels: {}, address: '10.0.0.3', agent_version: '0.1.0', runtimes: ['process', 'container'], workloads: ['container'],
};

describe('reconciler with container deployments', () => {
  let dir: string;
  let store: Store;
  let desired: Map<string, DesiredState>;
  let tables: RoutingTable[];
  let reconciler: Reconciler;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tern-workloads-'));
    store = Store.open(path.join(dir, 'control.db'));
    desired = new Map();
    tables = [];
    const log = pino({ level: 'silent' });
    const routes = new RoutesPublisher(store, { publishRoutes: (t) => { tables.push(t); } }, log);
    reconciler = new Reconciler(store, { publishDesired: (d) => { desired.set(d.node, d); } }, log, { routes });
    store.nodes.upsertOnJoin('n1', FACTS, 'h1');
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const app = (o: Record<string, unknown> = {}) => ContainerDeploymentSpecSchema.parse({ kind: 'container', name: 'web', image: 'web:1', replicas: 1, ports: [{ container: 26001 }], ...o });
  const markReady = () => {
    for (const r of store.replicas.list()) store.replicas.updateObserved(r.id, r.generation, { state: 'ready', port: 26001 });
  };
  const messages = () => store.events.query({ limit: 100 }).map((e) => e.message);

  it('sends the replica as a workload, keeps it out of the routing table, and refuses a second one on the same node port', () => {
    store.models.addVersion({ model: 'iris', sha256: 'a'.repeat(64), size: 10, format: 'onnx' });
    store.deployments.create(DeploymentSpecSchema.parse({ name: 'iris', model: 'iris', replicas: 1 }), '1');
    store.deployments.create(app());
    reconciler.reconcile('test');
    const state = desired.get('n1')!;
    expect(state.replicas.map((r) => r.deployment)).toEqual(['iris']);
    expect(state.workloads).toEqual([expect.objectContaining({
      deployment: 'web', runtime: 'container', generation: 1, resources: { cpu: 0.5, memory_mb: 256 },
      workload: { image: 'web:1', env: {}, ports: [{ container: 26001, protocol: 'tcp' }], network: 'host', volumes: [] },
    })]);
    // An agent from before workloads validated with this schema minus the list: it still takes the state (and its model replicas), dropping the list.
    const older = DesiredStateSchema.omit({ workloads: true }).safeParse(JSON.parse(JSON.stringify(state)));
    expect(older.success && older.data).toEqual({ node: 'n1', revision: state.revision, replicas: state.replicas });
    markReady();
    reconciler.reconcile('ready');
    expect(tables.at(-1)!.routes.map((r) => r.deployment)).toEqual(['iris']);

    store.deployments.scale('web', 2);
    reconciler.reconcile('scaled');
    expect(store.replicas.listByDeployment('web')).toHaveLength(1);
    expect(messages()).toContain('1 replica(s) of web cannot be placed: n1 already has node port 26001 published by deployment web');
  });

  it('rolls a new image out stop-first when the replicas publish node ports, start-first when they do not', () => {
    store.deployments.create(app());
    reconciler.reconcile('test');
    markReady();
    const [first] = store.replicas.listByDeployment('web');
    store.deployments.rolloutImage('web', 'web:2');
    reconciler.reconcile('rollout');
    // The old replica is told to stop (no drain: gateways never routed to it) and the new one is placed in the same pass.
    expect(store.replicas.get(first.id)!.desired).toBe('stop');
    const next = store.replicas.listByDeployment('web').filter((r) => r.id !== first.id);
    expect(next.map((r) => [r.version, r.generation, r.desired])).toEqual([['2', 2, 'run']]);
    expect(desired.get('n1')!.workloads!.map((w) => [w.id, w.workload.image])).toEqual([[next[0].id, 'web:2']]);

    store.deployments.create(app({ name: 'worker', ports: [] }));
    reconciler.reconcile('worker');
    markReady();
    const [w1] = store.replicas.listByDeployment('worker');
    store.deployments.rolloutImage('worker', 'worker:2');
    reconciler.reconcile('rollout');
    expect(store.replicas.get(w1.id)!.desired).toBe('run'); // kept until its replacement is ready
  });
});
