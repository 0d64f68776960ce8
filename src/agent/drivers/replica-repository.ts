/**
 * The model repository a replica serves, laid out for `tern serve` from the
 * model cache (hard links, so no copy): shared by the process runtime (which
 * points the child at it) and the container runtime (which mounts it).
 *
 *   <dir>/repo/<deployment>/<version>/model.onnx   hard links into the model cache
 *   <dir>/repo/<deployment>/config.json            spec.config (or the artifact's), named for the deployment
 *   <dir>/repo/apps.json                           when the deployment is also an app
 */
import { copyFile, link, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { AppsFile } from '../../protocol/apps.js';
import type { ReplicaSpec } from '../../protocol/fleet.js';

/** Hard-links every file of `from` into `to` (copies across file systems). */
async function linkTree(from: string, to: string, skip: (name: string) => boolean = () => false): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (skip(e.name)) continue;
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    if (e.isDirectory()) await linkTree(src, dst);
    else if (e.isFile()) await link(src, dst).catch(() => copyFile(src, dst));
  }
}

/** Builds `<replica>/repo/<deployment>/<version>/` from the cached model, with config.json at the model level. */
export async function buildRepository(spec: ReplicaSpec, modelDir: string, dir: string): Promise<string> {
  const repo = path.join(dir, 'repo');
  await rm(repo, { recursive: true, force: true });
  const modelRoot = path.join(repo, spec.deployment);
  await linkTree(modelDir, path.join(modelRoot, spec.version), (name) => name === 'config.json');
  let config: Record<string, unknown> | undefined = spec.config;
  if (!config) {
    const shipped = await readFile(path.join(modelDir, 'config.json'), 'utf8').catch(() => undefined);
    if (shipped !== undefined) {
      try {
        config = JSON.parse(shipped) as Record<string, unknown>;
      } catch (err) {
        throw new Error(`the artifact's config.json is not valid JSON: ${(err as Error).message}`);
      }
    }
  }
  if (config) {
    // The replica serves the model under the deployment's name; a config naming the model would contradict its directory.
    const { name: _name, ...rest } = config;
    await writeFile(path.join(modelRoot, 'config.json'), `${JSON.stringify(rest, null, 2)}\n`);
  }
  if (spec.app) {
    const apps: AppsFile = { apps: [{ name: spec.deployment, model: spec.deployment, ...spec.app }] };
    await writeFile(path.join(repo, 'apps.json'), `${JSON.stringify(apps, null, 2)}\n`);
  }
  return repo;
}

