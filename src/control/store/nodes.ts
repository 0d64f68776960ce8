/**
 * Nodes of the fleet: the facts an agent reported at join, operator labels,
 * scheduling flags, liveness and the latest stats. Heartbeats are the hot path
 * (1000 nodes at 1 Hz), so they go through one prepared UPDATE and can be
 * applied in batches inside one transaction.
 */
import type Database from 'better-sqlite3';
import type { Heartbeat, NodeFacts } from '../../protocol/fleet.js';
import { fromJson, toJson } from './columns.js';

export type NodeState = 'ready' | 'down' | 'draining';

export interface NodeRecord {
  id: string;
  facts: NodeFacts;
  /** The agent's own labels with the operator's changes applied (what selectors match). */
  labels: Record<string, string>;
  cordoned: boolean;
  state: NodeState;
  last_heartbeat_ms: number | null;
  stats: Heartbeat | null;
  /** Revision of the node's desired state; grows with every change sent to it. */
  desired_revision: number;
  joined_at: number;
  updated_at: number;
}

interface NodeRow {
  id: string; facts: string; label_overrides: string; cordoned: number; state: NodeState;
  last_heartbeat_ms: number | null; stats: string | null; desired_revision: number; joined_at: number; updated_at: number;
}

/** Operator label changes: a string sets a label, null hides one (even one the agent reports). */
export type LabelOverrides = Record<string, string | null>;

export interface HeartbeatUpdate { id: string; ts: number; stats: Heartbeat }

function effectiveLabels(facts: NodeFacts, overrides: LabelOverrides): Record<string, string> {
  const labels: Record<string, string> = { ...facts.labels };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === null) delete labels[k];
    else labels[k] = v;
  }
  return labels;
}

function toRecord(row: NodeRow): NodeRecord {
  const facts = fromJson<NodeFacts>(row.facts)!;
  return {
    id: row.id, facts, labels: effectiveLabels(facts, fromJson<LabelOverrides>(row.label_overrides) ?? {}),
    cordoned: row.cordoned === 1, state: row.state, last_heartbeat_ms: row.last_heartbeat_ms,
    stats: fromJson<Heartbeat>(row.stats), desired_revision: row.desired_revision,
    joined_at: row.joined_at, updated_at: row.updated_at,
  };
}

const COLUMNS = 'id, facts, label_overrides, cordoned, state, last_heartbeat_ms, stats, desired_revision, joined_at, updated_at';

export class NodeTable {
  private readonly db: Database.Database;
  private readonly getStmt: Database.Statement<[string], NodeRow>;
  private readonly livenessStmt: Database.Statement<[string], { state: NodeState; desired_revision: number }>;
  private readonly idsStmt: Database.Statement<[], { id: string }>;
  private readonly listStmt: Database.Statement<[], NodeRow>;
  private readonly upsertStmt: Database.Statement;
  private readonly idByTokenStmt: Database.Statement<[string], { id: string }>;
  private readonly tokenMatchStmt: Database.Statement<[string, string], { id: string }>;
  private readonly heartbeatStmt: Database.Statement<[string, number, string]>;
  private readonly cordonStmt: Database.Statement<[number, number, string]>;
  private readonly stateStmt: Database.Statement<[string, number, string]>;
  private readonly overridesStmt: Database.Statement<[string, number, string]>;
  private readonly bumpStmt: Database.Statement<[string], { desired_revision: number }>;
  private readonly removeStmt: Database.Statement<[string]>;

  constructor(db: Database.Database) {
    this.db = db;
    this.getStmt = db.prepare(`SELECT ${COLUMNS} FROM nodes WHERE id = ?`);
    this.livenessStmt = db.prepare('SELECT state, desired_revision FROM nodes WHERE id = ?');
    this.idsStmt = db.prepare('SELECT id FROM nodes ORDER BY id');
    this.listStmt = db.prepare(`SELECT ${COLUMNS} FROM nodes ORDER BY id`);
    // A rejoining node keeps its labels, cordon flag, revision and a drain in progress.
    this.upsertStmt = db.prepare(`INSERT INTO nodes (id, facts, node_token_hash, state, last_heartbeat_ms, joined_at, updated_at)
      VALUES (@id, @facts, @tokenHash, 'ready', @now, @now, @now)
      ON CONFLICT (id) DO UPDATE SET facts = excluded.facts, node_token_hash = excluded.node_token_hash,
        state = CASE WHEN nodes.state = 'draining' THEN 'draining' ELSE 'ready' END,
        last_heartbeat_ms = excluded.last_heartbeat_ms, updated_at = excluded.updated_at`);
    this.idByTokenStmt = db.prepare('SELECT id FROM nodes WHERE node_token_hash = ?');
    this.tokenMatchStmt = db.prepare('SELECT id FROM nodes WHERE id = ? AND node_token_hash = ?');
    this.heartbeatStmt = db.prepare('UPDATE nodes SET stats = ?, last_heartbeat_ms = ? WHERE id = ?');
    this.cordonStmt = db.prepare('UPDATE nodes SET cordoned = ?, updated_at = ? WHERE id = ?');
    this.stateStmt = db.prepare('UPDATE nodes SET state = ?, updated_at = ? WHERE id = ?');
    this.overridesStmt = db.prepare('UPDATE nodes SET label_overrides = ?, updated_at = ? WHERE id = ?');
    this.bumpStmt = db.prepare('UPDATE nodes SET desired_revision = desired_revision + 1 WHERE id = ? RETURNING desired_revision');
    this.removeStmt = db.prepare('DELETE FROM nodes WHERE id = ?');
  }

  /** Registers a node or refreshes a known one; `created` tells which. */
  upsertOnJoin(id: string, facts: NodeFacts, tokenHash: string, now = Date.now()): { node: NodeRecord; created: boolean } {
    return this.db.transaction(() => {
      const created = this.getStmt.get(id) === undefined;
      this.upsertStmt.run({ id, facts: toJson(facts), tokenHash, now });
      return { node: this.get(id)!, created };
    })();
  }

  get(id: string): NodeRecord | undefined {
    const row = this.getStmt.get(id);
    return row && toRecord(row);
  }

  /** State and desired revision only: what the heartbeat path needs, without parsing facts and stats. */
  liveness(id: string): { state: NodeState; desired_revision: number } | undefined {
    return this.livenessStmt.get(id);
  }

  /** Every node id (no JSON columns parsed). */
  ids(): string[] {
    return this.idsStmt.all().map((r) => r.id);
  }

  list(): NodeRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  /** The node a node token belongs to. */
  findIdByTokenHash(tokenHash: string): string | undefined {
    return this.idByTokenStmt.get(tokenHash)?.id;
  }

  tokenMatches(id: string, tokenHash: string): boolean {
    return this.tokenMatchStmt.get(id, tokenHash) !== undefined;
  }

  /** One heartbeat; false for an unknown node. */
  recordHeartbeat(id: string, stats: Heartbeat, ts = Date.now()): boolean {
    return this.heartbeatStmt.run(JSON.stringify(stats), ts, id).changes > 0;
  }

  /** Many heartbeats in one transaction (one WAL commit instead of one per node). */
  recordHeartbeats(updates: HeartbeatUpdate[]): number {
    return this.db.transaction(() => {
      let applied = 0;
      for (const u of updates) applied += this.heartbeatStmt.run(JSON.stringify(u.stats), u.ts, u.id).changes;
      return applied;
    })();
  }

  setCordoned(id: string, cordoned: boolean, now = Date.now()): boolean {
    return this.cordonStmt.run(cordoned ? 1 : 0, now, id).changes > 0;
  }

  setState(id: string, state: NodeState, now = Date.now()): boolean {
    return this.stateStmt.run(state, now, id).changes > 0;
  }

  /** Merges label changes (null hides a label); returns the node or undefined when unknown. */
  patchLabels(id: string, changes: LabelOverrides, now = Date.now()): NodeRecord | undefined {
    return this.db.transaction(() => {
      const row = this.getStmt.get(id);
      if (!row) return undefined;
      const overrides = { ...fromJson<LabelOverrides>(row.label_overrides), ...changes };
      this.overridesStmt.run(JSON.stringify(overrides), now, id);
      return this.get(id);
    })();
  }

  /** Next desired-state revision for the node (monotonic, survives restarts); undefined when unknown. */
  bumpRevision(id: string): number | undefined {
    return this.bumpStmt.get(id)?.desired_revision;
  }

  remove(id: string): boolean {
    return this.removeStmt.run(id).changes > 0;
  }
}
