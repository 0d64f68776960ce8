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

function linkBetween(state: LabState, from: string, to: string) {
  return state.links.find((l) => l.between.includes(from) && l.between.includes(to));
}

/**
 * How many pings fit in `budgetMs` on a link of this one-way delay, between
 * 10 (a median that a few slow pings do not move) and 1000 (a sub-ms link,
 * where scheduling noise is as large as the delay itself, measured over about
 * a second: this machine's load changes from one second to the next).
 */
export function pingsWithin(budgetMs: number, delayMs: number): number {
  // ~0.1 ms: what the NAT, the proxy hop and the two ends add to a round trip here.
  return Math.max(10, Math.min(1000, Math.round(budgetMs / (2 * delayMs + 0.1))));
}

interface ProbeResult { rtt_ms: number; rtt_min_ms: number; mbit?: number }

async function probe(state: LabState, from: string, to: string, port: number, pings: number, bytes: number): Promise<ProbeResult> {
  const a = host(state, from);
  const b = host(state, to);
  const echo = await startEcho(b.netns, port);
  try {
    const [cmd, args] = inNamespace(a.netns, 'nice', [...RAISED, process.execPath, CHILD, 'probe', b.address, String(port), String(pings), String(bytes)]);
    return JSON.parse(execFileSync(cmd, args, { stdio: 'pipe', timeout: 120_000 }).toString()) as ProbeResult;
  } finally {
    echo.kill('SIGKILL');
  }
}

/** The median and minimum RTT of `pings` 1-byte round trips from `from` to `to` (no bulk transfer). */
export async function measureRtt(state: LabState, from: string, to: string, port: number, pings: number): Promise<{ rttMs: number; rttMinMs: number }> {
  const out = await probe(state, from, to, port, pings, 0);
  return { rttMs: out.rtt_ms, rttMinMs: out.rtt_min_ms };
}

/**
 * RTT and bandwidth as traffic sees them. `port` must be one the link proxies carry (the lab's replica
 * range); `bytes` sized for a few seconds at the link's rate; pings by default as many as fit in 2 s.
 */
export async function measureLink(state: LabState, from: string, to: string, port: number, bytes = 8 * 2 ** 20, pings?: number): Promise<LinkMeasurement> {
  const link = linkBetween(state, from, to);
  const out = await probe(state, from, to, port, pings ?? pingsWithin(2000, link?.delay_ms ?? 0), bytes);
  return {
    from, to, rttMs: out.rtt_ms, rttMinMs: out.rtt_min_ms, mbit: out.mbit ?? 0,
    spec: { rttMs: 2 * (link?.delay_ms ?? 0), ...(link?.bandwidth_mbit ? { mbit: link.bandwidth_mbit } : {}) },
  };
}

/** How far a measurement is from its spec, in percent (undefined: nothing to compare, e.g. a zero RTT spec). */
function deviation(measured: number, spec: number | undefined): string {
  if (!spec) return '';
  const pct = (100 * (measured - spec)) / spec;
  return `, ${pct >= 0 ? '+' : ''}${pct.toFixed(1)}%${Math.abs(pct) <= 10 ? '' : ' OUTSIDE 10%'}`;
}

/** One line for `tern lab check`: measured against spec, with the deviation said plainly. */
export function describeMeasurement(m: LinkMeasurement): string {
  const rtt = `median RTT ${m.rttMs.toFixed(2)} ms (spec ${m.spec.rttMs}${deviation(m.rttMs, m.spec.rttMs)}; min ${m.rttMinMs.toFixed(2)})`;
  const bw = m.spec.mbit ? `${m.mbit.toFixed(1)} Mbit/s (spec ${m.spec.mbit}${deviation(m.mbit, m.spec.mbit)})` : `${m.mbit.toFixed(0)} Mbit/s (unlimited)`;
  return `${m.from} -> ${m.to}: ${rtt}, ${bw}`;
}
