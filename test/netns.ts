/**
 * Separate hosts on one machine for fleet tests: a bridge on the host and one
 * network namespace per node, each with its own address on the bridge (the
 * generic parts live in src/lab/namespaces.ts, shared with `tern lab`). Needs
 * root and iproute2; `netnsUnavailable()` says why not, so tests can skip with
 * a printed reason (and fail in CI, where they must run).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createBridge, createNamespace, deleteLink, deleteNamespace, netnsUnavailable } from '../src/lab/namespaces.js';

export { netnsUnavailable };

export interface TestNetwork {
  bridge: string;
  hostAddress: string;
  nodes: { name: string; address: string }[];
  /** Runs a command inside a namespace. */
  spawnIn(ns: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  teardown(): void;
}

/** Creates `count` namespaces `<prefix>1..N` on bridge `<prefix>br` with 10.<subnet>.0.0/24 addresses. */
export function createTestNetwork(prefix: string, subnet: number, count: number): TestNetwork {
  const bridge = `${prefix}br`;
  const hostAddress = `10.${subnet}.0.1`;
  const nodes = Array.from({ length: count }, (_, i) => ({ name: `${prefix}${i + 1}`, address: `10.${subnet}.0.${11 + i}` }));
  const teardown = () => {
    for (const n of nodes) deleteNamespace(n.name, `${n.name}h`);
    deleteLink(bridge);
  };
  teardown(); // leftovers of a crashed run
  createBridge(bridge, `${hostAddress}/24`);
  for (const n of nodes) createNamespace(n.name, bridge, `${n.name}h`, `${n.name}c`, [`${n.address}/24`]);
  return {
    bridge, hostAddress, nodes, teardown,
    spawnIn: (ns, cmd, args, env) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }),
  };
}
