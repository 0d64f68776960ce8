import { describe, expect, it } from 'vitest';
import { ContainerDeploymentSpecSchema, DeploymentSpecSchema, type DeploymentSpec } from '../../protocol/fleet.js';
import { pickVictims, schedule, type NodeView } from './scheduler.js';

function node(id: string, extra: Partial<NodeView> & { zone?: string; site?: string; cpus?: number; memMb?: number; score?: number } = {}): NodeView {
  return {
    id,
    facts: {
      hostname: id, arch: 'x64', os: 'linux', cpus: extra.cpus ?? 4, cpu_model: '', memory_bytes: (extra.memMb ?? 4096) * 2 ** 20,
      cpu_score: extra.score ?? 1000, accelerators: [], labels: {}, address: '10.0.0.1', agent_version: 't', zone: extra.zone, site: extra.site,
    },
    labels: extra.labels ?? {}, cordoned: extra.cordoned ?? false, state: extra.state ?? 'ready',
    allocated: extra.allocated ?? { cpu: 0, memory_mb: 0 }, replicas: extra.replicas ?? new Map(), cpu_percent: extra.cpu_percent ?? 0,
    ...(extra.hostPorts ? { hostPorts: extra.hostPorts } : {}),
  };
}

const spec = (o: Partial<DeploymentSpec> = {}): DeploymentSpec => DeploymentSpecSchema.parse({ name: 'd', model: 'm', replicas: 3, ...o });

describe('scheduler', () => {
  it('spreads replicas across nodes', () => {
    const r = schedule('d', spec(), 3, [node('a'), node('b'), node('c')]);
    expect(r.placements.map((p) => p.node).sort()).toEqual(['a', 'b', 'c']);
    expect(r.placements[0].explanation).toMatch(/chosen \(score/);
  });

  it('filters cordoned, down, unmatched and full nodes and says why', () => {
    const nodes = [
      node('cord', { cordoned: true }), node('down', { state: 'down' }),
      node('arm', { labels: { gpu: 'no' } }), node('full', { allocated: { cpu: 4, memory_mb: 0 } }),
    ];
    const r = schedule('d', spec({ selector: { gpu: 'yes' } }), 1, nodes);
    expect(r.unplaced).toBe(1);
    expect(r.refusals.join('; ')).toMatch(/cord is cordoned.*down is down.*arm does not match gpu=yes \(has no\).*full does not match/);
    const r2 = schedule('d', spec(), 1, [node('full', { allocated: { cpu: 3.8, memory_mb: 0 } })]);
    expect(r2.refusals[0]).toMatch(/lacks cpu \(0.5 needed, 0.20 free\)/);
  });

  it('places container replicas only on nodes that report a container runtime', () => {
    const plain = node('plain');
    plain.facts.runtimes = ['process'];
    const withEngine = node('engine');
    withEngine.facts.runtimes = ['process', 'container'];
    expect(schedule('d', spec({ runtime: 'container' }), 2, [plain, withEngine]).placements.map((p) => p.node)).toEqual(['engine', 'engine']);
    const none = schedule('d', spec({ runtime: 'container' }), 1, [plain]);
    expect(none.unplaced).toBe(1);
    expect(none.refusals.join('; ')).toMatch(/plain has no container runtime \(runs process\)/);
    // Agents that do not report runtimes are not filtered.
    expect(schedule('d', spec({ runtime: 'container' }), 1, [node('old')]).placements).toHaveLength(1);
  });

  it('places container workloads only where the agent runs them, and never two on one node port', () => {
    const withWorkloads = (id: string, ports?: Map<number, string>) => {
      const n = node(id, { hostPorts: ports });
      n.facts.runtimes = ['process', 'container'];
      n.facts.workloads = ['container'];
      return n;
    };
    const before = node('before');
    before.facts.runtimes = ['process', 'container']; // an agent from before container workloads
    const app = ContainerDeploymentSpecSchema.parse({ kind: 'container', name: 'web', image: 'web:1', replicas: 3, ports: [{ container: 26001 }] });
    // Spread is not enough on its own: replicas publishing one port take one node each.
    const r = schedule('web', { ...app, spread: 'none' }, 3, [before, withWorkloads('a'), withWorkloads('b', new Map([[26001, 'other']])), withWorkloads('c')]);
    expect(r.placements.map((p) => p.node)).toEqual(['a', 'c']);
    expect(r.unplaced).toBe(1);
    expect(r.refusals).toEqual([
      'before runs no container workloads (its agent t predates them)',
      'a already has node port 26001 published by deployment web',
      'b already has node port 26001 published by deployment other',
      'c already has node port 26001 published by deployment web',
    ]);
    // Without published ports, replicas share a node.
    const noPorts = schedule('w', { ...app, ports: [], spread: 'none' }, 2, [withWorkloads('a')]);
    expect(noPorts.placements.map((p) => p.node)).toEqual(['a', 'a']);
    expect(schedule('w', app, 1, [node('plain')]).refusals).toEqual(['plain runs no container workloads (no container runtime)']);
  });

  it('matches selectors on facts such as arch', () => {
    const arm = node('pi');
    arm.facts.arch = 'arm64';
    const r = schedule('d', spec({ selector: { arch: 'arm64' } }), 2, [node('x86'), arm]);
    expect(r.placements.map((p) => p.node)).toEqual(['pi', 'pi']);
  });

  it('spreads across zones when asked', () => {
    const nodes = [node('a1', { zone: 'a' }), node('a2', { zone: 'a' }), node('b1', { zone: 'b' })];
    const r = schedule('d', spec({ spread: 'zone' }), 2, nodes);
    expect(r.placements.map((p) => p.node).sort()).toEqual(['a1', 'b1']);
  });

  it('prefers the preferred site, then the least loaded node', () => {
    const r = schedule('d', spec({ prefer_site: 'factory' }), 1, [node('cloud', { site: 'cloud' }), node('edge', { site: 'factory', cpu_percent: 80 })]);
    expect(r.placements[0].node).toBe('edge');
    const r2 = schedule('d', spec(), 1, [node('busy', { cpu_percent: 90 }), node('idle', { cpu_percent: 5 })]);
    expect(r2.placements[0].node).toBe('idle');
  });

  it('removes replicas from the most crowded node first', () => {
    const v = pickVictims([{ id: 'r1', node: 'a' }, { id: 'r2', node: 'a' }, { id: 'r3', node: 'b' }], 1);
    expect(v[0].node).toBe('a');
  });

  it('schedules 1000 replicas on 1000 nodes quickly', () => {
    const nodes = Array.from({ length: 1000 }, (_, i) => node(`n${i}`));
    const started = performance.now();
    const r = schedule('d', spec(), 1000, nodes);
    const ms = performance.now() - started;
    expect(r.placements).toHaveLength(1000);
    expect(new Set(r.placements.map((p) => p.node)).size).toBe(1000);
    console.log(`scheduled 1000 replicas on 1000 nodes in ${ms.toFixed(0)} ms`);
  });
});
