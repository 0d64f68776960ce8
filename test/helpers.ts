/** Shared test plumbing: real servers on free ports, scratch copies of the demo repository, HTTP helpers. */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startServer, type RunningServer, type ServeOptions } from '../src/serving/server.js';

export const DEMO_REPO = path.resolve('.tern-test', 'demo-repository');

/** A scratch repository holding copies of the named demo models (and apps.json when asked). */
export function scratchRepository(models: string[], withApps = false): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-repo-'));
  for (const m of models) cpSync(path.join(DEMO_REPO, m), path.join(dir, m), { recursive: true });
  if (withApps) cpSync(path.join(DEMO_REPO, 'apps.json'), path.join(dir, 'apps.json'));
  return dir;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export async function startTestServer(options: Partial<ServeOptions> & { repository: string }): Promise<RunningServer & { url: string }> {
  const server = await startServer({
    host: '127.0.0.1', httpPort: 0, grpcPort: -1, watch: false,
    logger: pino({ level: process.env.TERN_TEST_LOG ?? 'silent' }),
    ...options,
  });
  return Object.assign(server, { url: `http://127.0.0.1:${server.httpPort}` });
}

export interface JsonReply<T = any> { status: number; body: T; headers: Headers }

export async function postJson<T = any>(url: string, body: unknown, headers: Record<string, string> = {}): Promise<JsonReply<T>> {
  const res = await fetch(url, {
    method: 'POST', headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T, headers: res.headers };
}

export async function getJson<T = any>(url: string): Promise<JsonReply<T>> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as T, headers: res.headers };
}

/** Polls until `check` returns true or the time runs out; returns whether it did. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 15_000, everyMs = 100): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return false;
}

/** Four iris rows, one per class boundary region, with their true species index. */
export const IRIS_ROWS: { features: number[]; label: number }[] = [
  { features: [5.1, 3.5, 1.4, 0.2], label: 0 },
  { features: [4.9, 3.0, 1.4, 0.2], label: 0 },
  { features: [6.4, 3.2, 4.5, 1.5], label: 1 },
  { features: [5.7, 2.8, 4.1, 1.3], label: 1 },
  { features: [6.3, 3.3, 6.0, 2.5], label: 2 },
  { features: [7.7, 3.0, 6.1, 2.3], label: 2 },
];

/** A TCP port free right now on loopback (for servers that need a known port before they start). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
