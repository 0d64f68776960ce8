/**
 * The agent's gateway module: runs the node's gateway as a child process
 * (gateway/gateway-child.ts; why a process: gateway/gateway-ipc.ts), hands it
 * every routing table from the hub, restarts it if it dies, and knows the
 * table version it routes by (reported in heartbeats: the drain protocol
 * waits for it).
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { RoutingTable } from '../protocol/routing.js';
import type { FromGateway, GatewayChildOptions, ToGateway } from '../gateway/gateway-ipc.js';
import { GATEWAY_OPTIONS_ENV } from '../gateway/gateway-ipc.js';
import { Backoff, DEFAULT_BACKOFF } from './backoff.js';
import { compiledScript, SCRIPTS } from './scripts.js';

export interface GatewayPorts {
  host?: string;
  httpPort: number;
  grpcPort: number;
}

const START_TIMEOUT_MS = 20_000;

export class GatewayProcess {
  private child: ChildProcess | undefined;
  private latest: RoutingTable | undefined;
  private closed = false;
  private readonly backoff = new Backoff(DEFAULT_BACKOFF);
  private restartTimer: NodeJS.Timeout | undefined;
  /** Table version the gateway routes by (-1: none yet). */
  version = -1;
  httpPort = 0;
  grpcPort = 0;

  constructor(private options: GatewayChildOptions, private readonly log: Logger) {}

  /** Starts the gateway; rejects with the reason when it cannot listen. */
  async start(): Promise<void> {
    const child = fork(compiledScript(SCRIPTS.gateway), [], {
      env: { ...process.env, [GATEWAY_OPTIONS_ENV]: JSON.stringify(this.options) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // The gateway needs V8's JIT and WebAssembly even when the agent runs lean.
      execArgv: [],
    });
    this.child = child;
    const listening = await new Promise<FromGateway & { kind: 'listening' }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the gateway did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
      child.on('message', (m: FromGateway) => {
        if (m.kind === 'listening') { clearTimeout(timer); resolve(m); }
        if (m.kind === 'failed') { clearTimeout(timer); reject(new Error(m.error)); }
      });
      child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`the gateway exited while starting (${signal ?? `code ${code}`})`)); });
    });
    this.httpPort = listening.httpPort;
    this.grpcPort = listening.grpcPort;
    this.version = listening.version;
    // A restart keeps the ports: clients and other nodes know them.
    this.options = { ...this.options, httpPort: this.httpPort, grpcPort: this.grpcPort };
    child.on('message', (m: FromGateway) => { if (m.kind === 'applied') this.version = m.version; });
    child.once('exit', (code, signal) => this.onExit(code, signal));
    if (this.latest && this.latest.version > this.version) this.send({ kind: 'routes', table: this.latest });
  }

  apply(table: RoutingTable): void {
    this.latest = table;
    this.send({ kind: 'routes', table });
  }

  setLocale(locale: GatewayChildOptions['locale']): void {
    this.options = { ...this.options, locale };
    this.send({ kind: 'locale', locale });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.disconnect(); // the gateway closes its listeners, lets in-flight requests finish and leaves
    const force = setTimeout(() => child.kill('SIGKILL'), 6_000);
    await exited;
    clearTimeout(force);
  }

  private send(message: ToGateway): void {
    if (this.child?.connected) this.child.send(message);
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.closed) return;
    const delay = this.backoff.next();
    this.log.error({ code, signal, restart_in_ms: delay }, 'the gateway process died; restarting it');
    this.restartTimer = setTimeout(() => {
      this.start().then(() => this.backoff.reset(), (err: unknown) => {
        this.log.error({ err: (err as Error).message }, 'restarting the gateway failed');
        this.onExit(null, null);
      });
    }, delay);
  }
}
