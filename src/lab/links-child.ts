/**
 * The lab's link process, run in the links namespace at raised priority
 * (`tern lab up` starts it with nice -n -10 so that measured RTTs hold under
 * load): one shaping proxy per direction of every link. Reads its plan from
 * the JSON file named by argv[2] and writes argv[3] once every port listens.
 * On SIGHUP it reads the plan again and applies each end's new shape to the
 * running proxies (the ends themselves do not change), then writes argv[3]
 * with `.shaped` appended: `lab up` calibrates the delays this way, in the
 * process that will carry the traffic.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { startProxyEnd, type ProxyEnd, type RunningProxy } from './link-proxy.js';

const readPlan = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as ProxyEnd[];

function reshape(running: RunningProxy[], planFile: string, ackFile: string): void {
  try {
    const ends = readPlan(planFile);
    if (ends.length !== running.length) throw new Error(`the plan has ${ends.length} ends, ${running.length} are running`);
    ends.forEach((e, i) => running[i].reshape(e.shape));
    writeFileSync(ackFile, `${JSON.stringify(ends.map((e) => e.shape))}\n`);
  } catch (err) {
    // Not acknowledged: `lab up` times out and says to look here.
    process.stderr.write(`link proxies: cannot apply the new plan: ${(err as Error).message}\n`);
  }
}

async function main(): Promise<void> {
  const [planFile, readyFile] = process.argv.slice(2);
  const ends = readPlan(planFile);
  const running: RunningProxy[] = [];
  for (const end of ends) running.push(await startProxyEnd(end));
  const stop = () => void Promise.all(running.map((r) => r.close())).finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => reshape(running, planFile, `${readyFile}.shaped`));
  writeFileSync(readyFile, `${process.pid}\n`);
  process.stdout.write(`link proxies ready: ${ends.map((e) => `${e.listenAddress} -> ${e.targetAddress}`).join(', ')}\n`);
}

main().catch((err) => {
  process.stderr.write(`link proxies failed: ${(err as Error).message}\n`);
  process.exit(1);
});
