/**
 * Admitting agents: a new node presents a join token and gets an id and a node
 * token of its own; a restarted node presents its node id and node token and
 * keeps its identity (labels, cordon, revision). Errors name the exact reason
 * so an operator can fix the agent's configuration.
 */
import { randomBytes } from 'node:crypto';
import type { z } from 'zod';
import { NameSchema, type JoinRequestSchema } from '../../protocol/fleet.js';
import { TernError } from '../../protocol/errors.js';
import type { NodeRecord, Store } from '../store/store.js';
import { generateToken, hashToken } from './tokens.js';

export type JoinRequest = z.infer<typeof JoinRequestSchema>;

export interface Admission {
  node: NodeRecord;
  nodeToken: string;
  /** new: first join; rejoin: with its node token; reregister: a known id with a join token. */
  how: 'new' | 'rejoin' | 'reregister';
  joinTokenId?: string;
}

function unauthorized(message: string): TernError {
  return new TernError('UNAUTHORIZED', message);
}

/** `Pi-4 Kitchen.local` -> `pi-4-kitchen-local-3fa9c1` */
export function newNodeId(hostname: string): string {
  const slug = hostname.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40).replace(/-+$/, '');
  return `${slug || 'node'}-${randomBytes(3).toString('hex')}`;
}

function uniqueNodeId(store: Store, hostname: string): string {
  for (;;) {
    const id = newNodeId(hostname);
    if (!store.nodes.get(id)) return id;
  }
}

function checkNodeId(id: string): void {
  if (!NameSchema.safeParse(id).success) {
    throw new TernError('BAD_REQUEST', `invalid node_id "${id}": node ids are 1-63 lower-case letters, digits, _ . - and start with a letter or digit`);
  }
}

function rejoin(store: Store, req: JoinRequest, hash: string, now: number): Admission | undefined {
  if (req.node_id === undefined || !store.nodes.tokenMatches(req.node_id, hash)) return undefined;
  const { node } = store.nodes.upsertOnJoin(req.node_id, req.facts, hash, now);
  return { node, nodeToken: req.token, how: 'rejoin' };
}

function joinWithToken(store: Store, req: JoinRequest, hash: string, now: number): Admission {
  const jt = store.joinTokens.findByHash(hash, now);
  if (!jt) {
    const owner = store.nodes.findIdByTokenHash(hash);
    if (owner) throw unauthorized(`this node token belongs to node ${owner}${req.node_id ? `, not ${req.node_id}` : ': send node_id to rejoin'}`);
    throw unauthorized(req.node_id && store.nodes.get(req.node_id) ? `invalid node token for node ${req.node_id}` : 'invalid join token');
  }
  if (jt.status === 'revoked') throw unauthorized(`join token ${jt.id} revoked`);
  if (jt.status === 'expired') throw unauthorized(`join token expired (token ${jt.id} expired at ${new Date(jt.expires_at).toISOString()})`);
  const id = req.node_id ?? uniqueNodeId(store, req.facts.hostname);
  const nodeToken = generateToken('node');
  const { node, created } = store.nodes.upsertOnJoin(id, req.facts, hashToken(nodeToken), now);
  store.joinTokens.recordUse(jt.id, now);
  return { node, nodeToken, how: created ? 'new' : 'reregister', joinTokenId: jt.id };
}

/** Admits a node or throws UNAUTHORIZED / BAD_REQUEST with the reason. */
export function admitNode(store: Store, req: JoinRequest, now = Date.now()): Admission {
  if (req.node_id !== undefined) checkNodeId(req.node_id);
  const hash = hashToken(req.token);
  return store.transaction(() => rejoin(store, req, hash, now) ?? joinWithToken(store, req, hash, now));
}
