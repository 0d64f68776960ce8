import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeFacts } from '../../protocol/fleet.js';
import { Store } from '../store/store.js';
import { createApiToken, createJoinToken, ensureFirstAdmin, login } from './accounts.js';
import { admitNode, newNodeId } from './node-admission.js';
import { hashPassword, verifyPassword } from './passwords.js';
import { authenticateToken, bearerToken, verifyNodeToken } from './principal.js';
import { generateToken, hashToken, tokenKindOf } from './tokens.js';

const FACTS: NodeFacts = {
  hostname: 'rk3399-board', arch: 'arm64', os: 'linux', cpus: 6, cpu_model: '', memory_bytes: 4e9, cpu_score: 700,
  accelerators: [], labels: {}, address: '10.0.0.9', agent_version: '0.1.0',
};

describe('passwords', () => {
  it('hashes with a fresh salt and verifies only the right password', async () => {
    const a = await hashPassword('s3cret');
    const b = await hashPassword('s3cret');
    expect(a).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword('s3cret', a)).toBe(true);
    expect(await verifyPassword('s3cret!', a)).toBe(false);
    expect(await verifyPassword('s3cret', 'md5$whatever')).toBe(false);
    expect(await verifyPassword('s3cret', 'scrypt$x$8$1$c2FsdA==$a2V5')).toBe(false);
  });
});

describe('tokens and principals', () => {
  let store: Store;
  beforeEach(() => { store = Store.open(':memory:'); });
  afterEach(() => store.close());

  it('generates prefixed 256-bit tokens and hashes them with sha256', () => {
    const t = generateToken('api');
    expect(t).toMatch(/^tern_api_[A-Za-z0-9_-]{43}$/);
    expect(tokenKindOf(t)).toBe('api');
    expect(tokenKindOf(generateToken('node'))).toBe('node');
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('parses the Authorization header with clear errors', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(() => bearerToken(undefined)).toThrow(/missing bearer token/);
    expect(() => bearerToken('Basic dXNlcjpwdw==')).toThrow(/malformed Authorization header/);
  });

  it('creates the first admin once, with a generated password when none is given', async () => {
    const first = await ensureFirstAdmin(store);
    expect(first).toMatchObject({ created: true, username: 'admin', generated: true });
    expect(await ensureFirstAdmin(store, { password: 'other' })).toEqual({ created: false });
    const password = first.created ? first.password : '';
    const session = await login(store, 'admin', password);
    expect(authenticateToken(store, session.token)).toEqual({ kind: 'user', name: 'admin', role: 'admin' });
    await expect(login(store, 'admin', 'wrong')).rejects.toThrow('invalid username or password');
    expect(store.events.query().map((e) => e.kind)).toEqual(['user.created']);
  });

  it('refuses expired sessions, revoked tokens and join tokens used as API tokens', async () => {
    await ensureFirstAdmin(store, { password: 'pw' });
    const old = await login(store, 'admin', 'pw', 1000, Date.now() - 5000);
    expect(() => authenticateToken(store, old.token)).toThrow('session expired: log in again');
    const { token, record } = createApiToken(store, 'ci', 'viewer');
    expect(authenticateToken(store, token)).toEqual({ kind: 'token', name: 'ci', role: 'viewer' });
    store.apiTokens.revoke(record.id);
    expect(() => authenticateToken(store, token)).toThrow(`token ${record.id} (ci) has been revoked`);
    const join = createJoinToken(store, 60);
    expect(() => authenticateToken(store, join.token)).toThrow('join tokens can only be used with POST /api/v1/join');
    expect(() => authenticateToken(store, 'whatever')).toThrow('invalid token');
  });
});

describe('node admission', () => {
  let store: Store;
  beforeEach(() => { store = Store.open(':memory:'); });
  afterEach(() => store.close());

  it('names new nodes after their hostname with a random suffix', () => {
    expect(newNodeId('Pi-4 Kitchen.local')).toMatch(/^pi-4-kitchen-local-[a-f0-9]{6}$/);
    expect(newNodeId('---')).toMatch(/^node-[a-f0-9]{6}$/);
    expect(newNodeId('x'.repeat(100)).length).toBeLessThanOrEqual(47);
  });

  it('admits with a join token, rejoins with the node token, and the MQTT check agrees', () => {
    const { token } = createJoinToken(store, 60);
    const first = admitNode(store, { token, facts: FACTS });
    expect(first.how).toBe('new');
    expect(verifyNodeToken(store, first.node.id, first.nodeToken)).toBe(true);
    expect(verifyNodeToken(store, 'someone-else', first.nodeToken)).toBe(false);
    expect(authenticateToken(store, first.nodeToken)).toEqual({ kind: 'node', name: first.node.id, role: 'node' });
    const again = admitNode(store, { token: first.nodeToken, node_id: first.node.id, facts: FACTS });
    expect(again).toMatchObject({ how: 'rejoin', nodeToken: first.nodeToken });
    expect(store.joinTokens.list()[0].uses).toBe(1);
  });

  it('re-registers a known node with a join token and retires its old node token', () => {
    const { token } = createJoinToken(store, 60);
    const first = admitNode(store, { token, facts: FACTS });
    store.nodes.setCordoned(first.node.id, true);
    const second = admitNode(store, { token, node_id: first.node.id, facts: FACTS });
    expect(second.how).toBe('reregister');
    expect(second.node.cordoned).toBe(true);
    expect(() => admitNode(store, { token: first.nodeToken, node_id: first.node.id, facts: FACTS })).toThrow(`invalid node token for node ${first.node.id}`);
  });

  it('refuses expired and revoked join tokens by name, and unknown tokens', () => {
    const expired = createJoinToken(store, 1, 'short', undefined, Date.now() - 2000);
    expect(() => admitNode(store, { token: expired.token, facts: FACTS })).toThrow(/^join token expired/);
    const revoked = createJoinToken(store, 60);
    store.joinTokens.revoke(revoked.record.id);
    expect(() => admitNode(store, { token: revoked.token, facts: FACTS })).toThrow(`join token ${revoked.record.id} revoked`);
    expect(() => admitNode(store, { token: 'tern_join_made_up', facts: FACTS })).toThrow('invalid join token');
    expect(store.nodes.list()).toEqual([]);
  });
});
