/**
 * Hosts on one machine: a Linux bridge in the root namespace and one network
 * namespace per host, joined to the bridge by a veth pair. Shared by `tern lab`
 * and the fleet tests (test/netns.ts). Needs root and iproute2.
 *
 * Processes enter a namespace with `nsenter --net`, not `ip netns exec`: the
 * latter also remounts /sys, which hides /sys/fs/cgroup, and agents inside
 * then cannot put replicas under CPU and memory limits.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { stdio: 'pipe' }).toString();
}

/** Runs a cleanup step that may find its object already gone. */
export function quiet(fn: () => void): void {
  try { fn(); } catch { /* already gone */ }
}

/** Why network namespaces cannot be made here (undefined: they can). */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'pipe' });
  } catch {
    return 'iproute2 (`ip netns`) is not installed';
  }
  try {
    execFileSync('nsenter', ['--version'], { stdio: 'pipe' });
  } catch {
    return 'nsenter (util-linux) is not installed';
  }
  return undefined;
}

export function createBridge(bridge: string, cidrAddress: string): void {
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', cidrAddress, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
}

/** A namespace with loopback up and a veth whose outer end is on the bridge. */
export function createNamespace(ns: string, bridge: string, vethHost: string, vethInside: string, cidrAddresses: string[]): void {
  ip('netns', 'add', ns);
  ip('link', 'add', vethHost, 'type', 'veth', 'peer', 'name', vethInside);
  ip('link', 'set', vethHost, 'master', bridge);
  ip('link', 'set', vethHost, 'up');
  ip('link', 'set', vethInside, 'netns', ns);
  for (const a of cidrAddresses) ip('-n', ns, 'addr', 'add', a, 'dev', vethInside);
  ip('-n', ns, 'link', 'set', vethInside, 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
}

export function namespacePids(ns: string): number[] {
  try {
    return ip('netns', 'pids', ns).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Kills whatever still runs in the namespace, then removes it and its veth. */
export function deleteNamespace(ns: string, vethHost?: string): void {
  for (const pid of namespacePids(ns)) quiet(() => process.kill(pid, 'SIGKILL'));
  quiet(() => ip('netns', 'del', ns));
  if (vethHost) quiet(() => ip('link', 'del', vethHost));
}

export function deleteLink(name: string): void {
  quiet(() => ip('link', 'del', name));
}

export function namespaceExists(ns: string): boolean {
  return ip('netns', 'list').split('\n').some((l) => l.split(' ')[0] === ns);
}

export function linkExists(name: string): boolean {
  try {
    ip('link', 'show', name);
    return true;
  } catch {
    return false;
  }
}

/** The argv prefix that runs a command in a namespace (network only; mounts and /sys stay the host's). */
export function inNamespace(ns: string, cmd: string, args: string[]): [string, string[]] {
  return ['nsenter', [`--net=/run/netns/${ns}`, '--', cmd, ...args]];
}

export function spawnIn(ns: string, cmd: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  const [c, a] = inNamespace(ns, cmd, args);
  return spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** Runs a command in a namespace and returns its stdout (throws with its stderr on failure). */
export function execIn(ns: string, cmd: string, args: string[], input?: string): string {
  const [c, a] = inNamespace(ns, cmd, args);
  try {
    return execFileSync(c, a, { stdio: 'pipe', input }).toString();
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`${cmd} ${args.join(' ')} in ${ns} failed: ${stderr || (err as Error).message}`);
  }
}
