/**
 * Bearer secrets. Each kind has its own prefix so a leaked token is recognisable
 * (secret scanners, logs) and a misplaced one gets a precise error. Only the
 * sha256 of a token is stored: tokens are 256 random bits, so a fast hash is
 * enough (no dictionary to attack, unlike passwords).
 */
import { createHash, randomBytes } from 'node:crypto';

export type TokenKind = 'session' | 'api' | 'join' | 'node';

const PREFIX: Record<TokenKind, string> = { session: 'tern_session_', api: 'tern_api_', join: 'tern_join_', node: 'tern_node_' };

export function generateToken(kind: TokenKind): string {
  return PREFIX[kind] + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** The kind a token's prefix claims (not proof of anything: look the hash up). */
export function tokenKindOf(token: string): TokenKind | undefined {
  return (Object.keys(PREFIX) as TokenKind[]).find((k) => token.startsWith(PREFIX[k]));
}
