/** Join tokens (admin) and the join endpoint agents call with one. */
import { JoinRequestSchema, JoinTokenRequestSchema, type JoinResponse } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import { createJoinToken } from '../../auth/accounts.js';
import { admitNode, type Admission } from '../../auth/node-admission.js';
import { audit, desiredStateChanged } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { TokenParams } from '../route-schemas.js';

const JOIN_MESSAGE: Record<Admission['how'], string> = {
  new: 'joined the fleet',
  rejoin: 'rejoined with its node token',
  reregister: 're-registered with a join token (new node token)',
};

export function registerJoinRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { store } = deps;

  app.post('/join-tokens', {
    config: { access: 'admin' },
    schema: { summary: 'Create a join token for agents (the secret is returned once)', tags: ['join'], body: JoinTokenRequestSchema },
  }, async (req, reply) => {
    const { token, record } = createJoinToken(store, req.body.ttl_s, req.body.description, req.principal?.name);
    audit(deps, req, 'join_token.created', `join-token/${record.id}`, `join token ${record.id} created, expires ${new Date(record.expires_at).toISOString()}`);
    return reply.code(201).send({ ...record, token });
  });

  app.get('/join-tokens', {
    config: { access: 'admin' },
    schema: { summary: 'List join tokens with their status (never the secrets)', tags: ['join'] },
  }, async () => ({ join_tokens: store.joinTokens.list() }));

  app.delete('/join-tokens/:id', {
    config: { access: 'admin' },
    schema: { summary: 'Revoke a join token', tags: ['join'], params: TokenParams },
  }, async (req) => {
    const t = store.joinTokens.get(req.params.id);
    if (!t) throw new TernError('NOT_FOUND', `join token ${req.params.id} not found`);
    if (store.joinTokens.revoke(t.id)) audit(deps, req, 'join_token.revoked', `join-token/${t.id}`, `join token ${t.id} revoked`);
    return store.joinTokens.get(t.id);
  });

  app.post('/join', {
    config: { access: 'public' },
    schema: { summary: 'Join (join token) or rejoin (node_id + node token) the fleet', tags: ['join'], security: [], body: JoinRequestSchema },
  }, async (req): Promise<JoinResponse> => {
    const admission = admitNode(store, req.body);
    const { node } = admission;
    // Every join, rejoins too: a broker that lost its accounts gets them back when the node returns.
    await deps.hooks.nodeCredentials?.(node.id, admission.nodeToken).catch((err: Error) => {
      throw new TernError('BROKER_UNAVAILABLE', `the broker account of node ${node.id} could not be set up: ${err.message}`);
    });
    audit(deps, req, admission.how === 'rejoin' ? 'node.rejoined' : 'node.joined', `node/${node.id}`, `node ${node.id} (${node.facts.hostname}) ${JOIN_MESSAGE[admission.how]}`, {
      hostname: node.facts.hostname, arch: node.facts.arch, address: node.facts.address, cpus: node.facts.cpus,
      cpu_score: node.facts.cpu_score, ...(admission.joinTokenId ? { join_token: admission.joinTokenId } : {}),
    });
    desiredStateChanged(deps, `node ${node.id} joined`);
    return { node_id: node.id, node_token: admission.nodeToken, mqtt_url: deps.mqttUrl(), heartbeat_ms: deps.heartbeatMs };
  });
}
