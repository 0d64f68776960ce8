/** The embedded broker: every connection authenticates, nodes stay on their own topics. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { startEmbeddedBroker, type AccessDenial, type EmbeddedBroker } from '../src/control/mqtt/embedded-broker.js';
import { agentClientId } from '../src/control/mqtt/acl.js';
import { topics } from '../src/protocol/fleet.js';
import { CONTROL_PASSWORD, CONTROL_USER, heartbeat, log, nodeToken, rawClient, sleep, testAuth, until } from './mqtt-helpers.js';

let broker: EmbeddedBroker;
const denials: AccessDenial[] = [];
const clients: MqttClient[] = [];

async function client(username: string | undefined, password: string | undefined, clientId?: string): Promise<MqttClient> {
  const c = await rawClient(broker.url, { username, password, clientId: clientId ?? (username ? agentClientId(username) : 'anon') });
  clients.push(c);
  return c;
}
const control = (): Promise<MqttClient> => client(CONTROL_USER, CONTROL_PASSWORD, `control-${Math.random()}`);
const node = (id: string): Promise<MqttClient> => client(id, nodeToken(id));

beforeAll(async () => {
  broker = await startEmbeddedBroker({ port: 0, auth: testAuth, log, onAccessDenied: (d) => denials.push(d) });
});

afterAll(async () => {
  for (const c of clients) c.end(true);
  await broker.close();
});

describe('embedded MQTT broker', () => {
  it('listens on a free port and reports its URL', () => {
    expect(broker.port).toBeGreaterThan(0);
    expect(broker.url).toBe(`mqtt://127.0.0.1:${broker.port}`);
  });

  it('refuses a bad password, a missing username and an unknown user with CONNACK "bad username or password"', async () => {
    await expect(client('n1', 'wrong')).rejects.toThrow(/Bad username or password/);
    await expect(client(CONTROL_USER, 'wrong', 'c-bad')).rejects.toThrow(/Bad username or password/);
    await expect(client(undefined, undefined, 'anonymous')).rejects.toThrow(/Bad username or password/);
    await expect(client('nobody', undefined)).rejects.toThrow(/Bad username or password/);
  });

  it('refuses a node that does not use its own client id (no session takeover)', async () => {
    await expect(client('n1', nodeToken('n1'), agentClientId('n2'))).rejects.toThrow(/Identifier rejected/);
    await expect(client('n1', nodeToken('n1'), 'tern-control-1234')).rejects.toThrow(/Identifier rejected/);
  });

  it('delivers a node\'s own messages, drops one on another node\'s topic and disconnects the sender', async () => {
    const ctl = await control();
    const seen: string[] = [];
    ctl.on('message', (topic) => seen.push(topic));
    await ctl.subscribeAsync('tern/nodes/#', { qos: 1 });

    const n1 = await node('n1');
    let closed = false;
    n1.on('close', () => { closed = true; });
    n1.publish(topics.heartbeat('n1'), JSON.stringify(heartbeat(1)));
    expect(await until(() => seen.includes(topics.heartbeat('n1')))).toBe(true);

    n1.publish(topics.heartbeat('n2'), JSON.stringify(heartbeat(1)));
    n1.publish(topics.desired('n1'), '{}'); // a node may not write its own desired state either
    expect(await until(() => closed, 5000)).toBe(true);
    await sleep(200);
    expect(seen).not.toContain(topics.heartbeat('n2'));
    expect(seen).not.toContain(topics.desired('n1'));
    expect(denials).toContainEqual({ action: 'publish', principal: { kind: 'node', node: 'n1' }, clientId: agentClientId('n1'), topic: topics.heartbeat('n2') });
  });

  it('answers a subscription to another node\'s topics with failure code 128 and keeps the connection', async () => {
    const n3 = await node('n3');
    for (const filter of [topics.desired('n4'), 'tern/nodes/+/desired', 'tern/#', topics.heartbeat('n3')]) {
      const err = await n3.subscribeAsync(filter, { qos: 1 }).then(() => undefined, (e: { packet?: { granted?: number[] } }) => e);
      expect(err?.packet?.granted, filter).toEqual([128]);
    }
    const granted = await n3.subscribeAsync({ [topics.desired('n3')]: { qos: 1 }, [topics.commands('n3')]: { qos: 1 } });
    expect(granted.map((g) => g.qos)).toEqual([1, 1]);
    expect(n3.connected).toBe(true);
    expect(denials.filter((d) => d.action === 'subscribe').map((d) => d.topic)).toContain(topics.desired('n4'));
  });

  it('keeps retained messages and publishes a node\'s last will when its connection dies', async () => {
    const ctl = await control();
    await ctl.publishAsync(topics.desired('n5'), '{"revision":1}', { qos: 1, retain: true });
    const n5 = await client('n5', nodeToken('n5'));
    const got = new Promise<string>((resolve) => n5.on('message', (_t, p) => resolve(p.toString())));
    await n5.subscribeAsync(topics.desired('n5'), { qos: 1 });
    expect(await got).toBe('{"revision":1}');

    const withWill = await rawClient(broker.url, {
      username: 'n6', password: nodeToken('n6'), clientId: agentClientId('n6'),
      will: { topic: topics.presence('n6'), payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    const will = new Promise<string>((resolve) => ctl.on('message', (t, p) => { if (t === topics.presence('n6')) resolve(p.toString()); }));
    await ctl.subscribeAsync(topics.presence('n6'), { qos: 1 });
    withWill.stream.destroy();
    expect(await will).toBe('offline');
  });

  it('does not publish a will a node set on another node\'s topic', async () => {
    const ctl = await control();
    const seen: string[] = [];
    ctl.on('message', (t) => seen.push(t));
    await ctl.subscribeAsync('tern/nodes/n8/#', { qos: 1 });
    const sly = await rawClient(broker.url, {
      username: 'n7', password: nodeToken('n7'), clientId: agentClientId('n7'),
      will: { topic: topics.presence('n8'), payload: Buffer.from('offline'), qos: 1, retain: true },
    });
    sly.stream.destroy();
    await sleep(300);
    expect(seen).toEqual([]);
  });
});

describe('embedded MQTT broker start', () => {
  it('names the address when the port is taken', async () => {
    await expect(startEmbeddedBroker({ port: broker.port, auth: testAuth, log })).rejects.toThrow(
      new RegExp(`the embedded MQTT broker cannot listen on 127.0.0.1:${broker.port}: .*EADDRINUSE`));
  });
});
