/** Users, logins and the secrets the API hands out (API tokens, join tokens). */
import type { Role } from '../../protocol/fleet.js';
import { TernError } from '../../protocol/errors.js';
import type { ApiTokenRecord, JoinTokenRecord, Store, UserRecord } from '../store/store.js';
import { dummyPasswordHash, generatePassword, hashPassword, verifyPassword } from './passwords.js';
import { generateToken, hashToken } from './tokens.js';

export const DEFAULT_SESSION_TTL_MS = 30 * 24 * 3600 * 1000;

export async function createUser(store: Store, username: string, password: string, role: Role): Promise<UserRecord> {
  if (store.users.get(username)) throw new TernError('CONFLICT', `user ${username} already exists`);
  return store.users.create(username, await hashPassword(password), role);
}

export type FirstAdmin =
  | { created: false }
  | { created: true; username: string; password: string; generated: boolean };

/**
 * Creates the admin user when the database has no users yet. Without a given
 * password one is generated and returned, so the caller can print it once.
 */
export async function ensureFirstAdmin(store: Store, options: { username?: string; password?: string } = {}): Promise<FirstAdmin> {
  if (store.users.count() > 0) return { created: false };
  const username = options.username ?? 'admin';
  const password = options.password ?? generatePassword();
  await createUser(store, username, password, 'admin');
  store.events.append({ kind: 'user.created', subject: `user/${username}`, message: `first admin ${username} created`, data: { role: 'admin' } });
  return { created: true, username, password, generated: options.password === undefined };
}

export interface LoginResult { token: string; role: Role; expires_at: number }

/** Checks a password and opens a session; the same error for an unknown user and a wrong password. */
export async function login(store: Store, username: string, password: string, ttlMs = DEFAULT_SESSION_TTL_MS, now = Date.now()): Promise<LoginResult> {
  const user = store.users.get(username);
  const stored = store.users.passwordHash(username) ?? (await dummyPasswordHash());
  const ok = await verifyPassword(password, stored);
  if (!user || !ok) throw new TernError('UNAUTHORIZED', 'invalid username or password');
  const token = generateToken('session');
  const expiresAt = now + ttlMs;
  store.apiTokens.create({ tokenHash: hashToken(token), kind: 'session', name: `login ${username}`, role: user.role, username, expiresAt }, now);
  return { token, role: user.role, expires_at: expiresAt };
}

export function createApiToken(store: Store, name: string, role: Role, createdBy?: string): { token: string; record: ApiTokenRecord } {
  const token = generateToken('api');
  const record = store.apiTokens.create({ tokenHash: hashToken(token), kind: 'api', name, role, createdBy });
  return { token, record };
}

export function createJoinToken(store: Store, ttlS: number, description?: string, createdBy?: string, now = Date.now()): { token: string; record: JoinTokenRecord } {
  const token = generateToken('join');
  const record = store.joinTokens.create({ tokenHash: hashToken(token), expiresAt: now + ttlS * 1000, description, createdBy }, now);
  return { token, record };
}
