/**
 * Exponential backoff with jitter, shared by the agent's retry loops (joining
 * the control plane, restarting crashed replicas, re-downloading artifacts).
 */
export interface BackoffConfig {
  initialMs: number;
  maxMs: number;
  /** Multiplier per attempt. */
  factor: number;
  /** 0..1: a random share of each delay, so a fleet does not retry in lockstep. */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffConfig = { initialMs: 500, maxMs: 30_000, factor: 2, jitter: 0.2 };

export class Backoff {
  private attempt = 0;

  constructor(private readonly config: BackoffConfig = DEFAULT_BACKOFF) {}

  /** How many delays were handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The delay before the next attempt; grows with each call. */
  next(): number {
    const { initialMs, maxMs, factor, jitter } = this.config;
    const base = Math.min(maxMs, initialMs * factor ** this.attempt);
    this.attempt++;
    return Math.round(base * (1 - jitter * Math.random()));
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or early (without error) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
