/**
 * Pending chunked uploads. The metadata lives here so an upload survives a
 * control-plane restart; the bytes received so far are the size of the upload's
 * data file (registry/uploads.ts), which is the single source of truth for the offset.
 */
import type Database from 'better-sqlite3';
import { fromJson, randomId, toJson, versionToText } from './columns.js';
import type { ModelFormat } from './models.js';

export interface UploadRecord {
  id: string;
  model: string;
  version: string | null;
  sha256: string;
  size: number;
  format: ModelFormat;
  config: Record<string, unknown> | null;
  created_by: string | null;
  created_at: number;
}

export interface NewUpload {
  model: string;
  version?: number;
  sha256: string;
  size: number;
  format: ModelFormat;
  config?: Record<string, unknown>;
  createdBy?: string;
}

interface UploadRow extends Omit<UploadRecord, 'version' | 'config'> { version: number | null; config: string | null }

function toRecord(row: UploadRow): UploadRecord {
  return { ...row, version: row.version === null ? null : versionToText(row.version), config: fromJson(row.config) };
}

export class UploadTable {
  private readonly insertStmt: Database.Statement;
  private readonly getStmt: Database.Statement<[string], UploadRow>;
  private readonly listStmt: Database.Statement<[], UploadRow>;
  private readonly removeStmt: Database.Statement<[string]>;

  constructor(db: Database.Database) {
    this.insertStmt = db.prepare(`INSERT INTO uploads (id, model, version, sha256, size, format, config, created_by, created_at)
      VALUES (@id, @model, @version, @sha256, @size, @format, @config, @createdBy, @now)`);
    this.getStmt = db.prepare('SELECT * FROM uploads WHERE id = ?');
    this.listStmt = db.prepare('SELECT * FROM uploads ORDER BY created_at, rowid');
    this.removeStmt = db.prepare('DELETE FROM uploads WHERE id = ?');
  }

  create(u: NewUpload, now = Date.now()): UploadRecord {
    // 16 random bytes: an upload id is a capability to write into the registry's staging area.
    const id = randomId(16);
    this.insertStmt.run({
      id, model: u.model, version: u.version ?? null, sha256: u.sha256, size: u.size, format: u.format,
      config: toJson(u.config), createdBy: u.createdBy ?? null, now,
    });
    return this.get(id)!;
  }

  get(id: string): UploadRecord | undefined {
    const row = this.getStmt.get(id);
    return row && toRecord(row);
  }

  list(): UploadRecord[] {
    return this.listStmt.all().map(toRecord);
  }

  remove(id: string): boolean {
    return this.removeStmt.run(id).changes > 0;
  }
}
