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
  stdevMs: number;
  /** Failed requests inside the window by kind (timeout, connection, http-5xx, grpc-UNAVAILABLE...). */
  errorsByKind: Record<string, number>;
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

/** A short, stable name for what went wrong with a request, for counting errors by kind. */
export function errorKind(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  const http = /^HTTP (\d)\d\d/.exec(m);
  if (http) return `http-${http[1]}xx`;
  const grpc = /^gRPC ([A-Z_]+)/.exec(m);
  if (grpc) return grpc[1] === 'DEADLINE_EXCEEDED' ? 'timeout' : `grpc-${grpc[1]}`;
  if (/timeout|timed out/i.test(m) || (err as { code?: string })?.code === 'UND_ERR_HEADERS_TIMEOUT') return 'timeout';
  if (/ECONNREFUSED|ECONNRESET|EPIPE|socket|other side closed|EHOSTUNREACH/i.test(m)) return 'connection';
  if (/overload/.test(m)) return 'overload';
  return 'other';
}

export function summarize(h: hdr.Histogram, errors: number, seconds: number, firstError?: string, errorsByKind: Record<string, number> = {}): LatencySummary {
  const ms = (us: number) => us / 1000;
  const requests = h.totalCount;
  return {
    requests, errors, seconds, errorsByKind,
    ...(firstError !== undefined ? { firstError } : {}),
    rps: seconds > 0 ? requests / seconds : 0,
    p50Ms: ms(h.getValueAtPercentile(50)),
    p90Ms: ms(h.getValueAtPercentile(90)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    maxMs: ms(h.maxValue),
    meanMs: ms(h.mean),
    stdevMs: ms(h.stdDeviation),
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
  const errorsByKind: Record<string, number> = {};

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
        if (inWindow(done)) {
          errors++;
          const kind = errorKind(err);
          errorsByKind[kind] = (errorsByKind[kind] ?? 0) + 1;
        }
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
  return summarize(histogram, errors, (windowEnd - windowStart) / 1000, firstError, errorsByKind);
}

export interface OpenLoopOptions {
  /** Mean arrivals per second (Poisson: exponential gaps). */
  rate: number;
  warmupMs: number;
  durationMs: number;
  send: () => Promise<unknown>;
  /** Requests allowed in flight at once; an arrival beyond it fails as 'overload' (default 1000). */
  maxInFlight?: number;
  onProgress?: (elapsedMs: number) => void;
  /** Uniform [0, 1) source (default Math.random), for reproducible arrival times. */
  random?: () => number;
}

/**
 * Open-loop load: requests arrive at Poisson times whatever the server does,
 * as independent users of a public service would. Each latency counts from
 * the request's planned arrival, so a stalled sender does not hide queueing
 * (no coordinated omission). Requests arriving in the window are measured;
 * the run waits for their answers.
 */
export async function runOpenLoop(opts: OpenLoopOptions): Promise<LatencySummary> {
  const histogram = newLatencyHistogram();
  const random = opts.random ?? Math.random;
  const maxInFlight = opts.maxInFlight ?? 1000;
  const t0 = performance.now();
  const windowStart = t0 + opts.warmupMs;
  const windowEnd = windowStart + opts.durationMs;
  const errorsByKind: Record<string, number> = {};
  let errors = 0;
  let firstError: string | undefined;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();

  const fire = (planned: number): void => {
    const measured = planned >= windowStart;
    const fail = (err: unknown) => {
      firstError ??= err instanceof Error ? err.message : String(err);
      if (!measured) return;
      errors++;
      const kind = errorKind(err);
      errorsByKind[kind] = (errorsByKind[kind] ?? 0) + 1;
    };
    if (inFlight >= maxInFlight) {
      fail(new Error(`overload: ${maxInFlight} requests already in flight`));
      return;
    }
    inFlight++;
    const p = opts.send().then(
      () => { if (measured) histogram.recordValue(Math.max(1, Math.round((performance.now() - planned) * 1000))); },
      fail,
    ).finally(() => { inFlight--; pending.delete(p); });
    pending.add(p);
  };

  const ticker = opts.onProgress ? setInterval(() => opts.onProgress!(performance.now() - t0), 200) : undefined;
  try {
    let next = t0;
    while (next < windowEnd) {
      next += (-Math.log(1 - random()) / opts.rate) * 1000;
      const wait = next - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      // Arrivals that fell due while this loop slept are sent now, but timed from when they were due.
      if (next < windowEnd) fire(next);
    }
    await Promise.all(pending);
  } finally {
    if (ticker) clearInterval(ticker);
  }
  return summarize(histogram, errors, opts.durationMs / 1000, firstError, errorsByKind);
}
