/** The event log: `?since=<id>` to follow, `subject=` prefix and `kind=` (or kind family) filters. */
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { EventsQuery } from '../route-schemas.js';

export function registerEventRoutes(app: ApiApp, deps: ControlApiDeps): void {
  app.get('/events', {
    config: { access: 'read' },
    schema: { summary: 'Query the event log', tags: ['events'], querystring: EventsQuery },
  }, async (req) => {
    const events = deps.store.events.query(req.query);
    return { events, last_id: events.length ? events[events.length - 1].id : req.query.since ?? deps.store.events.lastId() };
  });
}
