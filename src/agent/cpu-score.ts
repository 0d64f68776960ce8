/**
 * The CPU score a node reports at join: a short fixed single-threaded kernel
 * (integer hashing and floating-point multiply-adds, the mix of a small model's
 * pre- and post-processing) run for about 200 ms; the score is kernel
 * operations per second. Higher is faster; the scheduler compares nodes by it.
 */
import { performance } from 'node:perf_hooks';

export interface CpuScoreConfig {
  /** How long to measure (after a short warm-up). */
  durationMs: number;
}

export const DEFAULT_CPU_SCORE: CpuScoreConfig = { durationMs: 200 };

/** Operations counted per kernel iteration (see `kernel`). */
const OPS_PER_ITERATION = 8;
const ITERATIONS_PER_CHUNK = 50_000;

/**
 * One chunk of the fixed kernel: per iteration, 4 integer ops (xorshift step
 * and add) and 4 float ops (two multiply-adds). Returns a checksum so the JIT
 * cannot drop the work.
 */
function kernel(seed: number, iterations: number): number {
  let x = seed | 0 || 1;
  let acc = 0.5;
  let sum = 0;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    sum = (sum + (x & 0xff)) | 0;
    acc = acc * 0.999999 + (x & 0xffff) * 1e-9;
    acc = acc * 1.000001 - 1e-10;
  }
  return sum + acc;
}

export interface CpuScore {
  ops_per_second: number;
  elapsed_ms: number;
  checksum: number;
}

export function measureCpuScore(config: CpuScoreConfig = DEFAULT_CPU_SCORE): CpuScore {
  let checksum = kernel(7, ITERATIONS_PER_CHUNK); // warm-up: let the JIT compile the kernel
  let iterations = 0;
  const start = performance.now();
  let now = start;
  while (now - start < config.durationMs) {
    checksum += kernel(iterations + 1, ITERATIONS_PER_CHUNK);
    iterations += ITERATIONS_PER_CHUNK;
    now = performance.now();
  }
  const elapsed = now - start;
  return { ops_per_second: Math.round((iterations * OPS_PER_ITERATION) / (elapsed / 1000)), elapsed_ms: elapsed, checksum };
}
