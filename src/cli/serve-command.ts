/** `tern serve`: run the model server in the foreground until a signal. */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { startServer, type RunningServer } from '../serving/server.js';

export interface ServeFlags {
  modelRepository: string;
  host: string;
  httpPort: number;
  grpcPort: number;
  bodyLimit: number;
  watch: boolean;
}

export function checkRepository(dir: string): string {
  const abs = path.resolve(dir);
  if (!existsSync(abs)) throw new Error(`model repository '${dir}' does not exist (create one with: tern models demo ${dir})`);
  if (!statSync(abs).isDirectory()) throw new Error(`model repository '${dir}' is not a directory`);
  return abs;
}

function stopOnSignals(server: RunningServer): void {
  const stop = async (signal: string) => {
    server.core.log.info({ signal }, 'shutting down: draining in-flight requests');
    await server.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop('SIGINT'));
  process.once('SIGTERM', () => void stop('SIGTERM'));
}

export async function serve(flags: ServeFlags): Promise<RunningServer> {
  const repository = checkRepository(flags.modelRepository);
  const server = await startServer({
    repository, host: flags.host, httpPort: flags.httpPort, grpcPort: flags.grpcPort, bodyLimit: flags.bodyLimit, watch: flags.watch,
  });
  const ready = server.core.modelStatus().map((m) => `${m.name}:${m.versions.map((v) => v.state).join('/') || m.error || 'no versions'}`);
  server.core.log.info({ http: server.httpPort, grpc: server.grpcPort, models: ready }, 'tern serve is ready');
  stopOnSignals(server);
  return server;
}
