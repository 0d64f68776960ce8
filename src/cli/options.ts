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

/** `30s`, `500ms`, `2m` or plain seconds, to milliseconds. */
export function parseDuration(value: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(value.trim());
  if (!m || Number(m[1]) <= 0) throw new InvalidArgumentError(`must be a duration like 30s, 500ms or 2m, got '${value}'`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
}

/** `1,2,4`: positive integers. */
export function parseIntList(value: string): number[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0 || items.some((s) => !/^[0-9]+$/.test(s) || Number(s) < 1)) {
    throw new InvalidArgumentError(`must be a comma-separated list of positive integers like 1,2,4, got '${value}'`);
  }
  return items.map(Number);
}

/** `5,10.5`: positive numbers. */
export function parseNumberList(value: string): number[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0 || items.some((s) => !(Number(s) > 0))) {
    throw new InvalidArgumentError(`must be a comma-separated list of positive numbers like 5,20, got '${value}'`);
  }
  return items.map(Number);
}
