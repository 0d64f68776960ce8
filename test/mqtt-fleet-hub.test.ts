/** FleetHub and agent links over the embedded aedes broker: failure detection, desired state, bad input, throughput. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { startEmbeddedBroker, type EmbeddedBroker } from '../src/control/mqtt/embedded-broker.js';
import { FleetHub, type NodeDownInfo } from '../src/control/mqtt/fleet-hub.js';
import { connectAgentLink } from '../src/control/mqtt/agent-link.js';
import { decodeJson } from '../src/control/mqtt/messages.js';
import { TernError } from '../src/protocol/errors.js';
import { HeartbeatSchema, topics } from '../src/protocol/fleet.js';
import { CONTROL_PASSWORD, CONTROL_USER, desired, heartbeat, log, nextEvent, nodeToken, rawClient, sleep, testAuth, until } from './mqtt-helpers.js';
import { defineFleetScenarios } from './mqtt-scenarios.js';

let broker: EmbeddedBroker;
const raw: MqttClient[] = [];

beforeAll(async () => {
  broker = await startEmbeddedBroker({ port: 0, auth: testAuth, log });
});
afterAll(async () => {
  for (const c of raw) c.end(true);
  await broker.close();
});

async function controlClient(): Promise<MqttClient> {
  const c = await rawClient(broker.url, { username: CONTROL_USER, password: CONTROL_PASSWORD, clientId: `raw-${Math.random().toString(16).slice(2)}` });
  raw.push(c);
  return c;
}

async function hub(options: Partial<Parameters<typeof FleetHub.connect>[0]> = {}): Promise<FleetHub> {
  return FleetHub.connect({ url: broker.url, username: CONTROL_USER, password: CONTROL_PASSWORD, log, ...options });
}

describe('FleetHub over the embedded broker', () => {
  defineFleetScenarios('aedes', () => broker);

  it('refuses to start with bad credentials or an unreachable broker, with a message naming the broker', async () => {
    const bad = hub({ password: 'nope' });
    await expect(bad).rejects.toBeInstanceOf(TernError);
    await expect(bad).rejects.toThrow(new RegExp(`MQTT broker at ${broker.url} refused the control plane: .*Bad username or password`));
    await expect(FleetHub.connect({ url: 'mqtt://127.0.0.1:1', log, connectTimeoutMs: 1500 })).rejects.toThrow(/cannot reach the MQTT broker at mqtt:\/\/127.0.0.1:1/);
  });

  it('drops malformed heartbeats, status and presence without crashing and keeps serving', async () => {
    const h = await hub();
    try {
      const heartbeats: string[] = [];
      const statuses: string[] = [];
      h.on('heartbeat', (n) => heartbeats.push(n));
      h.on('status', (n) => statuses.push(n));
      const ctl = await controlClient();
      await ctl.publishAsync(topics.heartbeat('bad1'), 'not json {', { qos: 1 });
      await ctl.publishAsync(topics.heartbeat('bad1'), JSON.stringify({ seq: -1, ts: 'yesterday' }), { qos: 1 });
      await ctl.publishAsync(topics.heartbeat('bad1'), Buffer.from([0xff, 0xfe, 0x00]), { qos: 1 });
      await ctl.publishAsync(topics.status('bad1'), '{"replica_id": 7}', { qos: 1 });
      await ctl.publishAsync(topics.presence('bad1'), 'maybe', { qos: 1 });
      await ctl.publishAsync('tern/nodes/bad1/unknown-kind', '{}', { qos: 1 });
      await ctl.publishAsync('tern/nodes/too/many/levels', '{}', { qos: 1 });
      expect(await until(() => h.stats().dropped === 5)).toBe(true);
      expect(heartbeats).toEqual([]);
      expect(statuses).toEqual([]);
      expect(h.knownNodes().find((k) => k.node === 'bad1')).toBeUndefined();

      await ctl.publishAsync(topics.heartbeat('bad1'), JSON.stringify(heartbeat(1)), { qos: 1 });
      await ctl.publishAsync(topics.status('bad1'), JSON.stringify({ replica_id: 'r1', generation: 1, state: 'ready', port: 9000, ts: Date.now() }), { qos: 1 });
      expect(await until(() => heartbeats.length === 1 && statuses.length === 1)).toBe(true);
      expect(h.stats().connected).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('survives a listener that throws', async () => {
    const h = await hub();
    try {
      h.on('heartbeat', () => { throw new Error('reconciler bug'); });
      const seen: number[] = [];
      h.on('heartbeat', (_n, hb) => seen.push(hb.seq));
      const ctl = await controlClient();
      ctl.publish(topics.heartbeat('thrower'), JSON.stringify(heartbeat(1)));
      ctl.publish(topics.heartbeat('thrower'), JSON.stringify(heartbeat(2)));
      expect(await until(() => seen.length === 2)).toBe(true);
      expect(seen).toEqual([1, 2]);
      expect(h.connected).toBe(true);
    } finally {
      await h.close();
    }
  });

  it('refuses an invalid desired state or command with a 400-kind error naming the problem', async () => {
    const h = await hub();
    try {
      await expect(h.publishDesired({ ...desired('n1', 1), revision: -1 })).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/revision/) });
      await expect(h.publishDesired(desired('a/b', 1))).rejects.toMatchObject({ code: 'BAD_REQUEST', message: expect.stringMatching(/invalid node id "a\/b"/) });
      await expect(h.sendCommand('n1', { id: '', kind: 'drain' })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
      await expect(h.clearDesired('+')).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    } finally {
      await h.close();
    }
  });

  it('declares an expected node that never speaks down by heartbeat timeout', async () => {
    const h = await hub({ heartbeatTimeoutMs: 1000 });
    try {
      const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n === 'ghost', 3000);
      h.expectNodes(['ghost']);
      expect((await down)[1]).toEqual({ reason: 'heartbeat-timeout', lastSeenMs: undefined });
      expect(h.knownNodes()).toContainEqual({ node: 'ghost', state: 'down', lastSeenMs: undefined });
      h.forgetNode('ghost');
      expect(h.knownNodes().find((k) => k.node === 'ghost')).toBeUndefined();
    } finally {
      await h.close();
    }
  });

  it('clears a retained desired state', async () => {
    const h = await hub();
    try {
      await h.publishDesired(desired('cleared', 5));
      await h.clearDesired('cleared');
      const ctl = await controlClient();
      const got: string[] = [];
      ctl.on('message', (t, p) => { if (t === topics.desired('cleared')) got.push(p.toString()); });
      await ctl.subscribeAsync(topics.desired('cleared'), { qos: 1 });
      await sleep(200);
      expect(got).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it('reconnects after losing the broker, keeps its subscriptions, and declares nobody down for its own outage', async () => {
    // Hub outage (2-4 s of backoff) longer than the heartbeat timeout (1 s).
    const h = await hub({ heartbeatTimeoutMs: 1000, backoff: { minMs: 4000, maxMs: 4000 } });
    const l = connectAgentLink({ url: broker.url, node: 'steady', token: nodeToken('steady'), log });
    const timer = setInterval(() => l.publishHeartbeat(heartbeat(0)), 200);
    try {
      await nextEvent<[string]>(h, 'nodeUp', (n) => n === 'steady');
      const downs: string[] = [];
      h.on('nodeDown', (n) => downs.push(n));
      const links: boolean[] = [];
      h.on('connection', (c) => links.push(c));
      (h as unknown as { client: MqttClient }).client.stream.destroy();
      expect(await until(() => links.length === 2, 8000)).toBe(true);
      expect(links).toEqual([false, true]);
      const before = h.stats().received;
      expect(await until(() => h.stats().received > before + 3, 3000)).toBe(true);
      await sleep(1500);
      expect(downs).toEqual([]);
    } finally {
      clearInterval(timer);
      await l.close();
      await h.close();
    }
  });

  it('declares nobody down for a stall of its own process longer than the heartbeat timeout', async () => {
    const h = await hub({ heartbeatTimeoutMs: 1000 });
    const nodes = ['stall-a', 'stall-b', 'stall-c'];
    const links = nodes.map((node) => connectAgentLink({ url: broker.url, node, token: nodeToken(node), log }));
    const timer = setInterval(() => { for (const l of links) l.publishHeartbeat(heartbeat(0)); }, 200);
    try {
      await until(() => nodes.every((n) => h.knownNodes().some((k) => k.node === n && k.state === 'up')));
      const downs: string[] = [];
      h.on('nodeDown', (n) => downs.push(n));
      for (let round = 0; round < 3; round++) {
        const end = Date.now() + 2500;
        while (Date.now() < end) { /* the event loop (broker, hub, agents) is blocked */ }
        await sleep(1500);
      }
      expect(downs).toEqual([]);
      // and a node that really goes silent is still caught
      const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n === 'stall-a', 3000);
      clearInterval(timer);
      const keep = setInterval(() => { links[1].publishHeartbeat(heartbeat(0)); links[2].publishHeartbeat(heartbeat(0)); }, 200);
      try {
        expect((await down)[1].reason).toBe('heartbeat-timeout');
        expect(downs).toEqual(['stall-a']);
      } finally {
        clearInterval(keep);
      }
    } finally {
      clearInterval(timer);
      await Promise.all(links.map((l) => l.close()));
      await h.close();
    }
  });

  it('a closing agent link says "offline" itself: the node is down at once', async () => {
    const h = await hub();
    try {
      const l = connectAgentLink({ url: broker.url, node: 'leaving', token: nodeToken('leaving'), log });
      await nextEvent<[string]>(h, 'nodeUp', (n) => n === 'leaving');
      const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n === 'leaving', 1000);
      await l.close();
      expect((await down)[1].reason).toBe('last-will');
    } finally {
      await h.close();
    }
  });

  it('an agent link with a bad token keeps retrying and reports why', async () => {
    const l = connectAgentLink({ url: broker.url, node: 'badtoken', token: 'wrong', log, backoff: { minMs: 100, maxMs: 200 } });
    try {
      expect(await until(() => l.lastError !== undefined, 3000)).toBe(true);
      expect(l.lastError).toMatch(/Bad username or password/);
      expect(l.connected).toBe(false);
    } finally {
      await l.close();
    }
  });

  it('measures: FleetHub processes heartbeats of 1000 nodes', async () => {
    const h = await hub();
    try {
      const N = 1000;
      const payloads = Array.from({ length: N }, (_, i) => ({ topic: topics.heartbeat(`sim-${i}`), payload: JSON.stringify(heartbeat(i)) }));

      // 1. The hub's own per-message work (topic, JSON.parse, zod, liveness), no network.
      const onMessage = (h as unknown as { onMessage(t: string, p: Buffer): void }).onMessage.bind(h);
      const buffers = payloads.map((p) => ({ topic: p.topic, buf: Buffer.from(p.payload) }));
      for (const b of buffers) onMessage(b.topic, b.buf); // warm-up
      const rounds = 20;
      let t = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) for (const b of buffers) onMessage(b.topic, b.buf);
      const hubUsPerMsg = Number(process.hrtime.bigint() - t) / 1000 / (rounds * N);
      t = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) for (const b of buffers) JSON.parse(b.buf.toString());
      const jsonUsPerMsg = Number(process.hrtime.bigint() - t) / 1000 / (rounds * N);
      t = process.hrtime.bigint();
      for (let r = 0; r < rounds; r++) for (const b of buffers) decodeJson(b.buf, HeartbeatSchema);
      const decodeUsPerMsg = Number(process.hrtime.bigint() - t) / 1000 / (rounds * N);

      // 2. End to end: 1000 heartbeats, one per node, over 4 publisher connections through aedes.
      const publishers = await Promise.all([0, 1, 2, 3].map(() => controlClient()));
      let count = 0;
      h.on('heartbeat', () => { count++; });
      const cpu0 = process.cpuUsage();
      const wall0 = performance.now();
      payloads.forEach((p, i) => publishers[i % 4].publish(p.topic, p.payload));
      expect(await until(() => count >= N, 10_000, 1)).toBe(true);
      const burstMs = performance.now() - wall0;
      const burstCpu = process.cpuUsage(cpu0);
      expect(h.knownNodes().filter((k) => k.state === 'up')).toHaveLength(N);

      // 3. Sustained: 1000 nodes at 1 Hz for 5 s (10 heartbeats every 10 ms); CPU of this whole process
      //    (aedes + 4 publishers + hub), an upper bound of the control plane's share.
      const seconds = 5;
      count = 0;
      const downs: string[] = [];
      h.on('nodeDown', (n) => downs.push(n));
      const cpu1 = process.cpuUsage();
      const wall1 = performance.now();
      let sent = 0;
      await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
          const due = Math.min(N * seconds, Math.floor(((performance.now() - wall1) / 1000) * N));
          for (; sent < due; sent++) publishers[sent % 4].publish(payloads[sent % N].topic, payloads[sent % N].payload);
          if (sent >= N * seconds) { clearInterval(tick); resolve(); }
        }, 10);
      });
      expect(await until(() => count >= N * seconds, 10_000, 5)).toBe(true);
      const sustainedWallMs = performance.now() - wall1;
      const sustainedCpu = process.cpuUsage(cpu1);
      const cpuPercent = ((sustainedCpu.user + sustainedCpu.system) / 1000 / sustainedWallMs) * 100;
      expect(downs).toEqual([]);

      console.log([
        `[aedes] FleetHub per-message work: ${hubUsPerMsg.toFixed(1)} us (JSON.parse ${jsonUsPerMsg.toFixed(1)} us, JSON.parse + zod ${decodeUsPerMsg.toFixed(1)} us)`,
        `        -> ${Math.round(1e6 / hubUsPerMsg)} heartbeats/s per core; 1000 nodes at 1 Hz = ${(hubUsPerMsg * 1000 / 1e4).toFixed(1)}% of a core`,
        `[aedes] burst: 1000 heartbeats from 1000 nodes (4 connections) processed in ${burstMs.toFixed(0)} ms wall, ` +
          `${((burstCpu.user + burstCpu.system) / 1000).toFixed(0)} ms CPU (whole process: publishers + broker + hub)`,
        `[aedes] sustained: 1000 nodes x 1 Hz for ${seconds} s: ${count} heartbeats in ${sustainedWallMs.toFixed(0)} ms, ` +
          `${cpuPercent.toFixed(1)}% of one core for the whole process (publishers + broker + hub)`,
      ].join('\n'));
      expect(hubUsPerMsg).toBeLessThan(200); // sanity only; figures are reported, not timed
    } finally {
      await h.close();
    }
  });

  it('measures: broker + FleetHub CPU for 1000 agent connections heartbeating at 1 Hz (agents in a child process)', async () => {
    const h = await hub();
    const N = 1000;
    let up = 0;
    h.on('nodeUp', () => { up++; });
    const downs: string[] = [];
    h.on('nodeDown', (n) => { if (n.startsWith('load-')) downs.push(n); }); // earlier tests left retained "offline"s
    let beats = 0;
    h.on('heartbeat', () => { beats++; });
    // Plain mqtt.js clients speaking the agent protocol (credentials, client id, last will, QoS 0 heartbeats).
    const script = `
      import { connect } from 'mqtt';
      const [url, n] = process.argv.slice(1); const hb = ${JSON.stringify(JSON.stringify(heartbeat(0)))};
      const clients = [];
      for (let i = 0; i < Number(n); i++) {
        const node = 'load-' + i;
        const c = connect(url, { clientId: 'tern-agent-' + node, username: node, password: 'token-of-' + node, protocolVersion: 4,
          clean: false, keepalive: 10, reconnectPeriod: 0, queueQoSZero: false,
          will: { topic: 'tern/nodes/' + node + '/presence', payload: 'offline', qos: 1, retain: true } });
        c.on('error', (e) => console.error(node, e.message));
        c.on('connect', () => { c.publish('tern/nodes/' + node + '/presence', 'online', { qos: 1, retain: true });
          setTimeout(() => setInterval(() => c.publish('tern/nodes/' + node + '/heartbeat', hb), 1000), Math.random() * 1000); });
        clients.push(c);
        if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
      }
      process.on('SIGTERM', () => process.exit(0));`;
    const { spawn } = await import('node:child_process');
    const agents = spawn(process.execPath, ['--input-type=module', '-e', script, broker.url, String(N)], { cwd: process.cwd(), stdio: ['ignore', 'inherit', 'inherit'] });
    try {
      const t0 = performance.now();
      expect(await until(() => up >= N, 30_000, 20)).toBe(true);
      const joinMs = performance.now() - t0;
      await sleep(1500);
      const seconds = 5;
      const beats0 = beats;
      const cpu0 = process.cpuUsage();
      const wall0 = performance.now();
      const rss0 = process.memoryUsage().rss;
      await sleep(seconds * 1000);
      const cpu = process.cpuUsage(cpu0);
      const wallMs = performance.now() - wall0;
      const rate = ((beats - beats0) / wallMs) * 1000;
      const cpuPercent = ((cpu.user + cpu.system) / 1000 / wallMs) * 100;
      expect(downs).toEqual([]);
      expect(rate).toBeGreaterThan(N * 0.9);
      console.log(`[aedes] 1000 agent connections (child process): all up in ${joinMs.toFixed(0)} ms; ` +
        `${rate.toFixed(0)} heartbeats/s for ${seconds} s cost the broker + FleetHub process ${cpuPercent.toFixed(1)}% of one core ` +
        `(RSS ${(rss0 / 2 ** 20).toFixed(0)} MB, includes vitest)`);
      const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n.startsWith('load-'), 5000);
      const tKill = Date.now();
      agents.kill('SIGKILL');
      await down;
      expect(await until(() => downs.length === N, 5000)).toBe(true);
      console.log(`[aedes] SIGKILL of the agents' process: all 1000 nodes down by last will within ${Date.now() - tKill} ms`);
    } finally {
      agents.kill('SIGKILL');
      await h.close();
    }
  });
});
