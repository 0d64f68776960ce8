/**
 * Models and their versions in the registry. A version points at a content
 * addressed blob by sha256; several versions (of any models) may share a blob,
 * so blobs are removed only when no version references them.
 */
import type Database from 'better-sqlite3';
import { TernError } from '../../protocol/errors.js';
import { fromJson, toJson, versionFromText, versionToText } from './columns.js';

export type ModelFormat = 'onnx' | 'tar';

export interface ModelVersionRecord {
  model: string;
  version: string;
  sha256: string;
  size: number;
  format: ModelFormat;
  config: Record<string, unknown> | null;
  created_at: number;
}

export interface ModelSummary {
  name: string;
  created_at: number;
  versions: number;
  latest: string | null;
  total_bytes: number;
}

export interface NewModelVersion {
  model: string;
  /** Absent: one more than the newest version. */
  version?: number;
  sha256: string;
  size: number;
  format: ModelFormat;
  config?: Record<string, unknown> | null;
}

interface VersionRow { model: string; version: number; sha256: string; size: number; format: ModelFormat; config: string | null; created_at: number }

function toRecord(row: VersionRow): ModelVersionRecord {
  return { ...row, version: versionToText(row.version), config: fromJson<Record<string, unknown>>(row.config) };
}

export class ModelTable {
  private readonly db: Database.Database;
  private readonly ensureModelStmt: Database.Statement<[string, number]>;
  private readonly insertVersionStmt: Database.Statement;
  private readonly versionStmt: Database.Statement<[string, number], VersionRow>;
  private readonly latestStmt: Database.Statement<[string], VersionRow>;
  private readonly versionsStmt: Database.Statement<[string], VersionRow>;
  private readonly summariesStmt: Database.Statement<[], ModelSummary & { latest: number | null }>;
  private readonly existsStmt: Database.Statement<[string], { name: string }>;
  private readonly removeVersionStmt: Database.Statement<[string, number]>;
  private readonly removeEmptyModelStmt: Database.Statement<[string]>;
  private readonly removeModelStmt: Database.Statement<[string]>;
  private readonly blobRefStmt: Database.Statement<[string], { n: number }>;
  private readonly usersStmt: Database.Statement<{ model: string; version: number | null }, { name: string }>;

  constructor(db: Database.Database) {
    this.db = db;
    this.ensureModelStmt = db.prepare('INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING');
    this.insertVersionStmt = db.prepare(`INSERT INTO model_versions (model, version, sha256, size, format, config, created_at)
      VALUES (@model, @version, @sha256, @size, @format, @config, @now)`);
    this.versionStmt = db.prepare('SELECT * FROM model_versions WHERE model = ? AND version = ?');
    this.latestStmt = db.prepare('SELECT * FROM model_versions WHERE model = ? ORDER BY version DESC LIMIT 1');
    this.versionsStmt = db.prepare('SELECT * FROM model_versions WHERE model = ? ORDER BY version');
    this.summariesStmt = db.prepare(`SELECT m.name, m.created_at, COUNT(v.version) AS versions, MAX(v.version) AS latest,
      COALESCE(SUM(v.size), 0) AS total_bytes FROM models m LEFT JOIN model_versions v ON v.model = m.name
      GROUP BY m.name ORDER BY m.name`);
    this.existsStmt = db.prepare('SELECT name FROM models WHERE name = ?');
    this.removeVersionStmt = db.prepare('DELETE FROM model_versions WHERE model = ? AND version = ?');
    this.removeEmptyModelStmt = db.prepare('DELETE FROM models WHERE name = ? AND NOT EXISTS (SELECT 1 FROM model_versions WHERE model = name)');
    this.removeModelStmt = db.prepare('DELETE FROM models WHERE name = ?');
    this.blobRefStmt = db.prepare('SELECT COUNT(*) AS n FROM model_versions WHERE sha256 = ?');
    // In use: the deployment's current version, or a replica still running an older one mid-rollout.
    this.usersStmt = db.prepare(`SELECT name FROM deployments WHERE model = @model AND (@version IS NULL OR version = @version)
      UNION SELECT d.name FROM replicas r JOIN deployments d ON d.name = r.deployment
        WHERE d.model = @model AND (@version IS NULL OR r.version = @version)
      ORDER BY name`);
  }

  /** Registers a version; CONFLICT when that version number is taken. */
  addVersion(v: NewModelVersion, now = Date.now()): ModelVersionRecord {
    return this.db.transaction(() => {
      const version = v.version ?? (this.latestStmt.get(v.model)?.version ?? 0) + 1;
      if (this.versionStmt.get(v.model, version)) throw new TernError('CONFLICT', `model ${v.model} version ${version} already exists`);
      this.ensureModelStmt.run(v.model, now);
      this.insertVersionStmt.run({ model: v.model, version, sha256: v.sha256, size: v.size, format: v.format, config: toJson(v.config), now });
      return toRecord(this.versionStmt.get(v.model, version)!);
    })();
  }

  exists(model: string): boolean {
    return this.existsStmt.get(model) !== undefined;
  }

  getVersion(model: string, version: string): ModelVersionRecord | undefined {
    const n = versionFromText(version);
    const row = n === undefined ? undefined : this.versionStmt.get(model, n);
    return row && toRecord(row);
  }

  latestVersion(model: string): ModelVersionRecord | undefined {
    const row = this.latestStmt.get(model);
    return row && toRecord(row);
  }

  listVersions(model: string): ModelVersionRecord[] {
    return this.versionsStmt.all(model).map(toRecord);
  }

  list(): ModelSummary[] {
    return this.summariesStmt.all().map((s) => ({ ...s, latest: s.latest === null ? null : versionToText(s.latest) }));
  }

  /** Deployments that use the model (or one version of it). */
  usedBy(model: string, version?: string): string[] {
    const n = version === undefined ? null : versionFromText(version) ?? -1;
    return this.usersStmt.all({ model, version: n }).map((r) => r.name);
  }

  /** Removes one version (and the model once it has none); returns the removed record. */
  removeVersion(model: string, version: string): ModelVersionRecord | undefined {
    return this.db.transaction(() => {
      const record = this.getVersion(model, version);
      if (!record) return undefined;
      this.removeVersionStmt.run(model, Number(record.version));
      this.removeEmptyModelStmt.run(model);
      return record;
    })();
  }

  /** Removes a model with all its versions; returns the removed versions. */
  removeModel(model: string): ModelVersionRecord[] {
    return this.db.transaction(() => {
      const versions = this.listVersions(model);
      this.removeModelStmt.run(model);
      return versions;
    })();
  }

  isBlobReferenced(sha256: string): boolean {
    return this.blobRefStmt.get(sha256)!.n > 0;
  }
}
