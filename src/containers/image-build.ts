/**
 * `tern image build`: the model-server image, assembled from local files with
 * no base image (`FROM scratch` in effect): Node for the target architecture,
 * tern's compiled code with the packages `tern serve` needs, their native
 * binaries for that architecture, the shared libraries all of these load, and
 * optionally a model repository. The result is a docker-save archive, cached
 * under a hash of its inputs (paths, sizes and modification times of every
 * file, the platform and the tag), so building again with nothing changed
 * costs a directory scan.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { writeImageArchive, type ImageConfig, type WrittenImage } from './image-archive.js';
import { appLayer, IMAGE_PATHS, modelsLayer, runtimeLayer, type Layer } from './image-inputs.js';
import { nodeBinaryFor } from './node-runtime.js';
import { defaultImageTag, hostPlatform, PLATFORMS, type PlatformName } from './platform.js';

export { defaultImageTag, IMAGE_REPOSITORY } from './platform.js';

/** Bumped whenever the image layout changes, so cached archives of an older layout are not reused. */
const LAYOUT_VERSION = 1;
/** Port `tern serve` listens on in the image unless told otherwise. */
export const IMAGE_HTTP_PORT = 8000;

export interface ImageBuildOptions {
  platform: PlatformName;
  /** Where tern's package.json, dist/ and node_modules are. */
  projectRoot: string;
  /** A model repository to bake in at /models. */
  models?: string;
  tag?: string;
  /** A node binary for the target instead of the builder's or npm's. */
  nodeBinary?: string;
  /** Where archives and fetched Node builds are kept. */
  cacheDir?: string;
  onProgress?: (message: string) => void;
}

export interface BuiltImage extends WrittenImage {
  archive: string;
  tag: string;
  platform: PlatformName;
  inputsHash: string;
  /** True when an archive of the same inputs was reused. */
  cached: boolean;
}

export function defaultCacheDir(): string {
  return process.env.TERN_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'tern');
}

/** Files at least this big are known by path, size and mtime; smaller ones by content (tsc rewrites dist/ on every build). */
const CONTENT_HASH_BELOW = 1 << 20;

async function inputsHash(layers: Layer[], platform: PlatformName, tag: string): Promise<string> {
  const hash = createHash('sha256').update(`tern-image-layout ${LAYOUT_VERSION}\n${platform}\n${tag}\n`);
  for (const layer of layers) {
    hash.update(`layer ${layer.name}\n`);
    for (const f of layer.files) {
      const identity = f.kind === 'file' && f.size < CONTENT_HASH_BELOW
        ? createHash('sha256').update(f.content ?? (await readFile(f.source!))).digest('hex')
        : `${f.source ?? f.target ?? ''}\t${f.mtimeMs}`;
      hash.update(`${f.path}\t${f.kind}\t${f.mode}\t${f.size}\t${identity}\n`);
    }
  }
  return hash.digest('hex');
}

function imageConfig(platform: PlatformName, version: string, hash: string, withModels: boolean): ImageConfig {
  const target = PLATFORMS[platform];
  return {
    architecture: target.arch,
    ...(target.arch === 'arm64' ? { variant: 'v8' } : {}),
    os: target.os,
    entrypoint: [`/${IMAGE_PATHS.node}`, `/${IMAGE_PATHS.app}/dist/cli/main.js`],
    cmd: ['serve', '--model-repository', `/${IMAGE_PATHS.models}`, '--no-watch'],
    env: ['PATH=/usr/local/bin:/usr/bin:/bin', `LD_LIBRARY_PATH=/lib/${target.triplet}`, 'NODE_ENV=production', 'ONNXRUNTIME_NODE_INSTALL_CUDA=skip'],
    workingDir: `/${IMAGE_PATHS.app}`,
    labels: {
      'org.opencontainers.image.title': 'tern serve',
      'org.opencontainers.image.version': version,
      'tern.image': 'serve',
      'tern.inputs': hash,
      'tern.models': withModels ? 'baked' : 'mounted',
    },
    exposedPorts: [IMAGE_HTTP_PORT, IMAGE_HTTP_PORT + 1],
  };
}

export async function buildImage(options: ImageBuildOptions): Promise<BuiltImage> {
  const progress = options.onProgress ?? (() => undefined);
  const root = path.resolve(options.projectRoot);
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
  const tag = options.tag ?? defaultImageTag(version, options.platform);

  progress(`collecting files for ${options.platform}`);
  const node = await nodeBinaryFor(options.platform, cacheDir, options.nodeBinary);
  if (!node.stripped) progress(`no strip tool for ${options.platform} here: node goes in with its symbol tables (~12 MB more; install binutils${options.platform === hostPlatform() ? '' : `-${PLATFORMS[options.platform].triplet}`})`);
  const app = await appLayer(root, options.platform);
  const layers = [await runtimeLayer(options.platform, node.path, app.natives), app.layer];
  if (options.models) {
    if (!existsSync(options.models)) throw new Error(`model repository '${options.models}' does not exist`);
    layers.push(await modelsLayer(options.models));
  }
  const hash = await inputsHash(layers, options.platform, tag);
  const dir = path.join(cacheDir, 'images');
  const archive = path.join(dir, `${hash.slice(0, 32)}.tar`);
  const meta = `${archive}.json`;
  if (existsSync(archive) && existsSync(meta)) {
    const written = JSON.parse(await readFile(meta, 'utf8')) as WrittenImage;
    progress(`reusing ${archive} (inputs unchanged)`);
    return { ...written, archive, tag, platform: options.platform, inputsHash: hash, cached: true };
  }
  await mkdir(dir, { recursive: true });
  const files = layers.reduce((n, l) => n + l.files.length, 0);
  progress(`writing ${layers.length} layers (${files} files)`);
  const tmp = `${archive}.tmp-${process.pid}`;
  const written = await writeImageArchive(tmp, tag, layers, imageConfig(options.platform, version, hash, !!options.models));
  await rename(tmp, archive);
  await writeFile(meta, JSON.stringify(written));
  return { ...written, archive, tag, platform: options.platform, inputsHash: hash, cached: false };
}
