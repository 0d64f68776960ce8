import ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  accuracy, buildIrisModels, IRIS_CLASS_NAMES, loadIris, predictLinear, predictProbabilities,
  type IrisModels,
} from './iris.js';
import { CLASS_NAMES_KEY, LABEL_OUTPUT, PROBABILITIES_OUTPUT } from './onnx-ml-export.js';
import { ModelProtoType } from './onnx-builder.js';
import { createPrng } from './prng.js';

interface Prediction {
  labels: number[];
  probabilities: number[][];
}

async function runClassifier(onnx: Buffer, rows: readonly number[][]): Promise<Prediction> {
  const session = await ort.InferenceSession.create(onnx, { intraOpNumThreads: 1 });
  try {
    const input = new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, 4]);
    const out = await session.run({ input });
    const label = out[LABEL_OUTPUT];
    const probs = out[PROBABILITIES_OUTPUT];
    expect(label.dims).toEqual([rows.length]);
    expect(probs.dims).toEqual([rows.length, 3]);
    const p = probs.data as Float32Array;
    return {
      labels: Array.from(label.data as BigInt64Array, Number),
      probabilities: rows.map((_, i) => Array.from(p.subarray(i * 3, i * 3 + 3))),
    };
  } finally {
    await session.release();
  }
}

/** Seeded rows over (and a little beyond) the range of each feature, many near split values. */
function randomRows(count: number): number[][] {
  const random = createPrng(7);
  const { features } = loadIris();
  const lo = [0, 1, 2, 3].map((f) => Math.min(...features.map((r) => r[f])) - 0.5);
  const hi = [0, 1, 2, 3].map((f) => Math.max(...features.map((r) => r[f])) + 0.5);
  // One decimal, like the data, so many rows sit on a training value or threshold.
  return Array.from({ length: count }, () => lo.map((l, f) => Math.round((l + random() * (hi[f] - l)) * 10) / 10));
}

describe('iris models', () => {
  let models: IrisModels;
  const all = loadIris();

  beforeAll(() => {
    models = buildIrisModels();
  });

  it('splits 10 test rows per class, the same every time', () => {
    const { split } = models;
    expect(split.test.labels).toHaveLength(30);
    expect(split.train.labels).toHaveLength(120);
    for (let k = 0; k < 3; k++) expect(split.test.labels.filter((l) => l === k)).toHaveLength(10);
    expect(buildIrisModels().split.testRows).toEqual(split.testRows);
  });

  it('writes identical bytes on every build', () => {
    const again = buildIrisModels();
    expect(again.logreg.onnx.equals(models.logreg.onnx)).toBe(true);
    expect(again.forest.onnx.equals(models.forest.onnx)).toBe(true);
  });

  it('logistic regression in ONNX is accurate and matches the JS probabilities', async () => {
    const { split, logreg } = models;
    const onnxTest = await runClassifier(logreg.onnx, split.test.features);
    expect(accuracy(onnxTest.labels, split.test.labels)).toBeGreaterThanOrEqual(0.9);

    const onnxAll = await runClassifier(logreg.onnx, all.features);
    const jsProbs = predictProbabilities(logreg.model, all.features);
    onnxAll.probabilities.forEach((row, i) => row.forEach((p, k) => expect(Math.abs(p - jsProbs[i][k])).toBeLessThan(1e-4)));
    expect(onnxAll.labels).toEqual(predictLinear(logreg.model, all.features));
  });

  it('random forest in ONNX is accurate and equals the JS forest on every row', async () => {
    const { split, forest } = models;
    const onnxTest = await runClassifier(forest.onnx, split.test.features);
    expect(accuracy(onnxTest.labels, split.test.labels)).toBeGreaterThanOrEqual(0.9);

    const onnxAll = await runClassifier(forest.onnx, all.features);
    expect(onnxAll.labels).toEqual(forest.model.predict(all.features));
  });

  it('random forest in ONNX equals the JS forest off the data too, tied votes included', async () => {
    const { forest } = models;
    const rows = randomRows(2000);
    const onnx = await runClassifier(forest.onnx, rows);
    expect(onnx.labels).toEqual(forest.model.predict(rows));
    // Probabilities are the vote shares, as ml-random-forest's predictProbability gives them.
    const votes = forest.model.predictionValues(rows).to2DArray();
    const ties = votes.filter(isTie).length;
    expect(ties).toBeGreaterThan(0); // the sample does exercise the tie-break
    onnx.probabilities.forEach((p, i) => {
      for (let k = 0; k < 3; k++) {
        const share = votes[i].filter((v) => v === k).length / votes[i].length;
        expect(Math.abs(p[k] - share)).toBeLessThan(1e-6);
      }
    });
  });

  it('carries the class names in metadata_props', () => {
    for (const onnx of [models.logreg.onnx, models.forest.onnx]) {
      const decoded = ModelProtoType.toObject(ModelProtoType.decode(onnx)) as {
        producer_name: string;
        metadata_props: Array<{ key: string; value: string }>;
      };
      expect(decoded.producer_name).toBe('tern');
      const names = decoded.metadata_props.find((m) => m.key === CLASS_NAMES_KEY)?.value;
      expect(JSON.parse(names ?? 'null')).toEqual(IRIS_CLASS_NAMES);
    }
  });
});

/** True when two classes share the top vote count. */
function isTie(votes: number[]): boolean {
  const counts = [0, 1, 2].map((k) => votes.filter((v) => v === k).length);
  const top = Math.max(...counts);
  return counts.filter((c) => c === top).length > 1;
}
