import { describe, expect, it } from 'vitest';
import { parseCompose, startOrder } from './compose.js';

describe('compose files', () => {
  it('orders services after their dependencies and reads ports, environment, replicas and limits', () => {
    const p = parseCompose(`
services:
  front:
    image: web:1
    ports: ["8080:8080"]
    depends_on: [api, db]
    environment: { API: "http://api:9000", DEBUG: 1 }
  api:
    image: api:1
    depends_on: { db: { condition: service_started } }
    deploy: { replicas: 2, resources: { limits: { cpus: "0.5", memory: 256M } } }
  db:
    image: db:1
    command: serve --fast
`, 'demo');
    expect(p.name).toBe('demo');
    expect(p.workloads.map((w) => w.service)).toEqual(['db', 'api', 'front']);
    const api = p.workloads.find((w) => w.service === 'api')!;
    expect([api.replicas, api.cpus, api.memoryBytes]).toEqual([2, 0.5, 256 * 1024 * 1024]);
    expect(p.workloads[2]).toMatchObject({ ports: [8080], env: ['API=http://api:9000', 'DEBUG=1'] });
    expect(p.workloads[0].command).toEqual(['serve', '--fast']);
  });

  it('refuses unknown keys, dependency cycles, unknown dependencies and remapped ports, naming them', () => {
    expect(() => parseCompose('services:\n  a:\n    image: x\n    bogus: 1\n', 'p')).toThrow("unknown key 'bogus' in services.a");
    expect(() => parseCompose('servics:\n  a: {image: x}\n', 'p')).toThrow(/unknown key 'servics' in the file/);
    expect(() => parseCompose('services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n', 'p')).toThrow('dependency cycle: a -> b -> a');
    expect(() => parseCompose('services:\n  a: {image: x, depends_on: [zz]}\n', 'p')).toThrow("service a depends on 'zz', which the file does not define");
    expect(() => parseCompose('services:\n  a: {image: x, ports: ["8080:80"]}\n', 'p')).toThrow(/host and container ports must be the same/);
    expect(() => parseCompose('services:\n  a: {image: x, ports: [80]}\n  b: {image: y, ports: [80]}\n', 'p')).toThrow('port 80 is published by more than one service');
    expect(() => parseCompose(': : :\n', 'p')).toThrow(/not valid YAML/);
  });

  it('finds a cycle through several services', () => {
    expect(() => startOrder(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', []]]))).toThrow('dependency cycle: a -> b -> c -> a');
  });
});
