/**
 * How an idle vCPU waits, which decides what a 1-client latency measures on a
 * virtual machine. A KVM guest with the `haltpoll` cpuidle driver polls for up
 * to `guest_halt_poll_ns` before it halts an idle vCPU. With 0 every idle
 * moment ends in a halt, that is a VM exit, and the next wake-up (a request
 * arriving, an answer coming back) waits for the host to run the vCPU again.
 * A closed-loop client with one request in flight idles both processes
 * between every two requests, so on such a VM its latency is mostly those
 * wake-ups: on the 2-vCPU VM of the README's figures, a server doing no work
 * answered in 0.18 ms p50 with 0 and in 0.04 ms with the kernel's default of
 * 200000 ns. Raw ONNX Runtime in a loop never idles and pays none of it.
 *
 * The benches record this setting with their figures and can set it for the
 * run (`--halt-poll-ns`), as pyperf's `system tune` sets the CPU governor:
 * written once, restored when the bench ends however it ends. Bare-metal
 * boards (Raspberry Pi, Jetson) have no such driver: their shallow idle states
 * wake in microseconds.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const PARAMETER = '/sys/module/haltpoll/parameters/guest_halt_poll_ns';
const DRIVER = '/sys/devices/system/cpu/cpuidle/current_driver';

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export interface IdleSetting {
  /** The cpuidle driver in use (haltpoll in KVM guests, intel_idle, psci... on bare metal), if Linux says. */
  cpuidle_driver: string | null;
  /** haltpoll's polling window before a vCPU halts; null without the haltpoll driver. */
  guest_halt_poll_ns: number | null;
}

export function idleSetting(): IdleSetting {
  const poll = readText(PARAMETER);
  return { cpuidle_driver: readText(DRIVER) ?? null, guest_halt_poll_ns: poll === undefined ? null : Number(poll) };
}

/** One line for a report's heading. */
export function describeIdle(idle: IdleSetting, setByBench: boolean): string {
  if (idle.guest_halt_poll_ns === null) return `cpuidle driver ${idle.cpuidle_driver ?? 'unknown'}`;
  return `cpuidle haltpoll, guest_halt_poll_ns ${idle.guest_halt_poll_ns}${setByBench ? ' (set for this run by --halt-poll-ns)' : ''}`
    + (idle.guest_halt_poll_ns === 0 ? ': every idle vCPU halts, so 1-client latencies include a VM exit per wake-up' : '');
}

/** Parses the `--halt-poll-ns` option (undefined: leave the machine as it is). */
export function haltPollOption(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ns = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(ns)) throw new Error(`--halt-poll-ns must be a whole number of nanoseconds, got '${value}'`);
  return ns;
}

/**
 * Sets guest_halt_poll_ns for the rest of this process and puts the old value
 * back when it exits (normally, by process.exit, or through the benches'
 * signal handlers, which exit). Throws a one-line reason where it cannot.
 */
export function setHaltPollForRun(ns: number): void {
  if (!existsSync(PARAMETER)) {
    throw new Error(`--halt-poll-ns needs the haltpoll cpuidle driver of a KVM guest (${PARAMETER} is absent): this machine has nothing to set`);
  }
  const before = readText(PARAMETER);
  try {
    writeFileSync(PARAMETER, String(ns));
  } catch (err) {
    throw new Error(`--halt-poll-ns could not write ${PARAMETER} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); it needs root`);
  }
  process.once('exit', () => {
    if (before !== undefined) writeFileSync(PARAMETER, before);
  });
}
