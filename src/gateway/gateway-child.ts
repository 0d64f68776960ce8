/**
 * The entry point of an agent's gateway process (see gateway-ipc.ts for why
 * it is a process of its own). Started by agent/gateway-process.ts with an
 * IPC channel; leaves when the channel closes, so it never outlives its agent.
 */
import { pino } from 'pino';
import { GATEWAY_OPTIONS_ENV, type FromGateway, type GatewayChildOptions, type ToGateway } from './gateway-ipc.js';
import { startGatewayServer } from './gateway-server.js';

function send(message: FromGateway): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const options = JSON.parse(process.env[GATEWAY_OPTIONS_ENV] ?? '{}') as GatewayChildOptions;
  const log = pino({ level: options.logLevel }).child({ component: 'gateway' });
  let server;
  try {
    server = await startGatewayServer({ ...options, log });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'EADDRINUSE' ? `port ${options.httpPort} or ${options.grpcPort} is already in use` : e.message;
    send({ kind: 'failed', error: `the gateway could not start: ${why}` });
    process.exit(1);
  }
  const running = server;
  process.on('message', (m: ToGateway) => {
    if (m.kind === 'routes') {
      if (running.apply(m.table)) send({ kind: 'applied', version: running.version });
    } else if (m.kind === 'locale') {
      running.gateway.setLocale(m.locale);
    }
  });
  process.on('disconnect', () => {
    setTimeout(() => process.exit(1), 5_000).unref();
    void running.close().finally(() => process.exit(0));
  });
  send({ kind: 'listening', httpPort: running.httpPort, grpcPort: running.grpcPort, version: running.version });
}

void main();
