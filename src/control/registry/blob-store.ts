/**
 * Content-addressed blobs on disk: `<root>/sha256/<hex>`. A blob becomes visible
 * only by an atomic rename of a file that was fsynced and whose sha256 was
 * verified, so a reader never sees a partial or wrong blob, even after a crash.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

const SHA256_HEX = /^[a-f0-9]{64}$/;

export function isSha256(value: string): boolean {
  return SHA256_HEX.test(value);
}

/** sha256 and size of a file, streamed (model files can be gigabytes). */
export async function hashFile(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(file) as AsyncIterable<Buffer>) { hash.update(c); size += c.length; }
  return { sha256: hash.digest('hex'), size };
}

async function fsyncPath(p: string, flags = 'r'): Promise<void> {
  const fh = await open(p, flags);
  try { await fh.sync(); } finally { await fh.close(); }
}

export class BlobStore {
  readonly dir: string;
  private readonly tmpDir: string;

  constructor(root: string) {
    this.dir = path.join(root, 'sha256');
    this.tmpDir = path.join(root, 'tmp');
    mkdirSync(this.dir, { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
  }

  path(sha256: string): string {
    if (!isSha256(sha256)) throw new Error(`not a sha256 digest: ${sha256}`);
    return path.join(this.dir, sha256);
  }

  /** Size of the stored blob, or undefined when absent. */
  size(sha256: string): number | undefined {
    try { return statSync(this.path(sha256)).size; } catch { return undefined; }
  }

  has(sha256: string): boolean {
    return this.size(sha256) !== undefined;
  }

  /**
   * Moves a file whose digest the caller has just verified into the store.
   * The file must be on the same filesystem (the registry keeps uploads beside blobs).
   */
  async adoptVerified(file: string, sha256: string): Promise<void> {
    const target = this.path(sha256);
    if (this.has(sha256)) { await unlink(file); return; }
    await fsyncPath(file);
    await rename(file, target);
    // The rename is durable only once the directory entry is on disk.
    await fsyncPath(this.dir);
  }

  /** Copies any file into the store through a temp file; returns its digest and size. */
  async importFile(file: string): Promise<{ sha256: string; size: number }> {
    const tmp = path.join(this.tmpDir, randomBytes(8).toString('hex'));
    const hash = createHash('sha256');
    let size = 0;
    const out = await open(tmp, 'w');
    try {
      for await (const c of createReadStream(file) as AsyncIterable<Buffer>) {
        hash.update(c); size += c.length;
        await out.write(c);
      }
    } finally { await out.close(); }
    const sha256 = hash.digest('hex');
    try { await this.adoptVerified(tmp, sha256); } catch (e) { await unlink(tmp).catch(() => undefined); throw e; }
    return { sha256, size };
  }

  /** Synchronous on purpose: the caller decides "unreferenced" and deletes in one tick, with no upload able to interleave. */
  removeSync(sha256: string): boolean {
    try { unlinkSync(this.path(sha256)); return true; } catch { return false; }
  }

  list(): string[] {
    return readdirSync(this.dir).filter(isSha256);
  }
}
