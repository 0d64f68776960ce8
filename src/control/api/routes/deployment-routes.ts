/**
 * Deployments change desired state only: they are written to the store and the
 * reconciler is told (hooks.desiredStateChanged); placing replicas is the
 * scheduler's job, not this API's.
 */
import { DeploymentSpecSchema, RolloutRequestSchema, ScaleRequestSchema, type DeploymentSpec } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import type { DeploymentRecord, ModelVersionRecord, ReplicaRecord, Store } from '../../store/store.js';
import { audit, desiredStateChanged } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { NameParams } from '../route-schemas.js';

function status(d: DeploymentRecord, replicas: ReplicaRecord[]) {
  const running = replicas.filter((r) => r.desired === 'run');
  return {
    desired: d.spec.replicas,
    ready: running.filter((r) => r.state === 'ready').length,
    current_generation: running.filter((r) => r.generation === d.generation).length,
    total: replicas.length,
  };
}

function summary(d: DeploymentRecord, replicas: ReplicaRecord[]) {
  return { ...d, status: status(d, replicas) };
}

/** What a deployment runs, for messages: `iris:2` or `image web:1`. */
function describeTarget(d: DeploymentRecord): string {
  return d.spec.kind === 'container' ? `image ${d.spec.image}` : `${d.model}:${d.version}`;
}

/** Kind model: the model version to deploy (must be in the registry); kind container: none. */
function createDeployment(store: Store, spec: DeploymentSpec): DeploymentRecord {
  if (spec.kind === 'container') return store.deployments.create(spec);
  return store.deployments.create(spec, resolveVersion(store, spec.model, spec.version).version);
}

/** A model deployment rolls out a version, a container deployment an image; the other is a 400 naming what to send. */
function rollout(store: Store, d: DeploymentRecord, body: { version?: string; image?: string }): DeploymentRecord {
  if (d.spec.kind === 'container') {
    if (body.image === undefined) throw new TernError('BAD_REQUEST', `deployment ${d.name} is a container deployment: roll out a new image ({"image": "..."}), not a version`);
    return store.deployments.rolloutImage(d.name, body.image)!;
  }
  if (body.version === undefined) throw new TernError('BAD_REQUEST', `deployment ${d.name} serves model ${d.model}: roll out a version ({"version": "..."}), not an image`);
  return store.deployments.rollout(d.name, resolveVersion(store, d.spec.model, body.version).version)!;
}

function resolveVersion(store: Store, model: string, version: string | undefined): ModelVersionRecord {
  if (!store.models.exists(model)) throw new TernError('MODEL_NOT_FOUND', `model ${model} not found in the registry`);
  const v = version === undefined ? store.models.latestVersion(model) : store.models.getVersion(model, version);
  if (!v) throw new TernError('VERSION_NOT_FOUND', `model ${model} has no version ${version}`);
  return v;
}

export function registerDeploymentRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { store } = deps;
  const getLive = (name: string): DeploymentRecord => {
    const d = store.deployments.get(name);
    if (!d) throw new TernError('NOT_FOUND', `deployment ${name} not found`);
    if (d.deleting) throw new TernError('CONFLICT', `deployment ${name} is being deleted`);
    return d;
  };
  const detail = (name: string) => {
    const d = store.deployments.get(name);
    if (!d) throw new TernError('NOT_FOUND', `deployment ${name} not found`);
    const replicas = store.replicas.listByDeployment(name);
    return { ...summary(d, replicas), replicas };
  };

  app.post('/deployments', {
    config: { access: 'admin' },
    schema: { summary: 'Deploy a model version', tags: ['deployments'], body: DeploymentSpecSchema },
  }, async (req, reply) => {
    const spec = req.body;
    const d = createDeployment(store, spec);
    audit(deps, req, 'deployment.created', `deployment/${d.name}`, `deployment ${d.name} created: ${describeTarget(d)} x${spec.replicas} (${spec.runtime})`, { spec });
    desiredStateChanged(deps, `deployment ${d.name} created`);
    return reply.code(201).send(detail(d.name));
  });

  app.get('/deployments', {
    config: { access: 'read' },
    schema: { summary: 'List deployments with replica counts', tags: ['deployments'] },
  }, async () => {
    const byDeployment = new Map<string, ReplicaRecord[]>();
    for (const r of store.replicas.list()) {
      const list = byDeployment.get(r.deployment);
      if (list) list.push(r); else byDeployment.set(r.deployment, [r]);
    }
    return { deployments: store.deployments.list().map((d) => summary(d, byDeployment.get(d.name) ?? [])) };
  });

  app.get('/deployments/:name', {
    config: { access: 'read' },
    schema: { summary: 'Show a deployment with its replicas', tags: ['deployments'], params: NameParams },
  }, async (req) => detail(req.params.name));

  app.post('/deployments/:name/scale', {
    config: { access: 'admin' },
    schema: { summary: 'Change the replica count', tags: ['deployments'], params: NameParams, body: ScaleRequestSchema },
  }, async (req) => {
    const before = getLive(req.params.name);
    store.deployments.scale(before.name, req.body.replicas);
    audit(deps, req, 'deployment.scaled', `deployment/${before.name}`, `deployment ${before.name} scaled from ${before.spec.replicas} to ${req.body.replicas} replicas`);
    desiredStateChanged(deps, `deployment ${before.name} scaled`);
    return detail(before.name);
  });

  app.post('/deployments/:name/rollout', {
    config: { access: 'admin' },
    schema: { summary: 'Roll out another model version or, for a container deployment, another image (new generation)', tags: ['deployments'], params: NameParams, body: RolloutRequestSchema },
  }, async (req) => {
    const before = getLive(req.params.name);
    const d = rollout(store, before, req.body);
    audit(deps, req, 'deployment.rollout', `deployment/${d.name}`, `deployment ${d.name} rolling out ${describeTarget(d)} (from ${describeTarget(before)}), generation ${d.generation}`, { from: before.version, to: d.version, generation: d.generation });
    desiredStateChanged(deps, `deployment ${d.name} rollout`);
    return detail(d.name);
  });

  app.delete('/deployments/:name', {
    config: { access: 'admin' },
    schema: { summary: 'Delete a deployment (its replicas are stopped first)', tags: ['deployments'], params: NameParams },
  }, async (req, reply) => {
    const d = store.deployments.get(req.params.name);
    if (!d) throw new TernError('NOT_FOUND', `deployment ${req.params.name} not found`);
    if (store.replicas.listByDeployment(d.name).length === 0) {
      store.deployments.remove(d.name);
      audit(deps, req, 'deployment.deleted', `deployment/${d.name}`, `deployment ${d.name} deleted`);
      desiredStateChanged(deps, `deployment ${d.name} deleted`);
      return { deleted: d.name };
    }
    if (!d.deleting) {
      store.deployments.markDeleting(d.name);
      audit(deps, req, 'deployment.deleting', `deployment/${d.name}`, `deployment ${d.name} marked for deletion: its replicas will be stopped`);
      desiredStateChanged(deps, `deployment ${d.name} deleting`);
    }
    return reply.code(202).send(detail(d.name));
  });
}
