/**
 * Housekeeping of a real control plane: the event log stays bounded and
 * unfinished uploads do not pile up on disk, both checked when it starts.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlOptions } from '../src/control/control-plane.js';
import { removeDir } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tern-housekeeping-'));
const base: ControlOptions = {
  dataDir: path.join(dir, 'control'), host: '127.0.0.1', port: 0, mqttPort: 0, adminPassword: 'housekeeping-test',
  log: pino({ level: process.env.TERN_TEST_LOG ?? 'silent' }),
};

async function login(url: string): Promise<string> {
  const res = await fetch(`${url}/api/v1/auth/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'housekeeping-test' }),
  });
  return ((await res.json()) as { token: string }).token;
}

afterAll(() => removeDir(dir));

describe('control plane housekeeping', () => {
  it('removes stale unfinished uploads and prunes the event log at start', async () => {
    let cp = await startControlPlane(base);
    const token = await login(cp.url);
    const auth = { authorization: `Bearer ${token}` };
    const up = await fetch(`${cp.url}/api/v1/models/half/uploads`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ sha256: 'a'.repeat(64), size: 1000, format: 'onnx' }),
    });
    expect(up.status).toBe(201);
    const { id } = (await up.json()) as { id: string };
    const put = await fetch(`${cp.url}/api/v1/uploads/${id}?offset=0`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/octet-stream' }, body: Buffer.alloc(400) });
    expect(put.status).toBe(200);
    for (let i = 0; i < 20; i++) cp.store.events.append({ kind: 'test.filler', subject: 'test', message: `filler ${i}` });
    expect(cp.store.events.query({ limit: 1000 }).length).toBeGreaterThan(20);
    await cp.close();

    // A day later, as far as the control plane can tell: the upload expired.
    cp = await startControlPlane({ ...base, uploadMaxAgeMs: 0, maxEvents: 5 });
    try {
      const token2 = await login(cp.url);
      const status = await fetch(`${cp.url}/api/v1/uploads/${id}`, { headers: { authorization: `Bearer ${token2}` } });
      expect(status.status).toBe(404);
      expect(readdirSync(path.join(base.dataDir, 'registry', 'uploads'))).toEqual([]);
      expect(cp.store.events.query({ limit: 1000 }).length).toBeLessThanOrEqual(5 + 2); // + the login's own events
    } finally {
      await cp.close();
    }
  });
});
