/**
 * Measures a lab link the way traffic sees it: a TCP echo server in one host,
 * a probe in the other (through the NAT and the link proxy), the median RTT
 * of small pings and the bandwidth of a bulk transfer toward the prober.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LabState } from '../protocol/lab.js';
import { inNamespace, spawnIn } from './namespaces.js';

// From src/lab/ (tests) or dist/lab/: the compiled child is in <package>/dist/lab/.
/** The probe and the echo run at the link proxies' priority: they measure the link, not how busy the machine is. */
const RAISED = ['-n', '-10'];
const CHILD = fileURLToPath(new URL('../../dist/lab/link-check-child.js', import.meta.url));

export interface LinkMeasurement {
  from: string;
  to: string;
  rttMs: number;
  rttMinMs: number;
  mbit: number;
  spec: { rttMs: number; mbit?: number };
}

function host(state: LabState, name: string) {
  const h = state.hosts.find((x) => x.name === name);
  if (!h) throw new Error(`the lab has no host '${name}' (hosts: ${state.hosts.map((x) => x.name).join(', ')})`);
  return h;
}

async function startEcho(netns: string, port: number): Promise<ChildProcess> {
  const child = spawnIn(netns, 'nice', [...RAISED, process.execPath, CHILD, 'echo', String(port)]);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`echo server in ${netns} exited (${code})`)));
  });
  return child;
}

/** `port` must be one the link proxies carry (the lab's replica range); `bytes` sized for a few seconds at the link's rate. */
export async function measureLink(state: LabState, from: string, to: string, port: number, bytes = 8 * 2 ** 20, pings = 40): Promise<LinkMeasurement> {
  const a = host(state, from);
  const b = host(state, to);
  const link = state.links.find((l) => l.between.includes(from) && l.between.includes(to));
  const echo = await startEcho(b.netns, port);
  try {
    const [cmd, args] = inNamespace(a.netns, 'nice', [...RAISED, process.execPath, CHILD, 'probe', b.address, String(port), String(pings), String(bytes)]);
    const out = JSON.parse(execFileSync(cmd, args, { stdio: 'pipe', timeout: 120_000 }).toString()) as { rtt_ms: number; rtt_min_ms: number; mbit: number };
    return {
      from, to, rttMs: out.rtt_ms, rttMinMs: out.rtt_min_ms, mbit: out.mbit,
      spec: { rttMs: 2 * (link?.delay_ms ?? 0), ...(link?.bandwidth_mbit ? { mbit: link.bandwidth_mbit } : {}) },
    };
  } finally {
    echo.kill('SIGKILL');
  }
}
