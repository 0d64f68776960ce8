/**
 * The few calls of the control plane's REST API (/api/v1) the fleet bench
 * makes, as an operator and as agents do: log in, create a join token, join,
 * upload a model, deploy, and read deployments and the event log.
 */
import { createHash } from 'node:crypto';
import { Pool } from 'undici';
import type { EventRecord, ReplicaRecord } from '../../control/store/store.js';
import { JoinResponseSchema, type ModelDeploymentSpec, type JoinResponse, type NodeFacts } from '../../protocol/fleet.js';

export const API = '/api/v1';

export interface DeploymentStatus { desired: number; ready: number; current_generation: number; total: number }
export interface DeploymentSummary { name: string; status: DeploymentStatus }
export interface DeploymentDetail extends DeploymentSummary { replicas: ReplicaRecord[] }

export class ControlClient {
  private readonly pool: Pool;
  private token: string | undefined;

  constructor(readonly baseUrl: string, connections = 32) {
    this.pool = new Pool(baseUrl, { connections, pipelining: 1 });
  }

  async call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, raw?: Buffer): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let payload: string | Buffer | undefined;
    if (raw) {
      headers['content-type'] = 'application/octet-stream';
      payload = raw;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await this.pool.request({ method, path, headers, body: payload, headersTimeout: 60_000, bodyTimeout: 60_000 });
    const text = await res.body.text();
    if (res.statusCode >= 300) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? message;
      } catch { /* not JSON: keep the text */ }
      throw new Error(`${method} ${path.split('?')[0]}: HTTP ${res.statusCode}: ${message}`);
    }
    return JSON.parse(text) as T;
  }

  async login(username: string, password: string): Promise<void> {
    this.token = (await this.call<{ token: string }>('POST', `${API}/auth/login`, { username, password })).token;
  }

  async createJoinToken(ttlS: number): Promise<string> {
    return (await this.call<{ token: string }>('POST', `${API}/join-tokens`, { ttl_s: ttlS, description: 'fleet bench' })).token;
  }

  /** What an agent does first (no bearer token: the join token is in the body). */
  async join(joinToken: string, facts: NodeFacts): Promise<JoinResponse> {
    return JoinResponseSchema.parse(await this.call('POST', `${API}/join`, { token: joinToken, facts }));
  }

  /** Registers `bytes` as a new version of `model` through the resumable upload API; returns the version. */
  async uploadModel(model: string, bytes: Buffer, format: 'onnx' | 'tar'): Promise<string> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const upload = await this.call<{ id: string }>('POST', `${API}/models/${model}/uploads`, { sha256, size: bytes.length, format });
    await this.call('PUT', `${API}/uploads/${upload.id}?offset=0`, undefined, bytes);
    return (await this.call<{ version: string }>('POST', `${API}/uploads/${upload.id}/complete`)).version;
  }

  createDeployment(spec: Partial<ModelDeploymentSpec> & Pick<ModelDeploymentSpec, 'name' | 'model' | 'replicas'>): Promise<DeploymentDetail> {
    return this.call('POST', `${API}/deployments`, spec);
  }

  async deployments(): Promise<DeploymentSummary[]> {
    return (await this.call<{ deployments: DeploymentSummary[] }>('GET', `${API}/deployments`)).deployments;
  }

  deployment(name: string): Promise<DeploymentDetail> {
    return this.call('GET', `${API}/deployments/${name}`);
  }

  /** Events after `since` (oldest first), optionally of one kind or kind family. */
  async events(since: number, kind?: string, limit = 1000): Promise<{ events: EventRecord[]; last_id: number }> {
    const q = new URLSearchParams({ since: String(since), limit: String(limit) });
    if (kind) q.set('kind', kind);
    return this.call('GET', `${API}/events?${q}`);
  }

  /** The newest event id (a cursor to follow the log from now on). */
  async lastEventId(): Promise<number> {
    return (await this.call<{ last_id: number }>('GET', `${API}/events?limit=1`)).last_id;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
