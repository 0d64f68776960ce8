/**
 * The model registry: uploads land in `<dataDir>/uploads`, are verified (size,
 * sha256, tar layout) and then become content-addressed blobs in
 * `<dataDir>/blobs/sha256/<hex>` referenced by model versions in the store.
 * Versions in use by a deployment cannot be deleted; blobs are collected when
 * no version references them.
 */
import path from 'node:path';
import { TernError } from '../../protocol/errors.js';
import { versionFromText } from '../store/columns.js';
import type { ModelFormat, ModelVersionRecord, Store, UploadRecord } from '../store/store.js';
import { BlobStore, hashFile } from './blob-store.js';
import { checkModelTar } from './tar-check.js';
import { UploadStaging, type UploadRequest, type UploadStatus } from './upload-staging.js';

export type { UploadRequest, UploadStatus } from './upload-staging.js';

export interface ImportOptions { format: ModelFormat; version?: string; config?: Record<string, unknown> }

export class ModelRegistry {
  readonly blobs: BlobStore;
  readonly uploads: UploadStaging;
  private readonly store: Store;
  /** Digests between verification and registration; garbage collection must not take them. */
  private readonly pending = new Map<string, number>();

  constructor(options: { dataDir: string; store: Store }) {
    this.store = options.store;
    this.blobs = new BlobStore(path.join(options.dataDir, 'blobs'));
    this.uploads = new UploadStaging(path.join(options.dataDir, 'uploads'), options.store);
  }

  createUpload(model: string, req: UploadRequest, createdBy?: string): UploadStatus {
    if (req.version && this.store.models.getVersion(model, req.version)) {
      throw new TernError('CONFLICT', `model ${model} version ${req.version} already exists`);
    }
    const stored = this.blobs.size(req.sha256);
    if (stored !== undefined && stored !== req.size) {
      throw new TernError('BAD_REQUEST', `sha256 ${req.sha256} is stored with size ${stored}, not ${req.size}: the declared size is wrong`);
    }
    const record = this.store.uploads.create({
      model, version: req.version === undefined ? undefined : versionFromText(req.version),
      sha256: req.sha256, size: req.size, format: req.format, config: req.config, createdBy,
    });
    return this.uploadStatus(record.id);
  }

  uploadStatus(id: string): UploadStatus {
    const u = this.uploads.get(id);
    const deduplicated = this.blobs.has(u.sha256);
    return { ...u, received: deduplicated ? u.size : this.uploads.received(id), deduplicated };
  }

  async appendChunk(id: string, offset: number, chunk: Buffer): Promise<UploadStatus> {
    const u = this.uploads.get(id);
    if (this.blobs.has(u.sha256)) throw new TernError('CONFLICT', `upload ${id} needs no data: the registry already holds ${u.sha256}; complete it`);
    await this.uploads.append(id, offset, chunk);
    return this.uploadStatus(id);
  }

  async cancelUpload(id: string): Promise<void> {
    this.uploads.get(id);
    await this.uploads.exclusive(id, () => this.uploads.discard(id));
  }

  /**
   * Verifies and registers the upload. An incomplete upload stays for resuming;
   * a checksum mismatch, a malformed archive or a version taken meanwhile
   * discards it (and any blob nothing else references).
   */
  async completeUpload(id: string): Promise<ModelVersionRecord> {
    const u = this.uploads.get(id);
    return this.uploads.exclusive(id, async () => {
      const received = this.uploadStatus(id).received;
      if (received !== u.size) {
        throw new TernError('BAD_REQUEST', `upload ${id} is incomplete: received ${received} of ${u.size} bytes; continue at offset ${received}`);
      }
      this.hold(u.sha256);
      try {
        return await this.registerUpload(u);
      } catch (e) {
        await this.uploads.discard(id);
        throw e;
      } finally {
        this.release(u.sha256);
        this.collectGarbage([u.sha256]);
      }
    });
  }

  private async registerUpload(u: UploadRecord): Promise<ModelVersionRecord> {
    if (this.blobs.has(u.sha256)) {
      if (u.format === 'tar') await checkModelTar(this.blobs.path(u.sha256));
    } else {
      await this.verifyAndStore(u);
    }
    const version = this.store.models.addVersion({
      model: u.model, version: u.version === null ? undefined : Number(u.version),
      sha256: u.sha256, size: u.size, format: u.format, config: u.config,
    });
    await this.uploads.discard(u.id);
    return version;
  }

  private async verifyAndStore(u: UploadRecord): Promise<void> {
    const file = this.uploads.dataPath(u.id);
    const { sha256 } = await hashFile(file);
    if (sha256 !== u.sha256) throw new TernError('BAD_REQUEST', `checksum mismatch: expected ${u.sha256}, got ${sha256}; the upload was discarded`);
    if (u.format === 'tar') await checkModelTar(file);
    await this.blobs.adoptVerified(file, sha256);
  }

  /** Registers a local file as a model version (how `tern up` seeds the demo model). */
  async importFile(model: string, file: string, options: ImportOptions): Promise<ModelVersionRecord> {
    if (options.format === 'tar') await checkModelTar(file);
    const version = options.version === undefined ? undefined : versionFromText(options.version);
    if (options.version !== undefined && version === undefined) throw new TernError('BAD_REQUEST', `version must be a positive integer, got "${options.version}"`);
    const { sha256, size } = await this.blobs.importFile(file);
    try {
      return this.store.models.addVersion({ model, version, sha256, size, format: options.format, config: options.config });
    } catch (e) {
      this.collectGarbage([sha256]);
      throw e;
    }
  }

  /** Deletes one version; CONFLICT while a deployment uses it. */
  deleteVersion(model: string, version: string): ModelVersionRecord {
    if (!this.store.models.exists(model)) throw new TernError('MODEL_NOT_FOUND', `model ${model} not found`);
    if (!this.store.models.getVersion(model, version)) throw new TernError('VERSION_NOT_FOUND', `model ${model} has no version ${version}`);
    const users = this.store.models.usedBy(model, version);
    if (users.length) throw new TernError('CONFLICT', `model ${model} version ${version} is used by deployment ${users.join(', ')}; delete or roll those out first`);
    const removed = this.store.models.removeVersion(model, version)!;
    this.collectGarbage([removed.sha256]);
    return removed;
  }

  /** Deletes a model and all its versions; CONFLICT while any deployment uses it. */
  deleteModel(model: string): ModelVersionRecord[] {
    if (!this.store.models.exists(model)) throw new TernError('MODEL_NOT_FOUND', `model ${model} not found`);
    const users = this.store.models.usedBy(model);
    if (users.length) throw new TernError('CONFLICT', `model ${model} is used by deployment ${users.join(', ')}; delete those first`);
    const removed = this.store.models.removeModel(model);
    this.collectGarbage(removed.map((v) => v.sha256));
    return removed;
  }

  /** Removes blobs no version references (the given digests, or every stored blob); returns how many. */
  collectGarbage(candidates: string[] = this.blobs.list()): number {
    let removed = 0;
    for (const sha of new Set(candidates)) {
      if (this.pending.has(sha) || this.store.models.isBlobReferenced(sha)) continue;
      if (this.blobs.removeSync(sha)) removed++;
    }
    return removed;
  }

  private hold(sha: string): void {
    this.pending.set(sha, (this.pending.get(sha) ?? 0) + 1);
  }

  private release(sha: string): void {
    const n = (this.pending.get(sha) ?? 1) - 1;
    if (n > 0) this.pending.set(sha, n); else this.pending.delete(sha);
  }
}
