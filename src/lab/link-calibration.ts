/**
 * Delay calibration at `tern lab up`. Traffic between two lab hosts crosses
 * NAT and a user-space proxy hop even when the link adds no delay: here that
 * path alone takes 0.1-0.3 ms of round trip (two more process wake-ups and
 * socket hops per direction), which is noise on a 40 ms WAN link and 15-30%
 * of a 1 ms LAN link. So the lab measures each delayed link with the spec's
 * delay applied, lowers the delay it adds by half the excess each way (never
 * below zero) and measures again, two to five times, until a measurement
 * lands within 3% of the spec; what it measured is recorded in the lab state.
 * The machine's load moves a 1 ms link's median RTT by up to ~0.1 ms from one
 * second to the next: calibration centres it, it cannot remove that noise. The measurement runs with the delay applied, not at zero
 * delay, because a proxy that busy-waits for a sub-ms deadline changes how
 * the machine schedules the other ends of the round trip.
 */
import type { LabLink, LinkCalibration } from '../protocol/lab.js';

/** The delay added each way to a link's traffic, in ms (by the proxy or by netem). */
export type LinkDelays = Map<LabLink, number>;

export interface CalibrationPorts {
  /** Median RTT of `pings` round trips over the link as now shaped. */
  measure(link: LabLink, pings: number): Promise<number>;
  /** Shapes every link with these delays (links absent from the map keep their spec delay). */
  apply(delays: LinkDelays): Promise<void>;
  /** How many pings to spend on one measurement of a link. */
  pings(link: LabLink): number;
}

/** Corrections at least and at most; between them the lab stops once a check lands this close to the spec. */
const MIN_ROUNDS = 2;
const MAX_ROUNDS = 5;
const CLOSE = 0.03;

/** The delay each way that turns a path taking `overheadMs` of round trip by itself into twice `specMs`. */
export function correctedDelay(specMs: number, overheadMs: number): number {
  return Math.max(0, specMs - overheadMs / 2);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function explain(c: LinkCalibration): LinkCalibration {
  if (c.applied_delay_ms > 0 || c.rtt_ms <= 2 * c.spec_delay_ms * 1.1) return c;
  return { ...c, note: `the path alone takes ${c.rtt_ms.toFixed(2)} ms of round trip here, more than the spec's ${2 * c.spec_delay_ms} ms: this link cannot be emulated that short on this machine` };
}

/**
 * One link: the path's own round trip (measured RTT minus the delay added both ways) is estimated as the
 * median over the rounds, so that one measurement taken while the machine was busy does not set the
 * delay. Each round applies the estimate and measures again, which is also the check of the last one.
 */
async function calibrateLink(link: LabLink, delays: LinkDelays, ports: CalibrationPorts): Promise<LinkCalibration> {
  const pings = ports.pings(link);
  const spec = 2 * link.delay_ms;
  const uncalibrated = await ports.measure(link, pings);
  const overheads: number[] = [];
  let rtt = uncalibrated;
  // Already close (a 40 ms link measures ~41 here): a correction of a few tenths of a ms would be as
  // large as the noise of the measurements it rests on (one overcorrected a 40 ms link to 38.5 ms).
  const rounds = Math.abs(uncalibrated - spec) <= CLOSE * spec ? 0 : MAX_ROUNDS;
  for (let round = 0; round < rounds; round++) {
    overheads.push(rtt - 2 * delays.get(link)!);
    delays.set(link, correctedDelay(link.delay_ms, median(overheads)));
    await ports.apply(delays);
    rtt = await ports.measure(link, pings);
    if (round + 1 >= MIN_ROUNDS && Math.abs(rtt - spec) <= CLOSE * spec) break;
  }
  return explain({
    between: link.between, spec_delay_ms: link.delay_ms, applied_delay_ms: delays.get(link)!, uncalibrated_rtt_ms: uncalibrated, rtt_ms: rtt, pings,
  });
}

/** Calibrates every link with a delay, one after the other; returns the delays applied (the links are left so) and what was measured. */
export async function calibrateDelays(links: LabLink[], ports: CalibrationPorts): Promise<{ delays: LinkDelays; calibration: LinkCalibration[] }> {
  const delayed = links.filter((l) => l.delay_ms > 0);
  const delays: LinkDelays = new Map(delayed.map((l) => [l, l.delay_ms]));
  if (delayed.length === 0) return { delays, calibration: [] };
  // A first measurement, thrown away: the proxies' code runs cold at first (V8 optimises it after some
  // hundred chunks), which measured up to 0.2 ms slower per round trip than later. The shortest link
  // warms them fastest; every link runs the same code.
  const shortest = delayed.reduce((a, b) => (b.delay_ms < a.delay_ms ? b : a));
  await ports.measure(shortest, ports.pings(shortest));
  const calibration: LinkCalibration[] = [];
  for (const link of delayed) calibration.push(await calibrateLink(link, delays, ports));
  return { delays, calibration };
}

/** One line for `lab up` and `lab check`: what the lab adds to a link and what it measured. */
export function describeCalibration(c: LinkCalibration, by: string): string {
  const applied = `${c.applied_delay_ms.toFixed(3)} ms each way by ${by} (spec ${c.spec_delay_ms})`;
  const measured = `median RTT ${c.uncalibrated_rtt_ms.toFixed(2)} ms uncalibrated, ${c.rtt_ms.toFixed(2)} ms calibrated (spec ${2 * c.spec_delay_ms}, ${c.pings} pings)`;
  return `${c.between.join(' <-> ')}: ${applied}; ${measured}${c.note ? `; ${c.note}` : ''}`;
}
