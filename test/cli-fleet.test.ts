/** The fleet CLI as an operator uses it, against a real control plane: login, push, deploy, inspect, errors. */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../src/control/control-plane.js';
import { DEMO_REPO, removeDir } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const run = promisify(execFile);
let cp: ControlPlane;
let dir: string;

async function tern(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, TERN_CONFIG: path.join(dir, 'creds.json'), TERN_URL: '', TERN_TOKEN: '' } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'tern-cli-fleet-'));
  cp = await startControlPlane({ dataDir: path.join(dir, 'control'), host: '127.0.0.1', port: 0, mqttPort: 0, adminPassword: 'cli-test-password', log: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await cp?.close();
  removeDir(dir);
});

describe('fleet CLI', () => {
  it('refuses commands before login and a wrong password, with one line each', async () => {
    const before = await tern('nodes');
    expect(before.code).toBe(1);
    expect(before.stderr).toMatch(/^tern: not logged in/);
    const bad = await tern('login', '--url', cp.url, '--password', 'wrong');
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/401/);
  });

  it('logs in, pushes a model file and a model directory, lists them', async () => {
    expect((await tern('login', '--url', cp.url, '--password', 'cli-test-password')).stdout).toMatch(/logged in .* as admin \(admin\)/);
    const file = await tern('models', 'push', 'iris', path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'), '--no-progress');
    expect(file.stdout).toMatch(/pushed iris version 1/);
    const modelDir = path.join(dir, 'iris-dir');
    mkdirSync(modelDir);
    cpSync(path.join(DEMO_REPO, 'iris-forest', '1', 'model.onnx'), path.join(modelDir, 'model.onnx'));
    const tarred = await tern('models', 'push', 'iris', modelDir, '--no-progress');
    expect(tarred.stdout).toMatch(/pushed iris version 2/);
    const ls = await tern('models', 'ls');
    expect(ls.stdout).toMatch(/^NAME\s+VERSIONS\s+LATEST/);
    expect(ls.stdout).toMatch(/iris\s+2\s+2/);
    expect(cp.store.models.getVersion('iris', '2')?.format).toBe('tar');
  });

  it('deploys, shows the deployment and why it cannot be placed without nodes', async () => {
    expect((await tern('deploy', 'iris:1', '--replicas', '2')).stdout).toMatch(/deployment iris created: iris v1 x2/);
    expect((await tern('deployments')).stdout).toMatch(/iris\s+model\s+iris\s+1\s+2\s+0\/2/);
    const events = await tern('events', '--subject', 'deployment/iris');
    expect(events.stdout).toMatch(/cannot be placed/);
    expect((await tern('deployments', 'scale', 'iris', '0')).stdout).toMatch(/scaled to 0/);
    const routes = await tern('routes');
    expect(routes.code).toBe(0);
    expect(routes.stdout).toMatch(/^version \d+\n/);
    expect(routes.stdout).toMatch(/iris\s+local-first\s+\(none ready\)/);
    const fastest = await tern('deploy', 'iris:1', '--name', 'iris-fast', '--replicas', '1', '--locality', 'fastest', '--hedge', '--app-slo', '50');
    expect(fastest.stdout).toMatch(/deployment iris-fast created/);
    const shown = JSON.parse((await tern('deployments', 'show', 'iris-fast')).stdout);
    expect(shown.spec.routing).toEqual({ locality: 'fastest', hedge: true });
    expect(shown.spec.app).toMatchObject({ slo_ms: 50 });
    expect((await tern('deployments', 'rm', 'iris-fast')).code).toBe(0);
  });

  it('turns API errors into one line naming the problem', async () => {
    const unknown = await tern('deploy', 'nope', '--replicas', '1');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^tern: POST \/deployments failed \(404\): model nope not found/);
    const missing = await tern('models', 'push', 'x', path.join(dir, 'no-such.onnx'));
    expect(missing.stderr).toMatch(/does not exist/);
    const inUse = await tern('models', 'rm', 'iris:1');
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toMatch(/409/);
    const badPolicy = await tern('deploy', 'iris:1', '--name', 'x', '--replicas', '1', '--locality', 'nearest');
    expect(badPolicy.code).toBe(1);
    expect(badPolicy.stderr.trim().split('\n')).toHaveLength(1);
    expect(badPolicy.stderr).toMatch(/routing\.locality/);
    expect((await tern('users', 'add', 'vic', '--password', 'viewer-pass-1')).stdout).toMatch(/user vic \(viewer\) created/);
    expect((await tern('users')).stdout).toMatch(/vic\s+viewer/);
    const short = await tern('users', 'add', 'sam', '--password', 'short');
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/^tern: POST \/users failed \(400\): invalid request body: password: passwords need at least 8 characters\n$/);
    expect((await tern('users', 'rm', 'vic')).stdout).toMatch(/user vic removed/);
    const ghost = await tern('nodes', 'rm', 'ghost');
    expect(ghost.stderr).toMatch(/404\): node ghost not found/);
    const badLabel = await tern('nodes', 'label', 'n1', 'novalue');
    expect(badLabel.stderr).toMatch(/must look like key=value/);
  });
});
