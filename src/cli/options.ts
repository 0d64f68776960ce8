/** Parsers for CLI option values: each rejects bad input with a one-line message naming the option. */
import { InvalidArgumentError } from 'commander';

export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 65535) throw new InvalidArgumentError(`must be a port number 0-65535, got '${value}'`);
  return n;
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < 1) throw new InvalidArgumentError(`must be a positive integer, got '${value}'`);
  return n;
}

export function parseList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}
