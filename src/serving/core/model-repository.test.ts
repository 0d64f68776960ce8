import { describe, expect, it } from 'vitest';
import { parseModelConfig, selectVersions } from './model-repository.js';

describe('version policy', () => {
  const onDisk = ['1', '3', '2', '10'];
  it('serves the latest N by number, not by name', () => {
    expect(selectVersions({ latest: { num_versions: 2 } }, onDisk)).toEqual(['10', '3']);
  });
  it('serves all versions', () => {
    expect(selectVersions({ all: {} }, onDisk)).toEqual(['10', '3', '2', '1']);
  });
  it('serves only the listed versions that exist', () => {
    expect(selectVersions({ specific: { versions: [2, 7] } }, onDisk)).toEqual(['2']);
  });
});

describe('config.json parsing', () => {
  it('fills defaults', () => {
    const c = parseModelConfig('m', '{"max_batch_size": 8, "dynamic_batching": {}}');
    expect(c.backend).toBe('onnx');
    expect(c.instances).toBe(1);
    expect(c.dynamic_batching).toEqual({ max_queue_delay_us: 0, preferred_batch_sizes: [], max_queue_size: 1024 });
    expect(c.version_policy).toEqual({ latest: { num_versions: 1 } });
  });
  it('names the bad field', () => {
    expect(() => parseModelConfig('m', '{"max_batch_size": -1}')).toThrow(/max_batch_size/);
    expect(() => parseModelConfig('m', '{"dynamic_batching": {"max_delay": 5}}')).toThrow(/dynamic_batching/);
    expect(() => parseModelConfig('m', '{"inputs": [{"name": "x", "datatype": "FLOAT32", "shape": [1]}]}')).toThrow(/inputs.0.datatype/);
  });
  it('refuses a config that names another model, and broken JSON', () => {
    expect(() => parseModelConfig('m', '{"name": "other"}')).toThrow(/names the model 'other' but its directory is 'm'/);
    expect(() => parseModelConfig('m', '{')).toThrow(/not valid JSON/);
  });
});
