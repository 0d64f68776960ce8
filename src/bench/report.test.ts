import { describe, expect, it } from 'vitest';
import type { LatencySummary } from './load-generator.js';
import { medianRounds, type Measurement } from './report.js';

function m(system: 'tern' | 'naive', clients: number, rps: number | undefined): Measurement {
  const result = rps === undefined ? undefined : ({ rps, requests: rps, errors: 0, seconds: 1, p50Ms: 1000 / rps } as LatencySummary);
  return { system, transport: 'rest-json', load: { clients }, rowsPerRequest: 1, ...(result ? { result } : { error: 'failed' }) };
}

describe('medianRounds', () => {
  it('keeps a single round as it is', () => {
    const round = [m('tern', 1, 10), m('naive', 1, 5)];
    expect(medianRounds([round])).toBe(round);
  });

  it('picks, per measurement, the round with the median throughput and lists every round', () => {
    const out = medianRounds([
      [m('tern', 1, 30), m('naive', 1, 5)],
      [m('naive', 1, 7), m('tern', 1, 10)], // the second round ran the servers the other way round
      [m('tern', 1, 20), m('naive', 1, undefined)],
    ]);
    expect(out.map((x) => [x.system, x.result?.rps])).toEqual([['tern', 20], ['naive', 5]]);
    expect(out[0].rounds).toEqual([10, 20, 30]);
    expect(out[1].rounds).toEqual([0, 5, 7]); // a failed round counts as 0
  });
});
