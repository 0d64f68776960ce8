/** Container image archives held by the control plane, by image reference (one platform each: tags name the arch). */
import type Database from 'better-sqlite3';

export interface ImageRecord {
  ref: string;
  platform: string;
  sha256: string;
  size: number;
  created_by: string | null;
  created_at: number;
}

export class ImageTable {
  private readonly putStmt: Database.Statement;
  private readonly getStmt: Database.Statement<[string], ImageRecord>;
  private readonly listStmt: Database.Statement<[], ImageRecord>;
  private readonly removeStmt: Database.Statement<[string]>;
  private readonly refsStmt: Database.Statement<[string], { n: number }>;

  constructor(db: Database.Database) {
    this.putStmt = db.prepare(`INSERT INTO images (ref, platform, sha256, size, created_by, created_at) VALUES (@ref, @platform, @sha256, @size, @createdBy, @now)
      ON CONFLICT(ref) DO UPDATE SET platform = excluded.platform, sha256 = excluded.sha256, size = excluded.size, created_by = excluded.created_by, created_at = excluded.created_at`);
    this.getStmt = db.prepare('SELECT * FROM images WHERE ref = ?');
    this.listStmt = db.prepare('SELECT * FROM images ORDER BY ref');
    this.removeStmt = db.prepare('DELETE FROM images WHERE ref = ?');
    this.refsStmt = db.prepare('SELECT COUNT(*) AS n FROM images WHERE sha256 = ?');
  }

  /** Registers (or replaces) the archive for `ref`. */
  put(r: { ref: string; platform: string; sha256: string; size: number; createdBy?: string }, now = Date.now()): ImageRecord {
    this.putStmt.run({ ...r, createdBy: r.createdBy ?? null, now });
    return this.get(r.ref)!;
  }

  get(ref: string): ImageRecord | undefined {
    return this.getStmt.get(ref);
  }

  list(): ImageRecord[] {
    return this.listStmt.all();
  }

  remove(ref: string): boolean {
    return this.removeStmt.run(ref).changes > 0;
  }

  isBlobReferenced(sha256: string): boolean {
    return (this.refsStmt.get(sha256)?.n ?? 0) > 0;
  }
}
