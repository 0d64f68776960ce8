/**
 * Closed-loop load: `concurrency` clients, each sending its next request as
 * soon as the previous one answered, for a warm-up and then a measured window.
 * Throughput counts the requests that complete inside the window (wrk's way:
 * unbiased in steady state however long a request takes); latencies of those
 * requests go into an HDR histogram (microsecond resolution). The window
 * stretches past its planned length until enough answers came in.
 */
import * as hdr from 'hdr-histogram-js';

export interface LatencySummary {
  /** Successful requests completed inside the measured window. */
  requests: number;
  errors: number;
  firstError?: string;
  /** Length of the measured window. */
  seconds: number;
  /** requests / seconds. */
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
}

export interface ClosedLoopOptions {
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  /** One request: resolves when the full answer is in, rejects on any failure. */
  send: () => Promise<unknown>;
  /**
   * The window lasts at least durationMs and until this many answers came in
   * (default 2 x concurrency), so slow models still give a figure; but never
   * beyond maxDurationMs (default 60 s).
   */
  minRequests?: number;
  maxDurationMs?: number;
  /** Called about every 200 ms with the time elapsed since the start (warm-up included). */
  onProgress?: (elapsedMs: number) => void;
}

/** Latencies from 1 µs to 10 min; 3 significant digits. */
export function newLatencyHistogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
}

export function summarize(h: hdr.Histogram, errors: number, seconds: number, firstError?: string): LatencySummary {
  const ms = (us: number) => us / 1000;
  const requests = h.totalCount;
  return {
    requests, errors, seconds,
    ...(firstError !== undefined ? { firstError } : {}),
    rps: seconds > 0 ? requests / seconds : 0,
    p50Ms: ms(h.getValueAtPercentile(50)),
    p90Ms: ms(h.getValueAtPercentile(90)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    maxMs: ms(h.maxValue),
    meanMs: ms(h.mean),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function runClosedLoop(opts: ClosedLoopOptions): Promise<LatencySummary> {
  const histogram = newLatencyHistogram();
  const t0 = performance.now();
  const windowStart = t0 + opts.warmupMs;
  const minRequests = opts.minRequests ?? 2 * opts.concurrency;
  const maxWindowMs = Math.max(opts.durationMs, opts.maxDurationMs ?? 60_000);
  /** Fixed once the window has lasted durationMs and seen minRequests answers (or maxWindowMs). */
  let windowEnd = Infinity;
  let errors = 0;
  let firstError: string | undefined;

  const settle = (now: number): void => {
    if (windowEnd !== Infinity || now < windowStart + opts.durationMs) return;
    if (histogram.totalCount + errors >= minRequests || now >= windowStart + maxWindowMs) windowEnd = now;
  };
  const inWindow = (t: number) => t >= windowStart && t <= windowEnd;

  const client = async (): Promise<void> => {
    while (true) {
      const start = performance.now();
      settle(start);
      if (start >= windowEnd) return;
      try {
        await opts.send();
        const done = performance.now();
        settle(done);
        if (inWindow(done)) histogram.recordValue(Math.max(1, Math.round((done - start) * 1000)));
      } catch (err) {
        const done = performance.now();
        settle(done);
        if (inWindow(done)) errors++;
        firstError ??= err instanceof Error ? err.message : String(err);
        // A server that fails at once must not turn the client into a busy loop.
        await sleep(5);
      }
    }
  };

  const ticker = opts.onProgress ? setInterval(() => opts.onProgress!(performance.now() - t0), 200) : undefined;
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, client));
  } finally {
    if (ticker) clearInterval(ticker);
  }
  return summarize(histogram, errors, (windowEnd - windowStart) / 1000, firstError);
}
