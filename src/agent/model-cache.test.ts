import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { create as createTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChecksumMismatchError, ModelCache } from './model-cache.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const TOKEN = 'node-token';

describe('model cache', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-cache-test-'));
  const blobs = new Map<string, Buffer>();
  const hits = new Map<string, number>();
  let server: http.Server;
  let url = '';

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const m = /^\/api\/v1\/blobs\/([a-f0-9]{64})$/.exec(req.url ?? '');
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'bad node token' }));
      const blob = m && blobs.get(m[1]);
      if (!blob) return res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `blob ${m?.[1]} not found` }));
      hits.set(m[1], (hits.get(m[1]) ?? 0) + 1);
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(blob);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cache = (sub: string, maxBytes = 1e9, token = TOKEN) => new ModelCache({ dir: path.join(dir, sub), maxBytes, source: () => ({ controlUrl: url, token }) });

  it('downloads, verifies and reuses an onnx artifact', async () => {
    const model = Buffer.from('not really onnx, but bytes with a digest');
    const digest = sha(model);
    blobs.set(digest, model);
    const c = cache('a');
    const first = await c.acquire({ sha256: digest, format: 'onnx' });
    expect(readFileSync(path.join(first.dir, 'model.onnx'))).toEqual(model);
    expect(first.dir).toBe(path.join(dir, 'a', digest));
    const second = await c.acquire({ sha256: digest, format: 'onnx' });
    expect(second.dir).toBe(first.dir);
    expect(hits.get(digest)).toBe(1);
    // A new cache over the same directory (an agent restart) needs no download either.
    await cache('a').acquire({ sha256: digest, format: 'onnx' });
    expect(hits.get(digest)).toBe(1);
  });

  it('refuses a corrupt download, naming both digests, and keeps nothing of it', async () => {
    const claimed = sha(Buffer.from('the real model'));
    const served = Buffer.from('tampered bytes');
    blobs.set(claimed, served);
    const c = cache('b');
    const err = await c.acquire({ sha256: claimed, format: 'onnx' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChecksumMismatchError);
    expect((err as Error).message).toContain(`expected sha256 ${claimed}`);
    expect((err as Error).message).toContain(sha(served));
    expect(existsSync(path.join(dir, 'b', claimed))).toBe(false);
    expect(readdirSync(path.join(dir, 'b', '.tmp'))).toEqual([]);
    expect(await c.has(claimed)).toBe(false);
  });

  it('names the control plane\'s reason when a download is refused', async () => {
    const digest = sha(Buffer.from('x'));
    blobs.set(digest, Buffer.from('x'));
    const err = await cache('c', 1e9, 'wrong').acquire({ sha256: digest, format: 'onnx' }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/HTTP 401 bad node token/);
    const missing = await cache('c').acquire({ sha256: 'f'.repeat(64), format: 'onnx' }).catch((e: Error) => e);
    expect((missing as Error).message).toMatch(/HTTP 404/);
  });

  it('unpacks tar artifacts, at the root or in one top-level directory', async () => {
    const src = path.join(dir, 'src-model');
    mkdirSync(path.join(src, 'extra'), { recursive: true });
    writeFileSync(path.join(src, 'model.onnx'), 'onnx bytes');
    writeFileSync(path.join(src, 'config.json'), '{"max_batch_size":0}');
    writeFileSync(path.join(src, 'extra', 'labels.txt'), 'a\nb\n');
    const flat = path.join(dir, 'flat.tar');
    await createTar({ file: flat, cwd: src }, ['model.onnx', 'config.json', 'extra']);
    const nested = path.join(dir, 'nested.tar.gz');
    await createTar({ file: nested, cwd: dir, gzip: true }, ['src-model']);
    const c = cache('d');
    for (const file of [flat, nested]) {
      const bytes = readFileSync(file);
      blobs.set(sha(bytes), bytes);
      const m = await c.acquire({ sha256: sha(bytes), format: 'tar' });
      expect(readFileSync(path.join(m.dir, 'model.onnx'), 'utf8')).toBe('onnx bytes');
      expect(readFileSync(path.join(m.dir, 'extra', 'labels.txt'), 'utf8')).toBe('a\nb\n');
      expect(existsSync(path.join(m.dir, 'config.json'))).toBe(true);
    }
    const empty = path.join(dir, 'empty.tar');
    await createTar({ file: empty, cwd: src }, ['extra']);
    const bytes = readFileSync(empty);
    blobs.set(sha(bytes), bytes);
    await expect(c.acquire({ sha256: sha(bytes), format: 'tar' })).rejects.toThrow(/has no model.onnx/);
  });

  it('evicts the least recently used unpinned entries beyond its budget', async () => {
    const c = cache('e', 250);
    const digests: string[] = [];
    for (let i = 0; i < 3; i++) {
      const b = Buffer.alloc(100, i + 1);
      digests.push(sha(b));
      blobs.set(sha(b), b);
    }
    const pinned = await c.acquire({ sha256: digests[0], format: 'onnx' });
    const second = await c.acquire({ sha256: digests[1], format: 'onnx' });
    second.release();
    await new Promise((r) => setTimeout(r, 20));
    const third = await c.acquire({ sha256: digests[2], format: 'onnx' });
    // 300 bytes > 250: the oldest unpinned one (second) goes; the pinned first one stays.
    expect(await c.has(digests[0])).toBe(true);
    expect(await c.has(digests[1])).toBe(false);
    expect(await c.has(digests[2])).toBe(true);
    pinned.release();
    third.release();
    expect(await c.evict()).toEqual([]); // 200 bytes fit
    // A smaller budget over the same directory: the older of the two goes.
    expect(await cache('e', 150).evict()).toEqual([digests[0]]);
    expect(await c.has(digests[2])).toBe(true);
  });
});
