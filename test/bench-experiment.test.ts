/**
 * Smoke run of `tern bench experiment edge-vs-cloud` on a real lab (an edge
 * host at half a core behind a LAN link, a cloud host behind 40 ms and
 * 25 Mbit/s), real agents and ONNX models, 2 models x 1-2 users x 1 replica,
 * a second or two each: it must write a results.json that matches the
 * schema, a report and plots (SVG and PNG). The cache cells are left out to
 * keep the test short (their judgement is checked in findings.test.ts).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown } from '../src/lab/lab-down.js';
import { labUnavailable } from '../src/lab/lab-up.js';
import { ExperimentReportSchema } from '../src/protocol/bench.js';
import { removeDir } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const unavailable = labUnavailable();
if (unavailable) {
  if (process.env.CI) throw new Error(`the experiment smoke test must run in CI, but: ${unavailable}`);
  console.warn(`SKIPPED experiment smoke test: ${unavailable}`);
}

const root = mkdtempSync(path.join(tmpdir(), 'tern-exp-test-'));
const out = path.join(root, 'out');
const SPEC = `
prefix: ternle
subnet: 10.79.3.0/24
control: { port: 17420, mqtt_port: 17421 }
ports: { replicas: [20000, 20015] }
hosts:
  - { name: client, address: 10.79.3.10, site: client }
  - { name: edge, address: 10.79.3.11, cpu: 0.5, memory_mb: 1024, site: edge }
  - { name: cloud, address: 10.79.3.21, cpu: 1, memory_mb: 2048, site: cloud }
links:
  - { between: [client, edge], delay_ms: 0.5 }
  - { between: [client, cloud], delay_ms: 20, bandwidth_mbit: 25 }
`;

/** Runs the CLI without blocking this worker (vitest talks to it meanwhile). */
function tern(args: string[], timeout: number): Promise<{ status: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--state-dir', root], { encoding: 'utf8', timeout, maxBuffer: 16 * 2 ** 20 }, (err, _stdout, stderr) => {
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stderr });
    });
  });
}

describe.skipIf(!!unavailable)('tern bench experiment edge-vs-cloud (smoke)', () => {
  beforeAll(async () => {
    writeFileSync(path.join(root, 'lab.yaml'), SPEC);
    const up = await tern(['lab', 'up', path.join(root, 'lab.yaml')], 120_000);
    expect(up.status, up.stderr).toBe(0);
  }, 150_000);

  afterAll(async () => {
    await labDown(root, 'ternle', 1000).catch(() => undefined);
    removeDir(root);
  });

  it('writes well-formed results, a report and plots', async () => {
    const r = await tern(['bench', 'experiment', 'edge-vs-cloud', '--models', 'iris-logreg,synthetic-medium', '--users', '1,2', '--replicas', '1',
      '--warmup', '500ms', '--duration', '1500ms', '--no-cache', '--out', out], 240_000);
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const report = ExperimentReportSchema.parse(JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')));
    const matrix = report.cells.filter((c) => c.experiment === 'matrix');
    expect(matrix).toHaveLength(2 * 2 * 2);
    expect(new Set(matrix.map((c) => `${c.model}/${c.site}/${c.users}`)).size).toBe(8);
    expect(report.cells.filter((c) => c.experiment === 'cache')).toHaveLength(0);
    for (const c of report.cells) {
      expect(c.requests, `${c.model} ${c.site}`).toBeGreaterThan(0);
      expect(c.errors, `${c.model} ${c.site}: ${c.first_error}`).toBe(0);
      expect(c.p50_ms).toBeGreaterThan(0);
      expect(c.hosts.map((h) => h.host)).toEqual([c.site]);
    }
    // The emulated WAN shows: a light model's cloud p50 includes the 40 ms round trip, the edge's does not.
    const p50 = (site: string) => matrix.find((c) => c.model === 'iris-logreg' && c.site === site && c.users === 1)!.p50_ms;
    expect(p50('cloud')).toBeGreaterThan(40);
    expect(p50('edge')).toBeLessThan(40);
    expect(report.findings.map((f) => f.reproduced === null)).toEqual([false, false, true]); // no cache cells: not judged
    expect(report.environment).toMatchObject({ mode: 'lab' });

    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain('## Findings of the original study');
    for (const name of ['throughput', 'p50', 'p99']) {
      expect(md).toContain(`(${name}.svg)`);
      expect(readFileSync(path.join(out, `${name}.svg`), 'utf8')).toMatch(/^<svg[\s\S]*edge[\s\S]*<\/svg>$/);
      const png = await sharp(path.join(out, `${name}.png`)).metadata();
      expect(png.format).toBe('png');
      expect(png.width).toBeGreaterThan(300);
    }
    console.log(`experiment smoke: ${report.cells.length} cells; ${report.findings.map((f) => `${f.reproduced === null ? 'not judged' : f.reproduced ? 'reproduced' : 'not reproduced'}: ${f.finding}`).join('; ')}`);
  }, 260_000);
});
