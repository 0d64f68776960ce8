/**
 * The `ocr` runtime: a pipeline model (like a Triton ensemble) that runs text
 * detection, optional angle classification and recognition by calling the
 * component models through the server core, so their batching, metrics and
 * hot reload apply. Pre/post-processing lives in ../ocr/ocr-pipeline.ts.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { TensorSpec } from '../../protocol/model-config.js';
import { badTensor } from '../../protocol/errors.js';
import { loadDictionary, recognizeImage, ImageDecodeError, type OcrLine, type RunModel } from '../ocr/ocr-pipeline.js';
import type { Tensor } from '../core/types.js';
import type { LoadedModel, LoadOptions, ModelRuntime } from './model-runtime.js';
import { registerRuntime } from './registry.js';

const DICTIONARY_FILE = 'ppocr_keys_v1.txt';

const INPUTS: TensorSpec[] = [{ name: 'image', datatype: 'BYTES', shape: [1] }];
const OUTPUTS: TensorSpec[] = [
  { name: 'text', datatype: 'BYTES', shape: [-1] },
  { name: 'boxes', datatype: 'FP32', shape: [-1, 4, 2] },
  { name: 'scores', datatype: 'FP32', shape: [-1] },
];

/** The dictionary ships with the recognition model: `<repo>/<rec>/<highest version>/ppocr_keys_v1.txt`. */
async function findDictionary(repoRoot: string, recModel: string, explicit?: unknown): Promise<string> {
  if (typeof explicit === 'string') return path.resolve(repoRoot, explicit);
  const dir = path.join(repoRoot, recModel);
  const versions = (await readdir(dir)).filter((v) => /^[0-9]+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const candidate = path.join(dir, v, DICTIONARY_FILE);
    try {
      await readFile(candidate);
      return candidate;
    } catch { /* try the next version */ }
  }
  throw new Error(`no ${DICTIONARY_FILE} found in any version of model '${recModel}'`);
}

function linesToTensors(lines: OcrLine[]): Tensor[] {
  return [
    { name: 'text', datatype: 'BYTES', shape: [lines.length], data: lines.map((l) => Buffer.from(l.text, 'utf8')) },
    { name: 'boxes', datatype: 'FP32', shape: [lines.length, 4, 2], data: Float32Array.from(lines.flatMap((l) => l.box.flat())) },
    { name: 'scores', datatype: 'FP32', shape: [lines.length], data: Float32Array.from(lines.map((l) => l.score)) },
  ];
}

export const ocrRuntime: ModelRuntime = {
  name: 'ocr',
  async load({ versionDir, config, host }: LoadOptions): Promise<LoadedModel> {
    const params = config.parameters ?? {};
    const models = { det: String(params.det_model ?? 'ocr-det'), rec: String(params.rec_model ?? 'ocr-rec'), cls: String(params.cls_model ?? 'ocr-cls') };
    const repoRoot = path.dirname(path.dirname(versionDir));
    const dictionary = loadDictionary(await readFile(await findDictionary(repoRoot, models.rec, params.dictionary), 'utf8'));
    const useAngleClassifier = params.use_angle_classifier === true;
    const run: RunModel = async (which, inputs) => (await host.infer({ model: models[which], inputs, protocol: 'pipeline' })).outputs;
    return {
      inputs: INPUTS,
      outputs: OUTPUTS,
      async run(inputs: Tensor[]): Promise<Tensor[]> {
        const images = inputs[0].data as Buffer[];
        if (images.length !== 1) throw badTensor(`input 'image' must hold exactly one image, got ${images.length}`);
        try {
          return linesToTensors(await recognizeImage(images[0], run, dictionary, { useAngleClassifier }));
        } catch (err) {
          if (err instanceof ImageDecodeError) throw badTensor(`input 'image': ${err.message}`);
          throw err;
        }
      },
      async close() { /* the component models are owned by the core */ },
    };
  },
};

registerRuntime(ocrRuntime);
