/**
 * Runs once before the suite: compiles the CLI (tests start it as a real
 * process) and writes the demo model repository that tests read from.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

export const TEST_HOME = path.resolve('.tern-test');
export const DEMO_REPO = path.join(TEST_HOME, 'demo-repository');

export default async function setup(): Promise<void> {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
  rmSync(DEMO_REPO, { recursive: true, force: true });
  mkdirSync(TEST_HOME, { recursive: true });
  const { writeDemoRepository } = await import('../src/models/demo-repository.js');
  await writeDemoRepository(DEMO_REPO);
}
