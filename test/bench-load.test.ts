/**
 * `tern bench load` against a real `tern serve` with the real iris forest:
 * closed-loop steps over gRPC from the CLI (report files, schema), an
 * open-loop Poisson step over REST JSON, and one-line refusals of bad flags.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLoadBench } from '../src/bench/load-bench.js';
import { LoadReportSchema } from '../src/protocol/bench.js';
import { removeDir, scratchRepository, startTestServer } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
let server: Awaited<ReturnType<typeof startTestServer>>;
let repo: string;
const out = mkdtempSync(path.join(tmpdir(), 'tern-bench-load-'));

function tern(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, TERN_LAB_STATE: out } }, (err, stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  repo = scratchRepository(['iris-forest']);
  server = await startTestServer({ repository: repo, grpcPort: 0 });
});

afterAll(async () => {
  await server?.close();
  removeDir(repo);
  removeDir(out);
});

describe('tern bench load', () => {
  it('runs closed-loop steps over gRPC with the iris rows and writes a JSON and Markdown report', async () => {
    const r = await tern(['bench', 'load', '--target', server.url, '--grpc-target', `127.0.0.1:${server.grpcPort}`, '--model', 'iris-forest',
      '--protocol', 'grpc', '--users', '1,2', '--warmup', '200ms', '--duration', '800ms', '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const report = LoadReportSchema.parse(JSON.parse(readFileSync(path.join(out, 'load-iris-forest.json'), 'utf8')));
    expect(report.inputs).toContain('150 rows of the iris dataset');
    expect(report.steps.map((s) => s.users)).toEqual([1, 2]);
    for (const s of report.steps) {
      expect(s.requests).toBeGreaterThan(10);
      expect(s.errors).toBe(0);
      expect(s.p50_ms).toBeGreaterThan(0);
      expect(s.p99_ms).toBeGreaterThanOrEqual(s.p50_ms);
    }
    expect(readFileSync(path.join(out, 'load-iris-forest.md'), 'utf8')).toMatch(/\| 2 users \| [0-9.]+ \|/);
    expect(r.stderr).toContain('[2/2] iris-forest grpc 2 users'); // progress, one line per step off a terminal
  });

  it('runs an open-loop Poisson step over REST JSON near the asked rate', async () => {
    const report = await runLoadBench({
      target: server.url, model: 'iris-forest', protocol: 'rest', users: [], rates: [40], warmupMs: 200, durationMs: 1500, inputs: 'dataset',
    });
    const [step] = report.steps;
    expect(step).toMatchObject({ mode: 'open', rate_rps: 40, errors: 0 });
    expect(step.requests).toBeGreaterThan(35); // 60 expected, standard deviation ~8
    expect(step.requests).toBeLessThan(85);
  });

  it.each([
    [['--target', 'not-a-url', '--model', 'm'], /^tern: --target 'not-a-url' is not a URL \(e\.g\. http:\/\/10\.79\.0\.10:8000\)$/],
    [['--target', 'http://127.0.0.1:1', '--model', 'm', '--users', '0'], /^error: option '--users <list>' argument '0' is invalid\. must be a comma-separated list of positive integers like 1,2,4, got '0'$/],
    [['--target', 'http://127.0.0.1:1', '--model', 'm'], /^tern: cannot read model 'm' metadata from http:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/],
  ])('refuses bad input with a one-line message: %j', async (args, message) => {
    const r = await tern(['bench', 'load', ...args, '--out', out]);
    expect(r.status).toBe(1);
    expect(r.stderr.split('\n')[0]).toMatch(message); // commander adds the usage below its own errors
  });
});
