import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppsFileSchema } from '../protocol/apps.js';
import { DATATYPE_INFO } from '../protocol/datatypes.js';
import { ModelConfigSchema, type ModelConfig } from '../protocol/model-config.js';
import { DEMO_MODEL_NAMES, writeDemoRepository } from './demo-repository.js';

/** Models whose every dimension is known from config, so a batch of 2 can be fed. */
const RUNNABLE = ['synthetic-small', 'synthetic-medium', 'synthetic-large', 'iris-logreg', 'iris-forest'];

async function readConfig(dir: string, model: string): Promise<ModelConfig> {
  return ModelConfigSchema.parse(JSON.parse(await readFile(path.join(dir, model, 'config.json'), 'utf8')));
}

async function openModel(dir: string, model: string): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path.join(dir, model, '1', 'model.onnx'), { intraOpNumThreads: 1 });
}

describe('writeDemoRepository', () => {
  let dir: string;
  let written: string[];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tern-demo-repo-'));
    const started = performance.now();
    written = await writeDemoRepository(dir);
    // Generation is meant to be quick enough to run at `tern up`; generous bound for loaded CI machines.
    expect(performance.now() - started).toBeLessThan(30_000);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes every demo model and a valid config for each', async () => {
    expect(written).toEqual([...DEMO_MODEL_NAMES]);
    const dirs = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    expect(dirs.sort()).toEqual([...DEMO_MODEL_NAMES].sort());
    for (const model of written) {
      const config = await readConfig(dir, model);
      expect(config.name).toBe(model);
      expect((await stat(path.join(dir, model, '1'))).isDirectory()).toBe(true);
    }
  });

  it('writes ONNX models whose tensors match their config', async () => {
    for (const model of written.filter((m) => m !== 'ocr')) {
      const config = await readConfig(dir, model);
      const session = await openModel(dir, model);
      try {
        expect(session.inputNames).toEqual(config.inputs?.map((t) => t.name));
        expect(session.outputNames).toEqual(config.outputs?.map((t) => t.name));
      } finally {
        await session.release();
      }
    }
  });

  it.each(RUNNABLE)('%s runs a batch of 2 with the configured shapes', async (model) => {
    const config = await readConfig(dir, model);
    expect(config.max_batch_size).toBeGreaterThanOrEqual(2);
    const session = await openModel(dir, model);
    try {
      const feeds: Record<string, ort.Tensor> = {};
      for (const input of config.inputs ?? []) {
        const dims = [2, ...input.shape];
        const data = new Float32Array(dims.reduce((a, b) => a * b, 1)).map((_, i) => (i % 13) / 13);
        feeds[input.name] = new ort.Tensor('float32', data, dims);
      }
      const out = await session.run(feeds);
      for (const output of config.outputs ?? []) {
        expect(out[output.name].dims).toEqual([2, ...output.shape]);
        expect(out[output.name].type).toBe(DATATYPE_INFO[output.datatype].ort);
      }
    } finally {
      await session.release();
    }
  });

  it('writes the OCR pipeline, its dictionary and the apps file', async () => {
    const ocr = await readConfig(dir, 'ocr');
    expect(ocr.backend).toBe('ocr');
    expect(ocr.parameters).toEqual({ det_model: 'ocr-det', rec_model: 'ocr-rec', cls_model: 'ocr-cls' });
    expect(await readdir(path.join(dir, 'ocr', '1'))).toEqual([]);
    const keys = await readFile(path.join(dir, 'ocr-rec', '1', 'ppocr_keys_v1.txt'), 'utf8');
    expect(keys.split('\n').length).toBeGreaterThan(6000);
    const apps = AppsFileSchema.parse(JSON.parse(await readFile(path.join(dir, 'apps.json'), 'utf8')));
    expect(apps.apps.map((a) => [a.name, a.model])).toEqual([['iris', 'iris-forest'], ['ocr', 'ocr']]);
    expect((await readConfig(dir, 'iris-forest')).cache).toEqual({ max_bytes: 1_048_576 });
  });

  it('writes the same bytes again when run twice', async () => {
    const again = await mkdtemp(path.join(tmpdir(), 'tern-demo-repo-'));
    try {
      await writeDemoRepository(again, { models: ['synthetic-small', 'iris-forest'] });
      for (const model of ['synthetic-small', 'iris-forest']) {
        const [a, b] = await Promise.all([dir, again].map((d) => readFile(path.join(d, model, '1', 'model.onnx'))));
        expect(a.equals(b)).toBe(true);
      }
    } finally {
      await rm(again, { recursive: true, force: true });
    }
  });

  it('writes a subset, with the OCR components the pipeline needs', async () => {
    const subset = await mkdtemp(path.join(tmpdir(), 'tern-demo-repo-'));
    try {
      expect(await writeDemoRepository(subset, { models: ['ocr'] })).toEqual(['ocr-det', 'ocr-rec', 'ocr-cls', 'ocr']);
      const apps = AppsFileSchema.parse(JSON.parse(await readFile(path.join(subset, 'apps.json'), 'utf8')));
      expect(apps.apps.map((a) => a.name)).toEqual(['ocr']);
      await expect(writeDemoRepository(subset, { models: ['nope'] })).rejects.toThrow(/unknown demo model.*nope/);
    } finally {
      await rm(subset, { recursive: true, force: true });
    }
  });
});
