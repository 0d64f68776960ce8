/**
 * The Node binary an image runs. For the builder's own architecture it is the
 * running node itself; for another one it is the official build that npm
 * ships as `node-linux-<arch>` (the same version as the builder's node),
 * fetched once with `npm pack` into the cache directory.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar';
import { readElf, ELF_MACHINES } from './elf.js';
import { PLATFORMS, type PlatformName } from './platform.js';

const exec = promisify(execFile);

async function fetchNodePackage(nodeArch: string, cacheDir: string): Promise<string> {
  const version = process.version.slice(1);
  const pkg = `node-linux-${nodeArch}`;
  const dir = path.join(cacheDir, `${pkg}-${version}`);
  const binary = path.join(dir, 'bin', 'node');
  if (existsSync(binary)) return binary;
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    // npm pack downloads the tarball without the install-time cpu check that refuses it on another architecture.
    await exec('npm', ['pack', `${pkg}@${version}`, '--pack-destination', tmp, '--silent'], { cwd: tmp, maxBuffer: 1 << 20 });
    const tgz = (await readdir(tmp)).find((f) => f.endsWith('.tgz'));
    if (!tgz) throw new Error('npm pack wrote no tarball');
    await tar.x({ file: path.join(tmp, tgz), cwd: tmp, strip: 1, filter: (p) => p === 'package/bin/node' });
    await rm(dir, { recursive: true, force: true });
    await mkdir(path.dirname(dir), { recursive: true });
    await rm(path.join(tmp, tgz));
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw new Error(`cannot fetch Node ${version} for ${nodeArch} (npm package ${pkg}@${version}): ${(err as Error).message.split('\n')[0]}`);
  }
  return binary;
}

/**
 * A copy of `binary` without its symbol tables (Node builds keep ~12 MB of
 * them), made with binutils' strip for the target (`strip` for the build
 * machine's own architecture, `<triplet>-strip` for another); undefined when
 * that tool is not installed.
 */
async function strippedCopy(binary: string, platform: PlatformName, cacheDir: string): Promise<string | undefined> {
  const target = PLATFORMS[platform];
  const tool = target.nodeArch === process.arch ? 'strip' : `${target.triplet}-strip`;
  const st = await stat(binary);
  const out = path.join(cacheDir, 'stripped', `node-${process.version}-${target.arch}-${st.size}-${Math.round(st.mtimeMs)}`);
  if (existsSync(out)) return out;
  await mkdir(path.dirname(out), { recursive: true });
  try {
    await exec(tool, ['--strip-all', '-o', `${out}.tmp`, binary]);
    await rename(`${out}.tmp`, out);
    return out;
  } catch {
    await rm(`${out}.tmp`, { force: true });
    return undefined;
  }
}

/** Path of a node binary for `platform`, checked to be for that machine. */
export async function nodeBinaryFor(platform: PlatformName, cacheDir: string, override?: string): Promise<{ path: string; stripped: boolean }> {
  const target = PLATFORMS[platform];
  const binary = override ?? (target.nodeArch === process.arch ? process.execPath : await fetchNodePackage(target.nodeArch, cacheDir));
  const elf = await readElf(binary);
  if (elf.machine !== target.elfMachine) {
    throw new Error(`${binary} is built for ${ELF_MACHINES[elf.machine] ?? `ELF machine ${elf.machine}`}, not for ${platform}`);
  }
  const stripped = await strippedCopy(binary, platform, cacheDir);
  return { path: stripped ?? binary, stripped: stripped !== undefined };
}
