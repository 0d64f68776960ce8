/**
 * What the experiment asks of a fleet, through the control plane's REST API
 * only (so a lab and a real fleet are driven the same way): push models,
 * deploy a model on the nodes of one site, scale it, know when every gateway
 * routes to all its replicas, and remove it.
 */
import { mkdtemp, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ApiClient } from '../../cli/api-client.js';
import { pushModel } from '../../cli/model-push.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Requests per replica: small, so 4 replicas fit a 1-core board. On a fleet
 * the agent also enforces them as limits; lab agents run replicas without
 * their own limits (--no-replica-limits), so there the host's cgroup is the
 * only one, as for unlimited containers on a board.
 */
const REPLICA_RESOURCES = { cpu: 0.25, memory_mb: 200 };

interface DeploymentDetail { status: { desired: number; ready: number; total: number }; deleting: boolean }
interface RoutesTable { version: number; routes: { deployment: string; replicas: unknown[] }[] }
interface NodeView { id: string; state: string; facts: { site?: string; address: string }; labels: Record<string, string>; stats: { routes_version?: number } | null }

export class FleetDriver {
  constructor(readonly api: ApiClient) {}

  /** Pushes `<repo>/<model>/1/model.onnx` with its config.json (name removed: replicas serve under the deployment's name); `extraConfig` is merged in. */
  async pushModel(repo: string, model: string, as: string, version: string, extraConfig: Record<string, unknown> = {}): Promise<void> {
    // A version already in the registry (an earlier run on this fleet) is used as it is: versions are immutable.
    if (await this.api.get(`/models/${as}/versions/${version}`).then(() => true, () => false)) return;
    const tmp = await mkdtemp(path.join(tmpdir(), 'tern-exp-'));
    try {
      const config = JSON.parse(await readFile(path.join(repo, model, 'config.json'), 'utf8').catch(() => '{}')) as Record<string, unknown>;
      delete config.name;
      await writeFile(path.join(tmp, 'config.json'), JSON.stringify({ ...config, ...extraConfig }));
      await copyFile(path.join(repo, model, '1', 'model.onnx'), path.join(tmp, 'model.onnx'));
      await pushModel(this.api, as, tmp, { version, progress: false });
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  async nodes(): Promise<NodeView[]> {
    return (await this.api.get<{ nodes: NodeView[] }>('/nodes')).nodes;
  }

  async deploy(name: string, model: string, version: string, site: string, replicas: number): Promise<void> {
    await this.api.post('/deployments', {
      name, model, version, replicas, resources: REPLICA_RESOURCES, selector: { site },
      // Every replica of one site: the gateway balances among them, whatever its locality preference.
      routing: { locality: 'fastest', hedge: false },
    });
  }

  async scale(name: string, replicas: number): Promise<void> {
    await this.api.post(`/deployments/${name}/scale`, { replicas });
  }

  /** Waits until `replicas` are ready, in the routing table, and the gateway node routes by that table. */
  async waitRoutable(name: string, replicas: number, gatewayNode: (n: NodeView) => boolean, timeoutMs = 120_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < end) {
      const d = await this.api.get<DeploymentDetail>(`/deployments/${name}`);
      const table = await this.api.get<RoutesTable>('/routes');
      const routed = table.routes.find((r) => r.deployment === name)?.replicas.length ?? 0;
      const gw = (await this.nodes()).find(gatewayNode);
      const gwVersion = gw?.stats?.routes_version ?? -1;
      last = `${d.status.ready}/${replicas} ready, ${routed} routed, gateway at table ${gwVersion} of ${table.version}`;
      if (d.status.ready === replicas && d.status.total === replicas && routed === replicas && (!gw || gwVersion >= table.version)) return;
      await sleep(500);
    }
    throw new Error(`deployment ${name} did not become routable within ${timeoutMs / 1000} s (${last})`);
  }

  async remove(name: string, timeoutMs = 60_000): Promise<void> {
    await this.api.request('DELETE', `/deployments/${name}`).catch((err: Error) => {
      if (!/\(404\)/.test(err.message)) throw err;
    });
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      try {
        await this.api.get(`/deployments/${name}`);
      } catch (err) {
        if (/\(404\)/.test((err as Error).message)) return;
        throw err;
      }
      await sleep(500);
    }
    throw new Error(`deployment ${name} was not removed within ${timeoutMs / 1000} s`);
  }
}
