#!/usr/bin/env node
/**
 * The `tern` command line. Each subcommand lives in its own module; this file
 * only declares the commands and turns any failure into one line on stderr and
 * a non-zero exit.
 */
import { Command } from 'commander';
import { DEFAULT_BODY_LIMIT } from '../serving/limits.js';
import { parseList, parsePort, parsePositiveInt } from './options.js';
import type { ServeFlags } from './serve-command.js';
import { registerFleetCommands } from './fleet-commands.js';
import { registerContainerCommands } from './container-commands.js';
import { registerLabCommands } from './lab-commands.js';
import { registerBenchCommands } from './bench-commands.js';
import type { ControlFlags } from './fleet-up.js';
import type { AgentFlags } from './agent-command.js';
import type { ImageBuildFlags } from './image-commands.js';
import type { ComposeFlags, RunFlags } from './compose-commands.js';

// Commands load their modules when run: the agent must not carry the model
// server, control plane and ONNX Runtime in its memory, and short commands start faster.
const serving = () => import('./serve-command.js');
const fleet = () => import('./fleet-up.js');

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
  .action(async (flags: ServeFlags) => { await (await serving()).serve(flags).catch(fail); });

function withControlOptions(cmd: Command, dataDir: string): Command {
  return cmd
    .option('--data-dir <dir>', 'where the database, registry and agent state live', dataDir)
    .option('--host <addr>', 'address to listen on', '0.0.0.0')
    .option('--port <port>', 'REST API and dashboard port', parsePort, 7000)
    .option('--mqtt-port <port>', 'embedded MQTT broker port', parsePort, 7883)
    .option('--mqtt-url <url>', 'use an external MQTT broker (e.g. mqtt://localhost:1883) instead of the embedded one')
    .option('--mqtt-username <user>', 'the control plane\'s user on the external broker (password from TERN_MQTT_PASSWORD)')
    .option('--mqtt-dynsec', 'create and delete node accounts on an external Mosquitto through its dynamic-security plugin')
    .option('--advertise <host>', 'host agents use to reach this machine')
    .option('--admin-password <password>', 'password of the first admin (default: generated and printed once)');
}

/** The gateway's flags, shared by `tern control`, `tern up` and `tern agent`. */
function withGatewayOptions(cmd: Command): Command {
  return cmd
    .option('--gateway-port <port>', 'gateway HTTP port (OIP v2 REST, TF Serving REST, apps, /metrics)', parsePort, 8000)
    .option('--gateway-grpc-port <port>', 'gateway gRPC port (OIP v2 GRPCInferenceService)', parsePort, 8001)
    .option('--no-gateway', 'do not run a gateway here');
}

withGatewayOptions(withControlOptions(program.command('up').description('run tern locally: control plane, a local agent with its gateway and the demo model deployed'), '.tern'))
  .action(async (flags: ControlFlags) => { await (await fleet()).runUp(flags).catch(fail); });

withGatewayOptions(withControlOptions(program.command('control').description('run the control plane (API, MQTT broker, scheduler, registry, gateway)'), '.tern/control'))
  .action(async (flags: ControlFlags) => { await (await fleet()).runControl(flags).catch(fail); });

withGatewayOptions(program.command('agent').description('run a node agent that joins a control plane'))
  .requiredOption('--control <url>', 'control plane URL, e.g. http://10.0.0.1:7000')
  .option('--token <token>', 'join token (not needed once joined: the identity is kept in the data dir)')
  .option('--data-dir <dir>', 'agent state: identity, model cache, replicas', '.tern/agent')
  .option('--label <k=v...>', 'node labels')
  .option('--site <site>', 'site (e.g. factory-1, cloud)')
  .option('--zone <zone>', 'zone')
  .option('--address <addr>', 'address other nodes use to reach this node')
  .option('--replica-ports <from-to>', 'port range for replicas (each takes a pair: HTTP, gRPC)', '20000-20999')
  .option('--container-engine <url>', 'container engine for the container runtime (unix:///run/podman/podman.sock, tcp://host:2375; default: DOCKER_HOST or a default socket)')
  .option('--container-image <ref>', 'model-server image for container replicas (default: tern/serve:<version>-<arch>)')
  .option('--container-platforms <list>', 'platforms this node runs images of, its own first (e.g. linux/amd64,linux/arm64 with qemu-user)', parseList)
  .option('--no-replica-limits', 'run replicas without their own cgroup limits: they share the node\'s (e.g. a lab host\'s)')
  .action(async (flags: AgentFlags) => { await (await import('./agent-command.js')).runAgent(flags).catch(fail); });

const models = program.command('models').description('model repositories and the registry');
models.command('demo <dir>')
  .description('write the demo model repository (OCR, iris, synthetic benchmark models)')
  .option('--models <names>', 'comma-separated subset to write', parseList)
  .action(async (dir: string, opts: { models?: string[] }) => {
    try {
      const { writeDemoRepository } = await import('../models/demo-repository.js');
      const written = await writeDemoRepository(dir, { models: opts.models });
      process.stdout.write(`wrote ${written.length} models to ${dir}: ${written.join(', ')}\n`);
    } catch (err) {
      fail(err);
    }
  });

const image = program.command('image').description('container images of the model server');
image.command('build')
  .description('build the model-server image from local files (no base image): node, tern serve and its native modules for the platform')
  .option('--platform <platform>', 'linux/amd64 or linux/arm64 (default: this machine\'s)')
  .option('--models <dir>', 'bake this model repository in at /models')
  .option('--tag <tag>', 'image tag (default: tern/serve:<version>-<arch>)')
  .option('--output <file>', 'also copy the image archive (docker save format) here')
  .option('--load', 'load it into the container engine')
  .option('--engine <url>', 'container engine to load into (default: DOCKER_HOST or a default socket)')
  .action(async (opts: ImageBuildFlags) => { await (await import('./image-commands.js')).imageBuild(opts).catch(fail); });
image.command('push <image>')
  .description('push a local image to an OCI registry (through the container engine)')
  .requiredOption('--registry <host:port>', 'registry to push to')
  .option('--engine <url>', 'container engine that has the image (default: DOCKER_HOST or a default socket)')
  .action(async (ref: string, opts: { registry: string; engine?: string }) => { await (await import('./image-commands.js')).imagePush(ref, opts).catch(fail); });
image.command('load <archive>')
  .description('load an image archive into the container engine')
  .option('--engine <url>', 'container engine (default: DOCKER_HOST or a default socket)')
  .action(async (archive: string, opts: { engine?: string }) => { await (await import('./image-commands.js')).imageLoad(archive, opts).catch(fail); });

const compose = program.command('compose').description('multi-container apps from a Docker Compose v3 file, on this node\'s container engine or (--fleet) as fleet deployments');
compose.command('up <file>')
  .description('start the services in depends_on order, each once its dependencies accept connections (--fleet: are ready)')
  .option('--project <name>', 'project name (default: the file\'s name: key, else its folder)')
  .option('--engine <url>', 'container engine (default: DOCKER_HOST or a default socket)')
  .option('--fleet', 'through the control plane (tern login): one container deployment <project>-<service> per service')
  .option('--timeout <s>', '--fleet: how long each service may take to be ready', parsePositiveInt, 120)
  .action(async (file: string, opts: ComposeFlags) => { await (await import('./compose-commands.js')).composeUpCommand(file, opts).catch(fail); });
compose.command('down [file]')
  .description('stop and remove the containers of a project (--fleet: the deployments of the FILE\'s services)')
  .option('--project <name>', 'project name (default: from FILE)')
  .option('--engine <url>', 'container engine (default: DOCKER_HOST or a default socket)')
  .option('--fleet', 'remove the project\'s container deployments through the control plane')
  .action(async (file: string | undefined, opts: ComposeFlags) => { await (await import('./compose-commands.js')).composeDownCommand(file, opts).catch(fail); });
program.command('run <image> [command...]')
  .description('run an app container (any image) on this node\'s container engine, or (--fleet) as a container deployment')
  .option('--name <name>', 'project and service name; with --fleet the deployment name (default: from the image)')
  .option('--port <port...>', 'published ports (host networking: the same on both sides)')
  .option('--env <k=v...>', 'environment variables')
  .option('--volume <mount...>', 'bind mounts: /host/path:/container/path[:ro]')
  .option('--entrypoint <path>', 'entrypoint instead of the image\'s')
  .option('--cpus <cores>', 'CPU limit in cores', Number)
  .option('--memory <size>', 'memory limit, e.g. 512M')
  .option('--engine <url>', 'container engine (default: DOCKER_HOST or a default socket)')
  .option('--fleet', 'through the control plane (tern login): a container deployment the scheduler places on nodes with a container runtime')
  .option('--replicas <n>', 'replicas (each publishing a port takes a node of its own)', parsePositiveInt)
  .option('--selector <k=v...>', '--fleet: node labels to match')
  .action(async (img: string, command: string[], opts: RunFlags) => { await (await import('./compose-commands.js')).runCommand(img, command, opts).catch(fail); });

registerContainerCommands(program, fail);

// After `image`: the fleet commands add `image upload` and `image ls` (they talk to the control plane).
registerFleetCommands(program, fail);
registerLabCommands(program, fail);
registerBenchCommands(program, fail);

program.parseAsync().catch(fail);
