/**
 * Per-model prediction cache (Clipper's), bounded in bytes. The key hashes the
 * model, version and the exact input tensors (names, types, shapes, bytes), so
 * only bit-identical requests hit. lru-cache does the eviction accounting.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { tensorByteSize, tensorToRaw } from './tensor-codec.js';
import type { Tensor } from './types.js';

export class PredictionCache {
  private readonly lru: LRUCache<string, Tensor[]>;
  hits = 0;
  misses = 0;

  constructor(maxBytes: number) {
    this.lru = new LRUCache<string, Tensor[]>({
      maxSize: maxBytes,
      // An entry costs its output bytes plus a fixed allowance for the key and objects.
      sizeCalculation: (outputs) => Math.max(1, outputs.reduce((n, t) => n + tensorByteSize(t), 0) + 128),
    });
  }

  static key(model: string, version: string, inputs: Tensor[]): string {
    const h = createHash('sha256');
    h.update(`${model}\0${version}\0`);
    for (const t of [...inputs].sort((a, b) => a.name.localeCompare(b.name))) {
      h.update(`${t.name}\0${t.datatype}\0${t.shape.join(',')}\0`);
      h.update(tensorToRaw(t));
    }
    return h.digest('base64');
  }

  get(key: string): Tensor[] | undefined {
    const v = this.lru.get(key);
    if (v) this.hits++;
    else this.misses++;
    return v;
  }

  set(key: string, outputs: Tensor[]): void {
    this.lru.set(key, outputs);
  }

  get bytes(): number { return this.lru.calculatedSize; }
  get entries(): number { return this.lru.size; }
}
