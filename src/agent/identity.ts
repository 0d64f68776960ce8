/**
 * Joining the fleet and keeping this node's identity.
 *
 * `<dataDir>/identity.json` holds the node id and node token the control plane
 * issued. With it, the agent rejoins (node_id + node token); should the control
 * plane refuse that token and a join token is configured, it re-registers under
 * the same node id with the join token. Without it, it joins with the join
 * token. An unreachable control plane (network error, 5xx) is retried with
 * backoff; a refusal (4xx) is an error naming the control plane's reason.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { JoinResponseSchema, type JoinResponse, type NodeFacts } from '../protocol/fleet.js';
import { clientFor } from './http-client.js';
import { Backoff, DEFAULT_BACKOFF, sleep, type BackoffConfig } from './backoff.js';
import { readStateFile, STATE_FILES, writeStateFile } from './state-files.js';

export const IdentitySchema = z.object({
  node_id: z.string().min(1),
  node_token: z.string().min(1),
  control_url: z.string().optional(),
  joined_at: z.string().optional(),
});
export type Identity = z.infer<typeof IdentitySchema>;

export function identityFile(dataDir: string): string {
  return path.join(dataDir, STATE_FILES.identity);
}

export async function loadIdentity(dataDir: string): Promise<Identity | undefined> {
  return readStateFile(identityFile(dataDir), IdentitySchema);
}

export async function saveIdentity(dataDir: string, identity: Identity): Promise<void> {
  await writeStateFile(identityFile(dataDir), identity);
}

/** The control plane answered and refused (4xx): retrying the same request will not help. */
export class JoinRefusedError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'JoinRefusedError';
  }
}

async function postJson(url: string, body: unknown, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  const client = await clientFor(url);
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = client.request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = text;
        try {
          json = JSON.parse(text);
        } catch {
          // keep the text
        }
        resolve({ status: res.statusCode ?? 0, body: json });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(data);
  });
}

function reason(body: unknown): string {
  if (body && typeof body === 'object') {
    const b = body as { error?: unknown; message?: unknown };
    if (typeof b.error === 'string') return b.error;
    if (typeof b.message === 'string') return b.message;
  }
  return typeof body === 'string' ? body.slice(0, 300) : JSON.stringify(body).slice(0, 300);
}

/** One join attempt. Throws JoinRefusedError on 4xx, Error when unreachable or on 5xx. */
export async function joinOnce(controlUrl: string, request: { token: string; facts: NodeFacts; node_id?: string }, timeoutMs = 10_000): Promise<JoinResponse> {
  const url = `${controlUrl.replace(/\/$/, '')}/api/v1/join`;
  let res: { status: number; body: unknown };
  try {
    res = await postJson(url, request, timeoutMs);
  } catch (err) {
    throw new Error(`control plane ${controlUrl} unreachable: ${(err as Error).message}`);
  }
  if (res.status >= 400 && res.status < 500) throw new JoinRefusedError(res.status, `the control plane refused to ${request.node_id ? `rejoin node ${request.node_id}` : 'join'} (HTTP ${res.status}): ${reason(res.body)}`);
  if (res.status !== 200 && res.status !== 201) throw new Error(`control plane ${controlUrl} answered HTTP ${res.status}: ${reason(res.body)}`);
  const parsed = JoinResponseSchema.safeParse(res.body);
  if (!parsed.success) throw new Error(`control plane ${controlUrl} sent an invalid join response: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export interface JoinConfig {
  controlUrl: string;
  dataDir: string;
  /** The join token; optional when an identity exists. */
  token?: string;
  facts: () => Promise<NodeFacts>;
  backoff?: BackoffConfig;
  signal?: AbortSignal;
  log?: Logger;
}

/**
 * Joins or rejoins, retrying while the control plane is unreachable, and saves
 * the identity. Resolves with the join response; rejects when refused or aborted.
 */
export async function join(config: JoinConfig): Promise<JoinResponse> {
  const backoff = new Backoff(config.backoff ?? DEFAULT_BACKOFF);
  for (;;) {
    config.signal?.throwIfAborted();
    const identity = await loadIdentity(config.dataDir);
    if (!identity && !config.token) throw new Error(`no join token given and no identity in ${identityFile(config.dataDir)}`);
    try {
      const facts = await config.facts();
      let res: JoinResponse;
      if (identity) {
        try {
          res = await joinOnce(config.controlUrl, { token: identity.node_token, node_id: identity.node_id, facts });
        } catch (err) {
          if (!(err instanceof JoinRefusedError) || !config.token || config.token === identity.node_token) throw err;
          config.log?.warn({ node: identity.node_id, err: err.message }, 'node token refused; re-registering with the join token');
          res = await joinOnce(config.controlUrl, { token: config.token, node_id: identity.node_id, facts });
        }
      } else {
        res = await joinOnce(config.controlUrl, { token: config.token!, facts });
      }
      await saveIdentity(config.dataDir, { node_id: res.node_id, node_token: res.node_token, control_url: config.controlUrl, joined_at: new Date().toISOString() });
      config.log?.info({ node: res.node_id, rejoin: identity?.node_id === res.node_id }, identity ? 'rejoined the fleet' : 'joined the fleet');
      return res;
    } catch (err) {
      if (err instanceof JoinRefusedError) throw err;
      const delay = backoff.next();
      config.log?.warn({ err: (err as Error).message, retry_ms: delay }, 'cannot reach the control plane; retrying');
      await sleep(delay, config.signal);
    }
  }
}
