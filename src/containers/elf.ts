/**
 * Just enough of ELF to assemble an image for another architecture without
 * running its binaries (`ldd` cannot): the machine a binary is for, its
 * program interpreter (the dynamic loader) and the shared libraries it needs
 * (DT_NEEDED) with its RUNPATH. 64-bit little-endian only (x86-64, aarch64).
 */
import { readFile } from 'node:fs/promises';

export interface ElfInfo {
  machine: number;
  interpreter?: string;
  needed: string[];
  runpath: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

export function isElf(buf: Buffer): boolean {
  return buf.length > 64 && buf.readUInt32BE(0) === 0x7f454c46;
}

function cString(buf: Buffer, offset: number): string {
  const end = buf.indexOf(0, offset);
  return buf.toString('utf8', offset, end < 0 ? buf.length : end);
}

export function parseElf(buf: Buffer, name = 'file'): ElfInfo {
  if (!isElf(buf)) throw new Error(`${name} is not an ELF file`);
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error(`${name} is not a 64-bit little-endian ELF file`);
  const machine = buf.readUInt16LE(18);
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let dynamic: { offset: number; size: number } | undefined;
  let interpreter: string | undefined;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize;
    const type = buf.readUInt32LE(p);
    const offset = buf.readBigUInt64LE(p + 8);
    const vaddr = buf.readBigUInt64LE(p + 16);
    const filesz = buf.readBigUInt64LE(p + 32);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_DYNAMIC) dynamic = { offset: Number(offset), size: Number(filesz) };
    else if (type === PT_INTERP) interpreter = cString(buf, Number(offset));
  }
  const info: ElfInfo = { machine, interpreter, needed: [], runpath: [] };
  if (!dynamic) return info; // statically linked
  const entries: [bigint, bigint][] = [];
  for (let p = dynamic.offset; p + 16 <= dynamic.offset + dynamic.size; p += 16) {
    const tag = buf.readBigInt64LE(p);
    if (tag === 0n) break;
    entries.push([tag, buf.readBigUInt64LE(p + 8)]);
  }
  const strtabAddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const seg = loads.find((l) => strtabAddr !== undefined && strtabAddr >= l.vaddr && strtabAddr < l.vaddr + l.filesz);
  if (strtabAddr === undefined || !seg) return info;
  const strtab = Number(strtabAddr - seg.vaddr + seg.offset);
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(cString(buf, strtab + Number(val)));
    else if (tag === DT_RUNPATH || tag === DT_RPATH) info.runpath.push(...cString(buf, strtab + Number(val)).split(':').filter(Boolean));
  }
  return info;
}

export async function readElf(file: string): Promise<ElfInfo> {
  return parseElf(await readFile(file), file);
}

export const ELF_MACHINES: Record<number, string> = { 62: 'x86-64', 183: 'aarch64' };
