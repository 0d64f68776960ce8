/** The tern command as a user runs it: a real process, one-line errors, clean shutdown. */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { LEAN_V8_FLAGS } from '../src/agent/footprint.js';
import { getJson, postJson, removeDir } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const run = promisify(execFile);
const scratch = mkdtempSync(path.join(tmpdir(), 'tern-cli-'));
afterAll(() => removeDir(scratch));

async function fails(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await run('node', [CLI, ...args]);
  } catch (e) {
    const err = e as { code: number; stderr: string };
    return { code: err.code, stderr: err.stderr };
  }
  throw new Error(`tern ${args.join(' ')} succeeded but should have failed`);
}

/** Starts a long-running tern command and resolves with its HTTP port once it logs readiness. */
function startLongRunning(args: string[]) {
  const child = spawn('node', [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const port = new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"http":(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, port, exited };
}

describe('tern CLI', () => {
  it('refuses a missing repository with one line and exit code 1', async () => {
    const r = await fails(['serve', '--model-repository', '/no/such/dir']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tern: model repository '\/no\/such\/dir' does not exist/);
  });

  it('refuses a bad port naming the option', async () => {
    const r = await fails(['serve', '--model-repository', scratch, '--http-port', 'eighty']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--http-port.*must be a port number 0-65535, got 'eighty'/);
  });

  it('refuses an unknown demo model', async () => {
    const r = await fails(['models', 'demo', path.join(scratch, 'x'), '--models', 'resnet']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/resnet/);
  });

  it('writes a demo repository and serves it until SIGTERM', async () => {
    const repo = path.join(scratch, 'repo');
    const { stdout } = await run('node', [CLI, 'models', 'demo', repo, '--models', 'iris-logreg']);
    expect(stdout).toMatch(/wrote 1 models/);
    expect(existsSync(path.join(repo, 'iris-logreg', '1', 'model.onnx'))).toBe(true);
    const server = startLongRunning(['serve', '--model-repository', repo, '--host', '127.0.0.1', '--http-port', '0', '--grpc-port', '0', '--no-watch']);
    const port = await server.port;
    expect((await getJson(`http://127.0.0.1:${port}/v2/health/ready`)).status).toBe(200);
    const r = await postJson(`http://127.0.0.1:${port}/v2/models/iris-logreg/infer`, { inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [5.1, 3.5, 1.4, 0.2] }] });
    expect(r.status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });


  it('tern-agent and ./tern agent start the agent with the lean V8 flags from the first instruction', async () => {
    const flags = LEAN_V8_FLAGS.join(' ');
    const entry = path.resolve('dist/cli/agent-main.js');
    expect(readFileSync(entry, 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${flags}`);
    expect(readFileSync(path.resolve('tern'), 'utf8')).toContain(`exec node ${flags} "$ROOT/dist/cli/main.js" "$@"`);
    const pkg = JSON.parse(readFileSync(path.resolve('package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(pkg.bin['tern-agent']).toBe('dist/cli/agent-main.js');
    // The entry is the agent command: its help is the agent's.
    const { stdout } = await run('node', [...LEAN_V8_FLAGS, entry, '--help']);
    expect(stdout).toMatch(/Usage: tern agent \[options\]/);
    expect(stdout).toContain('--control <url>');
  });
});
