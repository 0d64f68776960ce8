/**
 * node:http for the agent's few HTTP calls (join, blob downloads, readiness
 * probes) rather than fetch: fetch's parser is WebAssembly, which the lean
 * runtime (footprint.ts) turns off, and node:http costs less memory. https is
 * loaded only for https URLs.
 */
import http from 'node:http';

type Client = Pick<typeof http, 'request' | 'get'>;

let tls: Promise<Client> | undefined;

export function clientFor(url: string): Promise<Client> {
  if (!url.startsWith('https:')) return Promise.resolve(http);
  tls ??= import('node:https').then((m) => m.default as unknown as Client);
  return tls;
}

/** GET with an idle timeout (no data for `idleMs` aborts). */
export async function httpGet(url: string, headers: Record<string, string>, idleMs: number): Promise<http.IncomingMessage> {
  const client = await clientFor(url);
  return new Promise((resolve, reject) => {
    const req = client.get(url, { headers }, resolve);
    req.setTimeout(idleMs, () => req.destroy(new Error(`no data for ${idleMs} ms`)));
    req.on('error', reject);
  });
}

/** The error message of a non-2xx answer (tern's {"error"} body, or the start of the text). */
export async function readSnippet(res: http.IncomingMessage, max = 500): Promise<string> {
  let text = '';
  for await (const chunk of res) {
    if (text.length < max) text += (chunk as Buffer).toString('utf8');
  }
  try {
    const body = JSON.parse(text) as { message?: string; error?: string };
    return body.message ?? body.error ?? text.slice(0, max);
  } catch {
    return text.slice(0, max);
  }
}
