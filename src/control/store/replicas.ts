/**
 * Replicas: one running copy of a deployment on a node. The scheduler creates
 * them, the reconciler flips `desired` to stop, and agents report the observed
 * state. Reports carry the replica's generation and are ignored when it does
 * not match, which fences agents that come back after being declared dead.
 */
import type Database from 'better-sqlite3';
import type { ReplicaState } from '../../protocol/fleet.js';
import { randomId, versionFromText, versionToText } from './columns.js';

/**
 * run: serving and routed to; drain: still running but no longer routed to, stopped once
 * the gateways have stopped sending it requests; stop: the node is told to stop it.
 */
export type ReplicaDesired = 'run' | 'drain' | 'stop';

export interface ReplicaRecord {
  id: string;
  deployment: string;
  node: string;
  version: string;
  generation: number;
  desired: ReplicaDesired;
  state: ReplicaState;
  port: number | null;
  grpc_port: number | null;
  message: string;
  created_at: number;
  updated_at: number;
}

export interface NewReplica {
  /** Absent: `<deployment>-<random>`. */
  id?: string;
  deployment: string;
  node: string;
  version: string;
  generation: number;
}

export interface ObservedReplica { state: ReplicaState; port?: number | null; grpc_port?: number | null; message?: string }

type ReplicaRow = Omit<ReplicaRecord, 'version'> & { version: number };

function toRecord(row: ReplicaRow): ReplicaRecord {
  return { ...row, version: versionToText(row.version) };
}

export class ReplicaTable {
  private readonly insertStmt: Database.Statement;
  private readonly getStmt: Database.Statement<[string], ReplicaRow>;
  private readonly listStmt: Database.Statement<[], ReplicaRow>;
  private readonly byDeploymentStmt: Database.Statement<[string], ReplicaRow>;
  private readonly byNodeStmt: Database.Statement<[string], ReplicaRow>;
  private readonly stoppingByNodeStmt: Database.Statement<[string], ReplicaRow>;
  private readonly desiredStmt: Database.Statement<[ReplicaDesired, number, string]>;
  private readonly observedStmt: Database.Statement;
  private readonly removeStmt: Database.Statement<[string]>;

  constructor(db: Database.Database) {
    this.insertStmt = db.prepare(`INSERT INTO replicas (id, deployment, node, version, generation, created_at, updated_at)
      VALUES (@id, @deployment, @node, @version, @generation, @now, @now)`);
    this.getStmt = db.prepare('SELECT * FROM replicas WHERE id = ?');
    this.listStmt = db.prepare('SELECT * FROM replicas ORDER BY deployment, id');
    this.byDeploymentStmt = db.prepare('SELECT * FROM replicas WHERE deployment = ? ORDER BY created_at, rowid');
    this.byNodeStmt = db.prepare('SELECT * FROM replicas WHERE node = ? ORDER BY created_at, rowid');
    this.stoppingByNodeStmt = db.prepare("SELECT * FROM replicas WHERE node = ? AND desired = 'stop'");
    this.desiredStmt = db.prepare('UPDATE replicas SET desired = ?, updated_at = ? WHERE id = ?');
    this.observedStmt = db.prepare(`UPDATE replicas SET state = @state, port = COALESCE(@port, port), grpc_port = COALESCE(@grpc_port, grpc_port),
      message = COALESCE(@message, message), updated_at = @now WHERE id = @id AND generation = @generation`);
    this.removeStmt = db.prepare('DELETE FROM replicas WHERE id = ?');
  }

  /** Inserts a pending replica; wrap many in `store.transaction` when placing a batch. */
  create(r: NewReplica, now = Date.now()): ReplicaRecord {
    const id = r.id ?? `${r.deployment}-${randomId(4)}`;
    const version = versionFromText(r.version);
    if (version === undefined) throw new Error(`replica version must be a positive integer, got "${r.version}"`);
    this.insertStmt.run({ id, deployment: r.deployment, node: r.node, version, generation: r.generation, now });
    return this.get(id)!;
  }

  get(id: string): ReplicaRecord | undefined {
    const row = this.getStmt.get(id);
    return row && toRecord(row);
  }

  list(): ReplicaRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  listByDeployment(deployment: string): ReplicaRecord[] {
    return this.byDeploymentStmt.all(deployment).map(toRecord);
  }

  listByNode(node: string): ReplicaRecord[] {
    return this.byNodeStmt.all(node).map(toRecord);
  }

  /** Replicas of `node` told to stop (usually none: the heartbeat path checks this on every beat). */
  listStoppingByNode(node: string): ReplicaRecord[] {
    return this.stoppingByNodeStmt.all(node).map(toRecord);
  }

  setDesired(id: string, desired: ReplicaDesired, now = Date.now()): boolean {
    return this.desiredStmt.run(desired, now, id).changes > 0;
  }

  /** Applies an agent's report; false when the replica is unknown or the generation is stale. */
  updateObserved(id: string, generation: number, o: ObservedReplica, now = Date.now()): boolean {
    const params = { id, generation, state: o.state, port: o.port ?? null, grpc_port: o.grpc_port ?? null, message: o.message ?? null, now };
    return this.observedStmt.run(params).changes > 0;
  }

  remove(id: string): boolean {
    return this.removeStmt.run(id).changes > 0;
  }
}
