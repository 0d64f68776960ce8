/**
 * Every bad request gets a 4xx with {"error": "..."} naming the problem, and a
 * fuzz run of random mutations leaves the server answering valid requests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_REPO, IRIS_ROWS, postJson, startTestServer } from './helpers.js';

let server: Awaited<ReturnType<typeof startTestServer>>;
let url: string;
const BODY_LIMIT = 256 * 1024;

beforeAll(async () => {
  server = await startTestServer({ repository: DEMO_REPO, bodyLimit: BODY_LIMIT });
  url = server.url;
});
afterAll(async () => server?.close());

const good = { name: 'input', datatype: 'FP32', shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] };
const INFER = '/v2/models/iris-logreg/infer';

interface Case {
  what: string;
  method?: 'GET' | 'POST';
  path?: string;
  body?: unknown;
  /** Raw body bytes instead of JSON. */
  raw?: Buffer | string;
  headers?: Record<string, string>;
  status: number;
  error: RegExp;
}

function binary(header: unknown, blob: Buffer, claimed?: number): Pick<Case, 'raw' | 'headers'> {
  const json = Buffer.from(JSON.stringify(header));
  return {
    raw: Buffer.concat([json, blob]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(claimed ?? json.length) },
  };
}

const f32 = (n: number) => Buffer.alloc(n * 4);
const binInput = (size: number, extra: object = {}) => ({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: size }, ...extra }] });

const CASES: Case[] = [
  { what: 'malformed JSON', raw: '{"inputs": [', status: 400, error: /not valid JSON/ },
  { what: 'empty body', raw: '', status: 400, error: /empty/ },
  { what: 'body is a JSON array', body: [good], status: 400, error: /invalid inference request/ },
  { what: 'unknown model', path: '/v2/models/nope/infer', body: { inputs: [good] }, status: 404, error: /unknown model 'nope'/ },
  { what: 'unknown version', path: '/v2/models/iris-logreg/versions/9/infer', body: { inputs: [good] }, status: 404, error: /no version '9'/ },
  { what: 'missing "inputs"', body: {}, status: 400, error: /inputs/ },
  { what: 'empty inputs list', body: { inputs: [] }, status: 400, error: /at least one input/ },
  { what: 'input without a name', body: { inputs: [{ ...good, name: undefined }] }, status: 400, error: /name/ },
  { what: 'unknown datatype', body: { inputs: [{ ...good, datatype: 'FLOAT' }] }, status: 400, error: /datatype/ },
  { what: 'negative shape entry', body: { inputs: [{ ...good, shape: [-1, 4] }] }, status: 400, error: /shape/ },
  { what: 'fractional shape entry', body: { inputs: [{ ...good, shape: [1.5, 4] }] }, status: 400, error: /shape/ },
  { what: 'missing input', body: { inputs: [{ ...good, name: 'features' }] }, status: 400, error: /missing input 'input'/ },
  { what: 'extra input', body: { inputs: [good, { ...good, name: 'extra' }] }, status: 400, error: /unexpected input 'extra'/ },
  { what: 'input given twice', body: { inputs: [good, good] }, status: 400, error: /more than once/ },
  { what: 'wrong datatype', body: { inputs: [{ ...good, datatype: 'FP64' }] }, status: 400, error: /FP64 does not match the model's FP32/ },
  { what: 'wrong rank', body: { inputs: [{ ...good, shape: [4] }] }, status: 400, error: /rank 1, the model expects rank 2/ },
  { what: 'wrong fixed dimension', body: { inputs: [{ ...good, shape: [1, 5], data: [1, 2, 3, 4, 5] }] }, status: 400, error: /at dimension 1/ },
  { what: 'element count does not match the shape', body: { inputs: [{ ...good, shape: [2, 4] }] }, status: 400, error: /needs 8 elements, got 4/ },
  { what: 'ragged nested data', body: { inputs: [{ ...good, shape: [2, 4], data: [[1, 2, 3, 4], [1, 2]] }] }, status: 400, error: /needs 8 elements, got 6/ },
  { what: 'string in a numeric tensor', body: { inputs: [{ ...good, data: [1, 2, 'a', 4] }] }, status: 400, error: /must be numbers/ },
  { what: 'null in a numeric tensor', body: { inputs: [{ ...good, data: [1, 2, null, 4] }] }, status: 400, error: /must be numbers/ },
  { what: 'no data and no binary size', body: { inputs: [{ ...good, data: undefined }] }, status: 400, error: /has no data/ },
  { what: 'batch over max_batch_size', body: { inputs: [{ ...good, shape: [65, 4], data: new Array(260).fill(1) }] }, status: 400, error: /exceeds the model's max_batch_size 64/ },
  { what: 'unknown requested output', body: { inputs: [good], outputs: [{ name: 'logits' }] }, status: 400, error: /unknown output 'logits'/ },
  { what: 'bad timeout parameter', body: { inputs: [good], parameters: { timeout: 'soon' } }, status: 400, error: /timeout/ },
  { what: 'non-numeric binary header', ...binary(binInput(16), f32(4), Number.NaN), status: 400, error: /Inference-Header-Content-Length must be/ },
  { what: 'binary header longer than the body', ...binary(binInput(16), f32(4), 10_000), status: 400, error: /body has only/ },
  { what: 'binary_data_size past the end', ...binary(binInput(64), f32(4)), status: 400, error: /exceeds the 16 bytes left/ },
  { what: 'unclaimed binary bytes', ...binary(binInput(16), f32(5)), status: 400, error: /4 bytes of binary data are not claimed/ },
  { what: 'binary size wrong for the shape', ...binary(binInput(12), f32(3)), status: 400, error: /needs 16 bytes, got 12/ },
  { what: 'binary size and JSON data together', ...binary(binInput(16, { data: [1, 2, 3, 4] }), f32(4)), status: 400, error: /both binary_data_size and JSON data/ },
  { what: 'body over the limit', raw: Buffer.alloc(BODY_LIMIT + 1, 32), status: 413, error: /larger than the limit of 262144 bytes/ },
  { what: 'TF predict with both forms', path: '/v1/models/iris-logreg:predict', body: { instances: [[1, 2, 3, 4]], inputs: [[1, 2, 3, 4]] }, status: 400, error: /exactly one of "instances"/ },
  { what: 'TF predict with no instances', path: '/v1/models/iris-logreg:predict', body: { instances: [] }, status: 400, error: /instances must not be empty/ },
  { what: 'TF predict with a short row', path: '/v1/models/iris-logreg:predict', body: { instances: [[1, 2, 3]] }, status: 400, error: /at dimension 1/ },
  { what: 'TF predict on an unknown model', path: '/v1/models/nope:predict', body: { instances: [[1, 2, 3, 4]] }, status: 404, error: /unknown model 'nope'/ },
  { what: 'TF predict with malformed JSON', path: '/v1/models/iris-logreg:predict', raw: 'instances=1', status: 400, error: /not valid JSON/ },
  { what: 'TF status of an unknown version', method: 'GET', path: '/v1/models/iris-logreg/versions/7', status: 404, error: /no version '7'/ },
  { what: 'app that does not exist', path: '/nope/predict', body: { input: [1, 2, 3, 4] }, status: 404, error: /unknown application 'nope'/ },
  { what: 'app query without "input"', path: '/iris/predict', body: { inputs: [1, 2, 3, 4] }, status: 400, error: /"input" field/ },
  { what: 'app query of the wrong length', path: '/iris/predict', body: { input: [1, 2, 3] }, status: 400, error: /at dimension 1/ },
  { what: 'metadata of an unknown model', method: 'GET', path: '/v2/models/nope', status: 404, error: /unknown model 'nope'/ },
  { what: 'unknown route', method: 'GET', path: '/v3/everything', status: 404, error: /no route for GET \/v3\/everything/ },
];

async function send(c: Case): Promise<{ status: number; body: { error?: string } }> {
  const method = c.method ?? 'POST';
  const raw = typeof c.raw === 'string' || c.raw === undefined ? c.raw : new Uint8Array(c.raw);
  const body = method === 'GET' ? undefined : raw ?? JSON.stringify(c.body);
  const res = await fetch(`${url}${c.path ?? INFER}`, { method, headers: { 'content-type': 'application/json', ...c.headers }, body });
  return { status: res.status, body: (await res.json()) as { error?: string } };
}

describe('bad input', () => {
  it('has at least 30 cases', () => expect(CASES.length).toBeGreaterThanOrEqual(30));

  for (const c of CASES) {
    it(`refuses ${c.what} with ${c.status}`, async () => {
      const res = await send(c);
      expect(res.status, JSON.stringify(res.body)).toBe(c.status);
      expect(res.body.error).toMatch(c.error);
    });
  }
});

/** Deterministic PRNG (mulberry32) so a failing fuzz run can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ODD_VALUES: unknown[] = [null, true, -1, 0, 1e308, 'x', '', [], {}, [[[]]], { b64: '!!' }, 2 ** 53, -0.5, 'FP32', [1, 2]];

function mutate(value: unknown, rand: () => number, depth = 0): unknown {
  if (rand() < 0.15 || depth > 4) return ODD_VALUES[Math.floor(rand() * ODD_VALUES.length)];
  if (Array.isArray(value)) {
    const copy = value.map((v) => (rand() < 0.3 ? mutate(v, rand, depth + 1) : v));
    if (rand() < 0.2) copy.pop();
    if (rand() < 0.2) copy.push(mutate(copy[0], rand, depth + 1));
    return copy;
  }
  if (value && typeof value === 'object') {
    const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const k of Object.keys(copy)) {
      const r = rand();
      if (r < 0.15) delete copy[k];
      else if (r < 0.5) copy[k] = mutate(copy[k], rand, depth + 1);
    }
    return copy;
  }
  return value;
}

describe('fuzzing', () => {
  it('survives 3000 random mutations of valid requests with only 2xx/4xx answers', async () => {
    const rand = prng(20261125);
    const templates: { path: string; body: unknown }[] = [
      { path: INFER, body: { id: 'a', inputs: [good], outputs: [{ name: 'label' }] } },
      { path: '/v2/models/synthetic-small/infer', body: { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 64], data: new Array(64).fill(0.5) }] } },
      { path: '/v1/models/iris-forest:predict', body: { instances: [[5.1, 3.5, 1.4, 0.2]] } },
      { path: '/v1/models/iris-forest:predict', body: { inputs: { input: [[5.1, 3.5, 1.4, 0.2]] } } },
      { path: '/iris/predict', body: { input: [5.1, 3.5, 1.4, 0.2] } },
    ];
    const statuses = new Map<number, number>();
    for (let i = 0; i < 3000; i++) {
      const t = templates[i % templates.length];
      let payload = JSON.stringify(mutate(t.body, rand));
      if (rand() < 0.1) payload = payload.slice(0, Math.floor(rand() * payload.length)); // truncated bodies
      const res = await fetch(`${url}${t.path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: payload });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      expect(res.status === 200 || (res.status >= 400 && res.status < 500), `mutation ${i} to ${t.path}: ${payload} -> ${res.status}`).toBe(true);
    }
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
    // The server still answers valid requests correctly.
    const after = await postJson(`${url}${INFER}`, { inputs: [{ ...good, shape: [IRIS_ROWS.length, 4], data: IRIS_ROWS.map((r) => r.features) }] });
    expect(after.status).toBe(200);
    expect(after.body.outputs.find((o: { name: string }) => o.name === 'label').data).toEqual(IRIS_ROWS.map((r) => r.label));
  });
});
