/**
 * Servers under test run as child processes of the benchmark: started on free
 * loopback ports, awaited until their readiness URL answers 200, and always
 * stopped (SIGTERM, then SIGKILL after a grace period), also when the bench
 * fails or is interrupted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { request } from 'undici';

/** Lines of a child's output kept to explain a failure. */
const TAIL_LINES = 40;
const STOP_GRACE_MS = 5_000;

/** A port nobody listens on right now (the OS picks it; the child binds it a moment later). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export interface ChildServerOptions {
  /** Short name for messages ("tern serve", "naive server"). */
  name: string;
  /** Node script and its arguments. */
  script: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** URL that answers 200 once the server is ready. */
  readyUrl: string;
  readyTimeoutMs?: number;
}

export class ChildServer {
  private readonly tail: string[] = [];
  private exited?: string;
  private readonly exitPromise: Promise<void>;

  private constructor(readonly name: string, readonly child: ChildProcess) {
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() === '') continue;
        this.tail.push(line);
        if (this.tail.length > TAIL_LINES) this.tail.shift();
      }
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = signal ? `killed by ${signal}` : `exited with code ${code}`;
        liveChildren.delete(this);
        resolve();
      });
    });
    liveChildren.add(this);
  }

  get pid(): number | undefined { return this.child.pid; }

  get running(): boolean { return this.exited === undefined; }

  /** The last lines the child printed. */
  output(): string {
    return this.tail.join('\n');
  }

  static async start(opts: ChildServerOptions): Promise<ChildServer> {
    const child = spawn(process.execPath, [opts.script, ...opts.args], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const server = new ChildServer(opts.name, child);
    child.once('error', (err) => { server.exited ??= `failed to start: ${err.message}`; });
    try {
      await server.waitReady(opts.readyUrl, opts.readyTimeoutMs ?? 120_000);
    } catch (err) {
      await server.stop();
      throw err;
    }
    return server;
  }

  private async waitReady(url: string, timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let last = 'no answer yet';
    while (performance.now() < deadline) {
      if (this.exited) throw new Error(`${this.name} ${this.exited} before it was ready; its last output:\n${this.output()}`);
      try {
        const res = await request(url, { headersTimeout: 2_000, bodyTimeout: 2_000 });
        const text = await res.body.text();
        if (res.statusCode === 200) return;
        last = `HTTP ${res.statusCode} ${text.slice(0, 200)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`${this.name} was not ready after ${timeoutMs} ms (${url}: ${last}); its last output:\n${this.output()}`);
  }

  /** SIGTERM, then SIGKILL if it has not exited after the grace period. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), STOP_GRACE_MS).unref());
    if ((await Promise.race([this.exitPromise, timer])) === 'timeout' && this.running) {
      this.child.kill('SIGKILL');
      await this.exitPromise;
    }
  }
}

/** Children not yet exited: killed outright if the bench process itself exits early. */
const liveChildren = new Set<ChildServer>();

process.once('exit', () => {
  for (const c of liveChildren) c.child.kill('SIGKILL');
});

/** Stops every child still running (for signal handlers). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...liveChildren].map((c) => c.stop()));
}
