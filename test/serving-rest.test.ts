/**
 * OIP v2 REST (JSON and binary), TF Serving REST, Clipper apps and /metrics
 * against a real server on the demo models.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REPO, IRIS_ROWS, getJson, postJson, startTestServer } from './helpers.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
let url: string;

beforeAll(async () => {
  server = await startTestServer({ repository: DEMO_REPO });
  url = server.url;
});
afterAll(async () => server?.close());

const irisInput = (rows = IRIS_ROWS) => ({
  name: 'input', datatype: 'FP32', shape: [rows.length, 4], data: rows.map((r) => r.features),
});

function float32Bytes(values: number[]): Buffer {
  return Buffer.from(Float32Array.from(values).buffer);
}

async function postBinary(path: string, header: unknown, blobs: Buffer[]) {
  const json = Buffer.from(JSON.stringify(header));
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) },
    body: Buffer.concat([json, ...blobs]),
  });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

describe('OIP v2 REST', () => {
  it('answers health, server metadata and readiness', async () => {
    expect((await getJson(`${url}/v2/health/live`)).body).toEqual({ live: true });
    expect((await getJson(`${url}/v2/health/ready`)).status).toBe(200);
    const meta = await getJson(`${url}/v2`);
    expect(meta.body.name).toBe('tern');
    expect(meta.body.extensions).toContain('binary_tensor_data');
    expect((await getJson(`${url}/v2/models/iris-logreg/ready`)).body).toEqual({ name: 'iris-logreg', ready: true });
    expect((await getJson(`${url}/v2/models/iris-logreg/versions/1/ready`)).status).toBe(200);
  });

  it('describes a model with batch dimension -1', async () => {
    const { body } = await getJson(`${url}/v2/models/iris-logreg`);
    expect(body.versions).toEqual(['1']);
    expect(body.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 4] }]);
    expect(body.outputs.map((o: { name: string }) => o.name).sort()).toEqual(['label', 'probabilities']);
  });

  it('classifies iris rows with JSON tensors, with and without a version in the path', async () => {
    for (const path of ['/v2/models/iris-logreg/infer', '/v2/models/iris-logreg/versions/1/infer']) {
      const { status, body } = await postJson(`${url}${path}`, { id: 'q1', inputs: [irisInput()] });
      expect(status).toBe(200);
      expect(body.id).toBe('q1');
      expect(body.model_version).toBe('1');
      const label = body.outputs.find((o: { name: string }) => o.name === 'label');
      expect(label.datatype).toBe('INT64');
      expect(label.shape).toEqual([IRIS_ROWS.length]);
      expect(label.data).toEqual(IRIS_ROWS.map((r) => r.label));
    }
  });

  it('returns only the requested outputs', async () => {
    const { body } = await postJson(`${url}/v2/models/iris-forest/infer`, { inputs: [irisInput()], outputs: [{ name: 'probabilities' }] });
    expect(body.outputs).toHaveLength(1);
    expect(body.outputs[0].shape).toEqual([IRIS_ROWS.length, 3]);
    const sums = IRIS_ROWS.map((_, r) => body.outputs[0].data.slice(r * 3, r * 3 + 3).reduce((a: number, b: number) => a + b, 0));
    for (const s of sums) expect(s).toBeCloseTo(1, 4);
  });

  it('accepts binary input and returns binary output that match the JSON answer', async () => {
    const values = Array.from({ length: 2 * 64 }, (_, i) => Math.sin(i));
    const viaJson = await postJson(`${url}/v2/models/synthetic-small/infer`, {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 64], data: values }],
    });
    expect(viaJson.status).toBe(200);
    const expected = viaJson.body.outputs[0].data as number[];

    const res = await postBinary('/v2/models/synthetic-small/infer', {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 64], parameters: { binary_data_size: 512 } }],
      parameters: { binary_data_output: true },
    }, [float32Bytes(values)]);
    expect(res.status).toBe(200);
    const headerLength = Number(res.headers.get('inference-header-content-length'));
    const header = JSON.parse(res.body.subarray(0, headerLength).toString());
    expect(header.outputs[0].parameters.binary_data_size).toBe(expected.length * 4);
    const raw = res.body.subarray(headerLength);
    const got = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    expect(Array.from(got)).toEqual(expected.map((v) => Math.fround(v)));
  });

  it('mixes a binary input with a JSON output', async () => {
    const rows = IRIS_ROWS.slice(0, 2);
    const res = await postBinary('/v2/models/iris-forest/infer', {
      inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 4], parameters: { binary_data_size: 32 } }],
      outputs: [{ name: 'label', parameters: { binary_data: false } }],
    }, [float32Bytes(rows.flatMap((r) => r.features))]);
    expect(res.status).toBe(200);
    const body = JSON.parse(res.body.toString());
    expect(body.outputs[0].data).toEqual(rows.map((r) => r.label));
  });
});

describe('TF Serving REST', () => {
  it('reports model status like TF Serving', async () => {
    const { body } = await getJson(`${url}/v1/models/iris-forest`);
    expect(body.model_version_status).toEqual([{ version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } }]);
    expect((await getJson(`${url}/v1/models/iris-forest/versions/1`)).status).toBe(200);
  });

  it('serves signature metadata', async () => {
    const { body } = await getJson(`${url}/v1/models/iris-forest/metadata`);
    const sig = body.metadata.signature_def.signature_def.serving_default;
    expect(sig.inputs.input.dtype).toBe('DT_FLOAT');
    expect(sig.inputs.input.tensor_shape.dim.map((d: { size: string }) => d.size)).toEqual(['-1', '4']);
  });

  it('predicts in row format and answers "predictions"', async () => {
    const { status, body } = await postJson(`${url}/v1/models/iris-logreg/versions/1:predict`, {
      instances: IRIS_ROWS.map((r) => r.features),
    });
    expect(status).toBe(200);
    expect(body.predictions).toHaveLength(IRIS_ROWS.length);
    expect(body.predictions.map((p: { label: number }) => p.label)).toEqual(IRIS_ROWS.map((r) => r.label));
    expect(body.predictions[0].probabilities).toHaveLength(3);
  });

  it('predicts in columnar format and answers "outputs"', async () => {
    const { status, body } = await postJson(`${url}/v1/models/iris-forest:predict`, {
      inputs: { input: IRIS_ROWS.map((r) => r.features) },
    });
    expect(status).toBe(200);
    expect(body.outputs.label).toEqual(IRIS_ROWS.map((r) => r.label));
    expect(body.outputs.probabilities).toHaveLength(IRIS_ROWS.length);
  });
});

describe('Clipper-style applications', () => {
  it('answers an app query with the model output', async () => {
    const { status, body } = await postJson(`${url}/iris/predict`, { input: IRIS_ROWS[4].features });
    expect(status).toBe(200);
    expect(body).toMatchObject({ output: 2, default: false });
    expect(typeof body.query_id).toBe('number');
  });

  it('lists the declared apps', async () => {
    const { body } = await getJson(`${url}/apps`);
    expect(body.apps.map((a: { name: string }) => a.name)).toContain('iris');
  });
});

describe('metrics', () => {
  it('counts requests per model and protocol in Prometheus text', async () => {
    await postJson(`${url}/v2/models/iris-logreg/infer`, { inputs: [irisInput()] });
    const text = await (await fetch(`${url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('tern_inference_requests_total{model="iris-logreg",version="1",protocol="rest"}'));
    expect(line).toBeDefined();
    expect(Number(line!.split(' ').pop())).toBeGreaterThanOrEqual(3);
    expect(text).toContain('tern_batch_size_bucket');
    expect(text).toMatch(/tern_model_state\{model="iris-forest",version="1",state="READY"\} 1/);
    // Read from the queues at scrape time: one series per model, nothing waiting now.
    expect(text).toMatch(/tern_queue_length\{model="iris-logreg"\} 0/);
    expect(text).toMatch(/tern_request_duration_seconds_count\{model="iris-logreg",protocol="rest"\} [1-9]/);
  });
});
