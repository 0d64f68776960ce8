/**
 * Paths of the compiled JavaScript files the agent runs as separate processes
 * (`tern serve` for replicas, the hardware probe, the replicas' parent watch,
 * the gateway).
 * Compiled code finds them beside itself in dist/; code run from src/ by the
 * test runner uses the build in dist/ (the test setup compiles the project).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The scripts, by their path inside dist/. */
export const SCRIPTS = {
  cli: 'cli/main.js',
  factsProbe: 'agent/facts-probe.js',
  parentWatch: 'agent/drivers/parent-watch.js',
  gateway: 'gateway/gateway-child.js',
} as const;

export function compiledScript(rel: (typeof SCRIPTS)[keyof typeof SCRIPTS]): string {
  const beside = path.resolve(here, '..', rel);
  if (existsSync(beside)) return beside;
  const built = path.resolve(here, '../../dist', rel);
  if (existsSync(built)) return built;
  throw new Error(`cannot find ${rel} (looked at ${beside} and ${built}); build tern first (npm run build)`);
}
