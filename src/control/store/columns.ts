/** Conversions between SQLite columns and record fields, shared by the tables. */
import { randomBytes } from 'node:crypto';

export function toJson(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

export function fromJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

/** Short random ids for rows people type on a command line (tokens, uploads). */
export function randomId(bytes = 6): string {
  return randomBytes(bytes).toString('hex');
}

/** Versions are positive integers in SQLite (so they sort) and strings on the wire. */
export function versionToText(version: number): string {
  return String(version);
}

export function versionFromText(version: string): number | undefined {
  return /^[1-9][0-9]{0,14}$/.test(version) ? Number(version) : undefined;
}
