/**
 * Kernel-side link shaping in the lab's links namespace, where every link's
 * traffic leaves through one veth: an htb class per direction of each link
 * (matched by the link proxy's source address and the destination host) with
 * the link's rate, and, when this kernel has netem, a netem leaf with the
 * link's delay, jitter and loss. What the kernel lacks is left to the proxy
 * (src/lab/link-proxy.ts); `probeShaping` says which mechanism runs.
 *
 * The netem path has never run: the kernel of the machines this was written
 * on is built without it (CONFIG_NET_SCH_NETEM unset, no modules), so only
 * its command lines are tested (traffic-control.test.ts), not their effect.
 */
import type { LinkEnd } from './spec.js';
import type { LinkDelays } from './link-calibration.js';
import { execIn } from './namespaces.js';

export interface ShapingMechanisms {
  /** Who adds delay, jitter and loss. */
  delay: 'netem' | 'proxy';
  /** Who limits bandwidth. */
  bandwidth: 'tc-htb' | 'proxy';
  /** Why a kernel mechanism was not used. */
  notes: string[];
}

function tc(ns: string, args: string[]): void {
  execIn(ns, 'tc', args);
}

function works(ns: string, add: string[], del: string[]): string | undefined {
  try {
    tc(ns, add);
    tc(ns, del);
    return undefined;
  } catch (err) {
    return (err as Error).message.split('\n')[0];
  }
}

/** Tries netem and htb on the links namespace's loopback; `proxyOnly` skips the kernel entirely. */
export function probeShaping(ns: string, proxyOnly: boolean): ShapingMechanisms {
  if (proxyOnly) return { delay: 'proxy', bandwidth: 'proxy', notes: ['the spec asks for proxy shaping only'] };
  const notes: string[] = [];
  const netem = works(ns, ['qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], ['qdisc', 'del', 'dev', 'lo', 'root']);
  if (netem) notes.push(`no netem in this kernel (${netem}): delay, jitter and loss are emulated by the link proxy`);
  const htb = works(ns, ['qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb'], ['qdisc', 'del', 'dev', 'lo', 'root']);
  if (htb) notes.push(`no tc htb (${htb}): bandwidth is limited by the link proxy's token bucket`);
  return { delay: netem ? 'proxy' : 'netem', bandwidth: htb ? 'proxy' : 'tc-htb', notes };
}

const mbit = (v: number) => `${Math.round(v * 1000)}kbit`;
/** tc times in whole microseconds: calibrated delays are fractions of a millisecond. */
const usec = (ms: number) => `${Math.round(ms * 1000)}us`;

/** An htb class (and netem leaf) for one direction of one link end: traffic from the end's proxy to `dst`. */
interface ShapedClass { end: LinkEnd; dst: string; id: number }

function shapedClasses(ends: LinkEnd[]): ShapedClass[] {
  // Both directions of a connection opened by `from` leave the links namespace from the proxy's address.
  return ends.flatMap((end, i) => [end.toAddress, end.fromAddress].map((dst, j) => ({ end, dst, id: 10 + 2 * i + j })));
}

function netemArgs(op: 'add' | 'change', dev: string, c: ShapedClass, delays: LinkDelays, withLoss: boolean): string[] {
  const l = c.end.link;
  const delay = delays.get(l) ?? l.delay_ms;
  return ['qdisc', op, 'dev', dev, 'parent', `1:${c.id}`, 'handle', `${c.id}:`, 'netem', 'delay', usec(delay), usec(l.jitter_ms), 'loss', `${withLoss ? l.loss_percent : 0}%`];
}

/**
 * The tc command lines (arguments after `tc`) that shape `ends` on `dev` with what `mech` gives the
 * kernel: netem leaves get `delays` (the spec's where absent) and the spec's loss only `withLoss`.
 */
export function shapingCommands(dev: string, ends: LinkEnd[], mech: ShapingMechanisms, delays: LinkDelays, withLoss: boolean): string[][] {
  if (mech.delay !== 'netem' && mech.bandwidth !== 'tc-htb') return [];
  const cmds = [
    ['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '9999'],
    ['class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:9999', 'htb', 'rate', '10gbit'],
  ];
  for (const c of shapedClasses(ends)) {
    const classid = `1:${c.id}`;
    const rate = mech.bandwidth === 'tc-htb' && c.end.link.bandwidth_mbit ? mbit(c.end.link.bandwidth_mbit) : '10gbit';
    cmds.push(['class', 'add', 'dev', dev, 'parent', '1:', 'classid', classid, 'htb', 'rate', rate, 'ceil', rate]);
    if (mech.delay === 'netem') cmds.push(netemArgs('add', dev, c, delays, withLoss));
    cmds.push(['filter', 'add', 'dev', dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
      'match', 'ip', 'src', `${c.end.proxyAddress}/32`, 'match', 'ip', 'dst', `${c.dst}/32`, 'flowid', classid]);
  }
  return cmds;
}

/** The tc command lines that give the netem leaves `shapingCommands` made new delays (and the spec's loss only `withLoss`). */
export function netemChangeCommands(dev: string, ends: LinkEnd[], delays: LinkDelays, withLoss: boolean): string[][] {
  return shapedClasses(ends).map((c) => netemArgs('change', dev, c, delays, withLoss));
}

/** Installs the classes for every link end on the links namespace's veth (only what `mech` gives the kernel). */
export function installShaping(ns: string, dev: string, ends: LinkEnd[], mech: ShapingMechanisms, delays: LinkDelays, withLoss: boolean): void {
  for (const args of shapingCommands(dev, ends, mech, delays, withLoss)) tc(ns, args);
}

/** Changes the netem leaves' delays in place (calibration); only when netem adds the delay. */
export function changeNetemDelays(ns: string, dev: string, ends: LinkEnd[], delays: LinkDelays, withLoss: boolean): void {
  for (const args of netemChangeCommands(dev, ends, delays, withLoss)) tc(ns, args);
}
