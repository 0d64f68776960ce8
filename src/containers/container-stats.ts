/**
 * Per-container usage from the Engine API's stats, like cAdvisor: CPU as a
 * percentage of one core, memory, network bytes. CPU comes from the
 * container's own cumulative counter (cpu_usage.total_usage, ns) over the wall
 * time between two samples: Podman's system_cpu_usage is wrong, so the usual
 * Docker CLI formula (container delta / system delta x cores) cannot be used.
 */
export interface EngineStats {
  read?: string;
  cpu_stats?: { cpu_usage?: { total_usage?: number } };
  memory_stats?: { usage?: number; stats?: Record<string, number> };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }>;
}

export interface ContainerUsage {
  cpu_percent: number;
  rss_bytes: number;
  net_rx_bytes?: number;
  net_tx_bytes?: number;
}

export interface CpuSample {
  usageNs: number;
  atMs: number;
}

function sampleTime(stats: EngineStats): number {
  const t = stats.read ? Date.parse(stats.read) : NaN;
  // Engines report 0001-01-01 for a container that is not running.
  return Number.isFinite(t) && t > 0 ? t : Date.now();
}

/** Memory as `docker stats` shows it: usage less the page cache that can be dropped. */
function memoryBytes(stats: EngineStats): number {
  const m = stats.memory_stats;
  if (!m?.usage) return 0;
  const cache = m.stats?.inactive_file ?? m.stats?.total_inactive_file ?? 0;
  return Math.max(0, m.usage - cache);
}

/** Usage since `previous` (undefined on the first sample: CPU needs two), and the sample to keep for the next call. */
export function containerUsage(stats: EngineStats, previous: CpuSample | undefined): { usage?: ContainerUsage; sample?: CpuSample } {
  const usageNs = stats.cpu_stats?.cpu_usage?.total_usage;
  if (usageNs === undefined) return {};
  const sample = { usageNs, atMs: sampleTime(stats) };
  if (!previous || sample.atMs <= previous.atMs || usageNs < previous.usageNs) return { sample };
  const cpu = ((usageNs - previous.usageNs) / 1e6 / (sample.atMs - previous.atMs)) * 100;
  const nets = Object.values(stats.networks ?? {});
  const net = nets.length
    ? { net_rx_bytes: nets.reduce((s, n) => s + (n.rx_bytes ?? 0), 0), net_tx_bytes: nets.reduce((s, n) => s + (n.tx_bytes ?? 0), 0) }
    : {};
  return { usage: { cpu_percent: Math.round(cpu * 100) / 100, rss_bytes: memoryBytes(stats), ...net }, sample };
}
