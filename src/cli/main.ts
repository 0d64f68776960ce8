#!/usr/bin/env node
/**
 * The `tern` command line. Each subcommand lives in its own module; this file
 * only declares the commands and turns any failure into one line on stderr and
 * a non-zero exit.
 */
import { Command } from 'commander';
import { DEFAULT_BODY_LIMIT } from '../serving/http/http-server.js';
import { writeDemoRepository } from '../models/demo-repository.js';
import { parseList, parsePort, parsePositiveInt } from './options.js';
import { serve, up, type ServeFlags } from './serve-command.js';

function fail(err: unknown): never {
  process.stderr.write(`tern: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}

function withServeOptions(cmd: Command, defaultRepo?: string): Command {
  const repo = defaultRepo
    ? cmd.option('--model-repository <dir>', 'model repository directory', defaultRepo)
    : cmd.requiredOption('--model-repository <dir>', 'model repository directory');
  return repo
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('--http-port <port>', 'HTTP port (OIP v2 REST, TF Serving REST, apps, /metrics)', parsePort, 8000)
    .option('--grpc-port <port>', 'gRPC port (OIP v2 GRPCInferenceService)', parsePort, 8001)
    .option('--body-limit <bytes>', 'largest accepted request body', parsePositiveInt, DEFAULT_BODY_LIMIT)
    .option('--no-watch', 'do not watch the repository for changes');
}

const program = new Command('tern')
  .description('AI models at the edge: serve, orchestrate, route and benchmark')
  .version('0.1.0')
  .showHelpAfterError();

withServeOptions(program.command('serve').description('serve a model repository over OIP v2 REST/gRPC, TF Serving REST and app endpoints'))
  .action(async (flags: ServeFlags) => { await serve(flags).catch(fail); });

withServeOptions(program.command('up').description('start tern locally with the demo models'), '.tern/model-repository')
  .action((flags: ServeFlags) => up(flags).catch(fail));

const models = program.command('models').description('model repositories and the registry');
models.command('demo <dir>')
  .description('write the demo model repository (OCR, iris, synthetic benchmark models)')
  .option('--models <names>', 'comma-separated subset to write', parseList)
  .action(async (dir: string, opts: { models?: string[] }) => {
    try {
      const written = await writeDemoRepository(dir, { models: opts.models });
      process.stdout.write(`wrote ${written.length} models to ${dir}: ${written.join(', ')}\n`);
    } catch (err) {
      fail(err);
    }
  });

program.parseAsync().catch(fail);
