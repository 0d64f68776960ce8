/**
 * `tern agent`. Switches V8 to its lean mode before the agent's modules load
 * (see agent/footprint.ts), which is why this module imports the agent lazily
 * and why main.ts loads this module only for `tern agent`.
 */
import { useLeanRuntime } from '../agent/footprint.js';

export interface AgentFlags {
  control: string; token?: string; dataDir: string; label?: string[]; site?: string; zone?: string; address?: string;
  replicaPorts: string; gateway: boolean; gatewayPort: number; gatewayGrpcPort: number; replicaLimits: boolean;
  containerEngine?: string; containerImage?: string; containerPlatforms?: string[];
}

function portRangeFrom(value: string): { from: number; to: number } {
  const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(value);
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || from < 1 || to > 65535 || to <= from) throw new Error(`--replica-ports '${value}' must look like 20000-20999 (two ports or more within 1-65535)`);
  return { from, to };
}

function labelsFrom(pairs: string[] = []): Record<string, string> {
  return Object.fromEntries(pairs.map((p) => {
    const i = p.indexOf('=');
    if (i < 1) throw new Error(`--label '${p}' must look like key=value`);
    return [p.slice(0, i), p.slice(i + 1)];
  }));
}

export async function runAgent(f: AgentFlags): Promise<void> {
  const labels = labelsFrom(f.label);
  const portRange = portRangeFrom(f.replicaPorts);
  useLeanRuntime();
  const { startAgent } = await import('../agent/agent.js');
  const agent = await startAgent({
    controlUrl: f.control, token: f.token, dataDir: f.dataDir, labels, site: f.site, zone: f.zone, address: f.address, portRange,
    gateway: f.gateway ? { httpPort: f.gatewayPort, grpcPort: f.gatewayGrpcPort } : undefined,
    containerDriver: f.containerEngine || f.containerImage || f.containerPlatforms
      ? { engine: f.containerEngine, image: f.containerImage, platforms: f.containerPlatforms }
      : undefined,
    ...(f.replicaLimits === false ? { processDriver: { cgroups: false } } : {}),
  });
  const gw = agent.gateway ? `, gateway on HTTP ${agent.gateway.httpPort} and gRPC ${agent.gateway.grpcPort}` : '';
  process.stdout.write(`tern agent running as node ${agent.nodeId}${gw}\n`);
  const stop = () => void agent.close().then(() => process.exit(0), () => process.exit(1));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
