/**
 * The files of a model-server image, as layers (each a list of files with
 * their place in the image and where they come from):
 *
 *   runtime  /usr/local/bin/node, the dynamic loader and the shared libraries
 *            node and the native modules need (for the target architecture:
 *            the Debian multiarch directories /lib/<triplet>, /usr/lib/<triplet>)
 *   app      /tern/package.json, /tern/dist, /tern/node_modules (what `tern serve` needs)
 *   models   /models (optional: a model repository baked in)
 *
 * Native files in node_modules built for another OS or architecture are left
 * out (onnxruntime-node ships five platforms' binaries; the image keeps one).
 */
import { lstat, open, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ELF_MACHINES, readElf } from './elf.js';
import { PLATFORMS, type PlatformName } from './platform.js';
import { packageClosure, scanDist } from './serve-closure.js';

export interface LayerFile {
  /** Path inside the image, without a leading slash. */
  path: string;
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  /** Host file to copy (files). */
  source?: string;
  /** Or the file's content, for files tern writes itself. */
  content?: Buffer;
  /** Symlink target. */
  target?: string;
  size: number;
  mtimeMs: number;
}

export interface Layer {
  name: string;
  files: LayerFile[];
}

export const IMAGE_PATHS = { node: 'usr/local/bin/node', app: 'tern', models: 'models' } as const;

const NATIVE = /\.(node|so(\.[0-9]+)*|dylib|dll)$/;
/** Files no running server reads: source maps, type declarations and sources, docs. */
const SKIPPED = /(\.map|\.[cm]?ts|\.md|\.markdown|\.flow)$/i;
/** Package folders no running server reads. */
const SKIPPED_DIRS = /(^|\/)(node_modules|test|tests|__tests__|example|examples|docs?|benchmarks?|\.github|src)$/;

async function fileEntry(imagePath: string, source: string): Promise<LayerFile> {
  const st = await stat(source);
  return { path: imagePath, kind: 'file', mode: st.mode & 0o111 ? 0o755 : 0o644, source, size: st.size, mtimeMs: st.mtimeMs };
}

/** The ELF machine of a file, or undefined when it is not ELF (a Mach-O or PE binary of another OS). */
async function elfMachine(file: string): Promise<number | undefined> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(20);
    await fh.read(buf, 0, 20, 0);
    return buf.readUInt32BE(0) === 0x7f454c46 ? buf.readUInt16LE(18) : undefined;
  } finally {
    await fh.close();
  }
}

/** Every file under `dir` (recursively) mapped under `prefix`, with symlinks kept as links. */
async function walk(dir: string, prefix: string, skip: (rel: string, isDir: boolean) => boolean | Promise<boolean>, out: LayerFile[], rel = ''): Promise<void> {
  for (const e of (await readdir(path.join(dir, rel), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    const src = path.join(dir, r);
    if (await skip(r, e.isDirectory())) continue;
    if (e.isDirectory()) {
      await walk(dir, prefix, skip, out, r);
    } else if (e.isSymbolicLink()) {
      const st = await lstat(src);
      out.push({ path: `${prefix}/${r}`, kind: 'symlink', mode: 0o777, target: await readlink(src), size: 0, mtimeMs: st.mtimeMs });
    } else if (e.isFile()) {
      out.push(await fileEntry(`${prefix}/${r}`, src));
    }
  }
}

/** True when a folder holds JavaScript at any depth: some packages (protobufjs) run from src/, others keep only TypeScript there. */
async function hasJavaScript(dir: string): Promise<boolean> {
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isFile() && /\.[cm]?js$/.test(e.name)) return true;
    if (e.isDirectory() && (await hasJavaScript(path.join(dir, e.name)))) return true;
  }
  return false;
}

/**
 * Files tsc does not copy (grpc_predict_v2.proto) but modules read from
 * beside themselves: the non-TypeScript files of their src/ folders, placed
 * beside the compiled modules.
 */
async function sourceAssets(root: string, dirs: string[]): Promise<LayerFile[]> {
  const out: LayerFile[] = [];
  for (const dir of [...new Set(dirs)].sort()) {
    const src = path.join(root, 'src', dir);
    for (const e of await readdir(src, { withFileTypes: true }).catch(() => [])) {
      if (e.isFile() && !/\.ts$/.test(e.name)) out.push(await fileEntry(`${IMAGE_PATHS.app}/dist/${dir.split(path.sep).join('/')}/${e.name}`, path.join(src, e.name)));
    }
  }
  return out;
}

/** The app layer and the native files in it (which need shared libraries). */
export async function appLayer(root: string, platform: PlatformName): Promise<{ layer: Layer; natives: string[] }> {
  const target = PLATFORMS[platform];
  const dist = path.join(root, 'dist');
  const files: LayerFile[] = [await fileEntry(`${IMAGE_PATHS.app}/package.json`, path.join(root, 'package.json'))];
  // Only the modules `tern serve` loads: the control plane, agent and benchmarks stay out.
  const { modules, packages } = await scanDist(dist);
  for (const m of modules) files.push(await fileEntry(`${IMAGE_PATHS.app}/dist/${path.relative(dist, m).split(path.sep).join('/')}`, m));
  files.push(...(await sourceAssets(root, modules.map((m) => path.dirname(path.relative(dist, m))))));
  const natives: string[] = [];
  for (const dir of await packageClosure(root, packages)) {
    const prefix = `${IMAGE_PATHS.app}/${path.relative(root, dir).split(path.sep).join('/')}`;
    await walk(dir, prefix, async (rel, isDir) => {
      // A package's own node_modules are packages of the closure in their own right.
      if (isDir) return SKIPPED_DIRS.test(rel) && !(/(^|\/)src$/.test(rel) && (await hasJavaScript(path.join(dir, rel))));
      if (SKIPPED.test(rel)) return true;
      if (!NATIVE.test(rel)) return false;
      const machine = await elfMachine(path.join(dir, rel));
      if (machine !== target.elfMachine) return true;
      natives.push(path.join(dir, rel));
      return false;
    }, files);
  }
  return { layer: { name: 'app', files }, natives };
}

export async function modelsLayer(repository: string): Promise<Layer> {
  const files: LayerFile[] = [];
  await walk(path.resolve(repository), IMAGE_PATHS.models, () => false, files);
  return { name: 'models', files };
}

/**
 * Name resolution for a scratch image: without nsswitch.conf glibc asks DNS
 * before /etc/hosts, and the names the engine writes into /etc/hosts (compose
 * services, --add-host) would wait on a resolver that may not answer.
 */
function etcFiles(): LayerFile[] {
  const text = (path: string, body: string): LayerFile => {
    const content = Buffer.from(body);
    return { path, kind: 'file', mode: 0o644, content, size: content.length, mtimeMs: 0 };
  };
  return [text('etc/nsswitch.conf', 'hosts: files dns\n'), text('etc/passwd', 'root:x:0:0:root:/root:/sbin/nologin\n'), text('etc/group', 'root:x:0:\n')];
}

function libDirs(triplet: string): string[] {
  return [`/lib/${triplet}`, `/usr/lib/${triplet}`];
}

function missingLibrary(name: string, platform: PlatformName, needer: string): Error {
  const { triplet, arch } = PLATFORMS[platform];
  return new Error(`${name} for ${platform} (needed by ${path.basename(needer)}) is not in ${libDirs(triplet).join(' or ')}; `
    + `install the target's C and C++ runtime: dpkg --add-architecture ${arch} && apt-get update && apt-get install libc6:${arch} libstdc++6:${arch} libgcc-s1:${arch}`);
}

/**
 * The runtime layer: node, the dynamic loader and every shared library that
 * node and `natives` need, found by reading their ELF headers (so it works
 * for another architecture, where ldd cannot run the binaries).
 */
export async function runtimeLayer(platform: PlatformName, nodeBinary: string, natives: string[]): Promise<Layer> {
  const target = PLATFORMS[platform];
  const dirs = libDirs(target.triplet);
  const files: LayerFile[] = [await fileEntry(IMAGE_PATHS.node, nodeBinary), { path: 'tmp', kind: 'dir', mode: 0o1777, size: 0, mtimeMs: 0 }, ...etcFiles()];
  const libs = new Map<string, string>();
  let interpreter: string | undefined;
  const queue = [nodeBinary, ...natives];
  const seen = new Set<string>();
  while (queue.length) {
    const bin = queue.pop()!;
    if (seen.has(bin)) continue;
    seen.add(bin);
    const elf = await readElf(bin);
    if (elf.machine !== target.elfMachine) throw new Error(`${bin} is built for ${ELF_MACHINES[elf.machine] ?? elf.machine}, not ${platform}`);
    interpreter ??= elf.interpreter;
    const origin = path.dirname(bin);
    for (const name of elf.needed) {
      if (libs.has(name)) continue;
      // Libraries a package ships beside its binary ($ORIGIN) are already in the app layer.
      if (elf.runpath.some((rp) => existsSync(path.join(rp.replace('$ORIGIN', origin), name)))) continue;
      const dir = dirs.find((d) => existsSync(path.join(d, name)));
      if (!dir) throw missingLibrary(name, platform, bin);
      const real = await realpath(path.join(dir, name));
      libs.set(name, real);
      queue.push(real);
    }
  }
  if (!interpreter) throw new Error(`${nodeBinary} names no dynamic loader (PT_INTERP)`);
  const loaderDir = dirs.find((d) => existsSync(path.join(d, path.basename(interpreter!))));
  if (!loaderDir) throw missingLibrary(path.basename(interpreter), platform, nodeBinary);
  const loader = interpreter.replace(/^\//, '');
  files.push(await fileEntry(loader, await realpath(path.join(loaderDir, path.basename(interpreter)))));
  for (const [name, source] of [...libs].sort()) {
    const at = `lib/${target.triplet}/${name}`;
    // libc names the loader too: a link to it, not a second copy.
    if (name === path.basename(interpreter) && at !== loader) files.push({ path: at, kind: 'symlink', mode: 0o777, target: `/${loader}`, size: 0, mtimeMs: 0 });
    else if (at !== loader) files.push(await fileEntry(at, source));
  }
  return { name: 'runtime', files };
}
