/**
 * `tern models push`: packs a model (one .onnx file, or a directory as tar),
 * then uploads it in chunks that resume where the control plane says it got to,
 * so a flaky link costs a retry, not the whole upload.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import cliProgress from 'cli-progress';
import * as tar from 'tar';
import type { ApiClient } from './api-client.js';

const CHUNK = 8 * 1024 * 1024;
const RETRIES = 5;

interface Artifact { file: string; format: 'onnx' | 'tar'; size: number; sha256: string; config?: Record<string, unknown>; cleanup(): Promise<void> }

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A directory (with model.onnx, maybe config.json) becomes a tar; a file is sent as is. */
export async function packArtifact(source: string): Promise<Artifact> {
  const s = await stat(source).catch(() => undefined);
  if (!s) throw new Error(`'${source}' does not exist`);
  if (s.isFile()) {
    if (!source.endsWith('.onnx')) throw new Error(`'${source}' is not an .onnx file (push a model file or a directory holding model.onnx)`);
    return { file: source, format: 'onnx', size: s.size, sha256: await sha256File(source), cleanup: async () => undefined };
  }
  const tmp = await mkdtemp(path.join(tmpdir(), 'tern-push-'));
  const file = path.join(tmp, 'model.tar');
  await tar.c({ file, cwd: source, portable: true }, ['.']);
  let config: Record<string, unknown> | undefined;
  try {
    config = JSON.parse(await readFile(path.join(source, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch { /* optional */ }
  return { file, format: 'tar', size: (await stat(file)).size, sha256: await sha256File(file), config, cleanup: () => rm(tmp, { recursive: true, force: true }) };
}

export async function readChunk(file: string, offset: number, length: number): Promise<Uint8Array> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function pushModel(api: ApiClient, name: string, source: string, opts: { version?: string; progress: boolean }): Promise<{ model: string; version: string; sha256: string }> {
  const art = await packArtifact(source);
  try {
    const upload = await api.post<{ id: string; received: number; deduplicated: boolean }>(`/models/${encodeURIComponent(name)}/uploads`, {
      sha256: art.sha256, size: art.size, format: art.format, ...(opts.version ? { version: opts.version } : {}), ...(art.config ? { config: art.config } : {}),
    });
    const bar = opts.progress ? new cliProgress.SingleBar({ format: `uploading ${name} [{bar}] {percentage}% {value}/{total} bytes` }, cliProgress.Presets.shades_classic) : undefined;
    bar?.start(art.size, upload.received);
    let offset = upload.deduplicated ? art.size : upload.received;
    let failures = 0;
    while (offset < art.size) {
      try {
        const chunk = await readChunk(art.file, offset, Math.min(CHUNK, art.size - offset));
        offset = (await api.request<{ received: number }>('PUT', `/uploads/${upload.id}?offset=${offset}`, chunk)).received;
        bar?.update(offset);
        failures = 0;
      } catch (err) {
        if (++failures > RETRIES) throw err;
        // Ask where the server got to and resume from there.
        offset = (await api.get<{ received: number }>(`/uploads/${upload.id}`).catch(() => ({ received: offset }))).received;
      }
    }
    bar?.stop();
    return await api.post(`/uploads/${upload.id}/complete`);
  } finally {
    await art.cleanup();
  }
}
