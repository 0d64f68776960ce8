/**
 * Where a lab's state lives and how it is read and written. Every step of
 * `lab up` records what it made before going on, so a crash at any point
 * leaves a file that `lab down` can finish from.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LabStateSchema, type LabState } from '../protocol/lab.js';

/** `--state-dir`, else $TERN_LAB_STATE, else /var/lib/tern-lab (the lab needs root anyway). */
export function stateRoot(dir?: string): string {
  return path.resolve(dir ?? process.env.TERN_LAB_STATE ?? '/var/lib/tern-lab');
}

export function labDir(root: string, prefix: string): string {
  return path.join(root, prefix);
}

export function stateFile(root: string, prefix: string): string {
  return path.join(labDir(root, prefix), 'state.json');
}

export function writeState(root: string, state: LabState): void {
  const file = stateFile(root, state.prefix);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

export function readState(root: string, prefix: string): LabState | undefined {
  const file = stateFile(root, prefix);
  if (!existsSync(file)) return undefined;
  const parsed = LabStateSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(`lab state ${file} is unreadable: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

/** Prefixes of every lab recorded under the root. */
export function recordedLabs(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory() && existsSync(stateFile(root, e.name))).map((e) => e.name);
}

/** The only lab that is up, or the one named; a clear error otherwise. */
export function findLab(root: string, prefix?: string): LabState {
  if (prefix) {
    const s = readState(root, prefix);
    if (!s) throw new Error(`no lab '${prefix}' is up (no state in ${labDir(root, prefix)})`);
    return s;
  }
  const labs = recordedLabs(root);
  if (labs.length === 0) throw new Error(`no lab is up (nothing recorded in ${root}); start one with \`tern lab up SPEC\``);
  if (labs.length > 1) throw new Error(`${labs.length} labs are up (${labs.join(', ')}): name one with --lab PREFIX`);
  return readState(root, labs[0])!;
}
