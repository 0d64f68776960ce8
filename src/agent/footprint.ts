/**
 * The agent's memory footprint. Node 20 itself takes ~42 MB RSS; with the MQTT
 * client, zod and pino loaded the agent would sit near 70 MB. V8's lite mode
 * (no optimizing compiler, smaller code and heap reservations) and a small
 * young generation bring it to ~55 MB; the agent's work (a heartbeat a second,
 * MQTT, a few HTTP calls) does not need the optimizing JIT. Lite mode disables
 * WebAssembly, so the agent uses node:http rather than fetch (whose parser is
 * wasm). The CPU benchmark runs in a child process with the normal JIT (see
 * facts-probe.ts), and replicas are separate processes that never inherit these
 * flags. Call `useLeanRuntime()` first thing in a process that runs only the
 * agent (`tern agent`), never in one that also serves models or the control plane.
 */
import v8 from 'node:v8';

export const LEAN_V8_FLAGS = ['--lite-mode', '--max-semi-space-size=1'] as const;

export function useLeanRuntime(): void {
  v8.setFlagsFromString(LEAN_V8_FLAGS.join(' '));
}
