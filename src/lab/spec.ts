/**
 * Reading a lab spec: YAML -> the zod schema in protocol/lab.ts -> the checks
 * that span entries (unknown hosts in links, clashing addresses, duplicate
 * links), each refused with one line naming the entry. Then the plan: every
 * kernel object name and address the lab will create, derived in one place so
 * `lab up`, `lab down` and the tests agree.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { ZodError } from 'zod';
import { LabSpecSchema, type LabHost, type LabLink, type LabSpec } from '../protocol/lab.js';

export class LabSpecError extends Error {}

/** First address of the proxies' block in the /24: .200 to .254 give 55 one-way link ends. */
const PROXY_FIRST = 200;
const PROXY_LAST = 254;

function zodMessage(err: ZodError): string {
  const issue = err.issues[0];
  const where = issue.path.length ? issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') : 'spec';
  return `${where}: ${issue.message}`;
}

function octets(address: string): number[] {
  return address.split('.').map(Number);
}

function base(spec: LabSpec): string {
  return spec.subnet.split('.').slice(0, 3).join('.');
}

function checkAddresses(spec: LabSpec): void {
  const prefix = base(spec);
  const seen = new Map<string, string>();
  for (const h of spec.hosts) {
    const o = octets(h.address);
    if (o.some((x) => x > 255)) throw new LabSpecError(`host '${h.name}': address ${h.address} is not a valid IPv4 address`);
    if (o.slice(0, 3).join('.') !== prefix) throw new LabSpecError(`host '${h.name}': address ${h.address} is outside the lab subnet ${spec.subnet}`);
    if (o[3] < 3 || o[3] >= PROXY_FIRST) {
      throw new LabSpecError(`host '${h.name}': address ${h.address} is reserved (hosts use ${prefix}.3-${prefix}.${PROXY_FIRST - 1}; .1 is the bridge, .2 the links namespace, .${PROXY_FIRST}+ the link proxies)`);
    }
    const other = seen.get(h.address);
    if (other) throw new LabSpecError(`hosts '${other}' and '${h.name}' overlap: both have address ${h.address}`);
    seen.set(h.address, h.name);
  }
}

function checkHosts(spec: LabSpec): void {
  const names = new Set<string>();
  for (const h of spec.hosts) {
    if (names.has(h.name)) throw new LabSpecError(`host '${h.name}' is defined twice`);
    names.add(h.name);
  }
  const [from, to] = spec.ports.replicas;
  if (to <= from) throw new LabSpecError(`ports.replicas [${from}, ${to}] must be a range of at least two ports`);
}

function checkLinks(spec: LabSpec): void {
  const names = spec.hosts.map((h) => h.name);
  const pairs = new Set<string>();
  spec.links.forEach((l, i) => {
    for (const end of l.between) {
      if (!names.includes(end)) throw new LabSpecError(`links[${i}]: unknown host '${end}' (hosts are ${names.join(', ')})`);
    }
    if (l.between[0] === l.between[1]) throw new LabSpecError(`links[${i}]: a link joins two different hosts, not '${l.between[0]}' with itself`);
    const key = [...l.between].sort().join('-');
    if (pairs.has(key)) throw new LabSpecError(`links[${i}]: hosts '${l.between[0]}' and '${l.between[1]}' are already linked`);
    pairs.add(key);
  });
  const ends = spec.links.length * 2;
  if (ends > PROXY_LAST - PROXY_FIRST + 1) throw new LabSpecError(`${spec.links.length} links need ${ends} proxy addresses; a lab has room for ${PROXY_LAST - PROXY_FIRST + 1} (at most ${Math.floor((PROXY_LAST - PROXY_FIRST + 1) / 2)} links)`);
}

/** Validates a spec object (already parsed from YAML); throws LabSpecError with one line. */
export function validateLabSpec(raw: unknown): LabSpec {
  const parsed = LabSpecSchema.safeParse(raw);
  if (!parsed.success) throw new LabSpecError(zodMessage(parsed.error));
  const spec = parsed.data;
  if (octets(spec.subnet.split('/')[0]).some((x) => x > 255)) throw new LabSpecError(`subnet: ${spec.subnet} is not a valid IPv4 network`);
  checkHosts(spec);
  checkAddresses(spec);
  checkLinks(spec);
  return spec;
}

export function parseLabSpec(yamlText: string, source = 'spec'): LabSpec {
  let raw: unknown;
  try {
    raw = parseYaml(yamlText);
  } catch (err) {
    throw new LabSpecError(`${source}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
  }
  try {
    return validateLabSpec(raw);
  } catch (err) {
    if (err instanceof LabSpecError) throw new LabSpecError(`${source}: ${err.message}`);
    throw err;
  }
}

export async function readLabSpec(file: string): Promise<LabSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new LabSpecError(`cannot read lab spec ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseLabSpec(text, file);
}

// ---------------------------------------------------------------- the plan

export interface PlannedHost extends LabHost {
  netns: string;
  /** veth end on the bridge (root namespace) and inside the host's namespace. */
  vethHost: string;
  vethInside: string;
}

/** One direction of a link: connections opened by `from` to `to` pass through the proxy at `proxyAddress`. */
export interface LinkEnd {
  from: string;
  to: string;
  fromAddress: string;
  toAddress: string;
  proxyAddress: string;
  link: LabLink;
}

export interface LabPlan {
  spec: LabSpec;
  bridge: string;
  bridgeAddress: string;
  linksNetns: string;
  linksAddress: string;
  linksVethHost: string;
  linksVethInside: string;
  hosts: PlannedHost[];
  linkEnds: LinkEnd[];
  /** TCP ports the link proxies carry to every host: the gateway's and the replica range. */
  proxiedPorts: number[];
  controlUrl: string;
}

export function planLab(spec: LabSpec): LabPlan {
  const net = base(spec);
  const p = spec.prefix;
  const hosts: PlannedHost[] = spec.hosts.map((h, i) => ({ ...h, netns: `${p}-${h.name}`, vethHost: `${p}-${i}h`, vethInside: `${p}-${i}c` }));
  const address = new Map(hosts.map((h) => [h.name, h.address]));
  let next = PROXY_FIRST;
  const linkEnds: LinkEnd[] = spec.links.flatMap((link) => {
    const [a, b] = link.between;
    return [[a, b], [b, a]].map(([from, to]) => ({
      from, to, fromAddress: address.get(from)!, toAddress: address.get(to)!, proxyAddress: `${net}.${next++}`, link,
    }));
  });
  const [r0, r1] = spec.ports.replicas;
  const proxiedPorts = [spec.ports.gateway, spec.ports.gateway_grpc, ...Array.from({ length: r1 - r0 + 1 }, (_, k) => r0 + k)];
  return {
    spec, hosts, linkEnds, proxiedPorts,
    bridge: `${p}-br`,
    bridgeAddress: `${net}.1`,
    linksNetns: `${p}-links`,
    linksAddress: `${net}.2`,
    linksVethHost: `${p}-lkh`,
    linksVethInside: `${p}-lkc`,
    controlUrl: `http://${net}.1:${spec.control.port}`,
  };
}
