/**
 * Heartbeat stats, cheap enough for every second on a Raspberry Pi: node CPU
 * from /proc/stat deltas, memory from /proc/meminfo, load from the kernel,
 * temperature from one sysfs file found once, the agent's own RSS, and
 * per-replica CPU and RSS through pidusage (one /proc/<pid>/stat read each).
 * Nothing here spawns a process or scans devices per sample.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pidusage from 'pidusage';

export interface NodeStats {
  cpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  load1: number;
  temperature_c?: number;
  agent_rss_bytes: number;
}

export interface StatsConfig {
  /** Where /proc and /sys are (tests point these at a scratch tree). */
  procDir?: string;
  sysDir?: string;
}

interface CpuTimes { busy: number; total: number }

function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split('\n', 1)[0];
  if (!line.startsWith('cpu ')) return undefined;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const total = v.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  const idle = (v[3] || 0) + (v[4] || 0);
  return { busy: total - idle, total };
}

function osCpuTimes(): CpuTimes {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    total += t;
    busy += t - c.times.idle;
  }
  return { busy, total };
}

/**
 * A sysfs file with the CPU temperature in millidegrees: a thermal zone named
 * like the CPU or SoC (Raspberry Pi `cpu-thermal`, Rockchip `soc-thermal`,
 * x86 `x86_pkg_temp`), else a CPU hwmon sensor, else the first thermal zone.
 */
export function findTemperatureFile(sysDir = '/sys'): string | undefined {
  const zonesDir = path.join(sysDir, 'class/thermal');
  const zones: { file: string; type: string }[] = [];
  try {
    for (const z of readdirSync(zonesDir).filter((n) => n.startsWith('thermal_zone')).sort()) {
      let type = '';
      try {
        type = readFileSync(path.join(zonesDir, z, 'type'), 'utf8').trim();
      } catch {
        continue;
      }
      zones.push({ file: path.join(zonesDir, z, 'temp'), type });
    }
  } catch {
    // no thermal class
  }
  const cpuZone = zones.find((z) => /cpu|soc|x86_pkg|package|core/i.test(z.type));
  if (cpuZone) return cpuZone.file;
  const hwmonDir = path.join(sysDir, 'class/hwmon');
  try {
    for (const h of readdirSync(hwmonDir).sort()) {
      let name = '';
      try {
        name = readFileSync(path.join(hwmonDir, h, 'name'), 'utf8').trim();
      } catch {
        continue;
      }
      if (/coretemp|k10temp|zenpower|cpu_thermal|soc_thermal|cpu/i.test(name)) return path.join(hwmonDir, h, 'temp1_input');
    }
  } catch {
    // no hwmon class
  }
  return zones[0]?.file;
}

export class StatsSampler {
  private readonly procDir: string;
  private last: CpuTimes | undefined;
  private readonly temperatureFile: string | undefined;

  constructor(config: StatsConfig = {}) {
    this.procDir = config.procDir ?? '/proc';
    this.temperatureFile = findTemperatureFile(config.sysDir);
    this.last = this.cpuTimesSync();
  }

  private cpuTimesSync(): CpuTimes {
    try {
      return parseProcStat(readFileSync(path.join(this.procDir, 'stat'), 'utf8')) ?? osCpuTimes();
    } catch {
      return osCpuTimes();
    }
  }

  private async cpuPercent(): Promise<number> {
    let now: CpuTimes;
    try {
      now = parseProcStat(await readFile(path.join(this.procDir, 'stat'), 'utf8')) ?? osCpuTimes();
    } catch {
      now = osCpuTimes();
    }
    const prev = this.last;
    this.last = now;
    if (!prev || now.total <= prev.total) return 0;
    return Math.min(100, Math.max(0, ((now.busy - prev.busy) / (now.total - prev.total)) * 100));
  }

  private async memory(): Promise<{ used: number; total: number }> {
    try {
      const text = await readFile(path.join(this.procDir, 'meminfo'), 'utf8');
      const kb = (key: string) => {
        const m = new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text);
        return m ? Number(m[1]) * 1024 : undefined;
      };
      const total = kb('MemTotal');
      const available = kb('MemAvailable') ?? kb('MemFree');
      if (total !== undefined && available !== undefined) return { used: total - available, total };
    } catch {
      // fall through
    }
    return { used: os.totalmem() - os.freemem(), total: os.totalmem() };
  }

  private async temperature(): Promise<number | undefined> {
    if (!this.temperatureFile) return undefined;
    try {
      const milli = Number((await readFile(this.temperatureFile, 'utf8')).trim());
      return Number.isFinite(milli) ? Math.round(milli / 100) / 10 : undefined;
    } catch {
      return undefined;
    }
  }

  async sample(): Promise<NodeStats> {
    const [cpu, mem, temperature] = await Promise.all([this.cpuPercent(), this.memory(), this.temperature()]);
    return {
      cpu_percent: Math.round(cpu * 10) / 10,
      memory_used_bytes: mem.used,
      memory_total_bytes: mem.total,
      load1: os.loadavg()[0],
      temperature_c: temperature,
      agent_rss_bytes: process.memoryUsage.rss(),
    };
  }
}

/** CPU % (of one core, so up to 100 x cores) since the previous call for this pid, and RSS. */
export async function processStats(pid: number): Promise<{ cpu_percent: number; rss_bytes: number } | undefined> {
  try {
    const s = await pidusage(pid);
    return { cpu_percent: Math.round(s.cpu * 10) / 10, rss_bytes: s.memory };
  } catch {
    return undefined;
  }
}

