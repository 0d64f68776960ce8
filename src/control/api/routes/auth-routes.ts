/** Login, whoami and API tokens. */
import { ApiTokenRequestSchema, LoginRequestSchema } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import { createApiToken, login } from '../../auth/accounts.js';
import { audit } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { TokenParams } from '../route-schemas.js';

export function registerAuthRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { store } = deps;

  app.post('/auth/login', {
    config: { access: 'public' },
    schema: { summary: 'Log in; returns a bearer token', tags: ['auth'], security: [], body: LoginRequestSchema },
  }, async (req) => {
    const { username, password } = req.body;
    try {
      const result = await login(store, username, password, deps.sessionTtlMs);
      audit(deps, req, 'auth.login', `user/${username}`, `${username} logged in`);
      return result;
    } catch (e) {
      audit(deps, req, 'auth.login_failed', `user/${username}`, `failed login for ${username}`, { ip: req.ip });
      throw e;
    }
  });

  app.get('/auth/whoami', {
    config: { access: 'read' },
    schema: { summary: 'The principal behind the bearer token', tags: ['auth'] },
  }, async (req) => req.principal);

  app.post('/tokens', {
    config: { access: 'admin' },
    schema: { summary: 'Create an API token (the secret is returned once)', tags: ['auth'], body: ApiTokenRequestSchema },
  }, async (req, reply) => {
    const { token, record } = createApiToken(store, req.body.name, req.body.role, req.principal?.name);
    audit(deps, req, 'token.created', `token/${record.id}`, `API token ${record.name} (${record.role}) created`);
    return reply.code(201).send({ ...record, token });
  });

  app.get('/tokens', {
    config: { access: 'admin' },
    schema: { summary: 'List API tokens (never the secrets)', tags: ['auth'] },
  }, async () => ({ tokens: store.apiTokens.list('api') }));

  app.delete('/tokens/:id', {
    config: { access: 'admin' },
    schema: { summary: 'Revoke an API token', tags: ['auth'], params: TokenParams },
  }, async (req) => {
    const t = store.apiTokens.get(req.params.id);
    if (!t || t.kind !== 'api') throw new TernError('NOT_FOUND', `API token ${req.params.id} not found`);
    if (store.apiTokens.revoke(t.id)) audit(deps, req, 'token.revoked', `token/${t.id}`, `API token ${t.name} revoked`);
    return store.apiTokens.get(t.id);
  });
}
