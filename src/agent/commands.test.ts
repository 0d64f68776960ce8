import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AgentCommandSchema, CommandLog } from './commands.js';

describe('agent commands', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'tern-commands-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('parses drain and restart-replica, refuses others', () => {
    expect(AgentCommandSchema.parse({ id: 'c1', kind: 'drain' })).toEqual({ id: 'c1', kind: 'drain' });
    expect(AgentCommandSchema.parse({ id: 'c2', kind: 'restart-replica', replica_id: 'r1' }).kind).toBe('restart-replica');
    expect(AgentCommandSchema.safeParse({ id: 'c3', kind: 'restart-replica' }).success).toBe(false);
    expect(AgentCommandSchema.safeParse({ id: 'c4', kind: 'reboot' }).success).toBe(false);
  });

  it('handles each id once, across restarts', async () => {
    const log = new CommandLog(dir, 3);
    await log.load();
    expect(await log.record('a')).toBe(true);
    expect(await log.record('a')).toBe(false);
    await log.record('b');
    const again = new CommandLog(dir, 3);
    await again.load();
    expect(again.has('a')).toBe(true);
    expect(await again.record('b')).toBe(false);
    // Only the newest `capacity` ids are kept.
    await again.record('c');
    await again.record('d');
    expect(again.has('a')).toBe(false);
  });
});
