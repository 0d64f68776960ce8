/**
 * Runs this very command again inside a lab host's network namespace, so
 * `tern bench ... --from client` sends its load from the client host, through
 * its links, as a program started there would. The environment marks the
 * second run so it does not re-enter.
 */
import { spawn } from 'node:child_process';
import type { LabState } from '../protocol/lab.js';
import { inNamespace } from './namespaces.js';

const MARK = 'TERN_LAB_INSIDE';

export function insideLabHost(): string | undefined {
  return process.env[MARK] || undefined;
}

/** Resolves with the exit code of the same command run in `host`'s namespace. */
export function rerunInHost(state: LabState, host: string): Promise<number> {
  const h = state.hosts.find((x) => x.name === host);
  if (!h) throw new Error(`lab '${state.prefix}' has no host '${host}' (hosts: ${state.hosts.map((x) => x.name).join(', ')})`);
  const [cmd, args] = inNamespace(h.netns, process.execPath, [...process.execArgv, ...process.argv.slice(1)]);
  const child = spawn(cmd, args, { stdio: 'inherit', env: { ...process.env, [MARK]: host } });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}
