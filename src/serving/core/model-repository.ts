/**
 * Reads a model repository directory (TF Serving / Triton layout):
 *   <repo>/<model>/config.json        optional; inferred from the model when absent
 *   <repo>/<model>/<version>/...      numeric version directories
 *   <repo>/apps.json                  optional Clipper-style applications
 * Only reads; the model manager decides what to load.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { formatZodError } from '../../protocol/errors.js';
import { AppsFileSchema, type AppSpec } from '../../protocol/apps.js';
import { ModelConfigSchema, type ModelConfig, type VersionPolicy } from '../../protocol/model-config.js';

export interface ModelSource {
  name: string;
  dir: string;
  /** Parsed config, or undefined when config.json is absent (infer from the model). */
  config?: ModelConfig;
  /** Why config.json could not be used; the model is then UNAVAILABLE. */
  configError?: string;
  /** Raw config text, to notice edits. */
  configText: string;
  /** version -> fingerprint of the files in it (names, sizes, mtimes). */
  versions: Map<string, string>;
}

export function parseModelConfig(name: string, text: string): ModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`config.json is not valid JSON: ${(e as Error).message}`);
  }
  const parsed = ModelConfigSchema.safeParse(json);
  if (!parsed.success) throw new Error(`config.json is invalid: ${formatZodError(parsed.error)}`);
  if (parsed.data.name && parsed.data.name !== name) {
    throw new Error(`config.json names the model '${parsed.data.name}' but its directory is '${name}'`);
  }
  return parsed.data;
}

async function fingerprint(dir: string): Promise<string> {
  const entries = await readdir(dir, { withFileTypes: true });
  const parts: string[] = [];
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const s = await stat(path.join(dir, e.name));
    parts.push(`${e.name}:${s.size}:${s.mtimeMs}`);
  }
  return parts.join('|');
}

async function readModelSource(root: string, name: string): Promise<ModelSource> {
  const dir = path.join(root, name);
  const source: ModelSource = { name, dir, configText: '', versions: new Map() };
  try {
    source.configText = await readFile(path.join(dir, 'config.json'), 'utf8');
    source.config = parseModelConfig(name, source.configText);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') source.configError = (e as Error).message;
  }
  const needsModelFile = (source.config?.backend ?? 'onnx') === 'onnx';
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!e.isDirectory() || !/^[1-9][0-9]*$/.test(e.name)) continue;
    const versionDir = path.join(dir, e.name);
    // A version directory still being filled (no model file yet) is not a version yet.
    if (needsModelFile && !existsSync(path.join(versionDir, 'model.onnx'))) continue;
    source.versions.set(e.name, await fingerprint(versionDir));
  }
  return source;
}

/** All model directories under root. Hidden directories and files are ignored. */
export async function scanRepository(root: string): Promise<Map<string, ModelSource>> {
  const out = new Map<string, ModelSource>();
  const entries = await readdir(root, { withFileTypes: true });
  for (const e of entries) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    try {
      out.set(e.name, await readModelSource(root, e.name));
    } catch (err) {
      // A directory removed mid-scan simply is not there this round.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

/** Which versions a policy serves, given the ones on disk. */
export function selectVersions(policy: VersionPolicy, available: string[]): string[] {
  const nums = available.map(Number).sort((a, b) => b - a);
  if ('all' in policy) return nums.map(String);
  if ('specific' in policy) return nums.filter((v) => policy.specific.versions.includes(v)).map(String);
  return nums.slice(0, policy.latest.num_versions).map(String);
}

/** apps.json, or no apps; a broken file is an error the caller reports. */
export async function readApps(root: string): Promise<AppSpec[]> {
  let text: string;
  try {
    text = await readFile(path.join(root, 'apps.json'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const parsed = AppsFileSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`apps.json is invalid: ${formatZodError(parsed.error)}`);
  return parsed.data.apps;
}
