/**
 * The agent's memory footprint. Node 20 itself takes ~43 MB RSS (most of it
 * the node binary's pages, shared with the replicas, which are node too); with
 * the MQTT client, zod and pino loaded, the agent would sit near 70-75 MB.
 * V8's lite mode (interpreter only: no JIT code, smaller heap reservations)
 * and a small young generation bring it to ~56 MB when given on the command
 * line (`tern-agent`, `./tern agent`), ~62 MB when set at run time here, after
 * the CLI was compiled by the optimizing tiers; the agent's work (a heartbeat
 * a second, MQTT, a few HTTP calls) does not need a JIT.
 *
 * Lite mode has no WebAssembly: once it is on, a WebAssembly compile is a fatal
 * V8 error, and fetch compiles its HTTP parser to WebAssembly. So the agent
 * uses node:http (http-client.ts), and `useLeanRuntime` replaces `fetch` and
 * removes `WebAssembly` so that any later use fails with an ordinary error.
 * The CPU benchmark runs in a child process with the normal JIT
 * (facts-probe.ts), and replicas are separate processes that never inherit
 * these flags. Call `useLeanRuntime()` first thing in a process that runs
 * only the agent (`tern agent`), never in one that also serves models, runs
 * the control plane or the dashboard.
 */
import v8 from 'node:v8';

export const LEAN_V8_FLAGS = ['--lite-mode', '--max-semi-space-size=1'] as const;

export function useLeanRuntime(): void {
  v8.setFlagsFromString(LEAN_V8_FLAGS.join(' '));
  const unavailable = () => {
    throw new Error('fetch is unavailable in the lean agent runtime (V8 lite mode has no WebAssembly); use node:http');
  };
  globalThis.fetch = (async () => unavailable()) as typeof fetch;
  delete (globalThis as { WebAssembly?: unknown }).WebAssembly;
}
