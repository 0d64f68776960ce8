/** Repository features on a real server: configs inferred from the model, version policies. */
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REPO, IRIS_ROWS, getJson, postJson, removeDir, scratchRepository, startTestServer } from './helpers.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
let repo: string;
const irisModel = (name: string) => path.join(DEMO_REPO, name, '1', 'model.onnx');

function addVersion(model: string, version: number, source: string): void {
  mkdirSync(path.join(repo, model, String(version)), { recursive: true });
  cpSync(source, path.join(repo, model, String(version), 'model.onnx'));
}

beforeAll(async () => {
  repo = scratchRepository([]);
  addVersion('bare', 1, irisModel('iris-logreg')); // no config.json at all
  for (const v of [1, 2, 3]) addVersion('every', v, irisModel(v === 2 ? 'iris-forest' : 'iris-logreg'));
  writeFileSync(path.join(repo, 'every', 'config.json'), JSON.stringify({ max_batch_size: 8, version_policy: { all: {} } }));
  for (const v of [1, 2, 3]) addVersion('chosen', v, irisModel('iris-logreg'));
  writeFileSync(path.join(repo, 'chosen', 'config.json'), JSON.stringify({ max_batch_size: 8, version_policy: { specific: { versions: [1, 3] } } }));
  server = await startTestServer({ repository: repo });
});
afterAll(async () => {
  await server?.close();
  removeDir(repo);
});

describe('model repository', () => {
  it('infers the tensors of a model without config.json from the model itself', async () => {
    const { body } = await getJson(`${server.url}/v2/models/bare`);
    expect(body.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 4] }]);
    expect(body.platform).toBe('onnxruntime_onnx');
    const res = await postJson(`${server.url}/v2/models/bare/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[5].features }], outputs: [{ name: 'label' }] });
    expect(res.body.outputs[0].data).toEqual([2]);
  });

  it('serves every version under the "all" policy, each addressable', async () => {
    expect((await getJson(`${server.url}/v2/models/every`)).body.versions).toEqual(['1', '2', '3']);
    for (const v of ['1', '2', '3']) {
      const r = await postJson(`${server.url}/v2/models/every/versions/${v}/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[0].features }] });
      expect(r.body.model_version).toBe(v);
    }
    // Without a version the highest one answers.
    expect((await postJson(`${server.url}/v2/models/every/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[0].features }] })).body.model_version).toBe('3');
  });

  it('serves only the listed versions under the "specific" policy', async () => {
    expect((await getJson(`${server.url}/v2/models/chosen`)).body.versions).toEqual(['1', '3']);
    const r = await postJson(`${server.url}/v2/models/chosen/versions/2/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: IRIS_ROWS[0].features }] });
    expect(r.status).toBe(404);
    expect(r.body.error).toMatch(/no version '2' \(served: 1, 3\)|no version '2' \(served: 3, 1\)/);
  });
});
