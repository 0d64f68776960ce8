/**
 * The tc command lines of kernel-side shaping. The netem lines are checked
 * here only: the kernel this was written on has no netem (built without
 * CONFIG_NET_SCH_NETEM), so they have never run; the htb lines also run in
 * test/lab.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { parseLabSpec, planLab } from './spec.js';
import { netemChangeCommands, probeShaping, shapingCommands, type ShapingMechanisms } from './traffic-control.js';

const plan = planLab(parseLabSpec(`
prefix: terntc
subnet: 10.79.6.0/24
hosts:
  - { name: client, address: 10.79.6.10 }
  - { name: cloud, address: 10.79.6.20 }
links:
  - { between: [client, cloud], delay_ms: 20, jitter_ms: 2, bandwidth_mbit: 25, loss_percent: 0.5 }
`));
const link = plan.spec.links[0];
const dev = plan.linksVethInside;
const netem: ShapingMechanisms = { delay: 'netem', bandwidth: 'tc-htb', notes: [] };
const htbOnly: ShapingMechanisms = { delay: 'proxy', bandwidth: 'tc-htb', notes: [] };
const join = (cmds: string[][]) => cmds.map((c) => c.join(' '));

describe('traffic control command lines', () => {
  it('with netem: an htb class per direction of each link end, a netem leaf with the calibrated delay, a filter by proxy and destination', () => {
    const cmds = join(shapingCommands(dev, plan.linkEnds, netem, new Map([[link, 19.4]]), true));
    expect(cmds.slice(0, 5)).toEqual([
      'qdisc add dev terntc-lkc root handle 1: htb default 9999',
      'class add dev terntc-lkc parent 1: classid 1:9999 htb rate 10gbit',
      'class add dev terntc-lkc parent 1: classid 1:10 htb rate 25000kbit ceil 25000kbit',
      'qdisc add dev terntc-lkc parent 1:10 handle 10: netem delay 19400us 2000us loss 0.5%',
      'filter add dev terntc-lkc parent 1: protocol ip prio 1 u32 match ip src 10.79.6.200/32 match ip dst 10.79.6.20/32 flowid 1:10',
    ]);
    // Two link ends (client->cloud, cloud->client), two directions each: four classes, four leaves, four filters.
    expect(cmds.filter((c) => c.includes(' netem '))).toHaveLength(4);
    expect(cmds.filter((c) => c.startsWith('filter ')).map((c) => c.split(' match ').slice(1).join(' & '))).toEqual([
      'ip src 10.79.6.200/32 & ip dst 10.79.6.20/32 flowid 1:10',
      'ip src 10.79.6.200/32 & ip dst 10.79.6.10/32 flowid 1:11',
      'ip src 10.79.6.201/32 & ip dst 10.79.6.10/32 flowid 1:12',
      'ip src 10.79.6.201/32 & ip dst 10.79.6.20/32 flowid 1:13',
    ]);
  });

  it('installs netem with the spec delay and no loss for calibration, then changes the leaves in place', () => {
    const install = join(shapingCommands(dev, plan.linkEnds, netem, new Map(), false));
    expect(install).toContain('qdisc add dev terntc-lkc parent 1:13 handle 13: netem delay 20000us 2000us loss 0%');
    expect(join(netemChangeCommands(dev, plan.linkEnds, new Map([[link, 19.4]]), true))).toEqual([10, 11, 12, 13].map(
      (id) => `qdisc change dev terntc-lkc parent 1:${id} handle ${id}: netem delay 19400us 2000us loss 0.5%`));
  });

  it('without netem: htb classes only; with the proxy doing everything: no tc at all', () => {
    const cmds = join(shapingCommands(dev, plan.linkEnds, htbOnly, new Map(), true));
    expect(cmds).toHaveLength(2 + 4 * 2);
    expect(cmds.some((c) => c.includes('netem'))).toBe(false);
    expect(shapingCommands(dev, plan.linkEnds, { delay: 'proxy', bandwidth: 'proxy', notes: [] }, new Map(), true)).toEqual([]);
    expect(probeShaping('unused', true)).toEqual({ delay: 'proxy', bandwidth: 'proxy', notes: ['the spec asks for proxy shaping only'] });
  });
});
