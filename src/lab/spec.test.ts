import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseLabSpec, planLab } from './spec.js';
import { natRuleset, portSet } from './nat.js';

const ok = `
prefix: ternlu
subnet: 10.79.5.0/24
hosts:
  - { name: client, address: 10.79.5.10 }
  - { name: edge, address: 10.79.5.11, cpu: 0.5, memory_mb: 1024, site: edge }
links:
  - { between: [client, edge], delay_ms: 20, bandwidth_mbit: 25 }
`;

describe('lab spec', () => {
  it('parses the shipped edge-cloud spec and plans names, addresses and proxied ports', () => {
    const spec = parseLabSpec(readFileSync('lab/edge-cloud.yaml', 'utf8'));
    expect(spec.hosts.map((h) => h.name)).toEqual(['client', 'edge', 'cloud1', 'cloud2']);
    expect(spec.hosts.find((h) => h.name === 'edge')).toMatchObject({ cpu: 0.5, memory_mb: 1024 });
    const plan = planLab(spec);
    expect(plan.bridge).toBe('ternl-br');
    expect(plan.linkEnds).toHaveLength(6);
    expect(new Set(plan.linkEnds.map((e) => e.proxyAddress)).size).toBe(6);
    expect(plan.linkEnds[2]).toMatchObject({ from: 'client', to: 'cloud1', toAddress: '10.79.0.21', proxyAddress: '10.79.0.202' });
    expect(plan.proxiedPorts.slice(0, 3)).toEqual([8000, 8001, 20000]);
    expect(Math.max(...plan.hosts.map((h) => h.vethHost.length))).toBeLessThanOrEqual(15); // Linux interface names
  });

  it('writes a DNAT rule per linked host, ports as intervals', () => {
    expect(portSet([8001, 8000, 20000, 20001, 20002, 30000])).toBe('8000-8001, 20000-20002, 30000');
    const plan = planLab(parseLabSpec(ok));
    const rules = natRuleset(plan.linkEnds.filter((e) => e.from === 'client'), plan.proxiedPorts);
    expect(rules).toContain('ip daddr 10.79.5.11 tcp dport { 8000-8001, 20000-20039 } dnat to 10.79.5.200');
  });

  it.each([
    ['an unknown host in a link', ok.replace('between: [client, edge]', 'between: [client, cloud9]'), "links[0]: unknown host 'cloud9' (hosts are client, edge)"],
    ['a negative delay', ok.replace('delay_ms: 20', 'delay_ms: -5'), 'links[0].delay_ms: delay_ms must be >= 0'],
    ['overlapping addresses', ok.replace('10.79.5.11', '10.79.5.10'), "hosts 'client' and 'edge' overlap: both have address 10.79.5.10"],
    ['an address outside the subnet', ok.replace('10.79.5.11', '10.80.5.11'), "host 'edge': address 10.80.5.11 is outside the lab subnet 10.79.5.0/24"],
    ['a reserved address', ok.replace('10.79.5.11', '10.79.5.1'), "host 'edge': address 10.79.5.1 is reserved"],
    ['a host defined twice', ok.replace('name: edge', 'name: client'), "host 'client' is defined twice"],
    ['a link to itself', ok.replace('between: [client, edge]', 'between: [edge, edge]'), "links[0]: a link joins two different hosts, not 'edge' with itself"],
    ['a loss over 100 %', ok.replace('delay_ms: 20', 'loss_percent: 150'), 'links[0].loss_percent: loss_percent must be <= 100'],
    ['an unknown field', ok.replace('cpu: 0.5', 'cores: 0.5'), 'hosts[1]: Unrecognized key: "cores"'],
    ['YAML that does not parse', 'hosts: [', 'not valid YAML'],
  ])('refuses %s with a one-line message naming it', (_what, text, message) => {
    let error: Error | undefined;
    try {
      parseLabSpec(text, 'bad.yaml');
    } catch (err) {
      error = err as Error;
    }
    expect(error?.message).toContain(`bad.yaml: ${message}`.slice(0, `bad.yaml: ${message}`.length));
    expect(error?.message.split('\n')).toHaveLength(1);
  });
});
