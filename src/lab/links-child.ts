/**
 * The lab's link process, run in the links namespace at raised priority
 * (`tern lab up` starts it with nice -n -10 so that measured RTTs hold under
 * load): one shaping proxy per direction of every link. Reads its plan from
 * the JSON file named by argv[2] and writes argv[3] once every port listens.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { startProxyEnd, type ProxyEnd, type RunningProxy } from './link-proxy.js';

async function main(): Promise<void> {
  const [planFile, readyFile] = process.argv.slice(2);
  const ends = JSON.parse(readFileSync(planFile, 'utf8')) as ProxyEnd[];
  const running: RunningProxy[] = [];
  for (const end of ends) running.push(await startProxyEnd(end));
  const stop = () => void Promise.all(running.map((r) => r.close())).finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  writeFileSync(readyFile, `${process.pid}\n`);
  process.stdout.write(`link proxies ready: ${ends.map((e) => `${e.listenAddress} -> ${e.targetAddress}`).join(', ')}\n`);
}

main().catch((err) => {
  process.stderr.write(`link proxies failed: ${(err as Error).message}\n`);
  process.exit(1);
});
