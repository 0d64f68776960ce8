/** The machine a benchmark ran on, recorded with its figures so runs can be compared. */
import os from 'node:os';
import { idleSetting, type IdleSetting } from './halt-poll.js';

export interface MachineInfo {
  cpu_model: string;
  cpu_count: number;
  node: string;
  platform: string;
  memory_gb: number;
  load_average_at_start: number[];
  load_average_at_end?: number[];
  /** How idle vCPUs wait (see halt-poll.ts): decides much of a 1-client latency on a VM. */
  idle: IdleSetting;
}

export function loadAverage(): number[] {
  return os.loadavg().map((l) => Math.round(l * 100) / 100);
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu_model: cpus[0]?.model ?? 'unknown',
    cpu_count: cpus.length,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    memory_gb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    load_average_at_start: loadAverage(),
    idle: idleSetting(),
  };
}
