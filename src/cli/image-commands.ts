/** `tern image build` and `tern image load`. */
import { copyFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectEngine } from '../containers/engine.js';
import { buildImage } from '../containers/image-build.js';
import { inspectImage, loadImageArchive } from '../containers/images.js';
import { hostPlatform, parsePlatform } from '../containers/platform.js';
import { pushImage } from '../containers/registry.js';

export interface ImageBuildFlags {
  platform?: string;
  models?: string;
  tag?: string;
  output?: string;
  load?: boolean;
  engine?: string;
}

const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export async function imageBuild(f: ImageBuildFlags): Promise<void> {
  const platformName = f.platform ?? hostPlatform();
  if (!platformName) throw new Error(`this machine (${process.platform}/${process.arch}) is not a platform tern builds images for; name one with --platform`);
  const platform = parsePlatform(platformName);
  const started = Date.now();
  const built = await buildImage({
    platform, projectRoot: PROJECT_ROOT, models: f.models, tag: f.tag,
    onProgress: (m) => process.stderr.write(`${m}\n`),
  });
  const layers = built.layers.map((l) => `${l.name} ${mb(l.size)}`).join(', ');
  process.stdout.write(`built ${built.tag} for ${platform}: ${mb(built.sizeBytes)} (${layers})${built.cached ? ', unchanged inputs' : ''} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.stdout.write(`archive: ${built.archive}\n`);
  if (f.output) {
    await copyFile(built.archive, f.output);
    process.stdout.write(`copied to ${f.output}\n`);
  }
  if (f.load) await load(built.archive, built.tag, f.engine);
}

async function load(archive: string, tag: string | undefined, engineUrl?: string): Promise<void> {
  const engine = await connectEngine(engineUrl);
  const said = await loadImageArchive(engine, archive);
  const facts = tag ? await inspectImage(engine, tag) : undefined;
  process.stdout.write(`loaded into ${engine.kind} ${engine.version} at ${engine.url}: ${facts ? `${tag} (${facts.platform}, ${mb(facts.sizeBytes)})` : said}\n`);
}

export async function imagePush(ref: string, f: { registry: string; engine?: string }): Promise<void> {
  const engine = await connectEngine(f.engine);
  if (!(await inspectImage(engine, ref))) throw new Error(`image ${ref} is not on ${engine.kind} at ${engine.url} (build and load it with: tern image build --load)`);
  const layers = new Set<string>();
  const pushed = await pushImage(engine, ref, f.registry, (e) => {
    if (e.id && e.status === 'Pushed' && !layers.has(e.id)) {
      layers.add(e.id);
      process.stderr.write(`pushed layer ${e.id}\n`);
    }
  });
  process.stdout.write(`pushed ${pushed}\n`);
}

export async function imageLoad(archive: string, f: { engine?: string }): Promise<void> {
  await stat(archive).catch(() => {
    throw new Error(`image archive '${archive}' does not exist`);
  });
  await load(archive, undefined, f.engine);
}
