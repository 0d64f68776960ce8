/**
 * Who is calling: resolves a bearer token to a principal. Users (login
 * sessions) and API tokens carry a role; nodes carry the pseudo-role `node`
 * and are only allowed the few routes agents need.
 */
import type { Role } from '../../protocol/fleet.js';
import { TernError } from '../../protocol/errors.js';
import type { Store } from '../store/store.js';
import { hashToken, tokenKindOf } from './tokens.js';

export interface Principal {
  kind: 'user' | 'token' | 'node';
  /** Username, API token name, or node id. */
  name: string;
  role: Role | 'node';
}

function unauthorized(message: string): TernError {
  return new TernError('UNAUTHORIZED', message);
}

/** Reads `Authorization: Bearer <token>`; UNAUTHORIZED naming what is wrong. */
export function bearerToken(header: string | undefined): string {
  if (!header) throw unauthorized('missing bearer token: send "Authorization: Bearer <token>" (log in with POST /api/v1/auth/login)');
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw unauthorized('malformed Authorization header: expected "Bearer <token>"');
  return m[1];
}

/** Resolves a bearer token to a principal, or throws UNAUTHORIZED with the reason. */
export function authenticateToken(store: Store, token: string, now = Date.now()): Principal {
  const hash = hashToken(token);
  const t = store.apiTokens.findByHash(hash);
  if (t) {
    if (t.revoked_at !== null) throw unauthorized(`token ${t.id} (${t.name}) has been revoked`);
    if (t.expires_at !== null && t.expires_at <= now) throw unauthorized('session expired: log in again');
    store.apiTokens.touch(t.id, now);
    return t.kind === 'session' ? { kind: 'user', name: t.username ?? t.name, role: t.role } : { kind: 'token', name: t.name, role: t.role };
  }
  const node = store.nodes.findIdByTokenHash(hash);
  if (node) return { kind: 'node', name: node, role: 'node' };
  if (tokenKindOf(token) === 'join' || store.joinTokens.findByHash(hash, now)) {
    throw unauthorized('join tokens can only be used with POST /api/v1/join');
  }
  throw unauthorized('invalid token');
}

/** For the MQTT broker: does this node token belong to this node? */
export function verifyNodeToken(store: Store, nodeId: string, token: string): boolean {
  return store.nodes.tokenMatches(nodeId, hashToken(token));
}
