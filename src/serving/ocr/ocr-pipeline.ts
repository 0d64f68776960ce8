/**
 * The `ocr` model's pipeline, PaddleOCR style: detect text regions (DB), optionally
 * classify each line's orientation (0° / 180°), recognize each line (CTC).
 *
 * Pure and transport-free: the three component models (`det`, `cls`, `rec`) are
 * called through a `RunModel` callback, so the server can route them through its
 * batching core and tests can call onnxruntime directly. Pre- and postprocessing
 * follow PaddleOCR's PP-OCRv4 inference defaults (tools/infer/predict_*.py):
 * images are fed in BGR channel order, as cv2 reads them in training.
 */
import type Sharp from 'sharp';
import type { Tensor } from '../core/types.js';

export type RunModel = (model: 'det' | 'rec' | 'cls', inputs: Tensor[]) => Promise<Tensor[]>;

export interface OcrLine {
  text: string;
  /** Mean probability of the recognized characters, 0..1. */
  score: number;
  /** 4 corner points in original image pixels, clockwise from top-left. */
  box: [number, number][];
}

export interface OcrOptions {
  /** Longest side of the detector input; larger images are scaled down (never up). */
  detLimitSideLen: number;
  /** Detector probability above which a pixel counts as text (DB "thresh"). */
  detThreshold: number;
  /** Boxes whose mean text probability is lower are dropped (DB "box_thresh"). */
  boxThreshold: number;
  /** Each box grows by area * unclipRatio / perimeter on every side. */
  unclipRatio: number;
  /** Boxes whose short side, in detector pixels, is smaller are dropped. */
  minBoxSize: number;
  /** At most this many text regions are considered. */
  maxCandidates: number;
  /** Run the `cls` model and turn upside-down lines around. */
  useAngleClassifier: boolean;
  /** A line is turned 180° when `cls` says so with a higher probability. */
  clsThreshold: number;
  /** Minimum width of the `rec` batch (PaddleOCR: 320 for a 48-pixel height). */
  recMinWidth: number;
  /** Maximum width of the `rec` batch; longer lines are squeezed to fit. */
  recMaxWidth: number;
  /** Lines per `rec` call: bounded by the model's max_batch_size, and similar widths share a call. */
  recBatchSize: number;
  /** Lines recognized with a lower score are dropped. */
  dropScore: number;
  /** Images with more pixels are rejected before decoding. */
  maxImagePixels: number;
}

export const DEFAULT_OCR_OPTIONS: Readonly<OcrOptions> = {
  detLimitSideLen: 960,
  detThreshold: 0.3,
  boxThreshold: 0.6,
  unclipRatio: 1.5,
  minBoxSize: 3,
  maxCandidates: 1000,
  useAngleClassifier: false,
  clsThreshold: 0.9,
  recMinWidth: 320,
  recMaxWidth: 1600,
  recBatchSize: 16,
  dropScore: 0.5,
  maxImagePixels: 40_000_000,
};

/** Decoded pixels: 3 bytes (R, G, B) per pixel, row-major. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export type Point = [number, number];
/** Corners clockwise from top-left. */
export type Quad = [Point, Point, Point, Point];

const DET_MEAN = [0.485, 0.456, 0.406];
const DET_STD = [0.229, 0.224, 0.225];
const REC_MEAN = [0.5, 0.5, 0.5];
const REC_STD = [0.5, 0.5, 0.5];
const REC_HEIGHT = 48;
const CLS_HEIGHT = 48;
const CLS_WIDTH = 192;
const ACCEPTED_FORMATS = new Set(['png', 'jpeg', 'webp']);

/** The input is not a PNG, JPEG or WebP image sharp can decode: a client error, not a server fault. */
export class ImageDecodeError extends Error {
  constructor(reason: string) {
    super(`image could not be decoded: ${reason}`);
    this.name = 'ImageDecodeError';
  }
}

/**
 * PaddleOCR character list: index 0 is the CTC blank, then one entry per line of
 * the dictionary file, then a trailing space (`use_space_char`).
 */
export function loadDictionary(text: string): string[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  return ['', ...lines, ' '];
}

export async function recognizeImage(
  image: Buffer,
  run: RunModel,
  dictionary: string[],
  options: Partial<OcrOptions> = {},
): Promise<OcrLine[]> {
  const opts = { ...DEFAULT_OCR_OPTIONS, ...options };
  const rgb = await decode(image, opts.maxImagePixels);
  const boxes = await detectLines(rgb, run, opts);
  if (boxes.length === 0) return [];
  let crops = cropLines(rgb, boxes);
  if (opts.useAngleClassifier) crops = await uprightLines(crops, run, opts.clsThreshold);
  const texts = await recognizeCrops(crops, run, dictionary, opts);
  return boxes
    .map((box, i) => ({ text: texts[i].text, score: texts[i].score, box: box.map((p) => [p[0], p[1]] as [number, number]) }))
    .filter((line) => line.text.length > 0 && line.score >= opts.dropScore);
}

/**
 * Recognizes crops in chunks of similar aspect ratio (as PaddleOCR does), so
 * padding to a chunk's widest line wastes little and no call exceeds the rec
 * model's batch limit. Results come back in the crops' order.
 */
async function recognizeCrops(crops: RgbImage[], run: RunModel, dictionary: string[], opts: OcrOptions): Promise<{ text: string; score: number }[]> {
  const order = crops.map((_, i) => i).sort((a, b) => crops[a].width / crops[a].height - crops[b].width / crops[b].height);
  const chunks: number[][] = [];
  for (let i = 0; i < order.length; i += opts.recBatchSize) chunks.push(order.slice(i, i + opts.recBatchSize));
  const results = new Array<{ text: string; score: number }>(crops.length);
  await Promise.all(chunks.map(async (chunk) => {
    const out = await run('rec', [await recPreprocess(chunk.map((i) => crops[i]), opts)]);
    ctcDecode(floatOutput(out, 'rec', 3), dictionary).forEach((r, k) => { results[chunk[k]] = r; });
  }));
  return results;
}

// ---------------------------------------------------------------------------
// Decoding

let sharpModule: Promise<typeof Sharp> | undefined;

/**
 * sharp is loaded on the first OCR image, not with the server: a model-server
 * image without OCR (tern image build) leaves its native libvips out.
 */
function loadSharp(): Promise<typeof Sharp> {
  sharpModule ??= import('sharp').then((m) => m.default, (err: unknown) => {
    sharpModule = undefined;
    throw new Error(`OCR image decoding needs the sharp package, which is not installed here (${(err as Error).message.split('\n')[0]})`);
  });
  return sharpModule;
}

/** Decodes PNG / JPEG / WebP to RGB, applying EXIF orientation and flattening alpha onto white. */
export async function decode(image: Buffer, maxPixels = DEFAULT_OCR_OPTIONS.maxImagePixels): Promise<RgbImage> {
  const sharp = await loadSharp();
  try {
    const input = sharp(image, { limitInputPixels: maxPixels });
    const { format } = await input.metadata();
    if (!format || !ACCEPTED_FORMATS.has(format)) {
      throw new Error(`unsupported format ${format ?? 'unknown'} (expected png, jpeg or webp)`);
    }
    const { data, info } = await input
      .autoOrient()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels after conversion, got ${info.channels}`);
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw new ImageDecodeError(err instanceof Error ? err.message : String(err));
  }
}

async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (img.width === width && img.height === height) return img;
  const sharp = await loadSharp();
  const data = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill' })
    .raw()
    .toBuffer();
  return { data, width, height };
}

/**
 * Writes `img` into batch slot `index` of a [n, 3, planeH, planeW] float tensor as
 * normalized B, G, R planes ((x / 255 - mean[c]) / std[c]). Pixels right of the image stay 0.
 */
function writeBgrPlanes(
  dst: Float32Array, index: number, img: RgbImage, planeW: number, planeH: number,
  mean: readonly number[], std: readonly number[],
): void {
  const plane = planeW * planeH;
  for (let c = 0; c < 3; c++) {
    const base = (index * 3 + c) * plane;
    const src = 2 - c; // RGB -> BGR
    for (let y = 0; y < img.height; y++) {
      for (let x = 0; x < img.width; x++) {
        dst[base + y * planeW + x] = (img.data[(y * img.width + x) * 3 + src] / 255 - mean[c]) / std[c];
      }
    }
  }
}

function floatOutput(outputs: Tensor[], model: string, rank: number): { data: Float32Array; shape: number[] } {
  const t = outputs[0];
  if (!t || t.datatype !== 'FP32' || !(t.data instanceof Float32Array) || t.shape.length !== rank) {
    const got = t ? `${t.datatype} [${t.shape.join(',')}]` : 'nothing';
    throw new Error(`${model} model returned ${got}, expected a rank-${rank} FP32 tensor`);
  }
  return { data: t.data, shape: t.shape };
}

// ---------------------------------------------------------------------------
// Detection

/** Size of the detector input: longer side at most `limit`, both sides multiples of 32. */
export function detInputSize(width: number, height: number, limit: number): { width: number; height: number } {
  const ratio = Math.max(width, height) > limit ? limit / Math.max(width, height) : 1;
  const to32 = (v: number) => Math.max(32, Math.round((v * ratio) / 32) * 32);
  return { width: to32(width), height: to32(height) };
}

export async function detPreprocess(rgb: RgbImage, limit: number): Promise<Tensor> {
  const size = detInputSize(rgb.width, rgb.height, limit);
  const resized = await resizeRgb(rgb, size.width, size.height);
  const data = new Float32Array(3 * size.width * size.height);
  writeBgrPlanes(data, 0, resized, size.width, size.height, DET_MEAN, DET_STD);
  return { name: 'x', datatype: 'FP32', shape: [1, 3, size.height, size.width], data };
}

async function detectLines(rgb: RgbImage, run: RunModel, opts: OcrOptions): Promise<Quad[]> {
  const out = floatOutput(await run('det', [await detPreprocess(rgb, opts.detLimitSideLen)]), 'det', 4);
  const [, , mapH, mapW] = out.shape;
  return sortReadingOrder(dbPostprocess(out.data, mapW, mapH, rgb.width, rgb.height, opts));
}

/**
 * DB postprocessing of a [mapH, mapW] text probability map: threshold, connected
 * regions, min-area rectangle per region, score filter, unclip, scale to the source image.
 */
export function dbPostprocess(
  prob: Float32Array, mapW: number, mapH: number, srcW: number, srcH: number,
  opts: Pick<OcrOptions, 'detThreshold' | 'boxThreshold' | 'unclipRatio' | 'minBoxSize' | 'maxCandidates'>,
): Quad[] {
  const mask = new Uint8Array(mapW * mapH);
  for (let i = 0; i < mask.length; i++) mask[i] = prob[i] > opts.detThreshold ? 1 : 0;
  const boxes: Quad[] = [];
  for (const hull of regionHulls(mask, mapW, mapH, opts.maxCandidates)) {
    const rect = minAreaRect(hull);
    if (Math.min(rect.width, rect.height) < opts.minBoxSize) continue;
    if (boxScore(prob, mapW, mapH, rectCorners(rect)) < opts.boxThreshold) continue;
    const grown = unclip(rect, opts.unclipRatio);
    if (Math.min(grown.width, grown.height) < opts.minBoxSize + 2) continue;
    const box = scaleToSource(rectCorners(grown), srcW / mapW, srcH / mapH, srcW, srcH);
    if (dist(box[0], box[1]) > 3 && dist(box[0], box[3]) > 3) boxes.push(box);
  }
  return boxes;
}

/**
 * Convex hulls (of pixel centres) of the 8-connected regions of `mask`, at most `max`.
 * Hand-written BFS labeling rather than a library: there is no maintained pure-JS
 * contour finder, and OpenCV.js is a multi-megabyte wasm bundle for one function.
 */
export function regionHulls(mask: Uint8Array, width: number, height: number, max: number): Point[][] {
  const seen = new Uint8Array(mask.length);
  const queue = new Int32Array(mask.length);
  const hulls: Point[][] = [];
  for (let start = 0; start < mask.length && hulls.length < max; start++) {
    if (!mask[start] || seen[start]) continue;
    const count = floodFill(mask, seen, queue, width, height, start);
    hulls.push(convexHull(rowEnds(queue, count, width)));
  }
  return hulls;
}

/** Breadth-first fill from `start`; the region's pixel indices end up in queue[0..count). */
function floodFill(mask: Uint8Array, seen: Uint8Array, queue: Int32Array, width: number, height: number, start: number): number {
  let head = 0;
  let tail = 0;
  queue[tail++] = start;
  seen[start] = 1;
  while (head < tail) {
    const i = queue[head++];
    const x = i % width;
    const y = (i - x) / width;
    for (let ny = Math.max(0, y - 1); ny <= Math.min(height - 1, y + 1); ny++) {
      for (let nx = Math.max(0, x - 1); nx <= Math.min(width - 1, x + 1); nx++) {
        const j = ny * width + nx;
        if (mask[j] && !seen[j]) {
          seen[j] = 1;
          queue[tail++] = j;
        }
      }
    }
  }
  return tail;
}

/** Leftmost and rightmost pixel of each row of a region: enough points for its convex hull. */
function rowEnds(pixels: Int32Array, count: number, width: number): Point[] {
  const ends = new Map<number, [number, number]>();
  for (let k = 0; k < count; k++) {
    const x = pixels[k] % width;
    const y = (pixels[k] - x) / width;
    const e = ends.get(y);
    if (!e) ends.set(y, [x, x]);
    else if (x < e[0]) e[0] = x;
    else if (x > e[1]) e[1] = x;
  }
  const points: Point[] = [];
  for (const [y, [lo, hi]] of ends) {
    points.push([lo, y]);
    if (hi !== lo) points.push([hi, y]);
  }
  return points;
}

function cross(o: Point, a: Point, b: Point): number {
  return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
}

/** Andrew's monotone chain; collinear points are dropped. */
export function convexHull(points: Point[]): Point[] {
  const pts = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const half = (seq: Point[]): Point[] => {
    const out: Point[] = [];
    for (const p of seq) {
      while (out.length >= 2 && cross(out[out.length - 2], out[out.length - 1], p) <= 0) out.pop();
      out.push(p);
    }
    out.pop();
    return out;
  };
  return [...half(pts), ...half([...pts].reverse())];
}

export interface RotatedRect {
  center: Point;
  /** Unit vector along `width`; `height` runs along (-u[1], u[0]). */
  u: Point;
  width: number;
  height: number;
}

/** Minimum-area enclosing rectangle of a convex hull (rotating calipers over its edges). */
export function minAreaRect(hull: Point[]): RotatedRect {
  let best: RotatedRect = { center: hull[0] ?? [0, 0], u: [1, 0], width: 0, height: 0 };
  let bestArea = Infinity;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i];
    const b = hull[(i + 1) % hull.length];
    const len = dist(a, b);
    if (len === 0) continue;
    const u: Point = [(b[0] - a[0]) / len, (b[1] - a[1]) / len];
    const rect = rectAlong(hull, u);
    if (rect.width * rect.height < bestArea) {
      bestArea = rect.width * rect.height;
      best = rect;
    }
  }
  return best;
}

/** Bounding rectangle of `points` with one side along unit vector `u`. */
function rectAlong(points: Point[], u: Point): RotatedRect {
  let minU = Infinity, maxU = -Infinity, minV = Infinity, maxV = -Infinity;
  for (const [x, y] of points) {
    const pu = x * u[0] + y * u[1];
    const pv = -x * u[1] + y * u[0];
    minU = Math.min(minU, pu); maxU = Math.max(maxU, pu);
    minV = Math.min(minV, pv); maxV = Math.max(maxV, pv);
  }
  const cu = (minU + maxU) / 2;
  const cv = (minV + maxV) / 2;
  return { center: [cu * u[0] - cv * u[1], cu * u[1] + cv * u[0]], u, width: maxU - minU, height: maxV - minV };
}

export function rectCorners(r: RotatedRect): Quad {
  const [cx, cy] = r.center;
  const wx = (r.u[0] * r.width) / 2, wy = (r.u[1] * r.width) / 2;
  const hx = (-r.u[1] * r.height) / 2, hy = (r.u[0] * r.height) / 2;
  return orderClockwise([
    [cx - wx - hx, cy - wy - hy], [cx + wx - hx, cy + wy - hy],
    [cx + wx + hx, cy + wy + hy], [cx - wx + hx, cy - wy + hy],
  ]);
}

/** PaddleOCR's corner order: of the two leftmost points the upper is top-left, and so on. */
export function orderClockwise(points: Point[]): Quad {
  const byX = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const [tl, bl] = byX[0][1] <= byX[1][1] ? [byX[0], byX[1]] : [byX[1], byX[0]];
  const [tr, br] = byX[2][1] <= byX[3][1] ? [byX[2], byX[3]] : [byX[3], byX[2]];
  return [tl, tr, br, bl];
}

/** Mean probability over the map pixels inside `quad` (PaddleOCR "fast" box score). */
export function boxScore(prob: Float32Array, width: number, height: number, quad: Quad): number {
  const xs = quad.map((p) => p[0]);
  const ys = quad.map((p) => p[1]);
  const x0 = clamp(Math.floor(Math.min(...xs)), 0, width - 1), x1 = clamp(Math.ceil(Math.max(...xs)), 0, width - 1);
  const y0 = clamp(Math.floor(Math.min(...ys)), 0, height - 1), y1 = clamp(Math.ceil(Math.max(...ys)), 0, height - 1);
  let sum = 0;
  let count = 0;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (!insideConvex(quad, x, y, 0.5)) continue;
      sum += prob[y * width + x];
      count++;
    }
  }
  return count > 0 ? sum / count : 0;
}

/** Whether (x, y) lies inside the clockwise (image coordinates) quad or within `tol` of it. */
function insideConvex(quad: Quad, x: number, y: number, tol: number): boolean {
  for (let i = 0; i < 4; i++) {
    const a = quad[i];
    const b = quad[(i + 1) % 4];
    const len = dist(a, b);
    if (len > 0 && cross(a, b, [x, y]) / len < -tol) return false;
  }
  return true;
}

/**
 * DB "unclip": offset the shrunk text kernel outward by area * ratio / perimeter. For
 * a rectangle the min-area rectangle of the (round-joined) offset polygon is the
 * rectangle grown by that distance on every side, so no polygon clipper is needed.
 */
export function unclip(r: RotatedRect, ratio: number): RotatedRect {
  const perimeter = 2 * (r.width + r.height);
  const d = perimeter > 0 ? (r.width * r.height * ratio) / perimeter : 0;
  return { ...r, width: r.width + 2 * d, height: r.height + 2 * d };
}

function scaleToSource(quad: Quad, sx: number, sy: number, srcW: number, srcH: number): Quad {
  return orderClockwise(quad.map(([x, y]): Point => [
    clamp(Math.round(x * sx), 0, srcW - 1),
    clamp(Math.round(y * sy), 0, srcH - 1),
  ]));
}

/**
 * Top-to-bottom by top-left corner, then left-to-right among boxes on the same row
 * (tops closer than 10 px, as PaddleOCR, or than half the smaller box height).
 */
export function sortReadingOrder(boxes: Quad[]): Quad[] {
  const out = [...boxes].sort((a, b) => a[0][1] - b[0][1] || a[0][0] - b[0][0]);
  const sameRow = (a: Quad, b: Quad) =>
    Math.abs(a[0][1] - b[0][1]) < Math.max(10, Math.min(dist(a[0], a[3]), dist(b[0], b[3])) / 2);
  for (let i = 1; i < out.length; i++) {
    for (let j = i; j > 0 && sameRow(out[j - 1], out[j]) && out[j][0][0] < out[j - 1][0][0]; j--) {
      [out[j - 1], out[j]] = [out[j], out[j - 1]];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Cropping and angle classification

/**
 * Cuts each box out of the image as an upright rectangle (bilinear sampling, so
 * rotated boxes come out straight; sharp's extract only cuts axis-aligned regions).
 * Boxes at least 1.5 times taller than wide are turned 90° counter-clockwise, as PaddleOCR does.
 */
export function cropLines(img: RgbImage, boxes: Quad[]): RgbImage[] {
  return boxes.map((box) => cropQuad(img, box));
}

function cropQuad(img: RgbImage, quad: Quad): RgbImage {
  let [p0, p1, p2, p3] = quad;
  let w = Math.max(1, Math.round(Math.max(dist(p0, p1), dist(p3, p2))));
  let h = Math.max(1, Math.round(Math.max(dist(p0, p3), dist(p1, p2))));
  if (h / w >= 1.5) {
    [p0, p1, p2, p3] = [p1, p2, p3, p0];
    [w, h] = [h, w];
  }
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const v = y / h;
    for (let x = 0; x < w; x++) {
      const u = x / w;
      const sx = (1 - v) * ((1 - u) * p0[0] + u * p1[0]) + v * ((1 - u) * p3[0] + u * p2[0]);
      const sy = (1 - v) * ((1 - u) * p0[1] + u * p1[1]) + v * ((1 - u) * p3[1] + u * p2[1]);
      sampleBilinear(img, sx, sy, data, (y * w + x) * 3);
    }
  }
  return { data, width: w, height: h };
}

/** Bilinear sample at (sx, sy), edges replicated, written as 3 bytes at out[offset]. */
function sampleBilinear(img: RgbImage, sx: number, sy: number, out: Uint8Array, offset: number): void {
  const x = clamp(sx, 0, img.width - 1), y = clamp(sy, 0, img.height - 1);
  const x0 = Math.floor(x), y0 = Math.floor(y);
  const x1 = Math.min(x0 + 1, img.width - 1), y1 = Math.min(y0 + 1, img.height - 1);
  const fx = x - x0, fy = y - y0;
  const d = img.data;
  const i00 = (y0 * img.width + x0) * 3, i01 = (y0 * img.width + x1) * 3;
  const i10 = (y1 * img.width + x0) * 3, i11 = (y1 * img.width + x1) * 3;
  for (let c = 0; c < 3; c++) {
    const top = d[i00 + c] * (1 - fx) + d[i01 + c] * fx;
    const bottom = d[i10 + c] * (1 - fx) + d[i11 + c] * fx;
    out[offset + c] = Math.round(top * (1 - fy) + bottom * fy);
  }
}

/** Resizes to `height` keeping the aspect ratio, width at most `maxWidth`. */
function fitToHeight(img: RgbImage, height: number, maxWidth: number): Promise<RgbImage> {
  const width = Math.max(1, Math.min(maxWidth, Math.ceil((height * img.width) / img.height)));
  return resizeRgb(img, width, height);
}

export async function clsPreprocess(crops: RgbImage[]): Promise<Tensor> {
  const resized = await Promise.all(crops.map((c) => fitToHeight(c, CLS_HEIGHT, CLS_WIDTH)));
  const data = new Float32Array(crops.length * 3 * CLS_HEIGHT * CLS_WIDTH);
  resized.forEach((img, i) => writeBgrPlanes(data, i, img, CLS_WIDTH, CLS_HEIGHT, REC_MEAN, REC_STD));
  return { name: 'x', datatype: 'FP32', shape: [crops.length, 3, CLS_HEIGHT, CLS_WIDTH], data };
}

/** Runs `cls` and turns lines it reads as upside down (label "180", prob > threshold). */
async function uprightLines(crops: RgbImage[], run: RunModel, threshold: number): Promise<RgbImage[]> {
  const { data } = floatOutput(await run('cls', [await clsPreprocess(crops)]), 'cls', 2);
  return crops.map((crop, i) => (data[i * 2 + 1] > threshold ? rotate180(crop) : crop));
}

export function rotate180(img: RgbImage): RgbImage {
  const n = img.width * img.height;
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) data.set(img.data.subarray(i * 3, i * 3 + 3), (n - 1 - i) * 3);
  return { data, width: img.width, height: img.height };
}

// ---------------------------------------------------------------------------
// Recognition

/** Width of the `rec` batch: the widest line at height 48, within [min, max], a multiple of 8. */
function recBatchWidth(crops: RgbImage[], opts: Pick<OcrOptions, 'recMinWidth' | 'recMaxWidth'>): number {
  const widest = Math.max(...crops.map((c) => Math.ceil((REC_HEIGHT * c.width) / c.height)));
  return Math.ceil(clamp(widest, opts.recMinWidth, opts.recMaxWidth) / 8) * 8;
}

export async function recPreprocess(
  crops: RgbImage[], opts: Pick<OcrOptions, 'recMinWidth' | 'recMaxWidth'> = DEFAULT_OCR_OPTIONS,
): Promise<Tensor> {
  const width = recBatchWidth(crops, opts);
  const resized = await Promise.all(crops.map((c) => fitToHeight(c, REC_HEIGHT, width)));
  const data = new Float32Array(crops.length * 3 * REC_HEIGHT * width);
  resized.forEach((img, i) => writeBgrPlanes(data, i, img, width, REC_HEIGHT, REC_MEAN, REC_STD));
  return { name: 'x', datatype: 'FP32', shape: [crops.length, 3, REC_HEIGHT, width], data };
}

/**
 * Greedy CTC decoding of [n, T, C] probabilities: argmax per timestep, collapse
 * repeats, drop the blank (index 0). Score: mean max probability of the kept characters.
 */
export function ctcDecode(probs: { data: Float32Array; shape: number[] }, dictionary: string[]): { text: string; score: number }[] {
  const [n, steps, classes] = probs.shape;
  if (classes !== dictionary.length) {
    throw new Error(`dictionary has ${dictionary.length} entries but the rec model outputs ${classes} classes`);
  }
  const results: { text: string; score: number }[] = [];
  for (let b = 0; b < n; b++) {
    let text = '';
    let sum = 0;
    let kept = 0;
    let prev = -1;
    for (let t = 0; t < steps; t++) {
      const [index, p] = argmax(probs.data, (b * steps + t) * classes, classes);
      if (index !== 0 && index !== prev) {
        text += dictionary[index];
        sum += p;
        kept++;
      }
      prev = index;
    }
    results.push({ text, score: kept > 0 ? sum / kept : 0 });
  }
  return results;
}

function argmax(data: Float32Array, offset: number, length: number): [number, number] {
  let best = 0;
  for (let i = 1; i < length; i++) if (data[offset + i] > data[offset + best]) best = i;
  return [best, data[offset + best]];
}

// ---------------------------------------------------------------------------

function dist(a: Point, b: Point): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}
