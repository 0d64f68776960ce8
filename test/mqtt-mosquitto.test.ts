/**
 * The fleet over an external broker: Debian's Mosquitto, started by this test on a
 * free port. First with an open config (the fleet scenarios), then with the
 * password file and ACL that fleet-hub.ts documents for production.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MqttClient } from 'mqtt';
import { FleetHub, type NodeDownInfo } from '../src/control/mqtt/fleet-hub.js';
import { agentLinkClient, connectAgentLink } from '../src/control/mqtt/agent-link.js';
import { agentClientId } from '../src/control/mqtt/acl.js';
import { topics, type DesiredState } from '../src/protocol/fleet.js';
import { CONTROL_PASSWORD, CONTROL_USER, desired, freePort, heartbeat, log, nextEvent, nodeToken, rawClient, sleep, until } from './mqtt-helpers.js';
import { defineFleetScenarios } from './mqtt-scenarios.js';

const MOSQUITTO = '/usr/sbin/mosquitto';
const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';
const installed = existsSync(MOSQUITTO);
const required = process.env.CI === 'true';
if (!installed) {
  console.warn(required
    ? `Mosquitto tests: ${MOSQUITTO} is missing but CI=true requires them (add mosquitto to the apt-get line of .ci/run)`
    : `SKIPPED Mosquitto tests: ${MOSQUITTO} is not installed (apt-get install -y mosquitto); they run whenever it is, and always with CI=true`);
}

interface Mosquitto { url: string; stop(): Promise<void> }

/** Starts mosquitto with `config` (listener lines are added) and the given files in a scratch directory. */
async function startMosquitto(config: (dir: string) => string[], files: Record<string, string> = {}, setup?: (dir: string) => void): Promise<Mosquitto> {
  if (!installed) throw new Error(`${MOSQUITTO} is not installed: apt-get install -y mosquitto`);
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-mosquitto-'));
  chmodSync(dir, 0o755); // mosquitto started as root drops to the mosquitto user, which must read these files
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text, { mode: 0o644 });
  setup?.(dir);
  const port = await freePort();
  const conf = [`listener ${port} 127.0.0.1`, 'persistence false', 'log_dest stderr', ...config(dir)];
  writeFileSync(path.join(dir, 'mosquitto.conf'), conf.join('\n') + '\n', { mode: 0o644 });
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', path.join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  let exited = false;
  child.on('exit', () => { exited = true; });
  let listening = false;
  for (const end = Date.now() + 5000; !listening && !exited && Date.now() < end;) {
    listening = await canConnect(port);
    if (!listening) await sleep(50);
  }
  if (!listening) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`mosquitto did not start on port ${port}:\n${stderr}`);
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

describe.skipIf(!installed && !required)('FleetHub over Mosquitto (open config)', () => {
  let mosquitto: Mosquitto;
  beforeAll(async () => {
    mosquitto = await startMosquitto(() => ['allow_anonymous true']);
  });
  afterAll(async () => {
    await mosquitto?.stop();
  });

  defineFleetScenarios('mosquitto', () => mosquitto);
});

describe.skipIf(!installed && !required)('Mosquitto with the password file and ACL documented in fleet-hub.ts', () => {
  const NODES = ['acl-a', 'acl-b'];
  let mosquitto: Mosquitto;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    const acl = [
      `user ${CONTROL_USER}`, 'topic readwrite #',
      'pattern write tern/nodes/%u/heartbeat', 'pattern write tern/nodes/%u/status', 'pattern write tern/nodes/%u/presence',
      'pattern read tern/nodes/%u/desired', 'pattern read tern/nodes/%u/commands', 'pattern read tern/routes',
      'pattern read tern/nodes/%u/rpc', 'pattern write tern/nodes/%u/rpc-reply',
    ].join('\n') + '\n';
    mosquitto = await startMosquitto((dir) => [
      'allow_anonymous false',
      `password_file ${path.join(dir, 'tern.passwd')}`,
      `acl_file ${path.join(dir, 'tern.acl')}`,
      'use_username_as_clientid true',
    ], { 'tern.acl': acl }, (dir) => {
      const file = path.join(dir, 'tern.passwd');
      execFileSync(MOSQUITTO_PASSWD, ['-b', '-c', file, CONTROL_USER, CONTROL_PASSWORD]);
      for (const n of NODES) execFileSync(MOSQUITTO_PASSWD, ['-b', file, n, nodeToken(n)]);
      chmodSync(file, 0o644);
    });
  });
  afterAll(async () => {
    for (const c of clients) c.end(true);
    await mosquitto?.stop();
  });

  async function client(username: string, password: string): Promise<MqttClient> {
    const c = await rawClient(mosquitto.url, { username, password, clientId: username === CONTROL_USER ? `raw-${Math.random()}` : agentClientId(username) });
    clients.push(c);
    return c;
  }

  it('refuses bad credentials', async () => {
    await expect(client('acl-a', 'wrong')).rejects.toThrow(/Not authorized|Bad username or password/);
    await expect(client('intruder', 'x')).rejects.toThrow(/Not authorized|Bad username or password/);
  });

  it('keeps a node off another node\'s topics (Mosquitto drops the publish and keeps the connection)', async () => {
    const ctl = await client(CONTROL_USER, CONTROL_PASSWORD);
    const seen: string[] = [];
    ctl.on('message', (t) => seen.push(t));
    await ctl.subscribeAsync('tern/nodes/#', { qos: 1 });
    const a = await client('acl-a', nodeToken('acl-a'));
    await a.publishAsync(topics.heartbeat('acl-b'), JSON.stringify(heartbeat(1)), { qos: 1 });
    await a.publishAsync(topics.heartbeat('acl-a'), JSON.stringify(heartbeat(1)), { qos: 1 });
    expect(await until(() => seen.includes(topics.heartbeat('acl-a')))).toBe(true);
    await sleep(200);
    expect(seen).not.toContain(topics.heartbeat('acl-b'));
    expect(a.connected).toBe(true);

    // A subscription to another node's desired state receives nothing.
    const got: string[] = [];
    a.on('message', (t) => got.push(t));
    const granted = await a.subscribeAsync(topics.desired('acl-b'), { qos: 1 }).then((g) => g.map((x) => x.qos), (e: { packet?: { granted?: number[] } }) => e.packet?.granted);
    await ctl.publishAsync(topics.desired('acl-b'), JSON.stringify(desired('acl-b', 1)), { qos: 1 });
    await sleep(300);
    expect(got).toEqual([]);
    console.log(`[mosquitto] SUBACK for another node's desired topic: ${JSON.stringify(granted)}`);
    await ctl.publishAsync(topics.desired('acl-b'), '', { qos: 1, retain: true });
  });

  it('carries heartbeats, retained desired state and the last will for authenticated agents', async () => {
    const h = await FleetHub.connect({ url: mosquitto.url, username: CONTROL_USER, password: CONTROL_PASSWORD, log });
    const l = connectAgentLink({ url: mosquitto.url, node: 'acl-b', token: nodeToken('acl-b'), log });
    const timer = setInterval(() => l.publishHeartbeat(heartbeat(0)), 200);
    try {
      await h.publishDesired(desired('acl-b', 4));
      const got: DesiredState[] = [];
      l.onDesired((d) => got.push(d));
      await nextEvent<[string]>(h, 'heartbeat', (n) => n === 'acl-b');
      expect(await until(() => got.length === 1)).toBe(true);
      expect(got[0].revision).toBe(4);
      const down = nextEvent<[string, NodeDownInfo]>(h, 'nodeDown', (n) => n === 'acl-b', 5000);
      const t0 = Date.now();
      agentLinkClient(l).stream.destroy();
      expect((await down)[1].reason).toBe('last-will');
      console.log(`[mosquitto+acl] last-will failure detection: ${Date.now() - t0} ms`);
    } finally {
      clearInterval(timer);
      await l.close();
      await h.clearDesired('acl-b');
      await h.close();
    }
  });
});

describe.skipIf(!installed && !required)('the whole fleet over Mosquitto (tern control --mqtt-url)', () => {
  let mosquitto: Mosquitto;
  let dir: string;
  let cp: Awaited<ReturnType<typeof import('../src/control/control-plane.js').startControlPlane>>;
  let agent: Awaited<ReturnType<typeof import('../src/agent/agent.js').startAgent>>;
  beforeAll(async () => {
    mosquitto = await startMosquitto(() => ['allow_anonymous true']);
    dir = mkdtempSync(path.join(tmpdir(), 'tern-fleet-mosquitto-'));
    const { startControlPlane } = await import('../src/control/control-plane.js');
    cp = await startControlPlane({ dataDir: path.join(dir, 'control'), host: '127.0.0.1', port: 0, mqttUrl: mosquitto.url, adminPassword: 'mosquitto-fleet', log });
  });
  afterAll(async () => {
    await agent?.close();
    await cp?.close();
    await mosquitto?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('joins an agent, places a replica that serves, and detects the agent leaving', async () => {
    const { createJoinToken } = await import('../src/control/auth/accounts.js');
    const { startAgent } = await import('../src/agent/agent.js');
    const { DeploymentSpecSchema } = await import('../src/protocol/fleet.js');
    const { DEMO_REPO } = await import('./helpers.js');
    await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'), { format: 'onnx' });
    agent = await startAgent({ controlUrl: cp.url, token: createJoinToken(cp.store, 600).token, dataDir: path.join(dir, 'agent'), address: '127.0.0.1', log });
    expect(await until(() => cp.store.nodes.get(agent.nodeId)?.last_heartbeat_ms != null, 15_000, 100)).toBe(true);
    cp.store.deployments.create(DeploymentSpecSchema.parse({ name: 'iris', model: 'iris-logreg', replicas: 1, resources: { cpu: 0.25, memory_mb: 128 } }), '1');
    cp.reconciler.trigger('test deployment');
    expect(await until(() => cp.store.replicas.listByDeployment('iris').some((r) => r.state === 'ready' && r.port), 30_000, 100)).toBe(true);
    const port = cp.store.replicas.listByDeployment('iris')[0].port;
    const res = await fetch(`http://127.0.0.1:${port}/v2/models/iris/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], data: [6.3, 3.3, 6.0, 2.5] }], outputs: [{ name: 'label' }] }) });
    expect(((await res.json()) as { outputs: { data: number[] }[] }).outputs[0].data).toEqual([2]);
    await agent.close();
    expect(await until(() => cp.store.nodes.get(agent.nodeId)?.state === 'down', 5_000, 50)).toBe(true);
  }, 60_000);
});

/** Where Debian puts Mosquitto's dynamic-security plugin (the path has the machine's multiarch triplet). */
const DYNSEC_PLUGIN = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib']
  .map((d) => path.join(d, 'mosquitto_dynamic_security.so')).find((p) => existsSync(p));

describe.skipIf(!installed && !required)('the whole fleet over Mosquitto with dynamic security (tern control --mqtt-dynsec)', () => {
  const ADMIN_PASSWORD = 'dynsec-admin-secret';
  let mosquitto: Mosquitto;
  let dir: string;
  let cp: Awaited<ReturnType<typeof import('../src/control/control-plane.js').startControlPlane>>;
  beforeAll(async () => {
    if (!DYNSEC_PLUGIN) throw new Error('mosquitto_dynamic_security.so not found (it ships in Debian\'s mosquitto package)');
    mosquitto = await startMosquitto((d) => ['allow_anonymous false', `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${path.join(d, 'dynsec.json')}`], {}, (d) => {
      // What an operator does once: create the plugin's admin, whom tern control then logs in as.
      execFileSync('/usr/bin/mosquitto_ctrl', ['dynsec', 'init', path.join(d, 'dynsec.json'), 'admin', ADMIN_PASSWORD], { stdio: 'ignore' });
      chmodSync(d, 0o777); // the plugin, running as the mosquitto user, rewrites its file on every change
      chmodSync(path.join(d, 'dynsec.json'), 0o666);
    });
    dir = mkdtempSync(path.join(tmpdir(), 'tern-fleet-dynsec-'));
    const { startControlPlane } = await import('../src/control/control-plane.js');
    cp = await startControlPlane({
      dataDir: path.join(dir, 'control'), host: '127.0.0.1', port: 0, mqttUrl: mosquitto.url,
      mqttUsername: 'admin', mqttPassword: ADMIN_PASSWORD, mqttDynsec: true, adminPassword: 'dynsec-fleet', log,
    });
  });
  afterAll(async () => {
    await cp?.close();
    await mosquitto?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start with a wrong plugin admin password or without one, naming the problem', async () => {
    const { startControlPlane } = await import('../src/control/control-plane.js');
    const base = { dataDir: path.join(dir, 'refused'), host: '127.0.0.1', port: 0, mqttUrl: mosquitto.url, mqttUsername: 'admin', mqttDynsec: true, log };
    await expect(startControlPlane({ ...base, mqttPassword: 'wrong' })).rejects.toThrow(/dynamic security: cannot connect to mqtt:\/\/127\.0\.0\.1:\d+ as admin: .*(not authorized|bad user)/i);
    await expect(startControlPlane({ ...base, mqttPassword: undefined })).rejects.toThrow(/--mqtt-dynsec needs --mqtt-url and the plugin admin's --mqtt-username and password/);
  });

  it('gives a joining node a broker account limited to its topics, and deletes it with the node', async () => {
    const { createJoinToken } = await import('../src/control/auth/accounts.js');
    const { startAgent } = await import('../src/agent/agent.js');
    const { loadIdentity } = await import('../src/agent/identity.js');
    const { DeploymentSpecSchema } = await import('../src/protocol/fleet.js');
    const { DEMO_REPO } = await import('./helpers.js');
    await cp.registry.importFile('iris-logreg', path.join(DEMO_REPO, 'iris-logreg', '1', 'model.onnx'), { format: 'onnx' });
    const agentDir = path.join(dir, 'agent');
    const agent = await startAgent({ controlUrl: cp.url, token: createJoinToken(cp.store, 600).token, dataDir: agentDir, address: '127.0.0.1', log });
    const node = agent.nodeId;
    try {
      // Heartbeats in and desired state out both pass the node's own ACL.
      expect(await until(() => cp.store.nodes.get(node)?.last_heartbeat_ms != null, 15_000, 100)).toBe(true);
      cp.store.deployments.create(DeploymentSpecSchema.parse({ name: 'iris', model: 'iris-logreg', replicas: 1, resources: { cpu: 0.25, memory_mb: 128 } }), '1');
      cp.reconciler.trigger('test deployment');
      expect(await until(() => cp.store.replicas.listByDeployment('iris').some((r) => r.state === 'ready'), 30_000, 100)).toBe(true);
    } finally {
      await agent.close();
    }
    const { node_token: token } = (await loadIdentity(agentDir))!;
    await expect(rawClient(mosquitto.url, { username: node, password: 'not-the-token', clientId: agentClientId(node) })).rejects.toThrow(/not authorized|bad user/i);

    // The node's account may not touch another node's topics: Mosquitto drops such a publish.
    const spy = await rawClient(mosquitto.url, { username: 'admin', password: ADMIN_PASSWORD, clientId: 'spy' });
    const seen: string[] = [];
    spy.on('message', (topic) => seen.push(topic));
    await spy.subscribeAsync('tern/nodes/#');
    const forger = await rawClient(mosquitto.url, { username: node, password: token, clientId: agentClientId(node) });
    await forger.publishAsync(topics.heartbeat('someone-else'), JSON.stringify(heartbeat(1)), { qos: 1 });
    await forger.publishAsync(topics.presence(node), 'probe', { qos: 1 });
    expect(await until(() => seen.includes(topics.presence(node)), 5000)).toBe(true);
    expect(seen).not.toContain(topics.heartbeat('someone-else'));
    await forger.endAsync();

    // Removing the node (down, so removable) deletes its broker account.
    expect(await until(() => cp.store.nodes.get(node)?.state === 'down', 5_000, 50)).toBe(true);
    const login = await (await fetch(`${cp.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: 'dynsec-fleet' }) })).json() as { token: string };
    const removed = await fetch(`${cp.url}/api/v1/nodes/${node}`, { method: 'DELETE', headers: { authorization: `Bearer ${login.token}` } });
    expect(removed.status).toBe(200);
    let refused = false;
    for (const end = Date.now() + 5000; !refused && Date.now() < end; await sleep(100)) {
      refused = await rawClient(mosquitto.url, { username: node, password: token, clientId: agentClientId(node) }).then((c) => { c.end(true); return false; }, () => true);
    }
    expect(refused).toBe(true);
    await spy.endAsync();
  }, 60_000);
});
