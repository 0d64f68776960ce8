/**
 * NodeFacts: what this node is (from the hardware probe), what its operator
 * says about it (labels, site, zone, location, address), and the limits it
 * really runs under (a cgroup quota on the agent, as in the lab's emulated
 * boards, caps the reported cpus and memory).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { NodeFacts } from '../protocol/fleet.js';
import { ownLimits } from './cgroups.js';
import { runHardwareProbe, type HardwareProbe } from './facts-probe.js';
import { compiledScript, SCRIPTS } from './scripts.js';

export interface FactsConfig {
  labels?: Record<string, string>;
  /** Runtimes this node offers (the container runtime only when the agent has an engine configured). */
  runtimes?: ('process' | 'container' | 'microvm')[];
  /** App workload kinds this agent runs (container deployments need the container runtime). */
  workloads?: 'container'[];
  site?: string;
  zone?: string;
  location?: { lat: number; lon: number };
  /** How other nodes reach this node's replicas; default: the first non-internal IPv4 address. */
  address?: string;
  /** Length of the CPU benchmark. */
  cpuScoreMs?: number;
}

export const AGENT_VERSION: string = (() => {
  try {
    const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../package.json');
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

export function defaultAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/**
 * Runs the hardware probe in a child process (see facts-probe.ts); in process
 * when the compiled probe is missing or the child fails.
 */
export async function probeHardware(cpuScoreMs = 200): Promise<HardwareProbe> {
  try {
    const script = compiledScript(SCRIPTS.factsProbe);
    const { stdout } = await promisify(execFile)(process.execPath, [script, String(cpuScoreMs)], { timeout: 30_000, maxBuffer: 1 << 20 });
    return JSON.parse(stdout) as HardwareProbe;
  } catch {
    return runHardwareProbe(cpuScoreMs);
  }
}

export async function collectFacts(config: FactsConfig = {}, probe?: HardwareProbe): Promise<NodeFacts> {
  const hw = probe ?? (await probeHardware(config.cpuScoreMs));
  const limits = await ownLimits();
  const cpus = limits.cpus !== undefined ? Math.min(hw.cpus, Math.max(1, Math.ceil(limits.cpus))) : hw.cpus;
  const memory = limits.memoryBytes !== undefined ? Math.min(hw.memory_bytes, limits.memoryBytes) : hw.memory_bytes;
  return {
    hostname: hw.hostname,
    arch: hw.arch,
    os: hw.os,
    cpus,
    cpu_model: hw.cpu_model,
    memory_bytes: memory,
    cpu_score: hw.cpu_score,
    accelerators: hw.accelerators,
    labels: config.labels ?? {},
    site: config.site,
    zone: config.zone,
    location: config.location,
    address: config.address ?? defaultAddress(),
    agent_version: AGENT_VERSION,
    ...(config.runtimes ? { runtimes: config.runtimes } : {}),
    ...(config.workloads ? { workloads: config.workloads } : {}),
  };
}
