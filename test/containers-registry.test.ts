/**
 * Images from a registry: Debian's docker-registry started here, the image
 * pushed to it with `tern image push` from Podman, and a Docker Engine node
 * that lacks the image pulling it when a replica names it; an image the
 * registry does not have fails with the registry's reason.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContainerDriver } from '../src/agent/drivers/container-driver.js';
import type { ReplicaSpec } from '../src/protocol/fleet.js';
import { ensureServeImage, removeOwned, requireEngine, startEngine, startRegistry, type TestEngine, type TestRegistry } from './container-engines.js';
import { DEMO_REPO, removeDir } from './helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const REGISTRY = '127.0.0.1:25500';
const run = promisify(execFile);
const enabled = requireEngine('podman', 'registry test') && requireEngine('docker', 'registry test') && requireEngine('registry', 'registry test');

async function tern(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const spec = (image: string): ReplicaSpec => ({
  id: 'ternc-reg-1', deployment: 'iris', model: 'iris-logreg', version: '1', sha256: 'c'.repeat(64), format: 'onnx', image,
  runtime: 'container', resources: { cpu: 0.5, memory_mb: 256 }, generation: 1,
});

describe.skipIf(!enabled)('images from a registry', () => {
  let podman: TestEngine;
  let docker: TestEngine;
  let registry: TestRegistry;
  let dir: string;
  let driver: ContainerDriver;
  let tag: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ternc-reg-'));
    registry = await startRegistry(REGISTRY, path.join(dir, 'registry'));
    [podman, docker] = await Promise.all([
      startEngine('podman', 'ternc-regp', undefined, { insecureRegistries: [REGISTRY] }),
      startEngine('docker', 'ternc-regd', undefined, { insecureRegistries: [REGISTRY] }),
    ]);
    tag = (await ensureServeImage(podman.engine)).tag;
    driver = new ContainerDriver({ dataDir: path.join(dir, 'agent'), engine: docker.url });
  }, 300_000);

  afterAll(async () => {
    if (docker && driver) await removeOwned(docker.engine, driver.owner).catch(() => undefined);
    await Promise.all([podman?.stop(), docker?.stop(), registry?.stop()]);
    if (dir) removeDir(dir);
  }, 60_000);

  it('tern image push sends the image to the registry, and a node without it pulls it to start a replica', async () => {
    const pushed = await tern('image', 'push', tag, '--registry', REGISTRY, '--engine', podman.url);
    expect(pushed.stderr).not.toMatch(/^tern:/m);
    expect(pushed.stdout).toContain(`pushed ${REGISTRY}/${tag}`);
    const remote = `${REGISTRY}/${tag}`;
    await docker.engine.docker.getImage(remote).remove({ force: true }).catch(() => undefined);

    const started = performance.now();
    const handle = await driver.start(spec(remote), path.join(DEMO_REPO, 'iris-logreg', '1'), 25080);
    console.log(`pulled ${remote} into Docker Engine and started a replica in ${(performance.now() - started).toFixed(0)} ms`);
    const res = await fetch('http://127.0.0.1:25080/v2/models/iris/ready');
    expect(res.status).toBe(200);
    expect((await docker.engine.docker.getImage(remote).inspect()).RepoTags).toContain(remote);
    await handle.stop(2000);
  }, 180_000);

  it('an image the registry does not have, or pushing an image the engine lacks, fails with a clear message', async () => {
    await expect(driver.start(spec(`${REGISTRY}/tern/none:1`), path.join(DEMO_REPO, 'iris-logreg', '1'), 25082))
      .rejects.toThrow(new RegExp(`cannot pull image ${REGISTRY}/tern/none:1: .*(not found|unknown|manifest)`, 'i'));
    const bad = await tern('image', 'push', 'tern/none:1', '--registry', REGISTRY, '--engine', podman.url);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^tern: image tern\/none:1 is not on podman/);
    expect(await removeOwned(docker.engine, driver.owner)).toBe(0);
  }, 60_000);
});
