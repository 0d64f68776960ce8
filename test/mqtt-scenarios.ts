/**
 * Fleet traffic scenarios run against any broker (the embedded aedes broker and
 * Debian's Mosquitto): FleetHub on one side, agent links on the other.
 */
import { afterEach, expect, it } from 'vitest';
import { FleetHub, type NodeDownInfo } from '../src/control/mqtt/fleet-hub.js';
import { agentLinkClient, connectAgentLink, type AgentLink } from '../src/control/mqtt/agent-link.js';
import type { DesiredState, Heartbeat } from '../src/protocol/fleet.js';
import { CONTROL_PASSWORD, CONTROL_USER, desired, heartbeat, log, nextEvent, nodeToken, sleep, until } from './mqtt-helpers.js';

export interface BrokerUnderTest { url: string }

export function connected(l: AgentLink): Promise<void> {
  return new Promise((resolve) => {
    if (l.connected) return resolve();
    const off = l.onConnectionChange((c) => { if (c) { off(); resolve(); } });
  });
}

let seq = 0;
const uniqueNode = (label: string): string => `${label}-${process.pid}-${++seq}`;

export function defineFleetScenarios(label: string, broker: () => BrokerUnderTest): void {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function hub(heartbeatTimeoutMs = 3000): Promise<FleetHub> {
    const h = await FleetHub.connect({ url: broker().url, username: CONTROL_USER, password: CONTROL_PASSWORD, heartbeatTimeoutMs, log });
    cleanups.push(() => h.close());
    return h;
  }

  function link(node: string): AgentLink {
    const l = connectAgentLink({ url: broker().url, node, token: nodeToken(node), log });
    cleanups.push(() => l.close());
    return l;
  }

  /** Heartbeats every `everyMs` until stopped; returns a stopper and the time of the last one sent. */
  function beat(l: AgentLink, everyMs = 200): { stop(): number } {
    let last = 0;
    let n = 0;
    const send = (): void => { l.publishHeartbeat(heartbeat(n++)); last = Date.now(); };
    send();
    const timer = setInterval(send, everyMs);
    cleanups.push(() => clearInterval(timer));
    return { stop: () => { clearInterval(timer); return last; } };
  }

  it(`${label}: heartbeats reach FleetHub as typed events, after one nodeUp`, async () => {
    const h = await hub();
    const node = uniqueNode('hb');
    const events: string[] = [];
    h.on('nodeUp', (n) => { if (n === node) events.push('up'); });
    const got: Heartbeat[] = [];
    h.on('heartbeat', (n, hb) => { if (n === node) { events.push('hb'); got.push(hb); } });
    const l = link(node);
    await connected(l);
    const b = beat(l, 100);
    expect(await until(() => got.length >= 3)).toBe(true);
    b.stop();
    expect(events[0]).toBe('up');
    expect(events.filter((e) => e === 'up')).toHaveLength(1);
    expect(got[0].replicas[0]).toMatchObject({ id: 'iris-1', state: 'ready' });
    expect(h.knownNodes().find((k) => k.node === node)?.state).toBe('up');
  });

  it(`${label}: an agent whose socket dies is down at once by its last will, and up again when it reconnects`, async () => {
    const h = await hub();
    const node = uniqueNode('will');
    const l = link(node);
    beat(l);
    await nextEvent<[string]>(h, 'nodeUp', (n) => n === node);
    const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n === node, 5000);
    const t0 = Date.now();
    agentLinkClient(l).stream.destroy();
    const [, info] = await down;
    const detectMs = Date.now() - t0;
    expect(info.reason).toBe('last-will');
    expect(info.lastSeenMs).toBeGreaterThan(t0 - 1000);
    expect(detectMs).toBeLessThan(1000);
    const t1 = Date.now();
    await nextEvent<[string]>(h, 'nodeUp', (n) => n === node, 10_000);
    console.log(`[${label}] last-will failure detection: ${detectMs} ms after the socket died; back up ${Date.now() - t1} ms later (reconnect backoff)`);
  });

  it(`${label}: an agent that stops heartbeating without disconnecting is down by heartbeat timeout (3 s), up when it beats again`, async () => {
    const h = await hub(3000);
    const node = uniqueNode('silent');
    const l = link(node);
    const b = beat(l);
    await nextEvent<[string]>(h, 'nodeUp', (n) => n === node);
    await sleep(600);
    const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n === node, 8000);
    const last = b.stop();
    const [, info] = await down;
    const silentMs = Date.now() - last;
    expect(info.reason).toBe('heartbeat-timeout');
    expect(l.connected).toBe(true);
    expect(silentMs).toBeGreaterThanOrEqual(2950);
    expect(silentMs).toBeLessThan(3800);
    console.log(`[${label}] heartbeat-timeout detection: ${silentMs} ms after the last heartbeat (timeout 3000 ms)`);
    const up = nextEvent<[string]>(h, 'nodeUp', (n) => n === node);
    beat(l);
    await up;
  });

  it(`${label}: desired state is retained for an agent that connects later; older revisions are ignored`, async () => {
    const h = await hub();
    const node = uniqueNode('desired');
    await h.publishDesired(desired(node, 2, ['a', 'b']));
    const l = link(node);
    const got: DesiredState[] = [];
    l.onDesired((d) => got.push(d));
    expect(await until(() => got.length === 1)).toBe(true);
    expect(got[0]).toMatchObject({ node, revision: 2 });
    expect(got[0].replicas.map((r) => r.id)).toEqual(['a', 'b']);

    await h.publishDesired(desired(node, 1, ['stale']));
    await h.publishDesired(desired(node, 3, ['c']));
    expect(await until(() => got.length === 2)).toBe(true);
    expect(got[1].revision).toBe(3);

    // After a reconnect the broker sends the retained revision 3 again: not delivered twice.
    agentLinkClient(l).stream.destroy();
    await until(() => !l.connected);
    await connected(l);
    await sleep(300);
    expect(got.map((d) => d.revision)).toEqual([2, 3]);

    // A callback registered late gets the newest state.
    const late: number[] = [];
    l.onDesired((d) => late.push(d.revision));
    expect(await until(() => late.length === 1)).toBe(true);
    expect(late).toEqual([3]);
  });

  it(`${label}: commands arrive once per id, also when sent while the agent is away`, async () => {
    const h = await hub();
    const node = uniqueNode('cmd');
    const l = link(node);
    const ids: string[] = [];
    l.onCommand((c) => ids.push(c.id));
    await connected(l);
    await sleep(100); // let the subscriptions settle
    await h.sendCommand(node, { id: 'c1', kind: 'restart-replica', replica_id: 'a' });
    await h.sendCommand(node, { id: 'c1', kind: 'restart-replica', replica_id: 'a' });
    await h.sendCommand(node, { id: 'c2', kind: 'restart-replica', replica_id: 'b' });
    expect(await until(() => ids.length >= 2)).toBe(true);
    agentLinkClient(l).stream.destroy();
    await until(() => !l.connected);
    await h.sendCommand(node, { id: 'c3', kind: 'restart-replica', replica_id: 'c' });
    expect(await until(() => ids.length >= 3)).toBe(true);
    await sleep(200);
    expect(ids).toEqual(['c1', 'c2', 'c3']);
  });
}
