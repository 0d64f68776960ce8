/**
 * `tern agent`. Switches V8 to its lean mode before the agent's modules load
 * (see agent/footprint.ts), which is why this module imports the agent lazily
 * and why main.ts loads this module only for `tern agent`.
 */
import { useLeanRuntime } from '../agent/footprint.js';

export interface AgentFlags { control: string; token?: string; dataDir: string; label?: string[]; site?: string; zone?: string; address?: string }

function labelsFrom(pairs: string[] = []): Record<string, string> {
  return Object.fromEntries(pairs.map((p) => {
    const i = p.indexOf('=');
    if (i < 1) throw new Error(`--label '${p}' must look like key=value`);
    return [p.slice(0, i), p.slice(i + 1)];
  }));
}

export async function runAgent(f: AgentFlags): Promise<void> {
  const labels = labelsFrom(f.label);
  useLeanRuntime();
  const { startAgent } = await import('../agent/agent.js');
  const agent = await startAgent({ controlUrl: f.control, token: f.token, dataDir: f.dataDir, labels, site: f.site, zone: f.zone, address: f.address });
  process.stdout.write(`tern agent running as node ${agent.nodeId}\n`);
  const stop = () => void agent.close().then(() => process.exit(0), () => process.exit(1));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
