import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { attr, ModelProtoType, OnnxGraphBuilder } from './onnx-builder.js';

interface DecodedAttribute {
  name: string; type: number; i?: number; f?: number; s?: Uint8Array;
  ints?: number[]; floats?: number[]; strings?: Uint8Array[]; t?: { dims: number[]; data_type: number };
}

/** y = x W + b on a dynamic batch, the smallest graph with weights and a symbolic dim. */
function affine(): OnnxGraphBuilder {
  const g = new OnnxGraphBuilder();
  g.addInput('x', 'FLOAT', ['batch', 2]);
  const w = g.addInitializer('w', [2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const b = g.addInitializer('b', [3], Float32Array.from([0.5, 0, -0.5]));
  g.addNode({ op: 'Gemm', inputs: ['x', w, b], outputs: ['y'] });
  g.addOutput('y', 'FLOAT', ['batch', 3]);
  return g;
}

describe('OnnxGraphBuilder', () => {
  it('writes a model ONNX Runtime loads and runs, with the batch dim symbolic', async () => {
    const session = await ort.InferenceSession.create(affine().toBuffer());
    try {
      expect(session.inputMetadata[0]).toMatchObject({ name: 'x', shape: ['batch', 2] });
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 1, 0, 2]), [2, 2]) });
      expect(out.y.dims).toEqual([2, 3]);
      expect(Array.from(out.y.data as Float32Array)).toEqual([5.5, 7, 8.5, 8.5, 10, 11.5]);
    } finally {
      await session.release();
    }
  });

  it('encodes every attribute kind, metadata and the producer', () => {
    const g = new OnnxGraphBuilder();
    g.addInput('x', 'FLOAT', [1]);
    g.addNode({
      op: 'Custom', domain: 'test', inputs: ['x'], outputs: ['y'],
      attributes: {
        i: attr.int(0), f: attr.float(0.25), s: attr.string('é'), ints: attr.ints([1, -2]),
        floats: attr.floats([0.5]), strings: attr.strings(['a', 'b']),
        t: attr.tensor({ dims: [2], values: Float64Array.from([1, 2]) }),
      },
    });
    g.addOutput('y', 'FLOAT', [1]);
    const bytes = g.toBuffer({ docString: 'doc', metadata: { k: 'v' }, opsets: [{ domain: 'test', version: 1 }] });
    const model = ModelProtoType.toObject(ModelProtoType.decode(bytes), { longs: Number }) as {
      producer_name: string; doc_string: string; ir_version: number;
      metadata_props: unknown[]; opset_import: unknown[];
      graph: { node: Array<{ domain: string; attribute: DecodedAttribute[] }> };
    };
    expect(model).toMatchObject({ producer_name: 'tern', doc_string: 'doc', ir_version: 8 });
    expect(model.metadata_props).toEqual([{ key: 'k', value: 'v' }]);
    expect(model.opset_import).toEqual([{ domain: 'test', version: 1 }]);
    const attrs = Object.fromEntries(model.graph.node[0].attribute.map((a) => [a.name, a]));
    expect(attrs.i).toMatchObject({ type: 2, i: 0 });
    expect(attrs.f).toMatchObject({ type: 1, f: 0.25 });
    expect(Buffer.from(attrs.s.s!).toString()).toBe('é');
    expect(attrs.ints).toMatchObject({ type: 7, ints: [1, -2] });
    expect(attrs.floats).toMatchObject({ type: 6, floats: [0.5] });
    expect(attrs.strings.strings!.map((x) => Buffer.from(x).toString())).toEqual(['a', 'b']);
    expect(attrs.t).toMatchObject({ type: 4, t: { dims: [2], data_type: 11 } });
  });

  it('rejects a tensor name defined twice and weights that do not fill their dims', () => {
    const g = affine();
    expect(() => g.addInitializer('w', [1], Float32Array.from([1]))).toThrow(/defined twice/);
    expect(() => g.addNode({ op: 'Relu', inputs: ['y'], outputs: ['x'] })).toThrow(/defined twice/);
    g.addInitializer('bad', [2, 2], new Float32Array(3));
    expect(() => g.toBuffer()).toThrow(/hold 4 values, got 3/);
  });
});
