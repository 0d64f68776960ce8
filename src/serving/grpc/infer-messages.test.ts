import { describe, expect, it } from 'vitest';
import { TernError } from '../../protocol/errors.js';
import { tensorToJson } from '../core/tensor-codec.js';
import { decodeInferRequest, encodeInferResponse, type InferInputTensorMsg, type ModelInferRequestMsg } from './infer-messages.js';

const one = (input: InferInputTensorMsg, extra: Partial<ModelInferRequestMsg> = {}) =>
  decodeInferRequest({ model_name: 'm', inputs: [input], ...extra }, Infinity);

function badTensorMessage(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('BAD_TENSOR');
    return (err as TernError).message;
  }
  throw new Error('expected a BAD_TENSOR error');
}

describe('decodeInferRequest: typed contents', () => {
  it('reads each datatype from its spec field', () => {
    const cases: [string, keyof NonNullable<InferInputTensorMsg['contents']>, unknown[], unknown[]][] = [
      ['BOOL', 'bool_contents', [true, false], [true, false]],
      ['INT8', 'int_contents', [-128, 127], [-128, 127]],
      ['INT16', 'int_contents', [-32768, 5], [-32768, 5]],
      ['INT32', 'int_contents', [-7, 2 ** 31 - 1], [-7, 2 ** 31 - 1]],
      ['UINT8', 'uint_contents', [0, 255], [0, 255]],
      ['UINT16', 'uint_contents', [65535, 1], [65535, 1]],
      ['UINT32', 'uint_contents', [2 ** 32 - 1, 0], [2 ** 32 - 1, 0]],
      ['FP32', 'fp32_contents', [0.5, -2], [0.5, -2]],
      ['FP64', 'fp64_contents', [0.1, 1e300], [0.1, 1e300]],
      ['FP16', 'fp32_contents', [0.5, 1024], [0.5, 1024]],
      ['BYTES', 'bytes_contents', [Buffer.from('ab'), Buffer.from('')], ['ab', '']],
    ];
    for (const [datatype, field, values, expected] of cases) {
      const req = one({ name: 'x', datatype, shape: ['2'], contents: { [field]: values } });
      expect(req.inputs[0].shape).toEqual([2]);
      expect(tensorToJson(req.inputs[0]), datatype).toEqual(expected);
    }
  });

  it('keeps 64-bit integers exact (int64 arrives as decimal strings)', () => {
    const big = '9007199254740993'; // 2^53 + 1: a Number would round it
    const i64 = one({ name: 'x', datatype: 'INT64', shape: ['2'], contents: { int64_contents: [big, '-5'] } });
    expect(Array.from(i64.inputs[0].data as BigInt64Array)).toEqual([9007199254740993n, -5n]);
    const u64 = one({ name: 'x', datatype: 'UINT64', shape: ['1'], contents: { uint64_contents: ['18446744073709551615'] } });
    expect(Array.from(u64.inputs[0].data as BigUint64Array)).toEqual([18446744073709551615n]);
  });

  it('names the input and the problem for bad contents', () => {
    expect(badTensorMessage(() => one({ name: 'x', datatype: 'INT8', shape: ['1'], contents: { int_contents: [200] } })))
      .toBe("input 'x': 200 is not a valid INT8 value");
    expect(badTensorMessage(() => one({ name: 'x', datatype: 'FP32', shape: ['2'], contents: { fp64_contents: [1, 2] } })))
      .toBe("input 'x': datatype FP32 takes its data in fp32_contents, got fp64_contents");
    expect(badTensorMessage(() => one({ name: 'x', datatype: 'FP32', shape: ['2', '2'], contents: { fp32_contents: [1, 2] } })))
      .toBe("input 'x': shape [2,2] needs 4 elements, got 2 in fp32_contents");
    expect(badTensorMessage(() => one({ name: 'x', datatype: 'FP32', shape: ['1'] })))
      .toContain("input 'x' has no data");
    expect(badTensorMessage(() => one({ name: 'x', datatype: 'float32', shape: ['1'] })))
      .toBe("input 'x': unknown datatype 'float32'");
    expect(badTensorMessage(() => one({ name: 'x', datatype: 'FP32', shape: ['-1'] })))
      .toContain("input 'x': shape must be a list of non-negative integers");
    expect(badTensorMessage(() => decodeInferRequest({ inputs: [] }, Infinity))).toBe('model_name is required');
  });
});

describe('decodeInferRequest: raw contents, outputs, deadline', () => {
  it('takes raw_input_contents in input order and refuses mixing with typed contents', () => {
    const a = Buffer.from(Float32Array.of(1, 2).buffer);
    const b = Buffer.from(Int32Array.of(7).buffer);
    const req = decodeInferRequest({
      model_name: 'm', model_version: '3', id: 'q',
      inputs: [{ name: 'a', datatype: 'FP32', shape: ['2'] }, { name: 'b', datatype: 'INT32', shape: ['1'] }],
      outputs: [{ name: 'y' }],
      raw_input_contents: [a, b],
    }, Infinity);
    expect(req).toMatchObject({ model: 'm', version: '3', id: 'q', outputs: ['y'], protocol: 'grpc' });
    expect(req.deadline).toBeUndefined();
    expect(tensorToJson(req.inputs[0])).toEqual([1, 2]);
    expect(tensorToJson(req.inputs[1])).toEqual([7]);
    expect(badTensorMessage(() => one({ name: 'a', datatype: 'FP32', shape: ['2'], contents: { fp32_contents: [1, 2] } }, { raw_input_contents: [a] })))
      .toContain("input 'a' has typed contents, but the request uses raw_input_contents");
  });

  it('takes the earlier of the call deadline and the timeout parameter (microseconds)', () => {
    const input = { name: 'x', datatype: 'FP32', shape: ['1'], contents: { fp32_contents: [1] } };
    const call = Date.now() + 10_000;
    expect(decodeInferRequest({ model_name: 'm', inputs: [input] }, call).deadline).toBe(call);
    const viaParam = decodeInferRequest({ model_name: 'm', inputs: [input], parameters: { timeout: { int64_param: '2000000', parameter_choice: 'int64_param' } } }, call);
    expect(viaParam.deadline).toBeGreaterThan(Date.now() + 1_000);
    expect(viaParam.deadline).toBeLessThanOrEqual(Date.now() + 2_000);
    expect(badTensorMessage(() => decodeInferRequest({ model_name: 'm', inputs: [input], parameters: { timeout: { string_param: 'soon' } } }, call)))
      .toContain("parameter 'timeout'");
  });
});

describe('encodeInferResponse', () => {
  it('returns every output as raw bytes with its name, datatype and shape', () => {
    const msg = encodeInferResponse({
      model: 'm', version: '1', id: 'q',
      outputs: [
        { name: 'p', datatype: 'FP32', shape: [1, 2], data: Float32Array.of(0.25, 0.75) },
        { name: 's', datatype: 'BYTES', shape: [1], data: [Buffer.from('hi')] },
      ],
      timing: { queue_ms: 0, compute_ms: 0, batch_size: 1, cache_hit: false },
    });
    expect(msg.outputs).toEqual([{ name: 'p', datatype: 'FP32', shape: [1, 2] }, { name: 's', datatype: 'BYTES', shape: [1] }]);
    expect(msg.raw_output_contents[0]).toEqual(Buffer.from(Float32Array.of(0.25, 0.75).buffer));
    expect(msg.raw_output_contents[1]).toEqual(Buffer.from([2, 0, 0, 0, 0x68, 0x69]));
    expect(msg).toMatchObject({ model_name: 'm', model_version: '1', id: 'q' });
  });
});
