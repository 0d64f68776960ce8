/**
 * Writes an image as a `docker save` archive (manifest.json, the config and
 * one tar per layer), which Docker Engine and Podman both load through the
 * Engine API. Layers are reproducible: entries sorted, owned by root, dated
 * at the epoch, so the same inputs give the same image id.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import type { Layer, LayerFile } from './image-inputs.js';

const EPOCH = new Date(0);

export interface ImageConfig {
  architecture: string;
  variant?: string;
  os: string;
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  labels: Record<string, string>;
  exposedPorts: number[];
}

interface WrittenLayer {
  file: string;
  digest: string;
  size: number;
  name: string;
}

/** Parent directories of every entry, so the layer is complete on its own. */
function withParents(files: LayerFile[]): LayerFile[] {
  const byPath = new Map(files.map((f) => [f.path, f]));
  for (const f of files) {
    for (let dir = path.posix.dirname(f.path); dir !== '.' && !byPath.has(dir); dir = path.posix.dirname(dir)) {
      byPath.set(dir, { path: dir, kind: 'dir', mode: 0o755, size: 0, mtimeMs: 0 });
    }
  }
  return [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

function entry(pack: tarStream.Pack, f: LayerFile): Promise<void> {
  const header = { name: f.path, mode: f.mode, uid: 0, gid: 0, mtime: EPOCH };
  return new Promise((resolve, reject) => {
    if (f.kind === 'dir') pack.entry({ ...header, name: `${f.path}/`, type: 'directory' }, (err) => (err ? reject(err) : resolve()));
    else if (f.kind === 'symlink') pack.entry({ ...header, type: 'symlink', linkname: f.target }, (err) => (err ? reject(err) : resolve()));
    else if (f.content) pack.entry({ ...header, type: 'file', size: f.content.length }, f.content, (err) => (err ? reject(err) : resolve()));
    else {
      const sink = pack.entry({ ...header, type: 'file', size: f.size }, (err) => (err ? reject(err) : resolve()));
      pipeline(createReadStream(f.source!), sink).catch(reject);
    }
  });
}

function hashing(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({ transform(chunk: Buffer, _enc, cb) { hash.update(chunk); cb(null, chunk); } });
}

async function writeLayer(layer: Layer, dir: string): Promise<WrittenLayer> {
  const file = path.join(dir, `${layer.name}.layer.tar`);
  const pack = tarStream.pack();
  const hash = createHash('sha256');
  const written = pipeline(pack, hashing(hash), createWriteStream(file));
  for (const f of withParents(layer.files)) await entry(pack, f);
  pack.finalize();
  await written;
  return { file, digest: hash.digest('hex'), size: (await stat(file)).size, name: layer.name };
}

function configJson(config: ImageConfig, layers: WrittenLayer[]): string {
  return JSON.stringify({
    architecture: config.architecture,
    ...(config.variant ? { variant: config.variant } : {}),
    os: config.os,
    created: EPOCH.toISOString(),
    config: {
      Entrypoint: config.entrypoint, Cmd: config.cmd, Env: config.env, WorkingDir: config.workingDir, Labels: config.labels,
      ExposedPorts: Object.fromEntries(config.exposedPorts.map((p) => [`${p}/tcp`, {}])),
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${l.digest}`) },
    history: layers.map((l) => ({ created: EPOCH.toISOString(), created_by: `tern image build: ${l.name} layer` })),
  });
}

export interface WrittenImage {
  /** sha256 of the config: the image id engines report. */
  id: string;
  /** Sum of the layers' sizes (what `docker images` shows as the size). */
  sizeBytes: number;
  layers: { name: string; digest: string; size: number }[];
}

/** Writes `layers` and `config` as a docker-save archive at `output` tagged `tag`. */
export async function writeImageArchive(output: string, tag: string, layers: Layer[], config: ImageConfig): Promise<WrittenImage> {
  const tmp = `${output}.layers-${process.pid}`;
  await mkdir(tmp, { recursive: true });
  try {
    const written: WrittenLayer[] = [];
    for (const layer of layers) written.push(await writeLayer(layer, tmp));
    const cfg = configJson(config, written);
    const id = createHash('sha256').update(cfg).digest('hex');
    const manifest = JSON.stringify([{ Config: `${id}.json`, RepoTags: [tag], Layers: written.map((l) => `${l.digest}/layer.tar`) }]);
    const pack = tarStream.pack();
    const done = pipeline(pack, createWriteStream(output));
    const add = (name: string, body: string) => new Promise<void>((resolve, reject) => pack.entry({ name, mtime: EPOCH, mode: 0o644 }, body, (err) => (err ? reject(err) : resolve())));
    for (const l of written) {
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry({ name: `${l.digest}/layer.tar`, size: l.size, mtime: EPOCH, mode: 0o644 }, (err) => (err ? reject(err) : resolve()));
        pipeline(createReadStream(l.file), sink).catch(reject);
      });
    }
    await add(`${id}.json`, cfg);
    await add('manifest.json', manifest);
    pack.finalize();
    await done;
    return { id, sizeBytes: written.reduce((s, l) => s + l.size, 0), layers: written.map(({ name, digest, size }) => ({ name, digest, size })) };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface ArchiveFacts {
  /** The first tag of the (first) image in the archive. */
  ref?: string;
  /** e.g. linux/arm64, from the image's config. */
  platform: string;
}

/** Reads which image a docker-save archive holds (manifest.json and the config it names), skipping the layers. */
export async function readArchiveFacts(file: string): Promise<ArchiveFacts> {
  const extract = tarStream.extract();
  const small = new Map<string, string>();
  const reading = pipeline(createReadStream(file), extract).catch((err: unknown) => {
    throw new Error(`${file} is not an image archive (tar): ${(err as Error).message}`);
  });
  for await (const entry of extract) {
    const name = entry.header.name.replace(/^\.\//, '');
    if (name.endsWith('.json') && !name.includes('/') && (entry.header.size ?? 0) < 1 << 20) {
      const chunks: Buffer[] = [];
      for await (const c of entry) chunks.push(c as Buffer);
      small.set(name, Buffer.concat(chunks).toString('utf8'));
    } else {
      entry.resume();
    }
  }
  await reading;
  const manifestText = small.get('manifest.json');
  if (!manifestText) throw new Error(`${file} has no manifest.json: not a docker-save image archive`);
  const [manifest] = JSON.parse(manifestText) as { Config: string; RepoTags?: string[] }[];
  const configText = small.get(manifest?.Config ?? '');
  if (!configText) throw new Error(`${file} does not hold the image config its manifest names (${manifest?.Config})`);
  const config = JSON.parse(configText) as { os?: string; architecture?: string };
  return { ref: manifest.RepoTags?.[0], platform: `${config.os ?? 'linux'}/${config.architecture ?? 'unknown'}` };
}
