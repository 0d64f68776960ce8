/**
 * `tern lab down`: removes what the state file says `lab up` made, in reverse
 * order, whatever state it was left in (a crash mid-way included): processes
 * (asked, then killed), anything still running in the namespaces or the host
 * groups, the namespaces, the bridge, the cgroups, then the state itself.
 */
import { rmSync } from 'node:fs';
import type { LabState } from '../protocol/lab.js';
import { cgroupPids, removeCgroupTree } from './host-cgroups.js';
import { deleteLink, deleteNamespace, quiet } from './namespaces.js';
import { labDir, readState } from './state.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGTERM to each process group, SIGKILL to what is left after `graceMs`. */
async function stopProcesses(state: LabState, graceMs: number): Promise<void> {
  const pids = state.processes.map((p) => p.pid);
  for (const pid of pids) quiet(() => process.kill(-pid, 'SIGTERM'));
  const end = Date.now() + graceMs;
  while (Date.now() < end && pids.some(alive)) await sleep(100);
  for (const pid of pids) quiet(() => process.kill(-pid, 'SIGKILL'));
}

function killGroupMembers(state: LabState): void {
  for (const g of state.cgroups) for (const d of g.dirs) for (const pid of cgroupPids(d)) quiet(() => process.kill(pid, 'SIGKILL'));
}

async function removeCgroups(state: LabState): Promise<string[]> {
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    killGroupMembers(state);
    await sleep(100 * attempt);
  }
  for (const dir of [...state.cgroups.flatMap((g) => g.dirs), ...state.cgroup_parents]) {
    try {
      removeCgroupTree(dir);
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  return failures;
}

/** Tears a lab down; returns what could not be removed (empty: nothing is left). */
export async function labDown(root: string, prefix: string, graceMs = 5000): Promise<string[]> {
  const state = readState(root, prefix);
  if (!state) throw new Error(`no lab '${prefix}' is recorded in ${root}`);
  await stopProcesses(state, graceMs);
  for (const ns of [...state.namespaces].reverse()) deleteNamespace(ns.name, ns.veth);
  if (state.bridge) deleteLink(state.bridge);
  const failures = await removeCgroups(state);
  if (failures.length === 0) rmSync(labDir(root, prefix), { recursive: true, force: true });
  return failures;
}
