/**
 * Exports classic ML classifiers trained in JavaScript to ONNX-ML operators
 * (domain `ai.onnx.ml`), so ONNX Runtime serves them like any other model.
 * Every exported classifier has one input `input` FP32 [batch, features] and
 * two outputs: `label` INT64 [batch] (the class index) and `probabilities`
 * FP32 [batch, classes]. Class names travel in metadata_props (`class_names`,
 * a JSON array) rather than through a ZipMap, which would turn the output
 * into a sequence of maps that tensor protocols cannot carry.
 */
import {
  attr, DEFAULT_OPSET, ElemType, ML_DOMAIN, ML_OPSET, OnnxGraphBuilder, type AttributeValue,
} from './onnx-builder.js';

export const CLASSIFIER_INPUT = 'input';
export const LABEL_OUTPUT = 'label';
export const PROBABILITIES_OUTPUT = 'probabilities';
/** metadata_props key holding the JSON array of class names, indexed by label. */
export const CLASS_NAMES_KEY = 'class_names';

const BATCH = 'batch';
/** Past 32 trees the tie-break penalties (below) would approach one vote. */
const MAX_TREES = 32;

export interface ClassifierExportOptions {
  classNames: readonly string[];
  featureCount: number;
  graphName: string;
  docString?: string;
  metadata?: Record<string, string>;
}

/** Multinomial linear model on raw features: scores = coefficients · x + intercepts. */
export interface LinearModel {
  /** [class][feature] */
  coefficients: number[][];
  /** [class] */
  intercepts: number[];
}

/** The persisted form of an ml-cart tree node (`JSON.parse(JSON.stringify(tree))`). */
export interface CartNodeJson {
  splitColumn?: number;
  splitValue?: number;
  left?: CartNodeJson;
  right?: CartNodeJson;
  /** Class frequencies at a leaf, as a 1-row matrix; may be shorter than the class count. */
  distribution?: number[][];
}

/** The persisted form of ml-random-forest's classifier (`forest.toJSON()` through JSON). */
export interface RandomForestClassifierJson {
  name: 'RFClassifier';
  baseModel: {
    /** Per tree: which original feature each of the tree's columns is (feature bagging). */
    indexes: number[][];
    estimators: Array<{ root: CartNodeJson }>;
  };
}

/** Softmax regression as LinearClassifier; `probabilities` is the softmax of the scores. */
export function exportLinearClassifier(model: LinearModel, opts: ClassifierExportOptions): Buffer {
  const g = new OnnxGraphBuilder();
  g.addInput(CLASSIFIER_INPUT, 'FLOAT', [BATCH, opts.featureCount]);
  g.addNode({
    op: 'LinearClassifier',
    domain: ML_DOMAIN,
    inputs: [CLASSIFIER_INPUT],
    outputs: [LABEL_OUTPUT, PROBABILITIES_OUTPUT],
    attributes: {
      coefficients: attr.floats(model.coefficients.flat()),
      intercepts: attr.floats(model.intercepts),
      classlabels_ints: attr.ints(opts.classNames.map((_, i) => i)),
      post_transform: attr.string('SOFTMAX'),
    },
  });
  return finishClassifier(g, opts);
}

/**
 * ml-random-forest as one TreeEnsembleClassifier that reproduces the JS
 * forest's answer exactly, ties included:
 * - ml-cart sends `x[col] < splitValue` to the left child: BRANCH_LT with the
 *   left child as the true branch. The JS forest compares doubles, the ONNX
 *   model sees FP32, and float32 rounding can put a value and a threshold in
 *   the same bucket (1.7 vs a split at 1.7000000000000002, the double mean of
 *   1.6 and 1.8). `float32Threshold` sends each bucket the way the JS forest
 *   sends the shortest decimal in it, which is what a client typed.
 * - The JS forest is a hard vote (each tree's argmax class, then the mode), so
 *   each leaf votes for its argmax class with weight 1/trees; `probabilities`
 *   is the vote share, as in ml-random-forest's `predictProbability`.
 * - On a tied vote the mode (ml-array-mode) picks the class that reached the
 *   top count first, i.e. whose last vote came from the earliest tree, while
 *   ONNX Runtime picks the lowest class index. Tree t's vote is therefore
 *   lowered by 2^(t-44): a class whose last vote came later carries a larger
 *   penalty than all earlier ones together, so it loses the tie. The
 *   penalties add up to less than 2^(trees-44), far below one vote (and
 *   below 1e-7 of a share for 20 trees); the smallest, 2^-44, stays well
 *   above double rounding. Float32 cannot hold them, so the input is cast to
 *   DOUBLE, which makes ONNX Runtime score in double (`*_as_tensor` weights).
 */
export function exportRandomForestClassifier(forest: RandomForestClassifierJson, opts: ClassifierExportOptions): Buffer {
  const { estimators, indexes } = forest.baseModel;
  if (estimators.length > MAX_TREES) throw new Error(`at most ${MAX_TREES} trees keep the tie-break weights exact`);
  const ensemble = new EnsembleAttributes(opts.classNames.length, estimators.length);
  estimators.forEach((tree, t) => ensemble.addTree(t, tree.root, indexes[t]));

  const g = new OnnxGraphBuilder();
  g.addInput(CLASSIFIER_INPUT, 'FLOAT', [BATCH, opts.featureCount]);
  const asDouble = g.addNode({
    op: 'Cast', inputs: [CLASSIFIER_INPUT], outputs: ['input_double'], attributes: { to: attr.int(ElemType.DOUBLE) },
  })[0];
  g.addNode({
    op: 'TreeEnsembleClassifier',
    domain: ML_DOMAIN,
    inputs: [asDouble],
    outputs: [LABEL_OUTPUT, PROBABILITIES_OUTPUT],
    attributes: { ...ensemble.toAttributes(), classlabels_int64s: attr.ints(opts.classNames.map((_, i) => i)) },
  });
  return finishClassifier(g, opts);
}

function finishClassifier(g: OnnxGraphBuilder, opts: ClassifierExportOptions): Buffer {
  g.addOutput(LABEL_OUTPUT, 'INT64', [BATCH]);
  g.addOutput(PROBABILITIES_OUTPUT, 'FLOAT', [BATCH, opts.classNames.length]);
  return g.toBuffer({
    graphName: opts.graphName,
    docString: opts.docString,
    opsets: [{ domain: '', version: DEFAULT_OPSET }, { domain: ML_DOMAIN, version: ML_OPSET }],
    metadata: { [CLASS_NAMES_KEY]: JSON.stringify(opts.classNames), ...opts.metadata },
  });
}

function isSplit(node: CartNodeJson): node is CartNodeJson & Required<Pick<CartNodeJson, 'left' | 'right' | 'splitColumn' | 'splitValue'>> {
  // ml-cart classifies with `if (this.right && this.left)`; a node whose split was
  // rejected keeps splitColumn/splitValue but has no children and is a leaf.
  return node.left !== undefined && node.right !== undefined
    && node.splitColumn !== undefined && node.splitValue !== undefined;
}

/**
 * A double threshold for `double(float32 input) < t` that agrees with the JS
 * test `x < splitValue` on every x whose float32 bucket does not hold the
 * split, and for the bucket that does, agrees on its shortest decimal.
 */
export function float32Threshold(splitValue: number): number {
  const bucket = Math.fround(splitValue);
  if (shortestFloat32Decimal(bucket) < splitValue) {
    // That decimal goes left, so the whole bucket must: place the threshold
    // halfway to the next float32, strictly above the bucket's value.
    return (bucket + nextFloat32Up(bucket)) / 2;
  }
  return bucket;
}

/** The decimal with fewest digits that rounds to this float32 (what a client most likely sent). */
function shortestFloat32Decimal(value: number): number {
  for (let digits = 1; digits < 9; digits++) {
    const candidate = Number(value.toPrecision(digits));
    if (Math.fround(candidate) === value) return candidate;
  }
  return value;
}

function nextFloat32Up(value: number): number {
  if (value === 0) return 2 ** -149;
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value);
  // Adjacent float32s have adjacent bit patterns: away from zero for positives, toward it for negatives.
  view.setInt32(0, view.getInt32(0) + (value > 0 ? 1 : -1));
  return view.getFloat32(0);
}

/** First index of the largest value, as ml-matrix's maxRowIndex breaks ties. */
function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Accumulates the parallel nodes_* and class_* attribute lists of TreeEnsembleClassifier. */
class EnsembleAttributes {
  private readonly nodes = {
    treeIds: [] as number[], nodeIds: [] as number[], featureIds: [] as number[], modes: [] as string[],
    values: [] as number[], trueIds: [] as number[], falseIds: [] as number[],
  };
  private readonly classes = { treeIds: [] as number[], nodeIds: [] as number[], ids: [] as number[], weights: [] as number[] };

  constructor(private readonly classCount: number, private readonly treeCount: number) {}

  addTree(tree: number, root: CartNodeJson, featureIndex: readonly number[]): void {
    let nextId = 0;
    // Pre-order numbering from 0: the ids ONNX Runtime expects within a tree.
    const visit = (node: CartNodeJson): number => {
      const id = nextId++;
      const at = this.pushNode(tree, id);
      if (isSplit(node)) {
        this.nodes.featureIds[at] = featureIndex[node.splitColumn];
        this.nodes.modes[at] = 'BRANCH_LT';
        this.nodes.values[at] = float32Threshold(node.splitValue);
        this.nodes.trueIds[at] = visit(node.left);
        this.nodes.falseIds[at] = visit(node.right);
      } else {
        this.addLeafVote(tree, id, node);
      }
      return id;
    };
    visit(root);
  }

  toAttributes(): Record<string, AttributeValue> {
    const n = this.nodes;
    const c = this.classes;
    return {
      nodes_treeids: attr.ints(n.treeIds),
      nodes_nodeids: attr.ints(n.nodeIds),
      nodes_featureids: attr.ints(n.featureIds),
      nodes_modes: attr.strings(n.modes),
      nodes_values_as_tensor: attr.tensor({ dims: [n.values.length], values: Float64Array.from(n.values) }),
      nodes_truenodeids: attr.ints(n.trueIds),
      nodes_falsenodeids: attr.ints(n.falseIds),
      class_treeids: attr.ints(c.treeIds),
      class_nodeids: attr.ints(c.nodeIds),
      class_ids: attr.ints(c.ids),
      class_weights_as_tensor: attr.tensor({ dims: [c.weights.length], values: Float64Array.from(c.weights) }),
      post_transform: attr.string('NONE'),
    };
  }

  /** Appends a node as a leaf; a split overwrites the fields. Returns its index in the lists. */
  private pushNode(tree: number, id: number): number {
    const n = this.nodes;
    n.treeIds.push(tree);
    n.nodeIds.push(id);
    n.featureIds.push(0);
    n.modes.push('LEAF');
    n.values.push(0);
    n.trueIds.push(0);
    n.falseIds.push(0);
    return n.treeIds.length - 1;
  }

  /** Every leaf lists all classes so each class always has a score. */
  private addLeafVote(tree: number, id: number, leaf: CartNodeJson): void {
    const vote = argmax(leaf.distribution?.[0] ?? [0]);
    const voteWeight = 1 / this.treeCount - 2 ** (tree - 44);
    for (let k = 0; k < this.classCount; k++) {
      this.classes.treeIds.push(tree);
      this.classes.nodeIds.push(id);
      this.classes.ids.push(k);
      this.classes.weights.push(k === vote ? voteWeight : 0);
    }
  }
}
