/**
 * The CPU and memory limits of a lab host: one cgroup per host that its agent
 * (and so every replica the agent starts) runs in. cgroup v2 when the unified
 * hierarchy has the cpu and memory controllers, else cgroup v1 (this build
 * machine's hybrid layout), where the group is made in the cpu, cpuacct and
 * memory hierarchies below this process's own groups. Agents nest their
 * replica groups inside (src/agent/cgroups.ts), so the host's limits hold for
 * everything on the host. The same groups give the host's CPU time and memory
 * use to `tern bench` (usage()).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const PERIOD_US = 100_000;

interface Mount { dir: string; type: string; options: string[] }

function mounts(): Mount[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [, dir, type, opts] = line.split(' ');
    return { dir, type, options: (opts ?? '').split(',') };
  });
}

function ownV1Path(controller: string): string {
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, controllers, ...rest] = line.split(':');
    if (controllers?.split(',').includes(controller)) return rest.join(':');
  }
  return '/';
}

export type HostCgroupLayout =
  | { kind: 'v2'; root: string }
  | { kind: 'v1'; cpu: string; cpuacct: string; memory: string }
  | { kind: 'none'; reason: string };

/** Where lab host groups go on this machine (parent directories), or why they cannot be made. */
export function detectHostCgroups(prefix: string): HostCgroupLayout {
  if (process.platform !== 'linux') return { kind: 'none', reason: 'cgroups are Linux only' };
  const all = mounts();
  const unified = all.find((m) => m.type === 'cgroup2');
  if (unified) {
    const controllers = (readText(path.join(unified.dir, 'cgroup.controllers')) ?? '').split(/\s+/);
    if (controllers.includes('cpu') && controllers.includes('memory')) return { kind: 'v2', root: path.join(unified.dir, `${prefix}-lab`) };
  }
  const find = (c: string) => all.find((m) => m.type === 'cgroup' && m.options.includes(c));
  const cpu = find('cpu');
  const cpuacct = find('cpuacct');
  const memory = find('memory');
  if (cpu && cpuacct && memory) {
    const under = (m: Mount, c: string) => path.join(m.dir, ownV1Path(c), `${prefix}-lab`);
    return { kind: 'v1', cpu: under(cpu, 'cpu'), cpuacct: under(cpuacct, 'cpuacct'), memory: under(memory, 'memory') };
  }
  return { kind: 'none', reason: 'neither cgroup v2 with cpu and memory controllers nor cgroup v1 cpu, cpuacct and memory hierarchies are mounted' };
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function enableV2(dir: string): void {
  const ctl = path.join(dir, 'cgroup.subtree_control');
  const on = (readText(ctl) ?? '').split(/\s+/);
  if (!on.includes('cpu') || !on.includes('memory')) writeFileSync(ctl, '+cpu +memory');
}

/** A host's group directories (one for v2, three for v1). */
export interface HostCgroup {
  host: string;
  kind: 'v2' | 'v1';
  dirs: string[];
}

/** Makes the host's group with its limits; `cpu` in cores, `memoryMb` in MiB (undefined: unlimited). */
export function createHostCgroup(layout: HostCgroupLayout, host: string, cpu?: number, memoryMb?: number): HostCgroup {
  if (layout.kind === 'none') throw new Error(layout.reason);
  const quota = cpu === undefined ? undefined : Math.max(1000, Math.round(cpu * PERIOD_US));
  const bytes = memoryMb === undefined ? undefined : memoryMb * 2 ** 20;
  if (layout.kind === 'v2') {
    const root = path.dirname(layout.root);
    enableV2(root);
    mkdirSync(layout.root, { recursive: true });
    enableV2(layout.root);
    const dir = path.join(layout.root, host);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'cpu.max'), quota === undefined ? `max ${PERIOD_US}` : `${quota} ${PERIOD_US}`);
    writeFileSync(path.join(dir, 'memory.max'), bytes === undefined ? 'max' : String(bytes));
    return { host, kind: 'v2', dirs: [dir] };
  }
  const cpuDir = path.join(layout.cpu, host);
  const acctDir = path.join(layout.cpuacct, host);
  const memDir = path.join(layout.memory, host);
  for (const d of [cpuDir, acctDir, memDir]) mkdirSync(d, { recursive: true });
  writeFileSync(path.join(cpuDir, 'cpu.cfs_period_us'), String(PERIOD_US));
  writeFileSync(path.join(cpuDir, 'cpu.cfs_quota_us'), String(quota ?? -1));
  writeFileSync(path.join(memDir, 'memory.limit_in_bytes'), String(bytes ?? -1));
  return { host, kind: 'v1', dirs: [...new Set([cpuDir, acctDir, memDir])] };
}

/** Removes a group and whatever groups agents left inside it (deepest first); its processes must be gone. */
export function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) removeCgroupTree(path.join(dir, e.name));
  }
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // A process that was just killed takes a moment to leave its group.
      if (code !== 'EBUSY' || attempt >= 40) throw new Error(`cannot remove cgroup ${dir}: ${code}`);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
}

/** Every pid in a group and its subgroups. */
export function cgroupPids(dir: string): number[] {
  if (!existsSync(dir)) return [];
  const own = (readText(path.join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
  const below = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).flatMap((e) => cgroupPids(path.join(dir, e.name)));
  return [...own, ...below];
}

export interface CgroupUsage {
  /** CPU time of every process in the group, in seconds. */
  cpuSeconds: number;
  memoryBytes: number;
}

/** The host's CPU time used so far and its memory in use now. */
export function cgroupUsage(group: HostCgroup): CgroupUsage | undefined {
  if (group.kind === 'v2') {
    const stat = readText(path.join(group.dirs[0], 'cpu.stat'));
    const usec = Number(/usage_usec (\d+)/.exec(stat ?? '')?.[1]);
    const mem = Number(readText(path.join(group.dirs[0], 'memory.current')));
    return Number.isFinite(usec) ? { cpuSeconds: usec / 1e6, memoryBytes: mem || 0 } : undefined;
  }
  const acct = group.dirs.find((d) => existsSync(path.join(d, 'cpuacct.usage')));
  const mem = group.dirs.find((d) => existsSync(path.join(d, 'memory.usage_in_bytes')));
  const ns = Number(readText(path.join(acct ?? '', 'cpuacct.usage')));
  if (!acct || !Number.isFinite(ns)) return undefined;
  return { cpuSeconds: ns / 1e9, memoryBytes: Number(readText(path.join(mem ?? '', 'memory.usage_in_bytes'))) || 0 };
}
