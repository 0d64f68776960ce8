/** `tern bench load` and `tern bench experiment`: load, reports and plots (src/bench/). */
import { Command, Option } from 'commander';
import { parseDuration, parseIntList, parseNumberList } from './options.js';

export interface LoadFlags {
  target: string; grpcTarget?: string; model: string; protocol: 'rest' | 'rest-binary' | 'grpc'; users: number[]; rate?: number[];
  duration: number; warmup: number; inputs: 'dataset' | 'random'; lab?: string; from?: string; hosts?: string[]; stateDir?: string;
  out: string; json?: boolean;
}

export interface ExperimentFlags {
  lab?: string; stateDir?: string; from: string; control?: string; target?: string; protocol: 'rest' | 'rest-binary' | 'grpc';
  models: string[]; users: number[]; replicas: number[]; sites: string[]; duration: number; warmup: number; cache: boolean;
  out: string; modelRepository?: string; reportFrom?: string;
}

const protocolOption = () => new Option('--protocol <p>', 'rest (JSON), rest-binary (OIP binary tensors) or grpc').choices(['rest', 'rest-binary', 'grpc']).default('rest-binary');
const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);

export function registerBenchCommands(program: Command, fail: (e: unknown) => never): void {
  const bench = program.command('bench').description('load generation, reports and plots');

  bench.command('load').description('drive one model with closed-loop users or open-loop Poisson arrivals; JSON and Markdown report')
    .requiredOption('--target <url>', 'HTTP endpoint (a gateway or a replica), e.g. http://10.79.0.10:8000')
    .option('--grpc-target <host:port>', 'gRPC endpoint (default: the target host, its port + 1)')
    .requiredOption('--model <name>', 'model (deployment) name')
    .addOption(protocolOption())
    .option('--users <list>', 'closed-loop users, one step each', parseIntList, [1, 2, 4])
    .option('--rate <list>', 'open-loop Poisson arrivals per second, one step each (instead of --users)', parseNumberList)
    .option('--duration <time>', 'measured time per step', parseDuration, 30_000)
    .option('--warmup <time>', 'warm-up per step, excluded', parseDuration, 5000)
    .addOption(new Option('--inputs <source>', 'dataset (iris rows, rendered text images) or random tensors').choices(['dataset', 'random']).default('dataset'))
    .option('--lab <prefix>', 'sample the CPU and memory of this lab\'s hosts (default: the only lab up, if any)')
    .option('--from <host>', 'run from inside this lab host (e.g. client)')
    .option('--hosts <list>', 'lab hosts to sample (default: every host but --from)', list)
    .option('--state-dir <dir>', 'lab state directory')
    .option('--out <dir>', 'where load-<model>.json and .md go', 'bench/results/load')
    .action(async (flags: LoadFlags) => {
      try {
        const code = await (await import('../bench/load-command.js')).loadCommand(flags);
        if (code !== 0) process.exit(code);
      } catch (err) {
        fail(err);
      }
    });

  bench.command('experiment <name>').description('the edge-vs-cloud experiment matrix on a lab (default) or a fleet; report and plots')
    .option('--lab <prefix>', 'the lab to run on (default: the only lab up)')
    .option('--state-dir <dir>', 'lab state directory')
    .option('--from <host>', 'lab host the load comes from', 'client')
    .option('--control <url>', 'a real fleet: control plane URL (uses the saved login or TERN_TOKEN); nodes need site labels')
    .option('--target <url>', 'a real fleet: the gateway the load is sent to (default http://127.0.0.1:8000)')
    .addOption(protocolOption())
    .option('--models <list>', 'models', list, ['synthetic-large', 'iris-logreg', 'iris-forest'])
    .option('--users <list>', 'closed-loop users', parseIntList, [1, 2, 4])
    .option('--replicas <list>', 'replicas per deployment', parseIntList, [1, 2, 4])
    .option('--sites <list>', 'sites (node label site=...)', list, ['edge', 'cloud'])
    .option('--duration <time>', 'measured time per cell', parseDuration, 8000)
    .option('--warmup <time>', 'warm-up per cell, excluded', parseDuration, 2000)
    .option('--no-cache', 'skip the prediction-cache experiment')
    .option('--model-repository <dir>', 'where the models come from (default: the demo models, written to a temporary directory)')
    .option('--out <dir>', 'output directory', 'bench/results/edge-vs-cloud')
    .option('--report-from <results.json>', 'run nothing: judge the findings again and rewrite the report and plots from a results file')
    .action(async (name: string, flags: ExperimentFlags) => {
      try {
        if (name !== 'edge-vs-cloud') throw new Error(`unknown experiment '${name}' (experiments: edge-vs-cloud)`);
        const code = await (await import('../bench/experiment/experiment-command.js')).experimentCommand(flags);
        if (code !== 0) process.exit(code);
      } catch (err) {
        fail(err);
      }
    });
}
