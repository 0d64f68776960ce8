/**
 * App workloads through the fleet: container deployments (`kind: container`)
 * go from the CLI through the control plane to an agent in its own network
 * namespace with Podman in that namespace. A tiny HTTP server (node from the
 * tern image, `-e` script) comes up on its published node port, is restarted
 * by tern when its container dies, a second replica on the same port is
 * refused with the reason in the events, a new image rolls out; scaling 2 -> 0 removes containers; a
 * two-service compose file comes up in depends_on order; bad input is refused
 * and leaves nothing behind; an agent restart adopts the running containers
 * and removes a stray one.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LABELS } from '../src/containers/labels.js';
import type { ControlPlane } from '../src/control/control-plane.js';
import { ContainerFleet, containerFleetEnabled, runTern } from './container-fleet.js';
import type { TestEngine } from './container-engines.js';
import { waitFor } from './helpers.js';

const PORTS = { web: 26001, bridged: 26002, api: 26011, front: 26012, replicas: '26400-26499' };
const enabled = containerFleetEnabled('fleet workloads test');

// Answers who it is and what its environment says.
const SERVER = "require('node:http').createServer((q, s) => s.end(JSON.stringify({ name: process.env.NAME, greeting: process.env.GREETING ?? null }))).listen(Number(process.env.PORT))";
// Calls the API service once at start and exits if it cannot: started before the API, it would fail.
const FRONT = "fetch(process.env.API_URL).then((r) => r.json()).then((api) => require('node:http').createServer((q, s) => s.end(JSON.stringify({ front: true, api }))).listen(Number(process.env.PORT)), (e) => { console.error('api unreachable:', e.message); process.exit(1); })";

let fleet: ContainerFleet;
let engine: TestEngine;
let cp: ControlPlane;
let dataDir: string;
let image: string;
let cliEnv: NodeJS.ProcessEnv;

const tern = (...args: string[]) => runTern(cliEnv, ...args);
const nodeUrl = (port: number) => `http://${fleet.node.address}:${port}/`;

/** This agent's containers of one deployment (all of them without a name). */
const containersOf = (deployment?: string) => fleet.ownedContainers(deployment ? { [LABELS.deployment]: deployment } : {});

/** Every desired replica of the deployment is ready (and there are `count`). */
const ready = (name: string, count = 1) => waitFor(() => {
  const rs = cp.store.replicas.listByDeployment(name).filter((r) => r.desired === 'run');
  return rs.length === count && rs.every((r) => r.state === 'ready');
}, 90_000, 200);

async function answer(port: number): Promise<unknown> {
  const res = await fetch(nodeUrl(port));
  expect(res.status).toBe(200);
  return res.json();
}

/** The control plane's REST API as the logged-in CLI user. */
function api(method: string, route: string, body?: unknown): Promise<Response> {
  const { token } = JSON.parse(readFileSync(cliEnv.TERN_CONFIG!, 'utf8')) as { token: string };
  return fetch(`http://127.0.0.1:${cp.port}/api/v1${route}`, {
    method, ...(body ? { body: JSON.stringify(body) } : {}), headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  });
}

const events = (name: string) => cp.store.events.query({ subject: `deployment/${name}`, limit: 200 }).map((e) => e.message);

describe.skipIf(!enabled)('container deployments in the fleet (Podman in a network namespace)', () => {
  beforeAll(async () => {
    fleet = await ContainerFleet.start({ prefix: 'ternw', subnet: 84, replicaPorts: PORTS.replicas, adminPassword: 'fleet-workloads', gateway: false });
    ({ engine, cp, dataDir, image } = fleet);
    cliEnv = { TERN_CONFIG: path.join(dataDir, 'creds.json'), TERN_URL: '', TERN_TOKEN: '' };
    expect((await tern('login', '--url', `http://127.0.0.1:${cp.port}`, '--password', 'fleet-workloads')).code).toBe(0);
    expect(cp.store.nodes.list()[0].facts).toMatchObject({ runtimes: ['process', 'container'], workloads: ['container'] });
  }, 300_000);

  afterAll(async () => {
    await fleet?.close();
  }, 60_000);

  it('tern run --fleet serves on its published node port, is restarted by tern when it dies, refuses a second replica on that port, rolls out a new image', async () => {
    const run = await tern('run', image, '--fleet', '--name', 'web', '--port', String(PORTS.web), '--cpus', '0.25', '--memory', '128M',
      '--env', 'NAME=web', '--env', 'GREETING=hello', '--env', `PORT=${PORTS.web}`, '--entrypoint', '/usr/local/bin/node', '--', '-e', SERVER);
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe(`deployment web created: image ${image} x1 on node port ${PORTS.web}\n`);
    expect(await ready('web')).toBe(true);
    expect(await answer(PORTS.web)).toEqual({ name: 'web', greeting: 'hello' });

    const [c] = await containersOf('web');
    expect(c.Labels).toMatchObject({ [LABELS.kind]: 'workload', [LABELS.replica]: cp.store.replicas.listByDeployment('web')[0].id, [LABELS.port]: String(PORTS.web) });
    const info = await engine.engine.docker.getContainer(c.Id).inspect();
    expect([info.HostConfig.NanoCpus, info.HostConfig.Memory, info.HostConfig.RestartPolicy?.Name]).toEqual([0.25e9, 128 * 2 ** 20, 'no']);
    expect((await tern('deployments')).stdout).toMatch(new RegExp(`web\\s+container\\s+${image.replace(/[.]/g, '\\.')}\\s+1\\s+1\\s+1/1`));
    // Gateways route model deployments only.
    expect(cp.routes.current?.routes.map((r) => r.deployment) ?? []).not.toContain('web');
    // Its stats flow in the node's heartbeats like a model replica's.
    const replicaId = c.Labels[LABELS.replica];
    expect(await waitFor(() => (cp.store.nodes.list()[0].stats?.replicas.find((r) => r.id === replicaId)?.rss_bytes ?? 0) > 1e6, 15_000, 200)).toBe(true);

    // tern owns the restart policy: a container that dies is replaced by the agent's supervisor.
    await engine.engine.docker.getContainer(c.Id).kill();
    expect(await waitFor(async () => {
      const now = await containersOf('web');
      return now.length === 1 && now[0].Id !== c.Id && now[0].State === 'running';
    }, 30_000, 200)).toBe(true);
    expect(await ready('web')).toBe(true);
    expect(await answer(PORTS.web)).toEqual({ name: 'web', greeting: 'hello' });

    // The only node already publishes the port: the second replica has nowhere to go, and the events say why.
    expect((await tern('deployments', 'scale', 'web', '2')).code).toBe(0);
    expect(await waitFor(() => events('web').some((m) => m.includes('1 replica(s) of web cannot be placed')), 15_000)).toBe(true);
    expect(events('web').find((m) => m.includes('cannot be placed'))).toMatch(new RegExp(`already has node port ${PORTS.web} published by deployment web$`));
    expect(await containersOf('web')).toHaveLength(1);
    expect((await tern('deployments', 'scale', 'web', '1')).code).toBe(0);

    // A rollout is a new image: the replica publishing the port is replaced stop-first by one of revision 2.
    await engine.engine.docker.getImage(image).tag({ repo: 'localhost/ternw/web', tag: '2' });
    const [old] = await containersOf('web');
    expect((await tern('deployments', 'rollout', 'web', 'localhost/ternw/web:2', '--image')).stdout).toBe('web rolling out image localhost/ternw/web:2\n');
    expect(await waitFor(async () => {
      const now = await containersOf('web');
      return now.length === 1 && now[0].Id !== old.Id && now[0].Image === 'localhost/ternw/web:2';
    }, 30_000, 200)).toBe(true);
    expect(await ready('web')).toBe(true);
    // The old replica's record goes once the agent confirms it stopped.
    expect(await waitFor(() => cp.store.replicas.listByDeployment('web').length === 1, 15_000)).toBe(true);
    expect(cp.store.replicas.listByDeployment('web').map((r) => [r.version, r.generation])).toEqual([['2', 2]]);
    expect(await answer(PORTS.web)).toEqual({ name: 'web', greeting: 'hello' });
  }, 180_000);

  it('bridge networking forwards the published node port to the container port', async () => {
    const body = {
      kind: 'container', name: 'bridged', image, replicas: 1, network: 'bridge', ports: [{ container: 8080, published: PORTS.bridged }],
      env: { NAME: 'bridged', PORT: '8080' }, entrypoint: ['/usr/local/bin/node'], command: ['-e', SERVER], resources: { cpu: 0.25, memory_mb: 96 },
    };
    expect((await api('POST', '/deployments', body)).status).toBe(201);
    expect(await ready('bridged')).toBe(true);
    expect(await answer(PORTS.bridged)).toEqual({ name: 'bridged', greeting: null });
    expect((await api('DELETE', '/deployments/bridged')).status).toBe(202);
    expect(await waitFor(async () => (await containersOf('bridged')).length === 0, 30_000, 200)).toBe(true);
  }, 120_000);

  it('scales a deployment without ports to 2 containers on one node, then to 0: its containers are removed', async () => {
    const body = { kind: 'container', name: 'ticker', image, replicas: 2, entrypoint: ['/usr/local/bin/node'], command: ['-e', 'setInterval(() => {}, 1000)'], resources: { cpu: 0.1, memory_mb: 64 } };
    expect((await api('POST', '/deployments', body)).status).toBe(201);
    expect(await ready('ticker', 2)).toBe(true);
    const two = await containersOf('ticker');
    expect(two.map((c) => c.State)).toEqual(['running', 'running']);
    expect((await tern('deployments', 'scale', 'ticker', '0')).code).toBe(0);
    expect(await waitFor(async () => (await containersOf('ticker')).length === 0, 30_000, 200)).toBe(true);
    expect(await waitFor(() => cp.store.replicas.listByDeployment('ticker').length === 0, 15_000)).toBe(true);
    expect((await tern('deployments', 'rm', 'ticker')).code).toBe(0);
  }, 120_000);

  it('compose up --fleet creates one deployment per service in depends_on order; compose down --fleet removes them', async () => {
    const file = path.join(dataDir, 'compose.yml');
    writeFileSync(file, `name: ternw-app
services:
  front:
    image: ${image}
    entrypoint: [/usr/local/bin/node]
    command: [-e, ${JSON.stringify(FRONT)}]
    environment: { PORT: "${PORTS.front}", API_URL: "http://127.0.0.1:${PORTS.api}/" }
    ports: ["${PORTS.front}:${PORTS.front}"]
    depends_on: [api]
  api:
    image: ${image}
    entrypoint: [/usr/local/bin/node]
    command: [-e, ${JSON.stringify(SERVER)}]
    environment: { NAME: api, PORT: "${PORTS.api}" }
    ports: ["${PORTS.api}:${PORTS.api}"]
    deploy: { resources: { limits: { cpus: "0.25", memory: 96M } } }
`);
    const up = await tern('compose', 'up', file, '--fleet');
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toBe('project ternw-app is up in the fleet: 2 deployments (ternw-app-api, ternw-app-front)\n');
    expect(up.stderr.split('\n').filter(Boolean)).toEqual([
      `api: deployment ternw-app-api, 1 ready (node port ${PORTS.api})`,
      `front: deployment ternw-app-front, 1 ready (node port ${PORTS.front})`,
    ]);
    // The front reached the API when it started: the API was ready first.
    expect(await answer(PORTS.front)).toEqual({ front: true, api: { name: 'api', greeting: null } });
    expect(cp.store.deployments.get('ternw-app-api')!.spec).toMatchObject({ kind: 'container', resources: { cpu: 0.25, memory_mb: 96 } });

    const down = await tern('compose', 'down', file, '--fleet');
    expect(down.stdout).toBe('project ternw-app: 2 deployments removed from the fleet (ternw-app-front, ternw-app-api)\n');
    expect(await waitFor(async () => (await containersOf('ternw-app-api')).length + (await containersOf('ternw-app-front')).length === 0, 30_000, 200)).toBe(true);
    expect(await waitFor(() => !cp.store.deployments.get('ternw-app-api') && !cp.store.deployments.get('ternw-app-front'), 15_000)).toBe(true);
  }, 180_000);

  it('refuses bad input with one clear line or event, leaving no deployment and no container behind', async () => {
    const bad = path.join(dataDir, 'bad.yml');
    writeFileSync(bad, `name: ternw-bad\nservices:\n  a: {image: ${image}, restart: always}\n`);
    const unknownKey = await tern('compose', 'up', bad, '--fleet');
    expect([unknownKey.code, unknownKey.stderr]).toEqual([1, `tern: ${bad}: unknown key 'restart' in services.a\n`]);

    const noImage = await api('POST', '/deployments', { kind: 'container', name: 'empty', replicas: 1, ports: [{ container: 26099 }] });
    expect([noImage.status, await noImage.json()]).toEqual([400, { error: 'invalid request body: image: an image is required (the container image to run)' }]);

    // An image the node does not have and no registry to pull from: the replica fails saying so; the compose run rolls back.
    writeFileSync(bad, `name: ternw-bad\nservices:\n  a: {image: "tern/none:1"}\n`);
    const missing = await tern('compose', 'up', bad, '--fleet', '--timeout', '20');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^tern: deployment ternw-bad-a is not ready after 20 s \(0\/1 replicas\): .* failed: image tern\/none:1 is not on this node's container engine.*; removed what this run created: ternw-bad-a\n$/);
    expect(await waitFor(() => cp.store.deployments.list().every((d) => d.name === 'web'), 15_000)).toBe(true);
    expect((await containersOf()).map((c) => c.Labels[LABELS.deployment])).toEqual(['web']);
  }, 120_000);

  it('an agent restarted while the control plane is away adopts its running workload container instead of starting another, and removes a stray one', async () => {
    const before = await containersOf('web');
    expect(before).toHaveLength(1);
    // With the control plane up, a stopped agent is a down node whose replicas are placed anew; adoption is for the agent's own restarts.
    await fleet.closeControlPlane();
    await fleet.stopAgent();
    expect(await answer(PORTS.web)).toEqual({ name: 'web', greeting: 'hello' }); // outlives its agent

    // A stray workload container labelled as this agent's, for a replica no desired state names: an orphan to remove.
    await fleet.startStray({
      kind: 'workload', replica: 'stray-1', labels: { [LABELS.deployment]: 'stray', [LABELS.port]: '0' },
      Entrypoint: ['/usr/local/bin/node'], Cmd: ['-e', 'setInterval(() => {}, 1000)'],
    });
    expect(await containersOf()).toHaveLength(2);

    fleet.startAgent();
    // Once the orphan is gone the agent has restored its desired state and adopted what it names.
    expect(await waitFor(async () => (await containersOf()).length === 1, 60_000, 200)).toBe(true);
    expect((await containersOf()).map((c) => c.Id)).toEqual(before.map((c) => c.Id));
    await new Promise((r) => setTimeout(r, 2000)); // and it stays the same container: nothing restarts it behind the agent's back
    expect((await containersOf()).map((c) => c.Id)).toEqual(before.map((c) => c.Id));
    expect(await answer(PORTS.web)).toEqual({ name: 'web', greeting: 'hello' });
  }, 120_000);
});
