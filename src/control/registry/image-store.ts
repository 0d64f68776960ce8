/**
 * Container image archives (docker-save format, as `tern image build` writes
 * them) for nodes that cannot reach a registry: uploaded in chunks, resumable
 * (an upload is named by the archive's sha256, and its offset is the size
 * received so far), verified against the declared sha256 and size, then kept
 * content-addressed in `<dataDir>/images/blobs` (apart from model blobs, whose
 * garbage collection knows nothing of images) and named by image reference.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { TernError } from '../../protocol/errors.js';
import type { ImageRecord, Store } from '../store/store.js';
import { BlobStore, hashFile } from './blob-store.js';

export interface ImageRegistration { ref: string; platform: string; sha256: string; size: number }

export class ImageStore {
  readonly blobs: BlobStore;
  private readonly staging: string;
  /** One chunk at a time per upload: an offset check and its append must not interleave. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(dataDir: string, private readonly store: Store) {
    this.blobs = new BlobStore(path.join(dataDir, 'images', 'blobs'));
    this.staging = path.join(dataDir, 'images', 'uploads');
  }

  private partPath(sha256: string): string {
    return path.join(this.staging, `${sha256}.part`);
  }

  private exclusive<T>(sha256: string, fn: () => Promise<T>): Promise<T> {
    const next = (this.locks.get(sha256) ?? Promise.resolve()).then(fn, fn);
    this.locks.set(sha256, next.catch(() => undefined));
    return next;
  }

  /** Bytes received so far (the whole size when the blob is already stored). */
  async received(sha256: string): Promise<number> {
    const stored = this.blobs.size(sha256);
    if (stored !== undefined) return stored;
    return stat(this.partPath(sha256)).then((s) => s.size, () => 0);
  }

  async append(sha256: string, offset: number, chunk: Buffer): Promise<number> {
    return this.exclusive(sha256, async () => {
      if (this.blobs.has(sha256)) throw new TernError('CONFLICT', `the control plane already holds ${sha256}; register it with POST /images`);
      const have = await this.received(sha256);
      if (offset !== have) throw new TernError('CONFLICT', `upload ${sha256.slice(0, 12)} is at offset ${have}, not ${offset}; resume from ${have}`);
      await mkdir(this.staging, { recursive: true });
      await appendFile(this.partPath(sha256), chunk);
      return have + chunk.length;
    });
  }

  /** Verifies the upload (size, sha256), stores it, names it `ref`. */
  async register(r: ImageRegistration, createdBy?: string): Promise<ImageRecord> {
    return this.exclusive(r.sha256, async () => {
      if (!this.blobs.has(r.sha256)) {
        const part = this.partPath(r.sha256);
        if (!existsSync(part)) throw new TernError('BAD_REQUEST', `nothing was uploaded for ${r.sha256}; PUT /images/uploads/${r.sha256} first`);
        const { sha256, size } = await hashFile(part);
        if (size !== r.size) throw new TernError('BAD_REQUEST', `upload ${r.sha256.slice(0, 12)} is incomplete: received ${size} of ${r.size} bytes; continue at offset ${size}`);
        if (sha256 !== r.sha256) {
          await rm(part, { force: true });
          throw new TernError('BAD_REQUEST', `checksum mismatch: expected ${r.sha256}, got ${sha256}; the upload was discarded`);
        }
        await this.blobs.adoptVerified(part, sha256);
      } else if (this.blobs.size(r.sha256) !== r.size) {
        throw new TernError('BAD_REQUEST', `${r.sha256} is stored with size ${this.blobs.size(r.sha256)}, not ${r.size}`);
      }
      const previous = this.store.images.get(r.ref);
      const record = this.store.images.put({ ...r, createdBy });
      if (previous && previous.sha256 !== r.sha256) this.collect(previous.sha256);
      return record;
    });
  }

  get(ref: string): ImageRecord {
    const record = this.store.images.get(ref);
    if (!record) throw new TernError('NOT_FOUND', `image ${ref} is not held by the control plane (upload it with: tern image upload ARCHIVE)`);
    return record;
  }

  remove(ref: string): ImageRecord {
    const record = this.get(ref);
    this.store.images.remove(ref);
    this.collect(record.sha256);
    return record;
  }

  private collect(sha256: string): void {
    if (!this.store.images.isBlobReferenced(sha256)) this.blobs.removeSync(sha256);
  }
}
