/**
 * The agent's small state files in its data directory (identity, last applied
 * desired state, handled command ids): JSON, validated on read, written
 * atomically (temp file + rename) so a crash never leaves half a file.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';

/** The file names inside `<dataDir>`, listed in one place. */
export const STATE_FILES = {
  identity: 'identity.json',
  desired: 'desired.json',
  commands: 'commands.json',
  cache: 'cache',
  replicas: 'replicas',
  /** The gateway's last routing table (it routes by it while the control plane is away). */
  routes: 'routes.json',
} as const;

export async function readStateFile<T extends z.ZodType>(file: string, schema: T): Promise<z.infer<T> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new Error(`${file} is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

let seq = 0;

export async function writeStateFile(file: string, value: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${seq++}.tmp`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}
