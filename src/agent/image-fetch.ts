/**
 * Container images for a node without registry access: the control plane
 * holds image archives (`tern image upload`); the container driver asks it for
 * the one a replica names, downloads it to `<dataDir>/images/<sha256>.part`
 * resuming where a broken download stopped (HTTP Range), verifies the
 * sha256, and loads it into the engine.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { httpGet, readSnippet } from './http-client.js';

export interface ControlSource { controlUrl: string; token: string }

interface ImageRecord { ref: string; platform: string; sha256: string; size: number }

const ATTEMPTS = 5;
const IDLE_MS = 30_000;

async function lookup(source: ControlSource, ref: string): Promise<ImageRecord | undefined> {
  const url = `${source.controlUrl.replace(/\/$/, '')}/api/v1/images/lookup?ref=${encodeURIComponent(ref)}`;
  const res = await httpGet(url, { authorization: `Bearer ${source.token}` }, IDLE_MS);
  if (res.statusCode === 404) {
    res.resume();
    return undefined;
  }
  if (res.statusCode !== 200) throw new Error(`the control plane answered ${res.statusCode} for image ${ref}: ${await readSnippet(res)}`);
  let text = '';
  for await (const c of res) text += (c as Buffer).toString('utf8');
  return JSON.parse(text) as ImageRecord;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const c of createReadStream(file)) hash.update(c as Buffer);
  return hash.digest('hex');
}

/** One GET from `offset` on, appended to `file`; resolves with the new size. */
async function downloadFrom(source: ControlSource, record: ImageRecord, file: string, offset: number, progress: (bytes: number) => void): Promise<number> {
  const url = `${source.controlUrl.replace(/\/$/, '')}/api/v1/images/blobs/${record.sha256}`;
  const headers: Record<string, string> = { authorization: `Bearer ${source.token}`, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) };
  const res = await httpGet(url, headers, IDLE_MS);
  if (res.statusCode !== 200 && res.statusCode !== 206) throw new Error(`HTTP ${res.statusCode}: ${await readSnippet(res)}`);
  const start = res.statusCode === 206 ? offset : 0;
  let size = start;
  await new Promise<void>((resolve, reject) => {
    const out = createWriteStream(file, { flags: start > 0 ? 'a' : 'w', mode: 0o600 });
    res.on('data', (c: Buffer) => {
      size += c.length;
      progress(size);
    });
    res.on('error', reject);
    res.on('aborted', () => reject(new Error('connection closed during download')));
    out.on('error', reject);
    out.on('finish', () => (res.complete ? resolve() : reject(new Error('connection closed during download'))));
    res.pipe(out);
  });
  return size;
}

/**
 * Downloads the archive the control plane holds for `ref` into `dir`;
 * resolves with its path (the caller loads and deletes it), or undefined when
 * the control plane has no such image.
 */
export async function fetchImageArchive(source: ControlSource, ref: string, dir: string, log?: Logger): Promise<string | undefined> {
  const record = await lookup(source, ref);
  if (!record) return undefined;
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${record.sha256}.part`);
  let size = await stat(file).then((s) => s.size, () => 0);
  if (size > record.size) {
    await rm(file, { force: true });
    size = 0;
  }
  const started = Date.now();
  let reported = 0;
  const progress = (bytes: number) => {
    const pct = Math.floor((bytes / record.size) * 10) * 10;
    if (pct > reported) {
      reported = pct;
      log?.info({ image: ref, percent: pct, bytes }, 'downloading image archive');
    }
  };
  if (size > 0) log?.info({ image: ref, offset: size }, 'resuming image archive download');
  for (let attempt = 1; size < record.size; attempt++) {
    try {
      size = await downloadFrom(source, record, file, size, progress);
    } catch (err) {
      size = await stat(file).then((s) => s.size, () => 0);
      if (attempt >= ATTEMPTS) throw new Error(`cannot download image ${ref} from the control plane after ${attempt} attempts (${size} of ${record.size} bytes): ${(err as Error).message}`);
      log?.warn({ image: ref, offset: size, err: (err as Error).message }, 'image archive download interrupted; resuming');
    }
  }
  const actual = await sha256Of(file);
  if (actual !== record.sha256) {
    await rm(file, { force: true });
    throw new Error(`image archive ${ref} failed verification: sha256 ${actual}, expected ${record.sha256}`);
  }
  log?.info({ image: ref, bytes: record.size, ms: Date.now() - started }, 'image archive downloaded and verified');
  return file;
}
