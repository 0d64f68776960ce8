/**
 * Join tokens let new agents into the fleet until they expire or are revoked.
 * A token may admit many nodes (one token per site is the common practice);
 * the secret is stored as sha256 only and never listed.
 */
import type Database from 'better-sqlite3';
import { randomId } from './columns.js';

export type JoinTokenStatus = 'active' | 'expired' | 'revoked';

export interface JoinTokenRecord {
  id: string;
  description: string;
  created_by: string | null;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  uses: number;
  last_used_at: number | null;
  status: JoinTokenStatus;
}

type JoinTokenRow = Omit<JoinTokenRecord, 'status'>;

const COLUMNS = 'id, description, created_by, created_at, expires_at, revoked_at, uses, last_used_at';

function withStatus(row: JoinTokenRow, now: number): JoinTokenRecord {
  const status: JoinTokenStatus = row.revoked_at !== null ? 'revoked' : row.expires_at <= now ? 'expired' : 'active';
  return { ...row, status };
}

export class JoinTokenTable {
  private readonly insertStmt: Database.Statement;
  private readonly byIdStmt: Database.Statement<[string], JoinTokenRow>;
  private readonly byHashStmt: Database.Statement<[string], JoinTokenRow>;
  private readonly listStmt: Database.Statement<[], JoinTokenRow>;
  private readonly revokeStmt: Database.Statement<[number, string]>;
  private readonly useStmt: Database.Statement<[number, string]>;

  constructor(db: Database.Database) {
    this.insertStmt = db.prepare(`INSERT INTO join_tokens (id, token_hash, description, created_by, created_at, expires_at)
      VALUES (?, ?, ?, ?, ?, ?)`);
    this.byIdStmt = db.prepare(`SELECT ${COLUMNS} FROM join_tokens WHERE id = ?`);
    this.byHashStmt = db.prepare(`SELECT ${COLUMNS} FROM join_tokens WHERE token_hash = ?`);
    this.listStmt = db.prepare(`SELECT ${COLUMNS} FROM join_tokens ORDER BY created_at, rowid`);
    this.revokeStmt = db.prepare('UPDATE join_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
    this.useStmt = db.prepare('UPDATE join_tokens SET uses = uses + 1, last_used_at = ? WHERE id = ?');
  }

  create(t: { tokenHash: string; expiresAt: number; description?: string; createdBy?: string }, now = Date.now()): JoinTokenRecord {
    const id = randomId();
    this.insertStmt.run(id, t.tokenHash, t.description ?? '', t.createdBy ?? null, now, t.expiresAt);
    return this.get(id, now)!;
  }

  get(id: string, now = Date.now()): JoinTokenRecord | undefined {
    const row = this.byIdStmt.get(id);
    return row && withStatus(row, now);
  }

  findByHash(tokenHash: string, now = Date.now()): JoinTokenRecord | undefined {
    const row = this.byHashStmt.get(tokenHash);
    return row && withStatus(row, now);
  }

  list(now = Date.now()): JoinTokenRecord[] {
    return this.listStmt.all().map((r) => withStatus(r, now));
  }

  revoke(id: string, now = Date.now()): boolean {
    return this.revokeStmt.run(now, id).changes > 0;
  }

  recordUse(id: string, now = Date.now()): void {
    this.useStmt.run(now, id);
  }
}
