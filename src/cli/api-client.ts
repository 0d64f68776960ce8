/**
 * The CLI's view of the control plane: where it is and who we are (saved by
 * `tern login`), and one request helper that turns API errors into the
 * one-line message the CLI prints.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

export interface Credentials { url: string; token: string }

export function credentialsFile(): string {
  return process.env.TERN_CONFIG ?? path.join(process.env.XDG_CONFIG_HOME ?? path.join(homedir(), '.config'), 'tern', 'credentials.json');
}

export async function saveCredentials(c: Credentials): Promise<void> {
  const file = credentialsFile();
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(c, null, 2), { mode: 0o600 });
}

/** Flags win over the environment, which wins over the saved login. */
export async function loadCredentials(flags: { url?: string; token?: string } = {}): Promise<Credentials> {
  let saved: Partial<Credentials> = {};
  try {
    saved = JSON.parse(await readFile(credentialsFile(), 'utf8')) as Credentials;
  } catch { /* not logged in yet */ }
  const url = flags.url || process.env.TERN_URL || saved.url;
  const token = flags.token || process.env.TERN_TOKEN || saved.token;
  if (!url || !token) throw new Error('not logged in: run `tern login --url http://<control>:7000 --username admin` first (or set TERN_URL and TERN_TOKEN)');
  return { url: url.replace(/\/+$/, ''), token };
}

export class ApiClient {
  constructor(readonly creds: Credentials) {}

  async request<T = unknown>(method: string, route: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const isRaw = body instanceof Uint8Array;
    const res = await this.send(method, route, body === undefined ? undefined : isRaw ? new Uint8Array(body) : JSON.stringify(body), {
      ...(body === undefined ? {} : { 'content-type': isRaw ? 'application/octet-stream' : 'application/json' }),
      ...headers,
    });
    const text = await res.text();
    return (text ? safeJson(text) : undefined) as T;
  }

  /** The response of a request whose body is streamed (logs, downloads); refused requests throw as `request` does. */
  async send(method: string, route: string, body?: BodyInit, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(`${this.creds.url}/api/v1${route}`, {
        method, headers: { authorization: `Bearer ${this.creds.token}`, ...headers }, body, signal,
        // a streamed request body (an upload) needs half-duplex mode in Node's fetch
        ...(body && typeof (body as ReadableStream).getReader === 'function' ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new Error(`cannot reach the control plane at ${this.creds.url}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    if (!res.ok) {
      const text = await res.text();
      const message = (safeJson(text) as { error?: string } | undefined)?.error ?? (text || res.statusText);
      throw new Error(`${method} ${route} failed (${res.status}): ${message}`);
    }
    return res;
  }

  get<T = unknown>(route: string) { return this.request<T>('GET', route); }
  post<T = unknown>(route: string, body?: unknown) { return this.request<T>('POST', route, body ?? {}); }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Plain aligned columns; lists are short, so no table library is needed. */
export function formatTable(rows: Record<string, unknown>[], columns: string[]): string {
  const cell = (v: unknown) => (v === undefined || v === null ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}
