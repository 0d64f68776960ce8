/**
 * Medians over benchmark rounds, shared by the benches that alternate what
 * they compare over rounds (serving, gateway, runtimes). With an even count
 * the upper of the two middle values is taken: a figure is always one that
 * was measured.
 */
export function median(values: readonly number[]): number {
  return [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
}

/** The item whose `value` is the median, so the figures of one window stay together. */
export function atMedian<T>(items: readonly T[], value: (item: T) => number): T {
  return [...items].sort((a, b) => value(a) - value(b))[Math.floor(items.length / 2)];
}
