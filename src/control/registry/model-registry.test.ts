import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { c as createTar } from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store } from '../store/store.js';
import { ModelRegistry } from './model-registry.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('ModelRegistry', () => {
  let dir: string;
  let store: Store;
  let registry: ModelRegistry;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tern-registry-'));
    store = Store.open(path.join(dir, 'control.db'));
    registry = new ModelRegistry({ dataDir: dir, store });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function upload(model: string, data: Buffer, format: 'onnx' | 'tar' = 'onnx') {
    const u = registry.createUpload(model, { sha256: sha256(data), size: data.length, format });
    if (!u.deduplicated) await registry.appendChunk(u.id, 0, data);
    return registry.completeUpload(u.id);
  }

  async function tarOf(files: Record<string, string>, gzip = false): Promise<Buffer> {
    const src = mkdtempSync(path.join(dir, 'src-'));
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(src, name)), { recursive: true });
      writeFileSync(path.join(src, name), content);
    }
    const out = `${src}.tar`;
    await createTar({ file: out, cwd: src, gzip }, Object.keys(files));
    return readFileSync(out);
  }

  it('stores blobs by sha256 and shares one blob between versions', async () => {
    const data = randomBytes(1000);
    const v1 = await upload('iris', data);
    expect(readFileSync(registry.blobs.path(v1.sha256))).toEqual(data);
    const again = registry.createUpload('iris', { sha256: sha256(data), size: 1000, format: 'onnx' });
    expect(again).toMatchObject({ deduplicated: true, received: 1000 });
    await expect(registry.appendChunk(again.id, 0, data)).rejects.toThrow(/needs no data/);
    expect((await registry.completeUpload(again.id)).version).toBe('2');
    expect(registry.blobs.list()).toEqual([sha256(data)]);
    registry.deleteVersion('iris', '1');
    expect(registry.blobs.has(sha256(data))).toBe(true);
    registry.deleteVersion('iris', '2');
    expect(registry.blobs.has(sha256(data))).toBe(false);
    expect(store.models.exists('iris')).toBe(false);
  });

  it('refuses a size that contradicts the stored blob of that digest', async () => {
    const data = randomBytes(10);
    await upload('iris', data);
    expect(() => registry.createUpload('x', { sha256: sha256(data), size: 11, format: 'onnx' })).toThrow(/is stored with size 10, not 11/);
  });

  it('accepts gzip tars and refuses entries that escape the directory', async () => {
    expect((await upload('ocr', await tarOf({ 'model.onnx': 'm', 'config.json': '{}' }, true), 'tar')).format).toBe('tar');
    const evil = await tarOf({ 'model.onnx': 'm', 'sub/x': 'y' });
    // Rewrite an entry name in the header to climb out (same length keeps the checksum maths simple to redo).
    const hacked = Buffer.from(evil);
    const at = hacked.indexOf('sub/x');
    hacked.write('../xx', at);
    fixTarChecksum(hacked, at - (at % 512));
    await expect(upload('evil', hacked, 'tar')).rejects.toThrow('tar entry "../xx" points outside the archive\'s directory');
    expect(store.models.exists('evil')).toBe(false);
  });

  it('keeps an upload across a restart and lets the client resume', async () => {
    const data = randomBytes(3000);
    const u = registry.createUpload('iris', { sha256: sha256(data), size: 3000, format: 'onnx' });
    await registry.appendChunk(u.id, 0, data.subarray(0, 1000));
    store.close();
    store = Store.open(path.join(dir, 'control.db'));
    registry = new ModelRegistry({ dataDir: dir, store });
    expect(registry.uploadStatus(u.id).received).toBe(1000);
    await registry.appendChunk(u.id, 1000, data.subarray(1000));
    expect((await registry.completeUpload(u.id)).sha256).toBe(sha256(data));
  });

  it('lets only one request at a time write to an upload', async () => {
    const data = randomBytes(2000);
    const u = registry.createUpload('iris', { sha256: sha256(data), size: 2000, format: 'onnx' });
    const results = await Promise.allSettled([registry.appendChunk(u.id, 0, data.subarray(0, 1000)), registry.appendChunk(u.id, 0, data.subarray(0, 1000))]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect(String((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason)).toMatch(/is busy with another request/);
    expect(registry.uploadStatus(u.id).received).toBe(1000);
  });

  it('purges stale uploads and orphan files, and sweeps unreferenced blobs', async () => {
    const u = registry.createUpload('iris', { sha256: 'b'.repeat(64), size: 10, format: 'onnx' });
    await registry.appendChunk(u.id, 0, Buffer.alloc(5));
    writeFileSync(path.join(registry.uploads.dir, 'left-by-a-crash'), 'x');
    expect(await registry.uploads.purge(60_000, Date.now())).toBe(1);
    expect(await registry.uploads.purge(0, Date.now() + 1)).toBe(1);
    expect(readdirSync(registry.uploads.dir)).toEqual([]);
    const orphan = path.join(dir, 'orphan.bin');
    writeFileSync(orphan, 'no version points here');
    const { sha256: digest } = await registry.blobs.importFile(orphan);
    expect(registry.collectGarbage()).toBe(1);
    expect(registry.blobs.has(digest)).toBe(false);
  });

  it('imports a local file as a version (how tern up seeds the demo model)', async () => {
    const file = path.join(dir, 'model.onnx');
    writeFileSync(file, randomBytes(64));
    const v = await registry.importFile('demo', file, { format: 'onnx', config: { max_batch_size: 8 } });
    expect(v).toMatchObject({ model: 'demo', version: '1', size: 64, config: { max_batch_size: 8 } });
    await expect(registry.importFile('demo', file, { format: 'onnx', version: '1' })).rejects.toThrow('model demo version 1 already exists');
    expect(existsSync(registry.blobs.path(v.sha256))).toBe(true);
  });
});

/** Recomputes a ustar header checksum after editing the header at `offset`. */
function fixTarChecksum(buf: Buffer, offset: number): void {
  buf.fill(0x20, offset + 148, offset + 156);
  let sum = 0;
  for (let i = offset; i < offset + 512; i++) sum += buf[i];
  buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, offset + 148, 'ascii');
}
