/**
 * Linux control groups for replica CPU and memory limits, and the limits the
 * agent itself runs under (a board emulated by the lab, a container).
 *
 * cgroup v2 (unified): replicas go to `<root>/tern/<replica>` with `cpu.max`
 * and `memory.max`, after enabling the cpu and memory controllers in the
 * parents' `cgroup.subtree_control`.
 * cgroup v1 (legacy or hybrid hierarchies): replicas go to
 * `<controller mount>/<agent's own group>/tern/<replica>` in the cpu and the
 * memory hierarchy, with `cpu.cfs_quota_us` and `memory.limit_in_bytes`; they
 * stay inside the agent's group, so limits placed on the agent still apply.
 * Anything else: limits are not enforced, and `reason` says why.
 */
import { access, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Resources } from '../protocol/fleet.js';

export const CPU_PERIOD_US = 100_000;
const GROUP_PARENT = 'tern';

export type CgroupSupport =
  | { kind: 'v2'; root: string }
  | { kind: 'v1'; cpu: string; memory: string }
  | { kind: 'none'; reason: string };

interface Mount { dir: string; type: string; options: string[] }

async function readMounts(): Promise<Mount[]> {
  const text = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).map((line) => {
    const [, dir, type, opts] = line.split(' ');
    return { dir: dir.replace(/\\040/g, ' '), type, options: (opts ?? '').split(',') };
  });
}

/** `/proc/self/cgroup`: hierarchy controllers -> the path of this process's group. */
async function ownGroups(): Promise<{ v2?: string; v1: Map<string, string> }> {
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of text.split('\n').filter(Boolean)) {
    const [id, controllers, ...rest] = line.split(':');
    const p = rest.join(':');
    if (id === '0' && controllers === '') v2 = p;
    else for (const c of controllers.split(',')) v1.set(c, p);
  }
  return { v2, v1 };
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(() => true, () => false);
}

async function readText(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').then((t) => t.trim(), () => undefined);
}

function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} ${e.path ?? ''}`.trim() : String(err);
}

/** Where replica groups can be created on this machine, or why they cannot. */
export async function detectCgroups(): Promise<CgroupSupport> {
  if (process.platform !== 'linux') return { kind: 'none', reason: `cgroups are Linux only (this is ${process.platform})` };
  const mounts = await readMounts();
  const reasons: string[] = [];

  const unified = mounts.find((m) => m.type === 'cgroup2');
  if (unified) {
    const controllers = (await readText(path.join(unified.dir, 'cgroup.controllers')))?.split(/\s+/) ?? [];
    const missing = ['cpu', 'memory'].filter((c) => !controllers.includes(c));
    if (missing.length === 0) {
      try {
        await enableV2Controllers(unified.dir);
        await rmdir(path.join(unified.dir, GROUP_PARENT)).catch(() => undefined); // created again per replica
        return { kind: 'v2', root: unified.dir };
      } catch (err) {
        reasons.push(`cgroup v2 at ${unified.dir} is not writable (${errText(err)})`);
      }
    } else {
      reasons.push(`cgroup v2 at ${unified.dir} lacks the ${missing.join(' and ')} controller${missing.length > 1 ? 's' : ''}`);
    }
  }

  const cpuMount = mounts.find((m) => m.type === 'cgroup' && m.options.includes('cpu'));
  const memMount = mounts.find((m) => m.type === 'cgroup' && m.options.includes('memory'));
  if (cpuMount && memMount) {
    const own = await ownGroups();
    const cpu = path.join(cpuMount.dir, own.v1.get('cpu') ?? '/', GROUP_PARENT);
    const memory = path.join(memMount.dir, own.v1.get('memory') ?? '/', GROUP_PARENT);
    try {
      await mkdir(cpu, { recursive: true });
      await mkdir(memory, { recursive: true });
      const usable = (await exists(path.join(cpu, 'cpu.cfs_quota_us'))) && (await exists(path.join(memory, 'memory.limit_in_bytes')));
      // Probe only: the parents are created again per replica and removed with the last one.
      await rmdir(cpu).catch(() => undefined);
      await rmdir(memory).catch(() => undefined);
      if (!usable) throw new Error(`no cpu.cfs_quota_us or memory.limit_in_bytes under ${cpu}, ${memory}`);
      return { kind: 'v1', cpu, memory };
    } catch (err) {
      reasons.push(`cgroup v1 cpu/memory hierarchies are not writable (${errText(err)})`);
    }
  } else if (!unified) {
    reasons.push('no cgroup filesystem is mounted');
  } else if (reasons.length === 0) {
    reasons.push('no cgroup v1 cpu and memory hierarchies');
  }
  return { kind: 'none', reason: reasons.join('; ') };
}

async function enableV2Controllers(root: string): Promise<void> {
  const parent = path.join(root, GROUP_PARENT);
  const enabled = (await readText(path.join(root, 'cgroup.subtree_control')))?.split(/\s+/) ?? [];
  if (!enabled.includes('cpu') || !enabled.includes('memory')) await writeFile(path.join(root, 'cgroup.subtree_control'), '+cpu +memory');
  await mkdir(parent, { recursive: true });
  const below = (await readText(path.join(parent, 'cgroup.subtree_control')))?.split(/\s+/) ?? [];
  if (!below.includes('cpu') || !below.includes('memory')) await writeFile(path.join(parent, 'cgroup.subtree_control'), '+cpu +memory');
}

/** One replica's group: limits are written at creation; processes join with `add`. */
export interface ReplicaCgroup {
  /** For status messages, e.g. "cgroup v2: cpu 0.5 cores, memory 256 MB". */
  readonly description: string;
  readonly dirs: string[];
  add(pid: number): Promise<void>;
  /** Removes the (empty) group; call after its processes exited. */
  remove(): Promise<void>;
}

function groupName(replicaId: string): string {
  return replicaId.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export async function createReplicaCgroup(support: CgroupSupport, replicaId: string, resources: Resources): Promise<ReplicaCgroup> {
  if (support.kind === 'none') throw new Error(support.reason);
  const quota = Math.max(1000, Math.round(resources.cpu * CPU_PERIOD_US));
  const memoryBytes = resources.memory_mb * 1024 * 1024;
  const name = groupName(replicaId);
  const description = `cgroup ${support.kind}: cpu ${resources.cpu} core${resources.cpu === 1 ? '' : 's'}, memory ${resources.memory_mb} MB`;
  let dirs: string[];
  if (support.kind === 'v2') {
    const dir = path.join(support.root, GROUP_PARENT, name);
    await enableV2Controllers(support.root);
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`);
    await writeFile(path.join(dir, 'memory.max'), String(memoryBytes));
    dirs = [dir];
  } else {
    const cpu = path.join(support.cpu, name);
    const memory = path.join(support.memory, name);
    await mkdir(cpu, { recursive: true });
    await mkdir(memory, { recursive: true });
    await writeFile(path.join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
    await writeFile(path.join(cpu, 'cpu.cfs_quota_us'), String(quota));
    await writeFile(path.join(memory, 'memory.limit_in_bytes'), String(memoryBytes));
    dirs = [cpu, memory];
  }
  return {
    description,
    dirs,
    async add(pid: number) {
      for (const dir of dirs) await writeFile(path.join(dir, 'cgroup.procs'), String(pid));
    },
    async remove() {
      for (const dir of dirs) {
        await removeGroup(dir);
        // Leave no empty `tern` parent behind: a parent group with children cannot be removed by whoever owns it.
        await rmdir(path.dirname(dir)).catch(() => undefined);
      }
    },
  };
}

/** rmdir a group; its last process may take a moment to leave after exiting. */
async function removeGroup(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt >= 20) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** CPU and memory limits this process runs under (its own group and its ancestors), when any. */
export async function ownLimits(): Promise<{ cpus?: number; memoryBytes?: number }> {
  if (process.platform !== 'linux') return {};
  const mounts = await readMounts();
  const own = await ownGroups();
  const cpuLimits: number[] = [];
  const memLimits: number[] = [];
  const ancestors = (p: string) => {
    const out: string[] = [];
    for (let cur = p; ; cur = path.posix.dirname(cur)) {
      out.push(cur);
      if (cur === '/' || cur === '.') break;
    }
    return out;
  };
  const unified = mounts.find((m) => m.type === 'cgroup2');
  if (unified && own.v2 !== undefined) {
    for (const rel of ancestors(own.v2)) {
      const cpuMax = await readText(path.join(unified.dir, rel, 'cpu.max'));
      const [q, p] = cpuMax?.split(/\s+/) ?? [];
      if (q && q !== 'max' && Number(p) > 0) cpuLimits.push(Number(q) / Number(p));
      const mem = await readText(path.join(unified.dir, rel, 'memory.max'));
      if (mem && mem !== 'max') memLimits.push(Number(mem));
    }
  }
  const cpuMount = mounts.find((m) => m.type === 'cgroup' && m.options.includes('cpu'));
  if (cpuMount && own.v1.has('cpu')) {
    for (const rel of ancestors(own.v1.get('cpu')!)) {
      const q = Number(await readText(path.join(cpuMount.dir, rel, 'cpu.cfs_quota_us')));
      const p = Number(await readText(path.join(cpuMount.dir, rel, 'cpu.cfs_period_us')));
      if (q > 0 && p > 0) cpuLimits.push(q / p);
    }
  }
  const memMount = mounts.find((m) => m.type === 'cgroup' && m.options.includes('memory'));
  if (memMount && own.v1.has('memory')) {
    for (const rel of ancestors(own.v1.get('memory')!)) {
      const m = Number(await readText(path.join(memMount.dir, rel, 'memory.limit_in_bytes')));
      // v1 reports "no limit" as a huge page-aligned number.
      if (m > 0 && m < 2 ** 62) memLimits.push(m);
    }
  }
  return {
    cpus: cpuLimits.length ? Math.min(...cpuLimits) : undefined,
    memoryBytes: memLimits.length ? Math.min(...memLimits) : undefined,
  };
}

/**
 * Run inside a replica whose agent is gone: moves this process out of its
 * replica groups (`.../tern/<replica>`) into the agent's group above them and
 * removes the emptied groups, so nothing is left behind for the next agent
 * (or whoever owns the agent's group) to clean up. Best effort; never throws.
 */
export async function leaveReplicaCgroups(): Promise<void> {
  try {
    const mounts = await readMounts();
    const text = await readFile('/proc/self/cgroup', 'utf8');
    for (const line of text.split('\n').filter(Boolean)) {
      const [id, controllers, ...rest] = line.split(':');
      const rel = rest.join(':');
      if (path.posix.basename(path.posix.dirname(rel)) !== GROUP_PARENT) continue;
      const names = controllers.split(',');
      const mount = id === '0' && controllers === ''
        ? mounts.find((m) => m.type === 'cgroup2')
        : mounts.find((m) => m.type === 'cgroup' && names.some((c) => m.options.includes(c)));
      if (!mount) continue;
      const dir = path.join(mount.dir, rel);
      const agentGroup = path.dirname(path.dirname(dir));
      try {
        await writeFile(path.join(agentGroup, 'cgroup.procs'), String(process.pid));
        await rmdir(dir);
        await rmdir(path.dirname(dir));
      } catch {
        // another replica still uses the parent, or we may not move: leave it
      }
    }
  } catch {
    // not Linux, or no cgroups
  }
}

/** Removes empty replica groups under the `tern` parents (left by replicas killed together with their agent). */
export async function removeStaleReplicaCgroups(support: CgroupSupport): Promise<string[]> {
  if (support.kind === 'none') return [];
  const parents = support.kind === 'v2' ? [path.join(support.root, GROUP_PARENT)] : [support.cpu, support.memory];
  const removed: string[] = [];
  for (const parent of parents) {
    let entries: string[] = [];
    try {
      entries = (await readdir(parent, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
    } catch {
      continue;
    }
    for (const name of entries) {
      const dir = path.join(parent, name);
      const procs = await readText(path.join(dir, 'cgroup.procs'));
      if (procs) continue; // still running something
      await rmdir(dir).then(() => removed.push(dir), () => undefined);
    }
    await rmdir(parent).catch(() => undefined);
  }
  return removed;
}
