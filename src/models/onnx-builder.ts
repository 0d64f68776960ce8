/**
 * A small typed builder that writes ONNX ModelProto bytes: enough to generate
 * tern's demo and benchmark models (MLPs, CNNs, ONNX-ML classifiers) in code,
 * without Python or a model hub.
 *
 * Why the ONNX messages are declared here by hand: the only npm package with
 * onnx.proto bindings, `onnx-proto` (8.0.1, last published a year ago), is
 * generated CommonJS pinned to protobufjs 6 (a second protobufjs copy next to
 * the 7.x tern uses) and has no ESM entry. A writer needs only ten messages,
 * so they are declared below with protobufjs reflection. Field numbers and
 * packing copy onnx/onnx.proto exactly; fields tern never writes are left out
 * (a protobuf reader skips nothing it is not given).
 */
import { endianness } from 'node:os';
import protobuf from 'protobufjs';

/** ONNX TensorProto.DataType codes (onnx.proto). */
export const ElemType = {
  FLOAT: 1, UINT8: 2, INT8: 3, UINT16: 4, INT16: 5, INT32: 6, INT64: 7,
  STRING: 8, BOOL: 9, FLOAT16: 10, DOUBLE: 11, UINT32: 12, UINT64: 13,
} as const;
export type ElemTypeName = keyof typeof ElemType;

/** AttributeProto.AttributeType codes (onnx.proto). */
const AttributeType = {
  FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8,
} as const;

/** A number is a fixed size; a string names a symbolic (dynamic) dimension such as "batch". */
export type Dim = number | string;

/** Element storage an initializer or tensor attribute may hold. */
export type TensorValues = Float32Array | Float64Array | Int32Array | BigInt64Array;

export interface TensorInit {
  name?: string;
  dims: number[];
  values: TensorValues;
}

export type AttributeValue =
  | { type: 'INT'; value: number }
  | { type: 'FLOAT'; value: number }
  | { type: 'STRING'; value: string }
  | { type: 'INTS'; value: readonly number[] }
  | { type: 'FLOATS'; value: readonly number[] }
  | { type: 'STRINGS'; value: readonly string[] }
  | { type: 'TENSOR'; value: TensorInit };

/** Constructors that keep int vs float explicit: ONNX rejects an INT where a FLOAT is declared. */
export const attr = {
  int: (value: number): AttributeValue => ({ type: 'INT', value }),
  float: (value: number): AttributeValue => ({ type: 'FLOAT', value }),
  string: (value: string): AttributeValue => ({ type: 'STRING', value }),
  ints: (value: readonly number[]): AttributeValue => ({ type: 'INTS', value }),
  floats: (value: readonly number[]): AttributeValue => ({ type: 'FLOATS', value }),
  strings: (value: readonly string[]): AttributeValue => ({ type: 'STRINGS', value }),
  tensor: (value: TensorInit): AttributeValue => ({ type: 'TENSOR', value }),
};

export interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  /** Operator set domain: '' (default ONNX) or e.g. 'ai.onnx.ml'. */
  domain?: string;
  name?: string;
  attributes?: Record<string, AttributeValue>;
}

export interface ValueSpec {
  name: string;
  type: ElemTypeName;
  dims: Dim[];
}

export interface OpsetImport {
  domain: string;
  version: number;
}

export interface ModelOptions {
  graphName?: string;
  docString?: string;
  /** Defaults to the default domain at DEFAULT_OPSET; add `ai.onnx.ml` for ML operators. */
  opsets?: OpsetImport[];
  metadata?: Record<string, string>;
  producerVersion?: string;
  modelVersion?: number;
}

/** Opset 17 (ONNX 1.12) covers every operator tern generates and loads in any recent ONNX Runtime. */
export const DEFAULT_OPSET = 17;
export const ML_DOMAIN = 'ai.onnx.ml';
/** ai.onnx.ml opset 3 adds the `*_as_tensor` (double) attributes of the tree ensembles. */
export const ML_OPSET = 3;
/** IR version 8 (ONNX 1.10+) is the lowest that allows ai.onnx.ml opset 3. */
const IR_VERSION = 8;

// Unpacked repeated scalars follow proto2, as onnx.proto declares them.
const UNPACKED = { packed: false };
const PACKED = { packed: true };

const ONNX_SCHEMA = {
  nested: {
    onnx: {
      nested: {
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            s: { type: 'bytes', id: 4 },
            t: { type: 'TensorProto', id: 5 },
            floats: { rule: 'repeated', type: 'float', id: 7, options: UNPACKED },
            ints: { rule: 'repeated', type: 'int64', id: 8, options: UNPACKED },
            strings: { rule: 'repeated', type: 'bytes', id: 9 },
            doc_string: { type: 'string', id: 13 },
            type: { type: 'int32', id: 20 },
          },
        },
        ValueInfoProto: {
          fields: {
            name: { type: 'string', id: 1 },
            type: { type: 'TypeProto', id: 2 },
            doc_string: { type: 'string', id: 3 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            op_type: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            doc_string: { type: 'string', id: 6 },
            domain: { type: 'string', id: 7 },
          },
        },
        ModelProto: {
          fields: {
            ir_version: { type: 'int64', id: 1 },
            producer_name: { type: 'string', id: 2 },
            producer_version: { type: 'string', id: 3 },
            domain: { type: 'string', id: 4 },
            model_version: { type: 'int64', id: 5 },
            doc_string: { type: 'string', id: 6 },
            graph: { type: 'GraphProto', id: 7 },
            opset_import: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
            metadata_props: { rule: 'repeated', type: 'StringStringEntryProto', id: 14 },
          },
        },
        StringStringEntryProto: {
          fields: {
            key: { type: 'string', id: 1 },
            value: { type: 'string', id: 2 },
          },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            doc_string: { type: 'string', id: 10 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
            value_info: { rule: 'repeated', type: 'ValueInfoProto', id: 13 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1, options: UNPACKED },
            data_type: { type: 'int32', id: 2 },
            float_data: { rule: 'repeated', type: 'float', id: 4, options: PACKED },
            int32_data: { rule: 'repeated', type: 'int32', id: 5, options: PACKED },
            string_data: { rule: 'repeated', type: 'bytes', id: 6 },
            int64_data: { rule: 'repeated', type: 'int64', id: 7, options: PACKED },
            name: { type: 'string', id: 8 },
            raw_data: { type: 'bytes', id: 9 },
            double_data: { rule: 'repeated', type: 'double', id: 10, options: PACKED },
            doc_string: { type: 'string', id: 12 },
          },
        },
        TensorShapeProto: {
          fields: {
            dim: { rule: 'repeated', type: 'Dimension', id: 1 },
          },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ['dim_value', 'dim_param'] } },
              fields: {
                dim_value: { type: 'int64', id: 1 },
                dim_param: { type: 'string', id: 2 },
                denotation: { type: 'string', id: 3 },
              },
            },
          },
        },
        TypeProto: {
          oneofs: { value: { oneof: ['tensor_type'] } },
          fields: {
            tensor_type: { type: 'Tensor', id: 1 },
            denotation: { type: 'string', id: 6 },
          },
          nested: {
            Tensor: {
              fields: {
                elem_type: { type: 'int32', id: 1 },
                shape: { type: 'TensorShapeProto', id: 2 },
              },
            },
          },
        },
        OperatorSetIdProto: {
          fields: {
            domain: { type: 'string', id: 1 },
            version: { type: 'int64', id: 2 },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(ONNX_SCHEMA);
/** The reflected ModelProto type; exported so tests can decode what the builder wrote. */
export const ModelProtoType = root.lookupType('onnx.ModelProto');

// raw_data must be little-endian; the typed arrays are copied as they lie in
// memory, which is little-endian on every machine tern targets (x64, arm64).
if (endianness() !== 'LE') {
  throw new Error('onnx-builder writes raw tensor bytes and needs a little-endian machine');
}

function elemTypeOf(values: TensorValues): number {
  if (values instanceof Float32Array) return ElemType.FLOAT;
  if (values instanceof Float64Array) return ElemType.DOUBLE;
  if (values instanceof Int32Array) return ElemType.INT32;
  return ElemType.INT64;
}

function tensorMessage(tensor: TensorInit): Record<string, unknown> {
  const count = tensor.dims.reduce((a, b) => a * b, 1);
  if (count !== tensor.values.length) {
    throw new Error(`tensor ${tensor.name ?? '(attribute)'}: dims ${JSON.stringify(tensor.dims)} hold ${count} values, got ${tensor.values.length}`);
  }
  const { buffer, byteOffset, byteLength } = tensor.values;
  return {
    ...(tensor.name !== undefined ? { name: tensor.name } : {}),
    dims: tensor.dims,
    data_type: elemTypeOf(tensor.values),
    raw_data: new Uint8Array(buffer, byteOffset, byteLength),
  };
}

function attributeMessage(name: string, a: AttributeValue): Record<string, unknown> {
  const base = { name, type: AttributeType[a.type] };
  switch (a.type) {
    case 'INT': return { ...base, i: a.value };
    case 'FLOAT': return { ...base, f: a.value };
    case 'STRING': return { ...base, s: Buffer.from(a.value, 'utf8') };
    case 'INTS': return { ...base, ints: [...a.value] };
    case 'FLOATS': return { ...base, floats: [...a.value] };
    case 'STRINGS': return { ...base, strings: a.value.map((s) => Buffer.from(s, 'utf8')) };
    case 'TENSOR': return { ...base, t: tensorMessage(a.value) };
  }
}

function dimMessage(d: Dim): Record<string, unknown> {
  return typeof d === 'number' ? { dim_value: d } : { dim_param: d };
}

function valueInfoMessage(v: ValueSpec): Record<string, unknown> {
  return {
    name: v.name,
    type: { tensor_type: { elem_type: ElemType[v.type], shape: { dim: v.dims.map(dimMessage) } } },
  };
}

function nodeMessage(n: NodeSpec): Record<string, unknown> {
  return {
    input: n.inputs,
    output: n.outputs,
    op_type: n.op,
    ...(n.name !== undefined ? { name: n.name } : {}),
    ...(n.domain ? { domain: n.domain } : {}),
    attribute: Object.entries(n.attributes ?? {}).map(([k, v]) => attributeMessage(k, v)),
  };
}

/**
 * Collects a graph (nodes in topological order, weights, typed inputs and
 * outputs) and serialises it as a ModelProto.
 */
export class OnnxGraphBuilder {
  private readonly nodes: NodeSpec[] = [];
  private readonly initializers: TensorInit[] = [];
  private readonly inputs: ValueSpec[] = [];
  private readonly outputs: ValueSpec[] = [];
  private readonly usedNames = new Set<string>();
  private counter = 0;

  addInput(name: string, type: ElemTypeName, dims: Dim[]): string {
    this.claim(name);
    this.inputs.push({ name, type, dims });
    return name;
  }

  /** Declares a graph output; a node (or the input) must produce the named tensor. */
  addOutput(name: string, type: ElemTypeName, dims: Dim[]): string {
    this.outputs.push({ name, type, dims });
    return name;
  }

  /** Adds a constant tensor (weights); returns its name for use as a node input. */
  addInitializer(name: string, dims: number[], values: TensorValues): string {
    this.claim(name);
    this.initializers.push({ name, dims, values });
    return name;
  }

  /** Adds a node; nodes must be added in topological order. Returns its output names. */
  addNode(spec: NodeSpec): string[] {
    spec.outputs.forEach((o) => this.claim(o));
    this.nodes.push(spec);
    return spec.outputs;
  }

  /** A fresh tensor name with the given prefix, for intermediate values. */
  uniqueName(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`; while (this.usedNames.has(name));
    return name;
  }

  toBuffer(opts: ModelOptions = {}): Buffer {
    const message = ModelProtoType.fromObject(this.toModelObject(opts));
    return Buffer.from(ModelProtoType.encode(message).finish());
  }

  /** Each tensor has one producer (graph input, initializer or node): ONNX is SSA. */
  private claim(name: string): void {
    if (this.usedNames.has(name)) throw new Error(`tensor name ${name} is defined twice`);
    this.usedNames.add(name);
  }

  private toModelObject(opts: ModelOptions): Record<string, unknown> {
    const opsets = opts.opsets ?? [{ domain: '', version: DEFAULT_OPSET }];
    return {
      ir_version: IR_VERSION,
      producer_name: 'tern',
      ...(opts.producerVersion ? { producer_version: opts.producerVersion } : {}),
      ...(opts.modelVersion !== undefined ? { model_version: opts.modelVersion } : {}),
      ...(opts.docString ? { doc_string: opts.docString } : {}),
      opset_import: opsets.map((o) => ({ domain: o.domain, version: o.version })),
      metadata_props: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: opts.graphName ?? 'main',
        node: this.nodes.map(nodeMessage),
        initializer: this.initializers.map(tensorMessage),
        input: this.inputs.map(valueInfoMessage),
        output: this.outputs.map(valueInfoMessage),
      },
    };
  }
}
