/**
 * The two reference servers the benches measure tern against, as the benches
 * start them: the floor replays the bytes it was given, whatever the request,
 * and the bare proxy passes an OIP request and its answer through unchanged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildServer, freePort, stopAllChildren } from '../src/bench/child-servers.js';
import { removeDir } from './helpers.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'tern-bench-servers-'));
/** Started outside ChildServer: a proxy without upstream never reports ready. */
const lonely: ChildProcess[] = [];

/** Started as the benches start them, on a free port; resolves with its URL once it answers. */
async function start(script: string, args: string[]): Promise<string> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  await ChildServer.start({ name: script, script: path.resolve('dist/bench', script), args: [...args, '--port', String(port)], readyUrl: `${url}/v2/health/ready` });
  return url;
}

const header = JSON.stringify({ outputs: [{ name: 'y', datatype: 'FP32', shape: [1, 2], parameters: { binary_data_size: 8 } }] });
const answer = Buffer.concat([Buffer.from(header), Buffer.from(new Float32Array([1.5, -2]).buffer)]);
let floor: string;
let proxy: string;

beforeAll(async () => {
  const file = path.join(scratch, 'answer.bin');
  writeFileSync(file, answer);
  floor = await start('floor-server.js', ['--answer-file', file, '--header-length', String(header.length)]);
  proxy = await start('bare-proxy.js', ['--upstream', floor]);
});

afterAll(async () => {
  for (const c of lonely) c.kill('SIGTERM');
  await stopAllChildren();
  removeDir(scratch);
});

async function infer(base: string, body: Buffer) {
  const res = await request(`${base}/v2/models/m/infer`, {
    method: 'POST', body, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '10' },
  });
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) };
}

describe('bench reference servers', () => {
  it('the floor answers every request with the given bytes and header length', async () => {
    for (const size of [0, 100, 200_000]) {
      const r = await infer(floor, Buffer.alloc(size, 7));
      expect(r.status).toBe(200);
      expect(r.headers['inference-header-content-length']).toBe(String(header.length));
      expect(r.body.equals(answer)).toBe(true);
    }
  });

  it('the bare proxy passes a request and its answer through', async () => {
    const r = await infer(proxy, Buffer.alloc(50_000, 1));
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('application/octet-stream');
    expect(r.headers['inference-header-content-length']).toBe(String(header.length));
    expect(r.body.equals(answer)).toBe(true);
  });

  it('the bare proxy answers 502 naming the problem when its upstream is gone', async () => {
    // Its readiness URL is proxied too, so it is polled with the request itself.
    const port = await freePort();
    const upstream = `http://127.0.0.1:${await freePort()}`; // nobody listens there
    lonely.push(spawn('node', [path.resolve('dist/bench/bare-proxy.js'), '--upstream', upstream, '--port', String(port)], { stdio: 'ignore' }));
    let res;
    for (let i = 0; i < 100 && !res; i++) {
      res = await infer(`http://127.0.0.1:${port}`, Buffer.alloc(10)).catch(() => undefined);
      if (!res) await new Promise((r) => setTimeout(r, 50));
    }
    expect(res?.status).toBe(502);
    expect(JSON.parse(res!.body.toString()).error).toMatch(/^upstream failed: /);
  });
});
