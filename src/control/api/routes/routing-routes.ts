/** The gateways' routing table, as the control plane last published it. */
import type { ApiApp, ControlApiDeps } from '../deps.js';

export function registerRoutingRoutes(app: ApiApp, deps: ControlApiDeps): void {
  app.get('/routes', {
    config: { access: 'read' },
    schema: { summary: 'The routing table every gateway routes by', tags: ['gateway'] },
  }, async () => deps.routes?.() ?? { version: 0, generated_at: 0, routes: [] });
}
