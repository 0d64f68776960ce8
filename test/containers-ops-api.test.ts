/**
 * Container operations through the control plane: an agent in its own network
 * namespace with Podman running there; an app container on that node is
 * listed, inspected, followed (logs streamed while they are written), exec'd
 * into (admin only), given a file and asked for it back (3 MB: many times the
 * stream window, so flow control is exercised), stopped, started, restarted
 * and removed — all with `tern containers --node` or the REST API, never
 * touching the node's engine directly. Bad requests get clear errors, and a
 * call to a node that went down answers 503 at once.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeDown } from '../src/containers/compose-runner.js';
import type { ControlPlane } from '../src/control/control-plane.js';
import { ContainerFleet, containerFleetEnabled, runTern } from './container-fleet.js';
import { waitFor } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const enabled = containerFleetEnabled('container operations test');
const PASSWORD = 'containers-ops';
let fleet: ContainerFleet;
let cp: ControlPlane;
let node: string;
let adminToken: string;
let viewerToken: string;
const env = () => ({ TERN_CONFIG: path.join(fleet.dataDir, 'creds.json'), TERN_URL: '', TERN_TOKEN: '' });
const tern = (...args: string[]) => runTern(env(), ...args);

async function api(method: string, route: string, token = adminToken, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${cp.url}/api/v1${route}`, {
    method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text.startsWith('{') ? JSON.parse(text) : text };
}

const NAME = 'ticker-ticker-1';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!enabled)('container operations through the control plane (Podman in a network namespace)', () => {
  beforeAll(async () => {
    fleet = await ContainerFleet.start({ prefix: 'ternr', subnet: 83, replicaPorts: '25400-25499', adminPassword: PASSWORD, gateway: false });
    cp = fleet.cp;
    node = cp.store.nodes.list()[0].id;

    expect((await tern('login', '--url', cp.url, '--password', PASSWORD)).code).toBe(0);
    adminToken = (JSON.parse(readFileSync(env().TERN_CONFIG, 'utf8')) as { token: string }).token;
    expect((await api('POST', '/users', adminToken, { username: 'watcher', password: 'watcher-pass', role: 'viewer' })).status).toBe(201);
    const login = await fetch(`${cp.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'watcher', password: 'watcher-pass' }) });
    viewerToken = ((await login.json()) as { token: string }).token;

    // An app workload on the node's engine: prints a numbered line every 100 ms.
    const run = await tern('run', fleet.image, '--engine', fleet.engine.url, '--name', 'ticker', '--entrypoint', '/usr/local/bin/node', '--', '-e',
      "let n = 0; setInterval(() => { console.log('tick', n++); if (n % 10 === 0) console.error('ten more'); }, 100)");
    expect(run.code, run.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    if (!fleet) return;
    await composeDown(fleet.engine.engine, 'ticker', 1).catch(() => undefined);
    await fleet.engine.engine.docker.getContainer('ternr-plain').remove({ force: true }).catch(() => undefined);
    await fleet.close();
  }, 60_000);

  it('lists and inspects the node\'s containers, and streams their logs: tail, and follow while they are written', async () => {
    const ls = await tern('containers', '--node', node, 'ls');
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout).toMatch(new RegExp(`${NAME}\\s+\\w+\\s+\\S+\\s+running\\s+app`));
    const inspect = await tern('containers', '--node', node, 'inspect', NAME);
    expect((JSON.parse(inspect.stdout) as { Config: { Image: string } }).Config.Image).toContain(fleet.image.split(':')[0]);

    await new Promise((r) => setTimeout(r, 1500));
    const tail = await tern('containers', '--node', node, 'logs', NAME, '--tail', '3');
    expect(tail.code, tail.stderr).toBe(0);
    // The last 3 lines of both streams (a 'ten more' on stderr may be among them).
    expect(`${tail.stdout}${tail.stderr}`.trim().split('\n')).toHaveLength(3);
    // stderr stays stderr on the way through the agent, the broker and the API.
    const all = await tern('containers', '--node', node, 'logs', NAME);
    expect(all.stderr).toContain('ten more');
    expect(all.stdout).not.toContain('ten more');

    const follow = spawn(process.execPath, [CLI, 'containers', '--node', node, 'logs', NAME, '--follow', '--tail', '1'], { env: { ...process.env, ...env() } });
    const arrivals: number[] = [];
    follow.stdout.on('data', (d: Buffer) => {
      for (const l of d.toString().split('\n')) if (l.startsWith('tick')) arrivals.push(Date.now());
    });
    await waitFor(() => arrivals.length >= 10, 20_000, 50);
    expect(cp.rpc.inFlight).toBe(1);
    follow.kill('SIGINT');
    expect(arrivals.length).toBeGreaterThanOrEqual(10);
    expect(arrivals.at(-1)! - arrivals[0]).toBeGreaterThan(500); // received over time, not in one piece at the end
    // The follower hung up: the control plane cancels the call on the agent.
    expect(await waitFor(() => cp.rpc.inFlight === 0, 10_000, 50)).toBe(true);
  }, 120_000);

  it('runs exec for admins only, with the command\'s output and exit code', async () => {
    const ex = await tern('containers', '--node', node, 'exec', NAME, '--', '/usr/local/bin/node', '-e', 'console.log(6 * 7); console.error("warned"); process.exit(3)');
    expect([ex.code, ex.stdout.trim(), ex.stderr.trim()]).toEqual([3, '42', 'warned']);
    const viewer = await api('POST', `/nodes/${node}/containers/${NAME}/exec`, viewerToken, { cmd: ['/bin/true'] });
    expect(viewer.status).toBe(403);
    expect(viewer.body.error).toMatch(/role viewer may not call POST .*exec: it needs the admin role/);
    const events = await api('GET', `/events?kind=container.exec`);
    expect(events.body.events.some((e: { message: string; data: { by?: string } }) => e.message.includes('console.log(6 * 7)') && e.data.by === 'user/admin')).toBe(true);
  }, 60_000);

  it('uploads a file into the container and downloads it back intact, with progress', async () => {
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    const local = path.join(fleet.dataDir, 'payload.bin');
    writeFileSync(local, payload);
    const up = await tern('containers', '--node', node, 'cp', local, `${NAME}:/tmp/`);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).toContain(`100% (${payload.length}/${payload.length} bytes)`);
    const back = path.join(fleet.dataDir, 'back.bin');
    const down = await tern('containers', '--node', node, 'cp', `${NAME}:/tmp/payload.bin`, back);
    expect(down.code, down.stderr).toBe(0);
    expect(down.stdout).toContain(`(${payload.length} bytes)`);
    expect(sha(readFileSync(back))).toBe(sha(payload));
    // The node's own engine agrees the file is there, with its size.
    const ls = await tern('containers', '--node', node, 'exec', NAME, '--', '/usr/local/bin/node', '-e', 'console.log(require("fs").statSync("/tmp/payload.bin").size)');
    expect(ls.stdout.trim()).toBe(String(payload.length));
  }, 120_000);

  it('refuses bad requests with clear errors', async () => {
    const cases: [Promise<{ status: number; body: any }>, number, RegExp][] = [
      [api('GET', '/nodes/no-such-node/containers'), 404, /node no-such-node not found/],
      [api('GET', `/nodes/${node}/containers/no-such-container`), 404, /no container 'no-such-container'/],
      [api('GET', `/nodes/${node}/containers/${NAME}/files?path=relative/file`), 400, /paths inside a container are absolute/],
      [api('GET', `/nodes/${node}/containers/${NAME}/files?path=/no/such/file`), 404, /no such file in the container/],
      [api('POST', `/nodes/${node}/containers/${NAME}/exec`, adminToken, { cmd: [] }), 400, /exec needs a command/],
      [api('GET', `/nodes/${node}/containers/${NAME}/logs?tail=many`), 400, /tail/],
    ];
    for (const [reply, status, message] of cases) {
      const r = await reply;
      expect(r.status, JSON.stringify(r.body)).toBe(status);
      expect(r.body.error).toMatch(message);
    }
    // A container the node's engine runs but tern did not make is out of reach.
    await fleet.engine.engine.docker.createContainer({ name: 'ternr-plain', Image: fleet.image, Entrypoint: ['/usr/local/bin/node'], Cmd: ['-e', 'setTimeout(() => {}, 60000)'] });
    const plain = await api('GET', `/nodes/${node}/containers/ternr-plain`);
    expect([plain.status, plain.body.error]).toEqual([404, expect.stringMatching(/no tern container 'ternr-plain'/)]);
    const cli = await tern('containers', '--node', node, 'cp', `${NAME}:/nope`, path.join(fleet.dataDir, 'nope'));
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/^tern: GET .* failed \(404\): cannot copy ticker-ticker-1:\/nope: no such file in the container\n$/);
  }, 60_000);

  it('stops, starts, restarts and removes a container; exec in a stopped one is refused', async () => {
    const running = async () => (await fleet.engine.engine.docker.getContainer(NAME).inspect()).State.Running;
    expect((await tern('containers', '--node', node, 'stop', NAME, '--time', '1')).stdout).toContain(`${NAME}: stopped`);
    expect(await running()).toBe(false);
    const ex = await api('POST', `/nodes/${node}/containers/${NAME}/exec`, adminToken, { cmd: ['/bin/true'] });
    expect([ex.status, ex.body.error]).toEqual([409, expect.stringMatching(/is not running .*start it first/)]);
    expect((await tern('containers', '--node', node, 'start', NAME)).code).toBe(0);
    expect(await running()).toBe(true);
    expect((await tern('containers', '--node', node, 'restart', NAME, '--time', '1')).stdout).toContain(`${NAME}: restarted`);
    expect(await running()).toBe(true);
    expect((await tern('containers', '--node', node, 'rm', NAME)).stdout).toContain(`${NAME}: removed`);
    const gone = await tern('containers', '--node', node, 'inspect', NAME);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(new RegExp(`^tern: GET .* failed \\(404\\): no container '${NAME}'`));
  }, 60_000);

  it('answers 503 for a node that is down', async () => {
    fleet.agent?.kill('SIGKILL');
    expect(await waitFor(() => cp.store.nodes.get(node)?.state === 'down', 20_000, 100)).toBe(true);
    const r = await api('GET', `/nodes/${node}/containers`);
    expect([r.status, r.body.error]).toEqual([503, expect.stringMatching(new RegExp(`node ${node} is down`))]);
  }, 30_000);
});
