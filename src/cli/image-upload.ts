/**
 * `tern image upload ARCHIVE`: sends an image archive to the control plane,
 * which hands it to nodes that cannot reach a registry. Chunked and resumable
 * (the control plane says how much it has; an interrupted upload goes on from
 * there), verified by sha256 on arrival, with a progress bar.
 */
import { stat } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { readArchiveFacts } from '../containers/image-archive.js';
import type { ApiClient } from './api-client.js';
import { readChunk, sha256File } from './model-push.js';

const CHUNK = 8 * 1024 * 1024;
const RETRIES = 5;

export interface ImageUploadOptions { ref?: string; progress: boolean }

export async function uploadImage(api: ApiClient, archive: string, opts: ImageUploadOptions): Promise<{ ref: string; platform: string; sha256: string; size: number; resumedAt: number }> {
  const size = (await stat(archive).catch(() => {
    throw new Error(`image archive '${archive}' does not exist`);
  })).size;
  const facts = await readArchiveFacts(archive);
  const ref = opts.ref ?? facts.ref;
  if (!ref) throw new Error(`${archive} names no image tag; give one with --ref`);
  const sha256 = await sha256File(archive);
  const status = await api.get<{ received: number }>(`/images/uploads/${sha256}`);
  const resumedAt = status.received;
  const bar = opts.progress ? new cliProgress.SingleBar({ format: `uploading ${ref} [{bar}] {percentage}% {value}/{total} bytes` }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(size, resumedAt);
  let offset = resumedAt;
  let failures = 0;
  while (offset < size) {
    try {
      const chunk = await readChunk(archive, offset, Math.min(CHUNK, size - offset));
      offset = (await api.request<{ received: number }>('PUT', `/images/uploads/${sha256}?offset=${offset}`, chunk)).received;
      bar?.update(offset);
      failures = 0;
    } catch (err) {
      if (++failures > RETRIES) throw err;
      offset = (await api.get<{ received: number }>(`/images/uploads/${sha256}`).catch(() => ({ received: offset }))).received;
    }
  }
  bar?.stop();
  const record = await api.post<{ ref: string; platform: string; sha256: string; size: number }>('/images', { ref, platform: facts.platform, sha256, size });
  return { ...record, resumedAt };
}
