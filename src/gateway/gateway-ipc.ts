/**
 * What an agent and its gateway process say to each other over the IPC
 * channel. The gateway runs in a process of its own: the agent runs in V8's
 * lite mode to stay small (agent/footprint.ts), which has no JIT and no
 * WebAssembly, while the gateway is on every request's path and needs both
 * (undici's HTTP parser is WebAssembly). A separate process also keeps
 * routing going while the agent restarts.
 */
import type { RoutingTable } from '../protocol/routing.js';
import type { Locale } from './replica-picker.js';

/** Passed in the environment variable GATEWAY_OPTIONS_ENV as JSON. */
export interface GatewayChildOptions {
  host: string;
  httpPort: number;
  grpcPort: number;
  cacheFile: string;
  locale: Locale;
  logLevel: string;
}

export const GATEWAY_OPTIONS_ENV = 'TERN_GATEWAY_OPTIONS';

export type ToGateway =
  | { kind: 'routes'; table: RoutingTable }
  | { kind: 'locale'; locale: Locale };

export type FromGateway =
  | { kind: 'listening'; httpPort: number; grpcPort: number; version: number }
  | { kind: 'failed'; error: string }
  | { kind: 'applied'; version: number };
