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
