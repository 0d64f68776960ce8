/**
 * The control plane child of the fleet bench: started with fork (an IPC channel
 * for readiness and in-process counters), its output written to a log file, its
 * CPU time and memory read from /proc, and always stopped, also when the bench
 * fails or is interrupted.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, ChildStats } from './control-child.js';

const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const STATS_TIMEOUT_MS = 5_000;
/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const CLOCK_TICKS_PER_S = 100;

export interface ControlProcessOptions {
  dataDir: string;
  adminPassword: string;
  heartbeatMs: number;
  heartbeatTimeoutMs?: number;
  /** Where the child's stdout and stderr (its pino log) go. */
  logFile: string;
  /** Write a V8 CPU profile of the control plane into this directory (node --cpu-prof). */
  profileDir?: string;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export class ControlProcess {
  private statsId = 0;
  private readonly waiting = new Map<number, (s: ChildStats) => void>();
  private exitedHow?: string;
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess, readonly url: string, readonly mqttUrl: string, private readonly logFile: string) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', (code, signal) => {
      this.exitedHow = signal ? `killed by ${signal}` : `exited with code ${code}`;
      live.delete(child);
    });
    child.on('message', (m: ChildMessage) => {
      if (m.type !== 'stats') return;
      this.waiting.get(m.id)?.(m);
      this.waiting.delete(m.id);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.exitedHow === undefined;
  }

  /** Why the child is gone, with the end of its log, for error messages. */
  describeExit(): string {
    return `the control plane ${this.exitedHow ?? 'is running'}; the end of its log (${this.logFile}):\n${logTail(this.logFile)}`;
  }

  static async start(o: ControlProcessOptions): Promise<ControlProcess> {
    const script = fileURLToPath(new URL('./control-child.js', import.meta.url));
    const out = openSync(o.logFile, 'w');
    let child: ChildProcess;
    try {
      child = fork(script, [], {
        stdio: ['ignore', out, out, 'ipc'],
        execArgv: o.profileDir ? ['--cpu-prof', '--cpu-prof-dir', o.profileDir] : [],
        env: {
          ...process.env,
          TERN_BENCH_DATA_DIR: o.dataDir,
          TERN_BENCH_ADMIN_PASSWORD: o.adminPassword,
          TERN_BENCH_HEARTBEAT_MS: String(o.heartbeatMs),
          TERN_BENCH_HEARTBEAT_TIMEOUT_MS: o.heartbeatTimeoutMs === undefined ? '' : String(o.heartbeatTimeoutMs),
        },
      });
    } finally {
      closeSync(out);
    }
    live.add(child);
    const ready = await new Promise<{ url: string; mqttUrl: string }>((resolve, reject) => {
      const timer = setTimeout(() => fail(`did not start within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
      const onMessage = (m: ChildMessage) => {
        if (m.type === 'ready') done(() => resolve({ url: m.url, mqttUrl: m.mqttUrl }));
        else if (m.type === 'error') fail(`failed to start: ${m.message.split('\n')[0]}`);
      };
      const onExit = (code: number | null, signal: string | null) => fail(`${signal ? `was killed by ${signal}` : `exited with code ${code}`} before it was ready`);
      function done(then: () => void): void {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        then();
      }
      function fail(why: string): void {
        done(() => {
          child.kill('SIGKILL');
          reject(new Error(`the control plane ${why}; the end of its log (${o.logFile}):\n${logTail(o.logFile)}`));
        });
      }
      child.on('message', onMessage);
      child.once('exit', onExit);
    });
    return new ControlProcess(child, ready.url, ready.mqttUrl, o.logFile);
  }

  /** Counters only the process itself knows (fleet hub messages, event loop delay since the last call). */
  stats(): Promise<ChildStats> {
    const id = ++this.statsId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`the control plane did not answer a stats request within ${STATS_TIMEOUT_MS} ms`));
      }, STATS_TIMEOUT_MS);
      this.waiting.set(id, (s) => {
        clearTimeout(timer);
        resolve(s);
      });
      this.child.send({ type: 'stats', id });
    });
  }

  /** Resident set size now, in MiB (VmRSS of /proc/<pid>/status). */
  rssMb(): number {
    return statusField(this.pid, 'VmRSS') / 1024;
  }

  /** Peak resident set size since the start, in MiB (VmHWM). */
  peakRssMb(): number {
    return statusField(this.pid, 'VmHWM') / 1024;
  }

  /** CPU seconds (user + system, all threads) used so far. */
  cpuSeconds(): number {
    return processCpuSeconds(this.pid);
  }

  /** SIGTERM (the child closes the control plane), then SIGKILL after a grace period. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), STOP_GRACE_MS).unref());
    if ((await Promise.race([this.exited, timer])) === 'timeout' && this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Stops every control plane child still running (for signal handlers). */
export function killAllControlProcesses(): void {
  for (const c of live) c.kill('SIGKILL');
}

export function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may contain spaces, start at "state" (field 3): utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

/** A kB figure of /proc/<pid>/status. */
function statusField(pid: number, name: string): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`/proc/${pid}/status has no ${name}`);
  return Number(line.split(/\s+/)[1]);
}

function logTail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
