/** `tern serve` and the pre-fleet `tern up`: run the model server in the foreground until a signal. */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { startServer, type RunningServer } from '../serving/server.js';
import { writeDemoRepository } from '../models/demo-repository.js';

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

/** Until the fleet lands, `tern up` is: write the demo repository if missing, then serve it. */
export async function up(flags: ServeFlags): Promise<void> {
  const dir = path.resolve(flags.modelRepository);
  if (!existsSync(path.join(dir, 'apps.json'))) {
    process.stdout.write(`writing the demo model repository to ${dir} ...\n`);
    await writeDemoRepository(dir);
  }
  const server = await serve({ ...flags, modelRepository: dir });
  const base = `http://localhost:${server.httpPort}`;
  process.stdout.write([
    '',
    `tern is serving ${server.core.modelStatus().length} models from ${dir}`,
    `  OIP v2 REST   ${base}/v2/models`,
    `  OIP v2 gRPC   localhost:${server.grpcPort}`,
    `  TF Serving    ${base}/v1/models/iris-forest`,
    `  metrics       ${base}/metrics`,
    '  try:',
    `    curl -s -X POST ${base}/iris/predict -d '{"input":[5.1,3.5,1.4,0.2]}'`,
    `    curl -s -X POST ${base}/v2/models/iris-logreg/infer -d '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,4],"data":[6.7,3.0,5.2,2.3]}]}'`,
    '',
  ].join('\n'));
}
