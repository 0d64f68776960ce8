/**
 * Which replica gets the next request. Two steps, as in the issue and in the
 * edge-offloading literature:
 *
 * 1. Locality tiers by the deployment's policy: `local-first` tries this
 *    node's replicas, then its site/zone, then any; `fastest` puts every
 *    replica in one tier; `cloud-only` keeps cloud replicas only. The first
 *    tier with a healthy replica wins.
 * 2. Power of two choices within the tier (Mitzenmacher): sample two, take
 *    the lower EWMA latency x (1 + in-flight). Cheap, and it avoids the herd
 *    behaviour of always picking the single best.
 *
 * Ejected replicas (see ReplicaStats) are skipped; if a tier has only ejected
 * replicas the next tier is tried, and if every replica is ejected the least
 * bad one is used anyway (Envoy's "panic" mode): an ejection is a guess, a
 * refused request is a certainty.
 */
import type { Locality, Route, RouteReplica } from '../protocol/routing.js';
import type { ReplicaStats } from './replica-stats.js';

export interface Locale {
  node?: string;
  site?: string;
  zone?: string;
}

function tiers(replicas: RouteReplica[], locality: Locality, here: Locale): RouteReplica[][] {
  if (locality === 'fastest') return [replicas];
  if (locality === 'cloud-only') return [replicas.filter((r) => r.cloud)];
  const local = replicas.filter((r) => here.node !== undefined && r.node === here.node);
  const nearby = replicas.filter((r) => !local.includes(r)
    && ((here.zone !== undefined && r.zone === here.zone) || (here.site !== undefined && r.site === here.site)));
  const rest = replicas.filter((r) => !local.includes(r) && !nearby.includes(r));
  return [local, nearby, rest];
}

export class ReplicaPicker {
  constructor(private readonly stats: ReplicaStats, private readonly random: () => number = Math.random) {}

  /** A replica for the route, not in `exclude` (replicas already tried for this request); undefined when none is left. */
  pick(route: Route, here: Locale, exclude: ReadonlySet<string> = new Set()): RouteReplica | undefined {
    const now = performance.now();
    const allowed = route.replicas.filter((r) => !exclude.has(r.id));
    for (const tier of tiers(allowed, route.policy.locality, here)) {
      const healthy = tier.filter((r) => !this.stats.isEjected(r.id, now));
      if (healthy.length > 0) return this.twoChoices(healthy);
    }
    // Panic: every candidate is ejected; the policy's candidates are still better than an error.
    const candidates = tiers(allowed, route.policy.locality, here).flat();
    return candidates.length > 0 ? this.twoChoices(candidates) : undefined;
  }

  private twoChoices(candidates: RouteReplica[]): RouteReplica {
    if (candidates.length === 1) return candidates[0];
    const i = Math.floor(this.random() * candidates.length);
    let j = Math.floor(this.random() * (candidates.length - 1));
    if (j >= i) j += 1;
    const a = candidates[i];
    const b = candidates[j];
    return this.stats.cost(a.id) <= this.stats.cost(b.id) ? a : b;
  }
}
