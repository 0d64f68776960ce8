/** Nodes: list, show, label, cordon, uncordon, drain, remove. Scheduling flags change desired state. */
import type { FastifyRequest } from 'fastify';
import { LabelsPatchSchema } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import type { NodeRecord } from '../../store/store.js';
import { audit, desiredStateChanged } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { NodeParams } from '../route-schemas.js';

type NodeAction = 'cordon' | 'uncordon' | 'drain';

function applyAction(deps: ControlApiDeps, node: NodeRecord, action: NodeAction): string {
  const { nodes } = deps.store;
  if (action === 'cordon') {
    nodes.setCordoned(node.id, true);
    return `node ${node.id} cordoned: no new replicas will be placed on it`;
  }
  if (action === 'uncordon') {
    nodes.setCordoned(node.id, false);
    if (node.state === 'draining') nodes.setState(node.id, 'ready');
    return `node ${node.id} uncordoned: it takes new replicas again`;
  }
  nodes.setCordoned(node.id, true);
  if (node.state !== 'down') nodes.setState(node.id, 'draining');
  return `node ${node.id} draining: its replicas will be moved to other nodes`;
}

const EVENT_KIND: Record<NodeAction, string> = { cordon: 'node.cordoned', uncordon: 'node.uncordoned', drain: 'node.draining' };

export function registerNodeRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { store } = deps;
  const getNode = (id: string): NodeRecord => {
    const node = store.nodes.get(id);
    if (!node) throw new TernError('NOT_FOUND', `node ${id} not found`);
    return node;
  };

  app.get('/nodes', {
    config: { access: 'read' },
    schema: { summary: 'List nodes', tags: ['nodes'] },
  }, async () => ({ nodes: store.nodes.list() }));

  app.get('/nodes/:id', {
    config: { access: 'read' },
    schema: { summary: 'Show a node with its replicas', tags: ['nodes'], params: NodeParams },
  }, async (req) => ({ ...getNode(req.params.id), replicas: store.replicas.listByNode(req.params.id) }));

  app.patch('/nodes/:id/labels', {
    config: { access: 'admin' },
    schema: { summary: 'Set labels (a null value removes one)', tags: ['nodes'], params: NodeParams, body: LabelsPatchSchema },
  }, async (req) => {
    getNode(req.params.id);
    const node = store.nodes.patchLabels(req.params.id, req.body.labels)!;
    const changes = Object.entries(req.body.labels).map(([k, v]) => (v === null ? `-${k}` : `${k}=${v}`)).join(' ');
    audit(deps, req, 'node.labeled', `node/${node.id}`, `node ${node.id} labels changed: ${changes}`, { labels: req.body.labels });
    desiredStateChanged(deps, `node ${node.id} labels changed`);
    return node;
  });

  app.delete('/nodes/:id', {
    config: { access: 'admin' },
    schema: { summary: 'Remove a node from the fleet (down, or running no replicas); its token stops working', tags: ['nodes'], params: NodeParams },
  }, async (req) => {
    const node = getNode(req.params.id);
    store.transaction(() => {
      const running = store.replicas.listByNode(node.id).filter((r) => r.desired !== 'stop');
      if (node.state !== 'down' && running.length > 0) {
        throw new TernError('CONFLICT', `node ${node.id} is ${node.state} and runs ${running.length} replica(s): drain it first (tern nodes drain ${node.id}) or stop its agent`);
      }
      store.nodes.remove(node.id); // its replicas and token go with it
    });
    audit(deps, req, 'node.removed', `node/${node.id}`, `node ${node.id} (${node.facts.hostname}) removed from the fleet; its token no longer works`);
    deps.hooks.nodeRemoved?.(node.id);
    desiredStateChanged(deps, `node ${node.id} removed`);
    return { id: node.id, removed: true };
  });

  for (const action of ['cordon', 'uncordon', 'drain'] as const) {
    app.post(`/nodes/:id/${action}`, {
      config: { access: 'admin' },
      schema: { summary: `${action[0].toUpperCase()}${action.slice(1)} a node`, tags: ['nodes'], params: NodeParams },
    }, async (req: FastifyRequest<{ Params: { id: string } }>) => {
      const message = store.transaction(() => applyAction(deps, getNode(req.params.id), action));
      audit(deps, req, EVENT_KIND[action], `node/${req.params.id}`, message);
      desiredStateChanged(deps, `node ${req.params.id} ${action}`);
      return getNode(req.params.id);
    });
  }
}
