/**
 * `tern lab up SPEC`: the bridge and a namespace per host, the hosts' cgroups,
 * the link proxies (and tc where the kernel shapes), NAT so that linked hosts
 * reach each other through their link, the lab's control plane on the bridge
 * address, one agent per host that joins it, and last the links' delays
 * calibrated against the path's own round trip (link-calibration.ts). Each
 * step is recorded in the state file before the next; a failure tears down
 * what was made.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LabState } from '../protocol/lab.js';
import { createHostCgroup, detectHostCgroups } from './host-cgroups.js';
import { labDown } from './lab-down.js';
import { calibrateDelays, describeCalibration, type LinkDelays } from './link-calibration.js';
import { measureRtt, pingsWithin } from './link-check.js';
import type { ProxyEnd } from './link-proxy.js';
import { createBridge, createNamespace, inNamespace, ip, linkExists, namespaceExists, netnsUnavailable } from './namespaces.js';
import { installNat } from './nat.js';
import { labDir, readState, writeState } from './state.js';
import { planLab, type LabPlan } from './spec.js';
import { changeNetemDelays, installShaping, probeShaping, type ShapingMechanisms } from './traffic-control.js';
import type { LabSpec } from '../protocol/lab.js';

// Compiled entry points, found from src/lab/ (tests) and dist/lab/ alike: both sit two levels below the package root.
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const LINKS_CHILD = fileURLToPath(new URL('../../dist/lab/links-child.js', import.meta.url));

export interface LabUpOptions {
  root: string;
  specFile?: string;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** How long agents may take to join (default 90 s). */
  joinTimeoutMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function which(cmd: string, versionFlag = '--version'): boolean {
  try {
    execFileSync(cmd, [versionFlag], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Why a lab cannot be built here (undefined: it can). */
export function labUnavailable(): string | undefined {
  const netns = netnsUnavailable();
  if (netns) return netns;
  if (!which('nft')) return 'nftables (`nft`) is not installed: apt-get install nftables';
  if (!which('tc', '-V')) return 'tc (iproute2) is not installed';
  const cg = detectHostCgroups('probe');
  if (cg.kind === 'none') return cg.reason;
  return undefined;
}

/** Refuses names or addresses that something else on this machine already uses. */
function checkFree(plan: LabPlan): void {
  if (linkExists(plan.bridge)) throw new Error(`interface ${plan.bridge} already exists: another lab with prefix '${plan.spec.prefix}'? (run \`tern lab down\`, or change the spec's prefix)`);
  for (const ns of [plan.linksNetns, ...plan.hosts.map((h) => h.netns)]) {
    if (namespaceExists(ns)) throw new Error(`network namespace ${ns} already exists: run \`tern lab down\`, or change the spec's prefix`);
  }
  const net = plan.spec.subnet.split('.').slice(0, 3).join('.');
  const used = ip('-4', '-o', 'addr', 'show').split('\n').map((l) => /inet (\d+\.\d+\.\d+)\.\d+\//.exec(l)?.[1]).filter(Boolean);
  if (used.includes(net)) throw new Error(`subnet ${plan.spec.subnet} is already in use on this machine (${net}.x is assigned to an interface): pick another subnet`);
}

function spawnDetached(state: LabState, root: string, role: string, argv: string[], env: NodeJS.ProcessEnv = {}, host?: string): number {
  const logs = path.join(labDir(root, state.prefix), 'logs');
  mkdirSync(logs, { recursive: true });
  const out = openSync(path.join(logs, `${role}${host ? `-${host}` : ''}.log`), 'a');
  const child = spawn(argv[0], argv.slice(1), { detached: true, stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`cannot start ${role}`);
  state.processes.push({ role, pid: child.pid, ...(host ? { host } : {}) });
  writeState(root, state);
  return child.pid;
}

function buildNetwork(plan: LabPlan, state: LabState, root: string): void {
  createBridge(plan.bridge, `${plan.bridgeAddress}/24`);
  state.bridge = plan.bridge;
  writeState(root, state);
  const proxies = plan.linkEnds.map((e) => `${e.proxyAddress}/32`);
  state.namespaces.push({ name: plan.linksNetns, veth: plan.linksVethHost });
  writeState(root, state);
  createNamespace(plan.linksNetns, plan.bridge, plan.linksVethHost, plan.linksVethInside, [`${plan.linksAddress}/24`, ...proxies]);
  for (const h of plan.hosts) {
    state.namespaces.push({ name: h.netns, veth: h.vethHost });
    writeState(root, state);
    createNamespace(h.netns, plan.bridge, h.vethHost, h.vethInside, [`${h.address}/24`]);
  }
}

function buildCgroups(plan: LabPlan, state: LabState, root: string): void {
  const layout = detectHostCgroups(plan.spec.prefix);
  if (layout.kind === 'none') throw new Error(`cannot limit host CPU and memory: ${layout.reason}`);
  state.cgroup_parents = layout.kind === 'v2' ? [layout.root] : [...new Set([layout.cpu, layout.cpuacct, layout.memory])];
  for (const h of plan.hosts) {
    const group = createHostCgroup(layout, h.name, h.cpu, h.memory_mb);
    state.cgroups.push(group);
    writeState(root, state);
  }
}

function proxyEnds(plan: LabPlan, mech: ShapingMechanisms, delays: LinkDelays, withLoss: boolean): ProxyEnd[] {
  const byProxy = mech.delay === 'proxy';
  return plan.linkEnds.map((e) => ({
    listenAddress: e.proxyAddress, targetAddress: e.toAddress, ports: plan.proxiedPorts,
    shape: {
      delayMs: byProxy ? delays.get(e.link) ?? e.link.delay_ms : 0,
      jitterMs: byProxy ? e.link.jitter_ms : 0,
      lossPercent: byProxy && withLoss ? e.link.loss_percent : 0,
      bandwidthMbit: mech.bandwidth === 'proxy' ? e.link.bandwidth_mbit : undefined,
    },
  }));
}

/** Writes the proxies' plan and has the running link process apply it (SIGHUP, acknowledged in a file). */
async function reshapeProxies(dir: string, ends: ProxyEnd[]): Promise<void> {
  const ready = path.join(dir, 'links.ready');
  const ack = `${ready}.shaped`;
  rmSync(ack, { force: true });
  writeFileSync(path.join(dir, 'links.json'), JSON.stringify(ends, null, 2));
  process.kill(Number(readFileSync(ready, 'utf8')), 'SIGHUP');
  await waitUntil(() => existsSync(ack), 5000, 'the link proxies did not apply the calibrated delays (see logs/links.log)');
}

/**
 * Shapes the links with calibrated delays (link-calibration.ts): measured with the spec's delays and no
 * loss (a lost ping would reset the probe's connection; links carry no loss until here), corrected,
 * measured again; then loss goes on.
 */
async function calibrateLinks(plan: LabPlan, state: LabState, root: string, mech: ShapingMechanisms): Promise<void> {
  if (plan.linkEnds.length === 0) return;
  const dir = labDir(root, plan.spec.prefix);
  const apply = async (delays: LinkDelays, withLoss: boolean) => {
    if (mech.delay === 'netem') changeNetemDelays(plan.linksNetns, plan.linksVethInside, plan.linkEnds, delays, withLoss);
    else await reshapeProxies(dir, proxyEnds(plan, mech, delays, withLoss));
  };
  const { delays, calibration } = await calibrateDelays(plan.spec.links, {
    pings: (link) => pingsWithin(750, link.delay_ms),
    measure: async (link, pings) => (await measureRtt(state, link.between[0], link.between[1], state.replica_ports[1], pings)).rttMs,
    apply: (delays) => apply(delays, false),
  });
  await apply(delays, true);
  state.link_calibration = calibration;
  writeState(root, state);
}

async function startLinks(plan: LabPlan, state: LabState, root: string): Promise<ShapingMechanisms> {
  const mech = probeShaping(plan.linksNetns, plan.spec.shaping === 'proxy');
  state.shaping = mech;
  writeState(root, state);
  const specDelays: LinkDelays = new Map();
  installShaping(plan.linksNetns, plan.linksVethInside, plan.linkEnds, mech, specDelays, false);
  for (const h of plan.hosts) installNat(h.netns, plan.linkEnds.filter((e) => e.from === h.name), plan.proxiedPorts);
  if (plan.linkEnds.length === 0) return mech;
  const dir = labDir(root, plan.spec.prefix);
  const planFile = path.join(dir, 'links.json');
  const ready = path.join(dir, 'links.ready');
  writeFileSync(planFile, JSON.stringify(proxyEnds(plan, mech, specDelays, false), null, 2));
  // Raised priority: the proxies' timers must fire on time while the hosts burn their CPU.
  const [cmd, args] = inNamespace(plan.linksNetns, 'nice', ['-n', '-10', process.execPath, LINKS_CHILD, planFile, ready]);
  spawnDetached(state, root, 'links', [cmd, ...args]);
  await waitUntil(() => existsSync(ready), 15_000, 'the link proxies did not start (see logs/links.log)');
  return mech;
}

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(200);
  }
  throw new Error(message);
}

async function api<T>(url: string, method: string, route: string, token?: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}/api/v1${route}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${route} answered ${res.status}: ${text.slice(0, 200)}`);
  return JSON.parse(text) as T;
}

async function startControl(plan: LabPlan, state: LabState, root: string): Promise<string> {
  const password = randomBytes(12).toString('hex');
  const c = plan.spec.control;
  spawnDetached(state, root, 'control', [process.execPath, CLI, 'control', '--host', plan.bridgeAddress, '--port', String(c.port),
    '--mqtt-port', String(c.mqtt_port), '--advertise', plan.bridgeAddress, '--data-dir', path.join(labDir(root, plan.spec.prefix), 'control'),
    '--admin-password', password, '--no-gateway'], { TERN_LOG_LEVEL: 'warn' });
  await waitUntil(async () => (await fetch(`${plan.controlUrl}/healthz`).catch(() => undefined))?.ok === true, 30_000,
    `the lab's control plane did not answer on ${plan.controlUrl} (see logs/control.log)`);
  const { token } = await api<{ token: string }>(plan.controlUrl, 'POST', '/auth/login', undefined, { username: 'admin', password });
  state.control = { url: plan.controlUrl, token, admin_password: password };
  writeState(root, state);
  const join = await api<{ token: string }>(plan.controlUrl, 'POST', '/join-tokens', token, { ttl_s: 3600, description: `lab ${plan.spec.prefix}` });
  return join.token;
}

function agentArgs(plan: LabPlan, h: LabPlan['hosts'][number], joinToken: string, root: string): string[] {
  const p = plan.spec.ports;
  const labels = Object.entries({ ...h.labels, 'lab-host': h.name }).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
  return [process.execPath, CLI, 'agent', '--control', plan.controlUrl, '--token', joinToken,
    '--data-dir', path.join(labDir(root, plan.spec.prefix), 'hosts', h.name), '--address', h.address,
    ...(h.site ? ['--site', h.site] : []), ...labels,
    // Replicas share the host's limits, as containers without limits share a board: the host is the unit being emulated.
    '--no-replica-limits',
    '--replica-ports', `${p.replicas[0]}-${p.replicas[1]}`, '--gateway-port', String(p.gateway), '--gateway-grpc-port', String(p.gateway_grpc)];
}

/** Starts each agent inside its host's cgroup (the shell joins the groups, then execs into the namespace). */
async function startAgents(plan: LabPlan, state: LabState, root: string, joinToken: string, timeoutMs: number): Promise<void> {
  const agents = plan.hosts.filter((h) => h.agent);
  for (const h of agents) {
    const groups = state.cgroups.find((g) => g.host === h.name)!.dirs.join(' ');
    const [node, ...rest] = agentArgs(plan, h, joinToken, root);
    const [cmd, args] = inNamespace(h.netns, node, rest);
    const join = 'for g in $TERN_LAB_CGROUPS; do echo $$ > "$g/cgroup.procs" || exit 1; done; exec "$@"';
    spawnDetached(state, root, 'agent', ['sh', '-c', join, 'sh', cmd, ...args], { TERN_LAB_CGROUPS: groups, TERN_LOG_LEVEL: 'warn' }, h.name);
  }
  const token = state.control!.token;
  await waitUntil(async () => {
    const { nodes } = await api<{ nodes: { state: string; labels: Record<string, string> }[] }>(plan.controlUrl, 'GET', '/nodes', token);
    return nodes.filter((n) => n.state === 'ready' && n.labels['lab-host']).length >= agents.length;
  }, timeoutMs, `not every agent joined within ${timeoutMs / 1000} s (see logs/agent-*.log)`);
}

/** The last lines of each process log: `lab down` removes the logs, so a failed `up` shows them. */
function logTails(dir: string): string {
  const logs = path.join(dir, 'logs');
  if (!existsSync(logs)) return '';
  return readdirSync(logs).map((f) => {
    const lines = readFileSync(path.join(logs, f), 'utf8').trim().split('\n').slice(-3).filter(Boolean);
    return lines.length ? `--- ${f}\n${lines.join('\n')}` : '';
  }).filter(Boolean).join('\n');
}

export async function labUp(spec: LabSpec, opts: LabUpOptions): Promise<LabState> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const why = labUnavailable();
  if (why) throw new Error(`cannot build a lab here: ${why}`);
  if (readState(opts.root, spec.prefix)) throw new Error(`lab '${spec.prefix}' is already up (state in ${labDir(opts.root, spec.prefix)}): run \`tern lab down\` first`);
  const plan = planLab(spec);
  checkFree(plan);
  const state: LabState = {
    prefix: spec.prefix, spec_file: opts.specFile, created_at: new Date().toISOString(), bridge_address: plan.bridgeAddress,
    namespaces: [], cgroups: [], cgroup_parents: [], processes: [], links: spec.links, link_calibration: [],
    hosts: plan.hosts.map((h) => ({ name: h.name, address: h.address, netns: h.netns, site: h.site, agent: h.agent, cpu: h.cpu, memory_mb: h.memory_mb })),
    gateway_port: spec.ports.gateway, gateway_grpc_port: spec.ports.gateway_grpc, replica_ports: spec.ports.replicas,
  };
  writeState(opts.root, state);
  try {
    buildNetwork(plan, state, opts.root);
    buildCgroups(plan, state, opts.root);
    log(`lab ${spec.prefix}: ${plan.hosts.length} hosts on ${plan.bridge} (${spec.subnet}), cgroup ${state.cgroups[0]?.kind ?? '-'} limits`);
    const mech = await startLinks(plan, state, opts.root);
    log(`lab ${spec.prefix}: ${spec.links.length} links, delay by ${state.shaping!.delay}, bandwidth by ${state.shaping!.bandwidth}`);
    const joinToken = await startControl(plan, state, opts.root);
    log(`lab ${spec.prefix}: control plane on ${plan.controlUrl}`);
    await startAgents(plan, state, opts.root, joinToken, opts.joinTimeoutMs ?? 90_000);
    log(`lab ${spec.prefix}: ${plan.hosts.filter((h) => h.agent).length} agents joined`);
    // Last, with every process of the lab running: the path is measured as the experiments will find it.
    await calibrateLinks(plan, state, opts.root, mech);
    for (const c of state.link_calibration) log(`lab ${spec.prefix}: ${describeCalibration(c, state.shaping!.delay)}`);
    return state;
  } catch (err) {
    const tail = logTails(labDir(opts.root, spec.prefix));
    await labDown(opts.root, state.prefix).catch(() => undefined);
    throw new Error(`${(err as Error).message}${tail ? `\n${tail}` : ''}`);
  }
}
