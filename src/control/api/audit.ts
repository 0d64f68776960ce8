/**
 * Writes an event for an API action (with the actor) and tells the reconciler
 * when desired state changed. A failing hook must not turn a committed change
 * into an error reply, so hook errors are logged, not thrown.
 */
import type { FastifyRequest } from 'fastify';
import type { EventRecord } from '../store/store.js';
import type { ControlApiDeps } from './deps.js';
import { actor } from './access.js';

export function audit(deps: ControlApiDeps, req: FastifyRequest, kind: string, subject: string, message: string, data: Record<string, unknown> = {}): EventRecord {
  const by = actor(req);
  return deps.store.events.append({ kind, subject, message, data: by ? { ...data, by } : data });
}

export function desiredStateChanged(deps: ControlApiDeps, reason: string): void {
  try {
    deps.hooks.desiredStateChanged(reason);
  } catch (err) {
    deps.log.error({ err, reason }, 'desiredStateChanged hook failed');
  }
}
