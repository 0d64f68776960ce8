import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HeartbeatSchema } from '../protocol/fleet.js';
import { afterAll, describe, expect, it } from 'vitest';
import { findTemperatureFile, processStats, StatsSampler } from './stats.js';

describe('heartbeat stats', () => {
  const sys = mkdtempSync(path.join(tmpdir(), 'tern-sys-'));
  afterAll(() => rmSync(sys, { recursive: true, force: true }));

  it('samples node CPU, memory, load and the agent RSS', async () => {
    const sampler = new StatsSampler();
    let x = 0;
    for (let i = 0; i < 2e7; i++) x += i % 7; // some CPU between samples
    expect(x).toBeGreaterThan(0);
    const s = await sampler.sample();
    expect(s.cpu_percent).toBeGreaterThan(0);
    expect(s.cpu_percent).toBeLessThanOrEqual(100);
    expect(s.memory_total_bytes).toBeGreaterThan(s.memory_used_bytes);
    expect(s.agent_rss_bytes).toBeGreaterThan(10e6);
    expect(HeartbeatSchema.safeParse({ seq: 0, ts: Date.now(), ...s, applied_revision: 0, replicas: [] }).success).toBe(true);
  });

  it('finds the CPU thermal zone of a board (Raspberry Pi layout)', async () => {
    for (const [zone, type, milli] of [['thermal_zone0', 'gpu-thermal', '40000'], ['thermal_zone1', 'cpu-thermal', '48312']]) {
      mkdirSync(path.join(sys, 'class/thermal', zone), { recursive: true });
      writeFileSync(path.join(sys, 'class/thermal', zone, 'type'), `${type}\n`);
      writeFileSync(path.join(sys, 'class/thermal', zone, 'temp'), `${milli}\n`);
    }
    expect(findTemperatureFile(sys)).toBe(path.join(sys, 'class/thermal/thermal_zone1/temp'));
    expect((await new StatsSampler({ sysDir: sys }).sample()).temperature_c).toBe(48.3);
  });

  it('reports no temperature where the board exposes none', () => {
    expect(findTemperatureFile(path.join(sys, 'nothing-here'))).toBeUndefined();
  });

  it('measures a process by pid, and nothing for a gone one', async () => {
    const own = await processStats(process.pid);
    expect(own?.rss_bytes).toBeGreaterThan(10e6);
    expect(await processStats(2 ** 22 + 12345)).toBeUndefined();
  });
});
