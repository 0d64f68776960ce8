import { describe, expect, it } from 'vitest';
import { DATATYPES } from '../../protocol/datatypes.js';
import {
  concatBatch, decodeBytesElements, encodeBytesElements, jsonShape, reshapeJson, sliceBatch,
  tensorFromJson, tensorFromRaw, tensorToJson, tensorToRaw,
} from './tensor-codec.js';

const SAMPLES: Record<string, unknown[]> = {
  BOOL: [true, false, true, true],
  UINT8: [0, 1, 200, 255], UINT16: [0, 1, 65535, 7], UINT32: [0, 1, 4294967295, 9],
  UINT64: [0, 1, 2 ** 40, 5], INT8: [-128, 0, 5, 127], INT16: [-32768, 0, 32767, 1],
  INT32: [-2147483648, 0, 2147483647, 3], INT64: [-(2 ** 50), 0, 2 ** 50, -1],
  FP16: [0, 1.5, -2, 65504], FP32: [0, 1.5, -2.25, 1e20], FP64: [0, 1.5, -2.25, 1e300],
  BYTES: ['', 'a', 'héllo', 'tern'],
};

describe('tensor codec', () => {
  for (const datatype of DATATYPES) {
    it(`round-trips ${datatype} through JSON and raw bytes`, () => {
      const values = SAMPLES[datatype];
      const t = tensorFromJson('x', datatype, [2, 2], [values.slice(0, 2), values.slice(2)]);
      expect(tensorToJson(t)).toEqual(datatype === 'FP32' ? values.map((v) => Math.fround(v as number)) : values);
      const back = tensorFromRaw('x', datatype, [2, 2], tensorToRaw(t));
      expect(tensorToJson(back)).toEqual(tensorToJson(t));
    });
  }

  it('refuses out-of-range integers and non-integers', () => {
    expect(() => tensorFromJson('x', 'UINT8', [1], [256])).toThrow(/not a valid UINT8/);
    expect(() => tensorFromJson('x', 'INT32', [1], [1.5])).toThrow(/not a valid INT32/);
    expect(() => tensorFromJson('x', 'BOOL', [1], ['yes'])).toThrow(/true or false/);
  });

  it('frames BYTES elements with 4-byte lengths and rejects truncated framing', () => {
    const raw = encodeBytesElements([Buffer.from('ab'), Buffer.from('')]);
    expect(raw.length).toBe(4 + 2 + 4);
    expect(decodeBytesElements('x', raw, 2).map(String)).toEqual(['ab', '']);
    expect(() => decodeBytesElements('x', raw.subarray(0, 5), 2)).toThrow(/overruns/);
    expect(() => decodeBytesElements('x', raw, 3)).toThrow(/needs 3 BYTES elements, got 2/);
  });

  it('copies unaligned raw input into aligned storage', () => {
    const buf = Buffer.alloc(9);
    Buffer.from(Float32Array.from([1.5, -3]).buffer).copy(buf, 1);
    const t = tensorFromRaw('x', 'FP32', [2], buf.subarray(1));
    expect(Array.from(t.data as Float32Array)).toEqual([1.5, -3]);
    expect((t.data as Float32Array).buffer).not.toBe(buf.buffer);
  });

  it('views aligned raw input without copying it', () => {
    const buf = Buffer.alloc(12);
    Buffer.from(Float32Array.from([1.5, -3]).buffer).copy(buf, 4);
    const t = tensorFromRaw('x', 'FP32', [2], buf.subarray(4));
    expect(Array.from(t.data as Float32Array)).toEqual([1.5, -3]);
    expect((t.data as Float32Array).buffer).toBe(buf.buffer);
    expect(t.disposable).toBeUndefined(); // the request's bytes may not be moved to another thread
  });

  it('concatenates and slices along the batch dimension', () => {
    const a = tensorFromJson('x', 'FP32', [1, 2], [1, 2]);
    const b = tensorFromJson('x', 'FP32', [2, 2], [3, 4, 5, 6]);
    const batch = concatBatch([a, b]);
    expect(batch.shape).toEqual([3, 2]);
    expect(batch.disposable).toBe(true); // a merged batch is scratch the runtime may move
    expect(tensorToJson(sliceBatch(batch, 1, 2))).toEqual([3, 4, 5, 6]);
  });

  it('reads and rebuilds nested JSON shapes', () => {
    expect(jsonShape([[1, 2, 3], [4, 5, 6]])).toEqual([2, 3]);
    expect(reshapeJson([1, 2, 3, 4, 5, 6], [2, 3])).toEqual([[1, 2, 3], [4, 5, 6]]);
    expect(reshapeJson([7], [])).toBe(7);
  });
});
