/**
 * Bearer tokens for people and scripts: `session` tokens come from a login and
 * act as their user (with the user's current role); `api` tokens carry their own
 * role. Only the sha256 of a token is stored, so a leaked database leaks no token.
 */
import type Database from 'better-sqlite3';
import type { Role } from '../../protocol/fleet.js';
import { randomId } from './columns.js';

export type ApiTokenKind = 'session' | 'api';

export interface ApiTokenRecord {
  id: string;
  kind: ApiTokenKind;
  name: string;
  role: Role;
  username: string | null;
  created_by: string | null;
  created_at: number;
  last_used_at: number | null;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface NewApiToken {
  tokenHash: string;
  kind: ApiTokenKind;
  name: string;
  role: Role;
  username?: string;
  createdBy?: string;
  expiresAt?: number;
}

/** `last_used_at` is refreshed at most this often, so reads do not each cost a write. */
const LAST_USED_RESOLUTION_MS = 60_000;

const COLUMNS = 'id, kind, name, role, username, created_by, created_at, last_used_at, expires_at, revoked_at';

export class ApiTokenTable {
  private readonly insertStmt: Database.Statement;
  private readonly byHashStmt: Database.Statement<[string], ApiTokenRecord>;
  private readonly byIdStmt: Database.Statement<[string], ApiTokenRecord>;
  private readonly listStmt: Database.Statement<[string], ApiTokenRecord>;
  private readonly revokeStmt: Database.Statement<[number, string]>;
  private readonly touchStmt: Database.Statement<[number, string, number]>;

  constructor(db: Database.Database) {
    this.insertStmt = db.prepare(`INSERT INTO api_tokens (id, token_hash, kind, name, role, username, created_by, created_at, expires_at)
      VALUES (@id, @tokenHash, @kind, @name, @role, @username, @createdBy, @now, @expiresAt)`);
    // A session acts with its user's current role, so demoting a user takes effect at once.
    this.byHashStmt = db.prepare(`SELECT t.id, t.kind, t.name, COALESCE(u.role, t.role) AS role, t.username, t.created_by,
      t.created_at, t.last_used_at, t.expires_at, t.revoked_at
      FROM api_tokens t LEFT JOIN users u ON u.username = t.username WHERE t.token_hash = ?`);
    this.byIdStmt = db.prepare(`SELECT ${COLUMNS} FROM api_tokens WHERE id = ?`);
    this.listStmt = db.prepare(`SELECT ${COLUMNS} FROM api_tokens WHERE kind = ? ORDER BY created_at, rowid`);
    this.revokeStmt = db.prepare('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
    this.touchStmt = db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)');
  }

  create(t: NewApiToken, now = Date.now()): ApiTokenRecord {
    const id = randomId();
    this.insertStmt.run({
      id, tokenHash: t.tokenHash, kind: t.kind, name: t.name, role: t.role, username: t.username ?? null,
      createdBy: t.createdBy ?? null, now, expiresAt: t.expiresAt ?? null,
    });
    return this.get(id)!;
  }

  get(id: string): ApiTokenRecord | undefined {
    return this.byIdStmt.get(id);
  }

  findByHash(tokenHash: string): ApiTokenRecord | undefined {
    return this.byHashStmt.get(tokenHash);
  }

  list(kind: ApiTokenKind = 'api'): ApiTokenRecord[] {
    return this.listStmt.all(kind);
  }

  /** True when the token was active and is now revoked. */
  revoke(id: string, now = Date.now()): boolean {
    return this.revokeStmt.run(now, id).changes > 0;
  }

  touch(id: string, now = Date.now()): void {
    this.touchStmt.run(now, id, now - LAST_USED_RESOLUTION_MS);
  }
}
