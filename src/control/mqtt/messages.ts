/**
 * MQTT payload conventions that complete protocol/fleet.ts: the presence
 * payloads and the command envelope, and one JSON decoder that never throws.
 *
 * (The command envelope only fixes what the transport needs: an `id`, for
 * idempotent handling of QoS 1 deliveries. The command catalogue itself, today
 * src/agent/commands.ts with its `kind` field, belongs in protocol/fleet.ts.)
 */
import { z } from 'zod';
import { formatZodError } from '../../protocol/errors.js';

/** Retained on `topics.presence(node)`: published on connect, and by the broker as the last will. */
export const PRESENCE_ONLINE = 'online';
export const PRESENCE_OFFLINE = 'offline';

export const CommandEnvelopeSchema = z.looseObject({
  /** Unique per command; agents handle each id once (QoS 1 may deliver twice). */
  id: z.string().min(1).max(200),
});
export type FleetCommand = z.infer<typeof CommandEnvelopeSchema>;

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

interface SafeParser<T> {
  safeParse(input: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } };
}

/** One JSON.parse and one schema check; the reason as one line when the payload is not acceptable. */
export function decodeJson<T>(payload: Buffer, schema: SafeParser<T>): Decoded<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(payload.toString('utf8'));
  } catch (err) {
    return { ok: false, error: `malformed JSON: ${(err as Error).message}` };
  }
  const parsed = schema.safeParse(raw);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, error: formatZodError(parsed.error) };
}
