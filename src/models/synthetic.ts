/**
 * Synthetic benchmark models: random but deterministic weights in three sizes,
 * so serving and batching benchmarks can span three orders of magnitude of
 * per-item cost without shipping model files. All are FP32 with input
 * `input` [batch, ...] and output `output` [batch, classes].
 *
 * Per-item cost measured on the build machine (AMD EPYC, 2 cores shared with
 * other jobs, load ~2; onnxruntime-node 1.30, intraOpNumThreads 1, otherwise
 * default session options, median over 3 s of runs):
 *   synthetic-small   0.045 ms/item at batch 1 (mostly per-run overhead), 0.0017 at batch 64
 *   synthetic-medium  ~6.8 ms/item at batch 1, 8 and 32 (5.6-6.2 on a quieter machine)
 *   synthetic-large   ~57 ms/item at batch 1 and 8
 * The CNNs cost the same per item at any batch size; batching pays off only
 * where a run's fixed overhead dominates, as in the small model.
 */
import { attr, OnnxGraphBuilder } from './onnx-builder.js';
import { createPrng } from './prng.js';

export const SYNTHETIC_MODEL_NAMES = ['synthetic-small', 'synthetic-medium', 'synthetic-large'] as const;
export type SyntheticModelName = (typeof SYNTHETIC_MODEL_NAMES)[number];

export const SYNTHETIC_INPUT = 'input';
export const SYNTHETIC_OUTPUT = 'output';
/** Symbolic name of the dynamic leading dimension. */
const BATCH = 'batch';

/** Fully connected layers: sizes[0] inputs, then Gemm(+Relu) to each next size; no Relu after the last. */
interface MlpSpec {
  kind: 'mlp';
  sizes: number[];
}

/** VGG-like: per stage `convs` x (Conv 3x3 + Relu) then MaxPool 2x2; then global average pool and Gemm. */
interface CnnSpec {
  kind: 'cnn';
  input: [number, number, number];
  stages: Array<{ channels: number; convs: number }>;
  classes: number;
}

type ModelSpec = MlpSpec | CnnSpec;

/**
 * Sizes were tuned against the cost targets of the benchmark plan:
 * small ~0.05 ms/item or less, medium 3-10 ms/item, large 30-100 ms/item.
 * Medium is ~0.13 G multiply-adds per item, large ~1.07 G; one core here runs
 * ~19 G/s, so cost scales with those counts when retuning.
 */
const SPECS: Record<SyntheticModelName, { seed: number; spec: ModelSpec }> = {
  'synthetic-small': { seed: 1, spec: { kind: 'mlp', sizes: [64, 128, 64, 10] } },
  'synthetic-medium': {
    seed: 2,
    spec: {
      kind: 'cnn',
      input: [3, 64, 64],
      stages: [{ channels: 32, convs: 1 }, { channels: 64, convs: 2 }, { channels: 128, convs: 2 }, { channels: 128, convs: 1 }],
      classes: 10,
    },
  },
  'synthetic-large': {
    seed: 3,
    spec: {
      kind: 'cnn',
      input: [3, 128, 128],
      stages: [
        { channels: 32, convs: 2 }, { channels: 64, convs: 2 }, { channels: 128, convs: 2 },
        { channels: 256, convs: 3 }, { channels: 256, convs: 2 },
      ],
      classes: 100,
    },
  },
};

export interface SyntheticModel {
  name: SyntheticModelName;
  /** ModelProto bytes. */
  onnx: Buffer;
  /** Per-item shapes, without the batch dimension (as config.json lists them). */
  inputShape: number[];
  outputShape: number[];
}

/** Builds one synthetic model; the same name always yields the same bytes. */
export function buildSyntheticModel(name: SyntheticModelName): SyntheticModel {
  const { seed, spec } = SPECS[name];
  const g = new OnnxGraphBuilder();
  const weights = new WeightFactory(g, createPrng(seed));
  const built = spec.kind === 'mlp' ? buildMlp(g, weights, spec) : buildCnn(g, weights, spec);
  const onnx = g.toBuffer({
    graphName: name,
    docString: `tern ${name}: synthetic ${spec.kind.toUpperCase()} with seeded random weights, for benchmarks only`,
    metadata: { 'tern.synthetic': name, 'tern.seed': String(seed) },
  });
  return { name, onnx, ...built };
}

/** He-uniform weights keep activations in a sane range through many Relu layers. */
class WeightFactory {
  constructor(private readonly g: OnnxGraphBuilder, private readonly random: () => number) {}

  weight(prefix: string, dims: number[], fanIn: number): string {
    const limit = Math.sqrt(6 / fanIn);
    return this.tensor(prefix, dims, () => (this.random() * 2 - 1) * limit);
  }

  bias(prefix: string, size: number): string {
    return this.tensor(prefix, [size], () => (this.random() * 2 - 1) * 0.01);
  }

  private tensor(prefix: string, dims: number[], next: () => number): string {
    const values = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = next();
    return this.g.addInitializer(this.g.uniqueName(prefix), dims, values);
  }
}

type Shapes = Pick<SyntheticModel, 'inputShape' | 'outputShape'>;

function buildMlp(g: OnnxGraphBuilder, w: WeightFactory, spec: MlpSpec): Shapes {
  let x = g.addInput(SYNTHETIC_INPUT, 'FLOAT', [BATCH, spec.sizes[0]]);
  for (let i = 1; i < spec.sizes.length; i++) {
    const last = i === spec.sizes.length - 1;
    x = gemm(g, w, x, spec.sizes[i - 1], spec.sizes[i], last ? SYNTHETIC_OUTPUT : undefined);
    if (!last) x = relu(g, x);
  }
  const classes = spec.sizes[spec.sizes.length - 1];
  g.addOutput(SYNTHETIC_OUTPUT, 'FLOAT', [BATCH, classes]);
  return { inputShape: [spec.sizes[0]], outputShape: [classes] };
}

function buildCnn(g: OnnxGraphBuilder, w: WeightFactory, spec: CnnSpec): Shapes {
  let x = g.addInput(SYNTHETIC_INPUT, 'FLOAT', [BATCH, ...spec.input]);
  let channels = spec.input[0];
  for (const stage of spec.stages) {
    for (let i = 0; i < stage.convs; i++) {
      x = relu(g, conv3x3(g, w, x, channels, stage.channels));
      channels = stage.channels;
    }
    x = maxPool2x2(g, x);
  }
  // Global average pooling keeps the classifier head small whatever the input size.
  x = g.addNode({ op: 'GlobalAveragePool', inputs: [x], outputs: [g.uniqueName('gap')] })[0];
  x = g.addNode({ op: 'Flatten', inputs: [x], outputs: [g.uniqueName('flat')] })[0];
  gemm(g, w, x, channels, spec.classes, SYNTHETIC_OUTPUT);
  g.addOutput(SYNTHETIC_OUTPUT, 'FLOAT', [BATCH, spec.classes]);
  return { inputShape: [...spec.input], outputShape: [spec.classes] };
}

/** y = x W^T + b, with W stored [out, in] as PyTorch does (transB = 1). */
function gemm(g: OnnxGraphBuilder, w: WeightFactory, x: string, inSize: number, outSize: number, output?: string): string {
  const weight = w.weight('fc_w', [outSize, inSize], inSize);
  const bias = w.bias('fc_b', outSize);
  return g.addNode({
    op: 'Gemm',
    inputs: [x, weight, bias],
    outputs: [output ?? g.uniqueName('fc')],
    attributes: { transB: attr.int(1) },
  })[0];
}

function conv3x3(g: OnnxGraphBuilder, w: WeightFactory, x: string, inCh: number, outCh: number): string {
  const weight = w.weight('conv_w', [outCh, inCh, 3, 3], inCh * 9);
  const bias = w.bias('conv_b', outCh);
  return g.addNode({
    op: 'Conv',
    inputs: [x, weight, bias],
    outputs: [g.uniqueName('conv')],
    attributes: {
      kernel_shape: attr.ints([3, 3]),
      pads: attr.ints([1, 1, 1, 1]),
    },
  })[0];
}

function relu(g: OnnxGraphBuilder, x: string): string {
  return g.addNode({ op: 'Relu', inputs: [x], outputs: [g.uniqueName('relu')] })[0];
}

function maxPool2x2(g: OnnxGraphBuilder, x: string): string {
  return g.addNode({
    op: 'MaxPool',
    inputs: [x],
    outputs: [g.uniqueName('pool')],
    attributes: { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]) },
  })[0];
}
