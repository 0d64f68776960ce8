/**
 * The node's model cache: artifacts from the control plane's registry, by sha256.
 *
 *   <dir>/<sha256>/          a ready model directory (model.onnx, maybe more files)
 *   <dir>/.tmp/              downloads and unpacking in progress
 *
 * A download streams to a temp file while hashing; only a verified artifact is
 * moved into place (one rename), so a corrupt or partial download is never
 * used. `tar` artifacts are unpacked (regular files and directories only).
 * Entries in use are pinned; the least recently used unpinned ones are evicted
 * when the cache outgrows its budget. Cached models need no control plane.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, utimes, lstat } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import type { Logger } from 'pino';
import { httpGet, readSnippet } from './http-client.js';

export const MODEL_FILE = 'model.onnx';

export interface Artifact {
  sha256: string;
  format: 'onnx' | 'tar';
}

/** Where blobs come from right now: the control plane's URL and this node's token (absent before joining). */
export type BlobSource = () => { controlUrl: string; token: string } | undefined;

export interface ModelCacheConfig {
  dir: string;
  /** Evict unpinned entries, least recently used first, beyond this many bytes. */
  maxBytes: number;
  source: BlobSource;
  /** A download that receives nothing for this long fails. */
  idleTimeoutMs?: number;
  log?: Logger;
}

export const DEFAULT_CACHE_BYTES = 2 * 1024 ** 3;

export class ChecksumMismatchError extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`checksum mismatch: expected sha256 ${expected}, downloaded data has sha256 ${actual}; the download was discarded`);
    this.name = 'ChecksumMismatchError';
  }
}

export interface CachedModel {
  /** Directory holding model.onnx (and any other files of the artifact). */
  dir: string;
  sha256: string;
  /** Unpins the entry (it may then be evicted). Idempotent. */
  release(): void;
}

async function dirSize(p: string): Promise<number> {
  const s = await lstat(p);
  if (!s.isDirectory()) return s.size;
  let total = 0;
  for (const e of await readdir(p)) total += await dirSize(path.join(p, e));
  return total;
}

export class ModelCache {
  private readonly pins = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly tmpDir: string;
  private readonly idleMs: number;
  private started: Promise<void> | undefined;

  constructor(private readonly config: ModelCacheConfig) {
    this.tmpDir = path.join(config.dir, '.tmp');
    this.idleMs = config.idleTimeoutMs ?? 30_000;
  }

  private init(): Promise<void> {
    // Leftovers of downloads interrupted by a crash are never trusted.
    this.started ??= rm(this.tmpDir, { recursive: true, force: true }).then(() => mkdir(this.tmpDir, { recursive: true })).then(() => undefined);
    return this.started;
  }

  entryDir(sha256: string): string {
    return path.join(this.config.dir, sha256);
  }

  async has(sha256: string): Promise<boolean> {
    return stat(this.entryDir(sha256)).then((s) => s.isDirectory(), () => false);
  }

  /** The model directory of an artifact, downloaded and verified when not cached; pinned until released. */
  async acquire(artifact: Artifact): Promise<CachedModel> {
    if (!/^[a-f0-9]{64}$/.test(artifact.sha256)) throw new Error(`'${artifact.sha256}' is not a sha256 digest`);
    await this.init();
    this.pin(artifact.sha256);
    try {
      const dir = await this.ensure(artifact);
      const now = new Date();
      await utimes(dir, now, now).catch(() => undefined); // last use, for LRU eviction
      let released = false;
      return {
        dir, sha256: artifact.sha256,
        release: () => {
          if (released) return;
          released = true;
          this.unpin(artifact.sha256);
        },
      };
    } catch (err) {
      this.unpin(artifact.sha256);
      throw err;
    }
  }

  private pin(sha: string): void {
    this.pins.set(sha, (this.pins.get(sha) ?? 0) + 1);
  }

  private unpin(sha: string): void {
    const n = (this.pins.get(sha) ?? 1) - 1;
    if (n <= 0) this.pins.delete(sha);
    else this.pins.set(sha, n);
  }

  private ensure(artifact: Artifact): Promise<string> {
    const running = this.inflight.get(artifact.sha256);
    if (running) return running;
    const p = (async () => {
      const dir = this.entryDir(artifact.sha256);
      if (await this.has(artifact.sha256)) return dir;
      await this.download(artifact, dir);
      await this.evict().catch((err: unknown) => this.config.log?.warn({ err }, 'model cache eviction failed'));
      return dir;
    })().finally(() => this.inflight.delete(artifact.sha256));
    this.inflight.set(artifact.sha256, p);
    return p;
  }

  private async download(artifact: Artifact, dest: string): Promise<void> {
    const source = this.config.source();
    if (!source) throw new Error(`artifact ${artifact.sha256} is not cached and the control plane is not known yet`);
    const url = `${source.controlUrl.replace(/\/$/, '')}/api/v1/blobs/${artifact.sha256}`;
    const stem = path.join(this.tmpDir, `${artifact.sha256}-${randomBytes(4).toString('hex')}`);
    const file = `${stem}.blob`;
    const staging = `${stem}.d`;
    const started = Date.now();
    try {
      let res: http.IncomingMessage;
      try {
        res = await httpGet(url, { authorization: `Bearer ${source.token}` }, this.idleMs);
      } catch (err) {
        throw new Error(`cannot download artifact ${artifact.sha256} from ${source.controlUrl}: ${(err as Error).message}`);
      }
      if (res.statusCode !== 200) {
        throw new Error(`download of artifact ${artifact.sha256} failed: HTTP ${res.statusCode} ${await readSnippet(res)}`);
      }
      const hash = createHash('sha256');
      let bytes = 0;
      await new Promise<void>((resolve, reject) => {
        const out = createWriteStream(file, { mode: 0o600 });
        res.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          bytes += chunk.length;
        });
        res.on('error', reject);
        res.on('aborted', () => reject(new Error('connection closed during download')));
        out.on('error', reject);
        out.on('finish', () => (res.complete ? resolve() : reject(new Error('connection closed during download'))));
        res.pipe(out);
      }).catch((err: Error) => {
        throw new Error(`download of artifact ${artifact.sha256} failed after ${bytes} bytes: ${err.message}`);
      });
      const actual = hash.digest('hex');
      if (actual !== artifact.sha256) throw new ChecksumMismatchError(artifact.sha256, actual);
      await mkdir(staging);
      let modelRoot = staging;
      if (artifact.format === 'onnx') {
        await rename(file, path.join(staging, MODEL_FILE));
      } else {
        modelRoot = await this.unpack(file, staging, artifact.sha256);
      }
      await rename(modelRoot, dest).catch(async (err: NodeJS.ErrnoException) => {
        // Another agent process sharing the cache finished first: theirs is as good as ours.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      });
      this.config.log?.info({ sha256: artifact.sha256, format: artifact.format, bytes, ms: Date.now() - started }, 'model artifact downloaded and verified');
    } finally {
      await rm(file, { force: true });
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** Unpacks a tar; returns the directory holding model.onnx (the root, or its only top-level directory). */
  private async unpack(file: string, staging: string, sha: string): Promise<string> {
    const tar = await import('tar');
    try {
      await tar.x({
        file, cwd: staging, strict: true, preservePaths: false,
        // Regular files and directories only: no links or devices from an archive.
        filter: (_p, entry) => {
          const type = (entry as { type?: string }).type;
          return type === 'File' || type === 'OldFile' || type === 'Directory' || type === 'ContiguousFile';
        },
      });
    } catch (err) {
      throw new Error(`artifact ${sha} is not a valid tar archive: ${(err as Error).message}`);
    }
    const has = (d: string) => stat(path.join(d, MODEL_FILE)).then((s) => s.isFile(), () => false);
    if (await has(staging)) return staging;
    const top = await readdir(staging, { withFileTypes: true });
    if (top.length === 1 && top[0].isDirectory() && (await has(path.join(staging, top[0].name)))) return path.join(staging, top[0].name);
    throw new Error(`artifact ${sha} (tar) has no ${MODEL_FILE} at its root or in its single top-level directory`);
  }

  /** Cached entries with their size and last use, oldest first. */
  async entries(): Promise<{ sha256: string; bytes: number; lastUsed: number; pinned: boolean }[]> {
    let names: string[];
    try {
      names = await readdir(this.config.dir);
    } catch {
      return [];
    }
    const out = [];
    for (const name of names.filter((n) => /^[a-f0-9]{64}$/.test(n))) {
      const p = this.entryDir(name);
      try {
        const s = await stat(p);
        out.push({ sha256: name, bytes: await dirSize(p), lastUsed: Math.max(s.atimeMs, s.mtimeMs), pinned: this.pins.has(name) });
      } catch {
        // removed meanwhile
      }
    }
    return out.sort((a, b) => a.lastUsed - b.lastUsed);
  }

  /** Removes unpinned entries, least recently used first, until the cache fits its budget. Returns the evicted digests. */
  async evict(): Promise<string[]> {
    const entries = await this.entries();
    let total = entries.reduce((a, e) => a + e.bytes, 0);
    const evicted: string[] = [];
    for (const e of entries) {
      if (total <= this.config.maxBytes) break;
      if (e.pinned || this.inflight.has(e.sha256)) continue;
      await rm(this.entryDir(e.sha256), { recursive: true, force: true });
      total -= e.bytes;
      evicted.push(e.sha256);
      this.config.log?.info({ sha256: e.sha256, bytes: e.bytes }, 'evicted model artifact from the cache');
    }
    return evicted;
  }
}
