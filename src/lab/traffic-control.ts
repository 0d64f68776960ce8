/**
 * Kernel-side link shaping in the lab's links namespace, where every link's
 * traffic leaves through one veth: an htb class per direction of each link
 * (matched by the link proxy's source address and the destination host) with
 * the link's rate, and, when this kernel has netem, a netem leaf with the
 * link's delay, jitter and loss. What the kernel lacks is left to the proxy
 * (src/lab/link-proxy.ts); `probeShaping` says which mechanism runs.
 */
import type { LinkEnd } from './spec.js';
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

/** Installs the classes for every link end on the links namespace's veth (only what `mech` gives the kernel). */
export function installShaping(ns: string, dev: string, ends: LinkEnd[], mech: ShapingMechanisms): void {
  if (mech.delay !== 'netem' && mech.bandwidth !== 'tc-htb') return;
  tc(ns, ['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '9999']);
  tc(ns, ['class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:9999', 'htb', 'rate', '10gbit']);
  let id = 10;
  for (const end of ends) {
    // Both directions of a connection opened by `from` leave here from the proxy's address.
    for (const dst of [end.toAddress, end.fromAddress]) {
      const classid = `1:${id}`;
      const rate = mech.bandwidth === 'tc-htb' && end.link.bandwidth_mbit ? mbit(end.link.bandwidth_mbit) : '10gbit';
      tc(ns, ['class', 'add', 'dev', dev, 'parent', '1:', 'classid', classid, 'htb', 'rate', rate, 'ceil', rate]);
      if (mech.delay === 'netem') {
        const l = end.link;
        tc(ns, ['qdisc', 'add', 'dev', dev, 'parent', classid, 'handle', `${id}:`, 'netem', 'delay', `${l.delay_ms}ms`, `${l.jitter_ms}ms`, 'loss', `${l.loss_percent}%`]);
      }
      tc(ns, ['filter', 'add', 'dev', dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
        'match', 'ip', 'src', `${end.proxyAddress}/32`, 'match', 'ip', 'dst', `${dst}/32`, 'flowid', classid]);
      id++;
    }
  }
}
