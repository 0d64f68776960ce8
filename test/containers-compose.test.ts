/**
 * App workloads on a real Podman through the CLI: a Compose v3 file with two
 * HTTP services (tern serve with two models) and one that calls them by
 * service name comes up in depends_on order and each answers; `tern run`
 * starts a single app container; a file with an unknown key or a dependency
 * cycle, or a port already in use, is refused with one line and leaves no
 * container behind; `tern compose down` removes a project.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BuiltImage } from '../src/containers/image-build.js';
import { composeDown, projectFilter } from '../src/containers/compose-runner.js';
import { ensureServeImage, requireEngine, startEngine, type TestEngine } from './container-engines.js';
import { DEMO_REPO, removeDir } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const PORTS = { a: 25301, b: 25302, front: 25303, blocked: 25304, solo: 25305 };
const enabled = requireEngine('podman', 'compose test');

function tern(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

// The calling service: answers with what both HTTP services said, reached by their service names.
const FRONT = `
const http = require('node:http');
http.createServer(async (req, res) => {
  try {
    const [a, b] = await Promise.all([process.env.A_URL, process.env.B_URL].map((u) => fetch(u).then((r) => r.json())));
    res.end(JSON.stringify({ a: a.name, b: b.name }));
  } catch (err) { res.statusCode = 502; res.end(String(err)); }
}).listen(Number(process.env.PORT));`;

function composeFile(dir: string, image: string, extra = ''): string {
  const serve = (model: string, port: number) => `
    image: ${image}
    command: [serve, --model-repository, /models, --http-port, "${port}", --grpc-port, "${port + 10}", --no-watch]
    volumes: ["${path.join(DEMO_REPO, model)}:/models/${model}:ro"]
    ports: ["${port}:${port}"]
    deploy: { resources: { limits: { cpus: "0.5", memory: 256M } } }`;
  const file = path.join(dir, 'compose.yml');
  writeFileSync(file, `name: ternc-app
services:
  front:
    image: ${image}
    entrypoint: [/usr/local/bin/node]
    command: [-e, ${JSON.stringify(FRONT)}]
    environment:
      PORT: "${PORTS.front}"
      A_URL: http://api-a:${PORTS.a}/v2/models/iris-logreg
      B_URL: http://api-b:${PORTS.b}/v2/models/iris-forest
    ports: ["${PORTS.front}:${PORTS.front}"]
    depends_on: [api-a, api-b]
  api-a:${serve('iris-logreg', PORTS.a)}
  api-b:${serve('iris-forest', PORTS.b)}
${extra}`);
  return file;
}

describe.skipIf(!enabled)('app workloads: tern compose and tern run on Podman', () => {
  let engine: TestEngine;
  let built: BuiltImage;
  let dir: string;

  beforeAll(async () => {
    engine = await startEngine('podman', 'ternc-compose');
    built = await ensureServeImage(engine.engine);
    dir = mkdtempSync(path.join(tmpdir(), 'ternc-compose-'));
    process.env.DOCKER_HOST = engine.url;
  }, 300_000);

  afterAll(async () => {
    if (engine) {
      for (const p of ['ternc-app', 'ternc-bad', 'solo']) await composeDown(engine.engine, p, 1).catch(() => undefined);
      await engine.stop();
    }
    delete process.env.DOCKER_HOST;
    if (dir) removeDir(dir);
  }, 60_000);

  it('brings a three-service file up in dependency order; each service answers, the caller reaches the others by name', async () => {
    const up = await tern('compose', 'up', composeFile(dir, built.tag));
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toContain('project ternc-app is up: 3 containers');
    // depends_on order: both APIs reported ready before the caller.
    const order = up.stderr.split('\n').filter(Boolean).map((l) => l.split(':')[0]);
    expect(order.indexOf('front')).toBeGreaterThan(Math.max(order.indexOf('api-a'), order.indexOf('api-b')));
    for (const [port, model] of [[PORTS.a, 'iris-logreg'], [PORTS.b, 'iris-forest']] as const) {
      expect((await fetch(`http://127.0.0.1:${port}/v2/models/${model}/ready`)).status).toBe(200);
    }
    const front = await fetch(`http://127.0.0.1:${PORTS.front}/`);
    expect(front.status).toBe(200);
    expect(await front.json()).toEqual({ a: 'iris-logreg', b: 'iris-forest' });
    const running = await engine.engine.docker.listContainers({ filters: projectFilter('ternc-app') });
    expect(running.map((c) => c.Labels['tern.compose.service']).sort()).toEqual(['api-a', 'api-b', 'front']);
    expect(running.every((c) => c.Labels['tern.kind'] === 'app')).toBe(true);

    const down = await tern('compose', 'down', '--project', 'ternc-app');
    expect(down.stdout).toContain('project ternc-app: 3 containers removed');
  }, 180_000);

  it('tern run starts one app container from any image', async () => {
    const run = await tern('run', built.tag, '--name', 'solo', '--port', String(PORTS.solo), '--cpus', '0.5', '--volume', `${path.join(DEMO_REPO, 'iris-logreg')}:/models/iris-logreg:ro`,
      '--', 'serve', '--model-repository', '/models', '--http-port', String(PORTS.solo), '--grpc-port', String(PORTS.solo + 10));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('project solo is up: 1 containers');
    expect((await fetch(`http://127.0.0.1:${PORTS.solo}/v2/models/iris-logreg/ready`)).status).toBe(200);
    const [c] = await engine.engine.docker.listContainers({ filters: projectFilter('solo') });
    expect((await engine.engine.docker.getContainer(c.Id).inspect()).HostConfig.NanoCpus).toBe(5e8);
    expect((await tern('compose', 'down', '--project', 'solo')).code).toBe(0);
  }, 120_000);

  it('refuses an unknown key, a dependency cycle, a port in use and an unknown image with one line, leaving nothing behind', async () => {
    const write = (name: string, text: string) => {
      const f = path.join(dir, name);
      writeFileSync(f, text);
      return f;
    };
    const unknownKey = await tern('compose', 'up', write('unknown.yml', `name: ternc-bad\nservices:\n  a:\n    image: ${built.tag}\n    restart_policy: always\n`));
    const cycle = await tern('compose', 'up', write('cycle.yml', `name: ternc-bad\nservices:\n  a: {image: ${built.tag}, depends_on: [b]}\n  b: {image: ${built.tag}, depends_on: [a]}\n`));
    const noImage = await tern('compose', 'up', write('noimage.yml', 'name: ternc-bad\nservices:\n  a: {image: "tern/none:1"}\n'));
    const blocker: Server = await new Promise((resolve) => {
      const s = createServer();
      s.listen(PORTS.blocked, '0.0.0.0', () => resolve(s));
    });
    let portInUse;
    try {
      portInUse = await tern('compose', 'up', write('port.yml', `name: ternc-bad\nservices:\n  a: {image: ${built.tag}, ports: ["${PORTS.blocked}:${PORTS.blocked}"]}\n`));
    } finally {
      blocker.close();
    }
    const cases = [
      [unknownKey, /unknown key 'restart_policy' in services\.a/],
      [cycle, /dependency cycle: a -> b -> a/],
      [noImage, /image tern\/none:1 is not on the container engine/],
      [portInUse, new RegExp(`port ${PORTS.blocked} \\(service a\\) is already in use`)],
    ] as const;
    for (const [r, message] of cases) {
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^tern: /);
      expect(r.stderr).toMatch(message);
    }
    expect(await engine.engine.docker.listContainers({ all: true, filters: projectFilter('ternc-bad') })).toHaveLength(0);
  }, 60_000);
});
