/** The model registry over HTTP: list, show and delete models and versions. */
import { TernError } from '../../../protocol/errors.js';
import { audit } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { NameParams, VersionParams } from '../route-schemas.js';

export function registerModelRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { store, registry } = deps;
  const versionsOf = (name: string) => {
    const versions = store.models.listVersions(name);
    if (!versions.length) throw new TernError('MODEL_NOT_FOUND', `model ${name} not found`);
    return versions;
  };

  app.get('/models', {
    config: { access: 'read' },
    schema: { summary: 'List models', tags: ['models'] },
  }, async () => ({ models: store.models.list() }));

  app.get('/models/:name', {
    config: { access: 'read' },
    schema: { summary: 'Show a model with its versions and the deployments using them', tags: ['models'], params: NameParams },
  }, async (req) => {
    const { name } = req.params;
    const versions = versionsOf(name).map((v) => ({ ...v, used_by: store.models.usedBy(name, v.version) }));
    return { name, versions };
  });

  app.get('/models/:name/versions/:version', {
    config: { access: 'read' },
    schema: { summary: 'Show one model version', tags: ['models'], params: VersionParams },
  }, async (req) => {
    const { name, version } = req.params;
    versionsOf(name);
    const v = store.models.getVersion(name, version);
    if (!v) throw new TernError('VERSION_NOT_FOUND', `model ${name} has no version ${version}`);
    return { ...v, used_by: store.models.usedBy(name, version) };
  });

  app.delete('/models/:name', {
    config: { access: 'admin' },
    schema: { summary: 'Delete a model and all its versions (refused while deployed)', tags: ['models'], params: NameParams },
  }, async (req) => {
    const removed = registry.deleteModel(req.params.name);
    audit(deps, req, 'model.deleted', `model/${req.params.name}`, `model ${req.params.name} deleted with ${removed.length} version(s)`);
    return { deleted: req.params.name, versions: removed.map((v) => v.version) };
  });

  app.delete('/models/:name/versions/:version', {
    config: { access: 'admin' },
    schema: { summary: 'Delete a model version (refused while deployed)', tags: ['models'], params: VersionParams },
  }, async (req) => {
    const { name, version } = req.params;
    const removed = registry.deleteVersion(name, version);
    audit(deps, req, 'model.version_deleted', `model/${name}`, `model ${name} version ${version} deleted`, { sha256: removed.sha256 });
    return { deleted: name, version };
  });
}
