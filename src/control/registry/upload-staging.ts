/**
 * Chunked, resumable uploads. Each upload has a data file `<dir>/<id>` whose
 * size is the number of bytes received; a chunk is accepted only at exactly that
 * offset, so a client that lost a response asks for the offset and continues.
 * Every accepted chunk is fsynced, so the offset a client was told survives a
 * crash of the control plane or the machine.
 */
import { constants, mkdirSync, readdirSync, statSync } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import type { UploadRequestSchema } from '../../protocol/fleet.js';
import { TernError } from '../../protocol/errors.js';
import type { Store, UploadRecord } from '../store/store.js';

export type UploadRequest = z.infer<typeof UploadRequestSchema>;

export interface UploadStatus extends UploadRecord {
  received: number;
  /** The registry already holds this content: no bytes need to be sent, complete at once. */
  deduplicated: boolean;
}

const UPLOAD_ID = /^[a-f0-9]{32}$/;

export class UploadStaging {
  readonly dir: string;
  private readonly store: Store;
  /** Uploads with a request in flight; a second concurrent request would race on the offset. */
  private readonly busy = new Set<string>();

  constructor(dir: string, store: Store) {
    this.dir = dir;
    this.store = store;
    mkdirSync(dir, { recursive: true });
  }

  dataPath(id: string): string {
    return path.join(this.dir, id);
  }

  get(id: string): UploadRecord {
    const u = UPLOAD_ID.test(id) ? this.store.uploads.get(id) : undefined;
    if (!u) throw new TernError('NOT_FOUND', `upload ${id} not found (it may have completed, failed or been cancelled)`);
    return u;
  }

  received(id: string): number {
    try { return statSync(this.dataPath(id)).size; } catch { return 0; }
  }

  /** Runs `fn` as the only request working on this upload. */
  async exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(id)) throw new TernError('CONFLICT', `upload ${id} is busy with another request; retry when it has finished`);
    this.busy.add(id);
    try { return await fn(); } finally { this.busy.delete(id); }
  }

  async append(id: string, offset: number, chunk: Buffer): Promise<number> {
    const u = this.get(id);
    return this.exclusive(id, async () => {
      const received = this.received(id);
      if (offset !== received) {
        throw new TernError('CONFLICT', `wrong offset ${offset} for upload ${id}: expected offset ${received} (bytes received so far)`);
      }
      if (chunk.length === 0) throw new TernError('BAD_REQUEST', 'empty chunk: send the next bytes of the file as application/octet-stream');
      if (offset + chunk.length > u.size) {
        throw new TernError('BAD_REQUEST', `chunk of ${chunk.length} bytes at offset ${offset} goes past the declared size of ${u.size} bytes`);
      }
      await writeChunk(this.dataPath(id), offset, chunk);
      return offset + chunk.length;
    });
  }

  async discard(id: string): Promise<void> {
    this.store.uploads.remove(id);
    await rm(this.dataPath(id), { force: true });
  }

  /** Removes uploads older than `maxAgeMs` and data files no upload row owns (left by a crash). */
  async purge(maxAgeMs: number, now = Date.now()): Promise<number> {
    let removed = 0;
    const known = new Set<string>();
    for (const u of this.store.uploads.list()) {
      if (now - u.created_at > maxAgeMs) { await this.discard(u.id); removed++; } else known.add(u.id);
    }
    for (const f of readdirSync(this.dir)) {
      if (!known.has(f)) { await rm(path.join(this.dir, f), { force: true }); removed++; }
    }
    return removed;
  }
}

async function writeChunk(file: string, offset: number, chunk: Buffer): Promise<void> {
  const fh = await open(file, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    try {
      await fh.write(chunk, 0, chunk.length, offset);
      await fh.sync();
    } catch (e) {
      // A half-written chunk (disk full) must not move the offset the client resumes from.
      await fh.truncate(offset).catch(() => undefined);
      throw e;
    }
  } finally {
    await fh.close();
  }
}
