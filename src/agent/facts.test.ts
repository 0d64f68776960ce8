import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NodeFactsSchema } from '../protocol/fleet.js';
import { detectAccelerators } from './facts-probe.js';
import { collectFacts } from './facts.js';

describe('node facts', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'tern-root-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('describes this machine, with the operator\'s labels and place', async () => {
    const facts = await collectFacts({ labels: { room: 'lab' }, site: 'home', zone: 'z1', location: { lat: 48.1, lon: 11.6 }, address: '10.0.0.7', cpuScoreMs: 50 });
    expect(NodeFactsSchema.parse(facts)).toEqual(facts);
    expect(facts.arch).toBe(process.arch);
    expect(facts.cpus).toBeGreaterThan(0);
    expect(facts.memory_bytes).toBeGreaterThan(0);
    expect(facts.cpu_score).toBeGreaterThan(1e6);
    expect(facts.labels).toEqual({ room: 'lab' });
    expect(facts.address).toBe('10.0.0.7');
    expect(facts.os).toMatch(/^linux/);
    expect(facts.agent_version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('reports only accelerators whose devices exist', () => {
    expect(detectAccelerators(root)).toEqual([]);
    mkdirSync(path.join(root, 'dev'), { recursive: true });
    mkdirSync(path.join(root, 'etc'), { recursive: true });
    for (const d of ['nvidia0', 'nvidia1', 'nvidiactl', 'rknpu']) writeFileSync(path.join(root, 'dev', d), '');
    writeFileSync(path.join(root, 'etc', 'nv_tegra_release'), '# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n');
    expect(detectAccelerators(root)).toEqual(['nvidia-gpu:0', 'nvidia-gpu:1', 'nvidia-jetson:R35.4.1', 'rockchip-npu']);
  });
});
