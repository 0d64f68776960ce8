/** Users: created, listed and removed by admins; a password changed by an admin or its owner. */
import { z } from 'zod';
import { PasswordChangeSchema, UserCreateSchema, UsernameSchema } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import { createUser } from '../../auth/accounts.js';
import { hashPassword } from '../../auth/passwords.js';
import { audit } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';

const UserParams = z.object({ username: UsernameSchema });

export function registerUserRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { store } = deps;
  const getUser = (username: string) => {
    const user = store.users.get(username);
    if (!user) throw new TernError('NOT_FOUND', `user ${username} not found`);
    return user;
  };

  app.get('/users', {
    config: { access: 'admin' },
    schema: { summary: 'List users', tags: ['auth'] },
  }, async () => ({ users: store.users.list() }));

  app.post('/users', {
    config: { access: 'admin' },
    schema: { summary: 'Create a user (role admin or viewer)', tags: ['auth'], body: UserCreateSchema },
  }, async (req, reply) => {
    const user = await createUser(store, req.body.username, req.body.password, req.body.role);
    audit(deps, req, 'user.created', `user/${user.username}`, `user ${user.username} (${user.role}) created`, { role: user.role });
    return reply.code(201).send(user);
  });

  app.put('/users/:username/password', {
    config: { access: 'read' },
    schema: { summary: 'Change a password (admins: anyone\'s; users: their own)', tags: ['auth'], params: UserParams, body: PasswordChangeSchema },
  }, async (req) => {
    const { username } = req.params;
    const self = req.principal?.kind === 'user' && req.principal.name === username;
    if (!self && req.principal?.role !== 'admin') throw new TernError('FORBIDDEN', `only an admin or ${username} may change ${username}'s password`);
    getUser(username);
    store.users.setPasswordHash(username, await hashPassword(req.body.password));
    audit(deps, req, 'user.password_changed', `user/${username}`, `password of ${username} changed`);
    return { username, changed: true };
  });

  app.delete('/users/:username', {
    config: { access: 'admin' },
    schema: { summary: 'Remove a user and end their sessions', tags: ['auth'], params: UserParams },
  }, async (req) => {
    const user = getUser(req.params.username);
    const removed = store.transaction(() => {
      if (user.role === 'admin' && store.users.admins() <= 1) throw new TernError('CONFLICT', `user ${user.username} is the last admin: create another admin first`);
      return store.users.remove(user.username);
    });
    if (removed) audit(deps, req, 'user.removed', `user/${user.username}`, `user ${user.username} removed; their sessions ended`);
    return { username: user.username, removed };
  });
}
