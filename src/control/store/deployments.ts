/**
 * Deployments: the desired state users write. A deployment names a model
 * version (kind model) or an image (kind container) and a replica count; the
 * scheduler turns it into replicas. The generation grows on every rollout so
 * replicas of an older rollout (and stale agents still running them) can be
 * told apart.
 */
import type Database from 'better-sqlite3';
import type { DeploymentSpec } from '../../protocol/fleet.js';
import { TernError } from '../../protocol/errors.js';
import { fromJson, versionFromText, versionToText } from './columns.js';

export interface DeploymentRecord {
  name: string;
  kind: 'model' | 'container';
  spec: DeploymentSpec;
  /** Null for kind container. */
  model: string | null;
  /**
   * Kind model: the resolved model version (spec.version may be absent: "newest at deploy time").
   * Kind container: the revision, which is the generation (every rollout is a new image).
   */
  version: string;
  generation: number;
  /** Set by DELETE; the reconciler stops the replicas, then removes the row. */
  deleting: boolean;
  created_at: number;
  updated_at: number;
}

interface DeploymentRow { name: string; kind: 'model' | 'container'; spec: string; model: string | null; version: number | null; generation: number; deleting: number; created_at: number; updated_at: number }

function toRecord(row: DeploymentRow): DeploymentRecord {
  const version = row.version === null ? String(row.generation) : versionToText(row.version);
  return { ...row, spec: fromJson<DeploymentSpec>(row.spec)!, version, deleting: row.deleting === 1 };
}

function versionNumber(version: string): number {
  const n = versionFromText(version);
  if (n === undefined) throw new TernError('BAD_REQUEST', `version must be a positive integer, got "${version}"`);
  return n;
}

export class DeploymentTable {
  private readonly db: Database.Database;
  private readonly insertStmt: Database.Statement;
  private readonly getStmt: Database.Statement<[string], DeploymentRow>;
  private readonly listStmt: Database.Statement<[], DeploymentRow>;
  private readonly updateSpecStmt: Database.Statement<[string, number, string]>;
  private readonly rolloutStmt: Database.Statement<[string, number | null, number, string]>;
  private readonly deletingStmt: Database.Statement<[number, string]>;
  private readonly removeStmt: Database.Statement<[string]>;

  constructor(db: Database.Database) {
    this.db = db;
    this.insertStmt = db.prepare(`INSERT INTO deployments (name, kind, spec, model, version, generation, created_at, updated_at)
      VALUES (@name, @kind, @spec, @model, @version, 1, @now, @now)`);
    this.getStmt = db.prepare('SELECT * FROM deployments WHERE name = ?');
    this.listStmt = db.prepare('SELECT * FROM deployments ORDER BY name');
    this.updateSpecStmt = db.prepare('UPDATE deployments SET spec = ?, updated_at = ? WHERE name = ?');
    this.rolloutStmt = db.prepare('UPDATE deployments SET spec = ?, version = ?, generation = generation + 1, updated_at = ? WHERE name = ?');
    this.deletingStmt = db.prepare('UPDATE deployments SET deleting = 1, updated_at = ? WHERE name = ?');
    this.removeStmt = db.prepare('DELETE FROM deployments WHERE name = ?');
  }

  /** Creates a deployment at generation 1; CONFLICT when the name is taken. `version`: the model version (kind model only). */
  create(spec: DeploymentSpec, version?: string, now = Date.now()): DeploymentRecord {
    return this.db.transaction(() => {
      const existing = this.getStmt.get(spec.name);
      if (existing) {
        const why = existing.deleting ? 'is still being deleted' : 'already exists';
        throw new TernError('CONFLICT', `deployment ${spec.name} ${why}`);
      }
      const model = spec.kind === 'container' ? { kind: 'container', model: null, version: null } : { kind: 'model', model: spec.model, version: versionNumber(version ?? '') };
      this.insertStmt.run({ name: spec.name, spec: JSON.stringify(spec), ...model, now });
      return this.get(spec.name)!;
    })();
  }

  get(name: string): DeploymentRecord | undefined {
    const row = this.getStmt.get(name);
    return row && toRecord(row);
  }

  list(): DeploymentRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  scale(name: string, replicas: number, now = Date.now()): DeploymentRecord | undefined {
    return this.db.transaction(() => {
      const d = this.get(name);
      if (!d) return undefined;
      this.updateSpecStmt.run(JSON.stringify({ ...d.spec, replicas }), now, name);
      return this.get(name);
    })();
  }

  /** Points the deployment at another model version and starts a new generation. */
  rollout(name: string, version: string, now = Date.now()): DeploymentRecord | undefined {
    return this.newGeneration(name, { version }, versionNumber(version), now);
  }

  /** Points a container deployment at another image and starts a new generation (its revision). */
  rolloutImage(name: string, image: string, now = Date.now()): DeploymentRecord | undefined {
    return this.newGeneration(name, { image }, null, now);
  }

  private newGeneration(name: string, change: { version: string } | { image: string }, version: number | null, now: number): DeploymentRecord | undefined {
    return this.db.transaction(() => {
      const d = this.get(name);
      if (!d) return undefined;
      this.rolloutStmt.run(JSON.stringify({ ...d.spec, ...change }), version, now, name);
      return this.get(name);
    })();
  }

  markDeleting(name: string, now = Date.now()): boolean {
    return this.deletingStmt.run(now, name).changes > 0;
  }

  /** Removes the row and (by cascade) its replicas. */
  remove(name: string): boolean {
    return this.removeStmt.run(name).changes > 0;
  }
}
