/**
 * Recent latencies of one deployment, for the hedging delay (its p95). A ring
 * of the last N samples, sorted only when the quantile is asked for and
 * stale: the hot path is one array write. hdr-histogram-js would need a
 * decaying window of its own for "recent", which is what the ring is.
 */
export class LatencyWindow {
  private readonly samples: Float64Array;
  private count = 0;
  private next = 0;
  private total = 0;
  private cached: { at: number; p95: number } | undefined;

  constructor(size = 512, private readonly minSamples = 50) {
    this.samples = new Float64Array(size);
  }

  add(ms: number): void {
    this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.samples.length;
    this.count = Math.min(this.count + 1, this.samples.length);
    this.total += 1;
  }

  /** The 95th percentile, or undefined until `minSamples` were seen; recomputed every 32 samples. */
  p95(): number | undefined {
    if (this.count < this.minSamples) return undefined;
    if (this.cached && this.total - this.cached.at < 32) return this.cached.p95;
    const sorted = this.samples.slice(0, this.count).sort();
    const p95 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))];
    this.cached = { at: this.total, p95 };
    return p95;
  }
}
