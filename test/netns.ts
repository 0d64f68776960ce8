/**
 * Separate hosts on one machine for fleet tests: a bridge on the host and one
 * network namespace per node, each with its own address on the bridge. Needs
 * root and iproute2; `netnsUnavailable()` says why not, so tests can skip with
 * a printed reason (and fail in CI, where they must run).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';

export interface TestNetwork {
  bridge: string;
  hostAddress: string;
  nodes: { name: string; address: string }[];
  /** Runs a command inside a namespace. */
  spawnIn(ns: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess;
  teardown(): void;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

function quiet(fn: () => void): void {
  try { fn(); } catch { /* already gone */ }
}

export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'pipe' });
  } catch {
    return 'iproute2 (`ip netns`) is not installed';
  }
  return undefined;
}

/** Creates `count` namespaces `<prefix>1..N` on bridge `<prefix>br` with 10.<subnet>.0.0/24 addresses. */
export function createTestNetwork(prefix: string, subnet: number, count: number): TestNetwork {
  const bridge = `${prefix}br`;
  const hostAddress = `10.${subnet}.0.1`;
  const nodes = Array.from({ length: count }, (_, i) => ({ name: `${prefix}${i + 1}`, address: `10.${subnet}.0.${11 + i}` }));
  const teardown = () => {
    for (const n of nodes) {
      quiet(() => execFileSync('ip', ['netns', 'pids', n.name], { stdio: 'pipe' }).toString().split('\n').filter(Boolean).forEach((pid) => quiet(() => process.kill(Number(pid), 'SIGKILL'))));
      quiet(() => ip('netns', 'del', n.name));
      quiet(() => ip('link', 'del', `${n.name}h`));
    }
    quiet(() => ip('link', 'del', bridge));
  };
  teardown(); // leftovers of a crashed run
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${hostAddress}/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  for (const n of nodes) {
    ip('netns', 'add', n.name);
    ip('link', 'add', `${n.name}h`, 'type', 'veth', 'peer', 'name', `${n.name}c`);
    ip('link', 'set', `${n.name}h`, 'master', bridge);
    ip('link', 'set', `${n.name}h`, 'up');
    ip('link', 'set', `${n.name}c`, 'netns', n.name);
    ip('-n', n.name, 'addr', 'add', `${n.address}/24`, 'dev', `${n.name}c`);
    ip('-n', n.name, 'link', 'set', `${n.name}c`, 'up');
    ip('-n', n.name, 'link', 'set', 'lo', 'up');
  }
  return {
    bridge, hostAddress, nodes, teardown,
    spawnIn: (ns, cmd, args, env) => spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }),
  };
}
