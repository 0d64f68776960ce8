/**
 * Where replicas run: filter the nodes that can take one (ready, not cordoned,
 * selector labels, free cpu and memory), then score the rest (spread across
 * nodes or zones, least loaded, preferred site, faster CPU) and take the best.
 * Pure functions over a snapshot, so the reconciler can explain and tests can
 * check every decision; nothing here touches the store or the network.
 */
import { hostPorts, type DeploymentSpec, type NodeFacts } from '../../protocol/fleet.js';

export interface NodeView {
  id: string;
  facts: NodeFacts;
  labels: Record<string, string>;
  cordoned: boolean;
  state: 'ready' | 'down' | 'draining';
  /** Resources already promised to replicas on this node. */
  allocated: { cpu: number; memory_mb: number };
  /** Replicas of each deployment already on the node. */
  replicas: Map<string, number>;
  /** Latest measured CPU use, 0-100 (from heartbeats). */
  cpu_percent: number;
  /** Node ports published by container workloads placed here, and the deployment holding each (absent: none). */
  hostPorts?: Map<number, string>;
}

export interface Placement {
  node: string;
  score: number;
  explanation: string;
}

export interface ScheduleResult {
  placements: Placement[];
  /** Replicas that found no node, with why each node was refused. */
  unplaced: number;
  refusals: string[];
}

/** Labels a selector may use: the node's own labels plus facts (arch, os, site, zone, hostname). */
export function nodeLabels(n: NodeView): Record<string, string> {
  const implicit: Record<string, string> = { arch: n.facts.arch, os: n.facts.os, hostname: n.facts.hostname };
  if (n.facts.site) implicit.site = n.facts.site;
  if (n.facts.zone) implicit.zone = n.facts.zone;
  return { ...implicit, ...n.facts.labels, ...n.labels };
}

/** Why a node cannot take one more replica, or undefined when it can. */
export function refusal(n: NodeView, spec: DeploymentSpec): string | undefined {
  if (n.state !== 'ready') return `${n.id} is ${n.state}`;
  if (n.cordoned) return `${n.id} is cordoned`;
  if (n.facts.runtimes && !n.facts.runtimes.includes(spec.runtime)) return `${n.id} has no ${spec.runtime} runtime (runs ${n.facts.runtimes.join(', ')})`;
  if (spec.kind === 'container') {
    const why = workloadRefusal(n, hostPorts(spec));
    if (why) return why;
  }
  const selector = Object.entries(spec.selector);
  if (selector.length > 0) {
    const labels = nodeLabels(n);
    for (const [k, v] of selector) {
      if (labels[k] !== v) return `${n.id} does not match ${k}=${v} (has ${labels[k] ?? 'none'})`;
    }
  }
  const freeCpu = n.facts.cpus - n.allocated.cpu;
  if (freeCpu + 1e-9 < spec.resources.cpu) return `${n.id} lacks cpu (${spec.resources.cpu} needed, ${freeCpu.toFixed(2)} free)`;
  const freeMem = n.facts.memory_bytes / 2 ** 20 - n.allocated.memory_mb;
  if (freeMem < spec.resources.memory_mb) return `${n.id} lacks memory (${spec.resources.memory_mb} MB needed, ${Math.max(0, Math.floor(freeMem))} MB free)`;
  return undefined;
}

/** A container workload needs an agent that runs them and its node ports free (two replicas cannot publish one port on a node). */
function workloadRefusal(n: NodeView, ports: number[]): string | undefined {
  if (!n.facts.runtimes?.includes('container') || !n.facts.workloads?.includes('container')) {
    return `${n.id} runs no container workloads (${n.facts.runtimes?.includes('container') ? `its agent ${n.facts.agent_version} predates them` : 'no container runtime'})`;
  }
  for (const p of ports) {
    const holder = n.hostPorts?.get(p);
    if (holder) return `${n.id} already has node port ${p} published by deployment ${holder}`;
  }
  return undefined;
}

function zoneOf(n: NodeView): string {
  return n.facts.zone ?? n.facts.site ?? n.id;
}

/** Higher is better. Spread dominates, then locality, then load and CPU speed. */
interface ScoreParts { mine: number; spread: number; locality: number; freeCpuFraction: number; load: number; speed: number; total: number }

function scoreParts(n: NodeView, deployment: string, spec: DeploymentSpec, zoneReplicas: Map<string, number>, maxCpuScore: number): ScoreParts {
  const mine = n.replicas.get(deployment) ?? 0;
  let spread = 0;
  if (spec.spread === 'node') spread = -10 * mine;
  if (spec.spread === 'zone') spread = -10 * (zoneReplicas.get(zoneOf(n)) ?? 0) - 2 * mine;
  const locality = spec.prefer_site && n.facts.site === spec.prefer_site ? 20 : 0;
  const freeCpuFraction = Math.max(0, (n.facts.cpus - n.allocated.cpu) / n.facts.cpus);
  const load = 3 * freeCpuFraction + 2 * (1 - Math.min(100, n.cpu_percent) / 100);
  const speed = maxCpuScore > 0 ? 2 * (n.facts.cpu_score / maxCpuScore) : 0;
  return { mine, spread, locality, freeCpuFraction, load, speed, total: spread + locality + load + speed };
}

/** Built only for the winner: formatting is the costly part at a thousand nodes. */
function explain(n: NodeView, p: ScoreParts, spec: DeploymentSpec): string {
  return `${n.id} chosen (score ${p.total.toFixed(1)}: ${p.mine} replica(s) here, ${(p.freeCpuFraction * 100).toFixed(0)}% cpu unallocated, `
    + `load ${n.cpu_percent.toFixed(0)}%${p.locality ? `, preferred site ${spec.prefer_site}` : ''}, cpu score ${n.facts.cpu_score.toFixed(0)})`;
}

/** Places `count` replicas one at a time, updating the snapshot after each so spread holds. */
export function schedule(deployment: string, spec: DeploymentSpec, count: number, snapshot: NodeView[]): ScheduleResult {
  const nodes = snapshot.map((n) => ({ ...n, allocated: { ...n.allocated }, replicas: new Map(n.replicas), hostPorts: new Map(n.hostPorts) }));
  const ports = spec.kind === 'container' ? hostPorts(spec) : [];
  const maxCpuScore = Math.max(0, ...nodes.map((n) => n.facts.cpu_score));
  const zoneReplicas = new Map<string, number>();
  for (const n of nodes) zoneReplicas.set(zoneOf(n), (zoneReplicas.get(zoneOf(n)) ?? 0) + (n.replicas.get(deployment) ?? 0));
  const placements: Placement[] = [];
  let refusals: string[] = [];
  for (let i = 0; i < count; i++) {
    refusals = [];
    let best: { node: NodeView; parts: ScoreParts } | undefined;
    for (const n of nodes) {
      const no = refusal(n, spec);
      if (no) {
        refusals.push(no);
        continue;
      }
      const parts = scoreParts(n, deployment, spec, zoneReplicas, maxCpuScore);
      if (!best || parts.total > best.parts.total || (parts.total === best.parts.total && n.id < best.node.id)) best = { node: n, parts };
    }
    if (!best) return { placements, unplaced: count - i, refusals };
    placements.push({ node: best.node.id, score: best.parts.total, explanation: explain(best.node, best.parts, spec) });
    best.node.allocated.cpu += spec.resources.cpu;
    best.node.allocated.memory_mb += spec.resources.memory_mb;
    best.node.replicas.set(deployment, (best.node.replicas.get(deployment) ?? 0) + 1);
    for (const p of ports) best.node.hostPorts?.set(p, deployment);
    const zone = zoneOf(best.node);
    zoneReplicas.set(zone, (zoneReplicas.get(zone) ?? 0) + 1);
  }
  return { placements, unplaced: 0, refusals };
}

/** Which replicas to remove when scaling down: those on the most crowded nodes first. */
export function pickVictims<R extends { id: string; node: string }>(replicas: R[], count: number): R[] {
  const perNode = new Map<string, number>();
  for (const r of replicas) perNode.set(r.node, (perNode.get(r.node) ?? 0) + 1);
  const victims: R[] = [];
  const left = [...replicas];
  for (let i = 0; i < count && left.length > 0; i++) {
    left.sort((a, b) => (perNode.get(b.node)! - perNode.get(a.node)!) || b.id.localeCompare(a.id));
    const v = left.shift()!;
    perNode.set(v.node, perNode.get(v.node)! - 1);
    victims.push(v);
  }
  return victims;
}
