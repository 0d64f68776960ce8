/**
 * What of node_modules `tern serve` needs: the packages its compiled modules
 * import statically (from the CLI entry, the serve command and the ONNX
 * session worker), and their dependencies, found as Node resolves them.
 * Dynamic imports are lazy on purpose (the control plane, the agent, sharp for
 * OCR image decoding) and are left out, which keeps better-sqlite3, aedes and
 * the other fleet-only packages out of the model-server image.
 */
import { builtinModules } from 'node:module';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
// The asm.js build: no WebAssembly, which the lean agent runtime does not have.
import { parse } from 'es-module-lexer/js';

/** Modules (inside dist/) that run in the image: the CLI entry, `tern serve`, and the session worker thread. */
export const SERVE_ENTRIES = ['cli/main.js', 'cli/serve-command.js', 'serving/runtimes/onnx-worker.js'];

/** Dependencies that only a package's install script uses. */
const INSTALL_ONLY: Record<string, string[]> = { 'onnxruntime-node': ['adm-zip', 'global-agent'] };

const BUILTINS = new Set(builtinModules);

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** Import specifiers of one compiled module (static `import ... from`, `export ... from`, bare `import 'x'`). */
export function staticImports(source: string): string[] {
  // A real lexer, not a regex: text such as `'... comes from', 'x'` in a string is no import.
  // Dynamic import() is left out on purpose: that is how optional parts (sharp) stay out.
  const [imports] = parse(source);
  return imports.filter((i) => i.d === -1 && i.n !== undefined).map((i) => i.n!);
}

/** Dist modules reachable from the entries and the bare packages they import. */
export async function scanDist(distDir: string, entries = SERVE_ENTRIES): Promise<{ modules: string[]; packages: string[] }> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const queue = entries.map((e) => path.join(distDir, e));
  while (queue.length) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = await readFile(file, 'utf8').catch(() => {
      throw new Error(`${path.relative(distDir, file)} is missing from ${distDir}; build tern first (npm run build)`);
    });
    for (const spec of staticImports(source)) {
      if (spec.startsWith('.')) queue.push(path.resolve(path.dirname(file), spec));
      else if (!spec.startsWith('node:') && !BUILTINS.has(spec)) packages.add(packageName(spec));
    }
  }
  return { modules: [...seen].sort(), packages: [...packages].sort() };
}

/** The directory Node would load `name` from when required from `fromDir` (walking up to `root`). */
function resolvePackageDir(name: string, fromDir: string, root: string): string | undefined {
  let dir = fromDir;
  for (;;) {
    const candidate = path.join(dir, 'node_modules', name);
    if (existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === root || path.dirname(dir) === dir) return undefined;
    dir = path.dirname(dir);
  }
}

/** Package directories (absolute) needed at run time for `packages`, with their dependencies. */
export async function packageClosure(root: string, packages: string[]): Promise<string[]> {
  const dirs = new Set<string>();
  const queue = packages.map((name) => ({ name, from: root, optional: false }));
  while (queue.length) {
    const { name, from, optional } = queue.pop()!;
    const dir = resolvePackageDir(name, from, root);
    if (!dir) {
      if (optional) continue;
      throw new Error(`package '${name}' (needed by ${path.relative(root, from) || 'tern'}) is not installed; run npm install`);
    }
    if (dirs.has(dir)) continue;
    dirs.add(dir);
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>;
    };
    const skip = new Set(INSTALL_ONLY[name] ?? []);
    for (const dep of Object.keys(pkg.dependencies ?? {})) if (!skip.has(dep)) queue.push({ name: dep, from: dir, optional: false });
    // Optional ones are often another platform's binaries: taken only when installed.
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) queue.push({ name: dep, from: dir, optional: true });
  }
  return [...dirs].sort();
}
