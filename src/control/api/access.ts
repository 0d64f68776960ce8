/**
 * Who may call what. Every route declares an access level in its config; the
 * onRequest hook authenticates the bearer token before the body is read (so an
 * unauthenticated client cannot make the server buffer a 16 MiB chunk) and
 * refuses with a message naming the missing role. Routes without a declared
 * level are admin-only, so forgetting to declare one fails closed.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TernError } from '../../protocol/errors.js';
import { authenticateToken, bearerToken, type Principal } from '../auth/principal.js';
import type { Store } from '../store/store.js';

/** public: no token; read: admin or viewer; admin: admin only; any: any principal, nodes included (blob downloads). */
export type Access = 'public' | 'read' | 'admin' | 'any';

declare module 'fastify' {
  interface FastifyContextConfig { access?: Access }
  interface FastifyRequest { principal?: Principal }
}

function describe(req: FastifyRequest): string {
  return `${req.method} ${req.routeOptions.url ?? req.url.split('?')[0]}`;
}

export function authorize(principal: Principal, access: Access, req: FastifyRequest): void {
  if (access === 'public' || access === 'any') return;
  if (principal.role === 'node') {
    throw new TernError('FORBIDDEN', `node ${principal.name} may not call ${describe(req)}: node tokens may only join and download blobs`);
  }
  if (access === 'admin' && principal.role !== 'admin') {
    throw new TernError('FORBIDDEN', `role ${principal.role} may not call ${describe(req)}: it needs the admin role`);
  }
}

export function installAccessControl(app: FastifyInstance, store: Store): void {
  app.addHook('onRequest', async (req) => {
    if (req.is404) return;
    const access = req.routeOptions.config.access ?? 'admin';
    if (access === 'public') return;
    const principal = authenticateToken(store, bearerToken(req.headers.authorization));
    authorize(principal, access, req);
    req.principal = principal;
  });
}

/** `user/alice`, `token/ci`, `node/pi-1`: the actor recorded in events. */
export function actor(req: FastifyRequest): string | undefined {
  return req.principal && `${req.principal.kind}/${req.principal.name}`;
}
