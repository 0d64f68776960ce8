/**
 * CPU and memory of the serving hosts while load runs, sampled twice a
 * second. In a lab the figures come from each host's cgroup (every process
 * on the host: agent, gateway, replicas); on a real fleet from the control
 * plane's node stats (the replicas' own CPU and RSS that agents report in
 * their heartbeats). CPU is in percent of one core, as `top` shows it.
 */
import type { LabState } from '../protocol/lab.js';
import { cgroupUsage } from '../lab/host-cgroups.js';

export interface HostSample { cpuPercent?: number; memoryBytes: number }

export interface HostStatsSource {
  /** What the figures cover, for the report. */
  readonly description: string;
  /** One reading per host; cpuPercent may need two readings (cgroups count CPU time). */
  read(): Promise<Map<string, HostSample>>;
}

export interface HostStats {
  host: string;
  cpu_percent_mean: number | null;
  cpu_percent_max: number | null;
  memory_mb_mean: number;
  memory_mb_max: number;
  samples: number;
}

/** Lab hosts by their cgroups: CPU time differences over wall time. */
export function labHostSource(state: LabState, hosts: string[]): HostStatsSource {
  let last: { t: number; cpu: Map<string, number> } | undefined;
  return {
    description: `lab host cgroups (${hosts.join(', ')}): agent, gateway and replicas of each host`,
    async read() {
      const t = performance.now();
      const out = new Map<string, HostSample>();
      const cpu = new Map<string, number>();
      for (const host of hosts) {
        const group = state.cgroups.find((g) => g.host === host);
        const usage = group ? cgroupUsage(group) : undefined;
        if (!usage) continue;
        cpu.set(host, usage.cpuSeconds);
        const before = last?.cpu.get(host);
        const cpuPercent = before !== undefined ? ((usage.cpuSeconds - before) / ((t - last!.t) / 1000)) * 100 : undefined;
        out.set(host, { memoryBytes: usage.memoryBytes, ...(cpuPercent !== undefined ? { cpuPercent } : {}) });
      }
      last = { t, cpu };
      return out;
    },
  };
}

interface NodeView { id: string; labels: Record<string, string>; facts: { site?: string }; stats: { replicas: { cpu_percent?: number; rss_bytes?: number }[] } | null }

/** Fleet nodes by the control plane's API; `match` picks the serving nodes and names them. */
export function controlPlaneSource(url: string, token: string, match: (n: NodeView) => string | undefined): HostStatsSource {
  return {
    description: `replica CPU and RSS from agents' heartbeats via ${url}`,
    async read() {
      const res = await fetch(`${url}/api/v1/nodes`, { headers: { authorization: `Bearer ${token}` } });
      if (!res.ok) throw new Error(`GET /api/v1/nodes answered ${res.status}`);
      const { nodes } = (await res.json()) as { nodes: NodeView[] };
      const out = new Map<string, HostSample>();
      for (const n of nodes) {
        const name = match(n);
        if (!name || !n.stats) continue;
        const r = n.stats.replicas;
        out.set(name, { cpuPercent: r.reduce((a, x) => a + (x.cpu_percent ?? 0), 0), memoryBytes: r.reduce((a, x) => a + (x.rss_bytes ?? 0), 0) });
      }
      return out;
    },
  };
}

/** Samples until stopped; `stop()` gives per-host means and maxima. */
export function startHostSampler(source: HostStatsSource, everyMs = 500): { stop: () => Promise<HostStats[]> } {
  const samples = new Map<string, HostSample[]>();
  const take = async () => {
    try {
      for (const [host, s] of await source.read()) samples.set(host, [...(samples.get(host) ?? []), s]);
    } catch {
      // a missed sample is not worth failing the load run for
    }
  };
  const first = take();
  const timer = setInterval(() => void take(), everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await first;
      await take();
      return [...samples].map(([host, list]) => {
        const cpu = list.map((s) => s.cpuPercent).filter((v): v is number => v !== undefined);
        const mem = list.map((s) => s.memoryBytes / 2 ** 20);
        const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
        return {
          host,
          cpu_percent_mean: cpu.length ? mean(cpu) : null,
          cpu_percent_max: cpu.length ? Math.max(...cpu) : null,
          memory_mb_mean: mean(mem),
          memory_mb_max: Math.max(...mem),
          samples: list.length,
        };
      });
    },
  };
}
