import { describe, expect, it } from 'vitest';
import { CommandEnvelopeSchema, decodeJson } from './messages.js';
import { HeartbeatSchema } from '../../protocol/fleet.js';

describe('payload decoding', () => {
  it('names what is wrong and never throws', () => {
    expect(decodeJson(Buffer.from('{'), HeartbeatSchema)).toMatchObject({ ok: false, error: expect.stringMatching(/^malformed JSON/) });
    const r = decodeJson(Buffer.from('{"seq":-1}'), HeartbeatSchema);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error).toMatch(/seq/);
    expect(decodeJson(Buffer.from('{"id":"c1","type":"restart","replica":"r"}'), CommandEnvelopeSchema))
      .toEqual({ ok: true, value: { id: 'c1', type: 'restart', replica: 'r' } });
  });
});
