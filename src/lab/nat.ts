/**
 * Transparent link emulation: in a host's namespace, nftables rewrites the
 * destination of connections to a linked host (its gateway and replica ports)
 * to that link's proxy address, keeping the port. Agents and clients keep
 * using each other's real addresses; the proxy relays to the real host, and
 * conntrack maps the answers back.
 */
import type { LinkEnd } from './spec.js';
import { execIn } from './namespaces.js';

/** `8000-8001, 20000-20039`: the ports as nftables intervals. */
export function portSet(ports: number[]): string {
  const sorted = [...new Set(ports)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

export function natRuleset(ends: LinkEnd[], ports: number[]): string {
  const rules = ends.map((e) => `    ip daddr ${e.toAddress} tcp dport { ${portSet(ports)} } dnat to ${e.proxyAddress}`);
  return [
    'table ip tern_lab {',
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    ...rules,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Routes the namespace's connections to linked hosts through their proxies. */
export function installNat(ns: string, ends: LinkEnd[], ports: number[]): void {
  if (ends.length === 0) return;
  execIn(ns, 'nft', ['-f', '-'], natRuleset(ends, ports));
}
