/**
 * The audit trail: every action and state change, with who did it (in `data.by`
 * when a principal did). Queried by id cursor so `tern events --follow` and the
 * dashboard can poll for what is new.
 */
import type Database from 'better-sqlite3';
import { fromJson, toJson } from './columns.js';

export interface EventRecord {
  id: number;
  ts: number;
  kind: string;
  /** What it is about: `node/<id>`, `deployment/<name>`, `model/<name>`, `user/<name>`... */
  subject: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface NewEvent { kind: string; subject: string; message: string; data?: Record<string, unknown>; ts?: number }

export interface EventQuery {
  /** Only events with a larger id, oldest first. Absent: the newest `limit` events (still oldest first). */
  since?: number;
  /** Subject prefix: `node/` for all nodes, `deployment/web` for one deployment. */
  subject?: string;
  /** A kind (`node.cordoned`) or a kind family (`node` matches `node.*`). */
  kind?: string;
  limit?: number;
}

export const MAX_EVENT_LIMIT = 1000;
const DEFAULT_LIMIT = 100;

type EventRow = Omit<EventRecord, 'data'> & { data: string | null };

const FILTER = `(@subject IS NULL OR substr(subject, 1, length(@subject)) = @subject)
  AND (@kind IS NULL OR kind = @kind OR substr(kind, 1, length(@kind) + 1) = @kind || '.')`;

export class EventLog {
  private readonly insertStmt: Database.Statement;
  private readonly sinceStmt: Database.Statement;
  private readonly latestStmt: Database.Statement;
  private readonly lastIdStmt: Database.Statement<[], { id: number | null }>;
  private readonly pruneStmt: Database.Statement<[number]>;

  constructor(db: Database.Database) {
    this.insertStmt = db.prepare('INSERT INTO events (ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?) RETURNING id');
    this.sinceStmt = db.prepare(`SELECT * FROM events WHERE id > @since AND ${FILTER} ORDER BY id LIMIT @limit`);
    this.latestStmt = db.prepare(`SELECT * FROM events WHERE ${FILTER} ORDER BY id DESC LIMIT @limit`);
    this.lastIdStmt = db.prepare('SELECT MAX(id) AS id FROM events');
    this.pruneStmt = db.prepare('DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - ?');
  }

  append(e: NewEvent): EventRecord {
    const ts = e.ts ?? Date.now();
    const { id } = this.insertStmt.get(ts, e.kind, e.subject, e.message, toJson(e.data)) as { id: number };
    return { id, ts, kind: e.kind, subject: e.subject, message: e.message, data: e.data ?? null };
  }

  query(q: EventQuery = {}): EventRecord[] {
    const limit = Math.min(Math.max(q.limit ?? DEFAULT_LIMIT, 1), MAX_EVENT_LIMIT);
    const params = { subject: q.subject ?? null, kind: q.kind ?? null, limit };
    const rows = q.since === undefined
      ? (this.latestStmt.all(params) as EventRow[]).reverse()
      : (this.sinceStmt.all({ ...params, since: q.since }) as EventRow[]);
    return rows.map((r) => ({ ...r, data: fromJson<Record<string, unknown>>(r.data) }));
  }

  lastId(): number {
    return this.lastIdStmt.get()!.id ?? 0;
  }

  /** Keeps the newest `keep` events; returns how many were removed. */
  prune(keep: number): number {
    return this.pruneStmt.run(keep).changes;
  }
}
