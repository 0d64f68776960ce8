/** `tern lab up|down|status`: the emulated edge/cloud testbed (src/lab/). */
import type { Command } from 'commander';

interface StateFlags { stateDir?: string; lab?: string }

export function registerLabCommands(program: Command, fail: (e: unknown) => never): void {
  const lab = program.command('lab').description('an emulated edge/cloud testbed on this machine (network namespaces, cgroups, shaped links)');
  const stateOption = (cmd: Command) => cmd.option('--state-dir <dir>', 'where lab state is kept (default $TERN_LAB_STATE or /var/lib/tern-lab)');

  stateOption(lab.command('up <spec>').description('build the hosts, links, control plane and agents a YAML spec describes'))
    .action(async (specFile: string, o: StateFlags) => {
      try {
        const { readLabSpec } = await import('../lab/spec.js');
        const { labUp } = await import('../lab/lab-up.js');
        const { stateRoot } = await import('../lab/state.js');
        const spec = await readLabSpec(specFile);
        const state = await labUp(spec, { root: stateRoot(o.stateDir), specFile });
        const client = state.hosts.find((h) => h.name === 'client') ?? state.hosts[0];
        process.stdout.write([
          `lab '${state.prefix}' is up: control plane ${state.control!.url} (admin password ${state.control!.admin_password})`,
          ...state.hosts.map((h) => `  ${h.name.padEnd(10)} ${h.address.padEnd(14)} netns ${h.netns}${h.site ? `, site ${h.site}` : ''}`),
          `  links: delay by ${state.shaping?.delay}, bandwidth by ${state.shaping?.bandwidth}${state.shaping?.notes.length ? ` (${state.shaping.notes.join('; ')})` : ''}`,
          `  run a command on a host: nsenter --net=/run/netns/${client.netns} <command>`,
          '',
        ].join('\n'));
      } catch (err) {
        fail(err);
      }
    });

  stateOption(lab.command('down').description('remove a lab (every lab recorded, unless --lab names one)'))
    .option('--lab <prefix>', 'the lab to remove')
    .action(async (o: StateFlags) => {
      try {
        const { labDown } = await import('../lab/lab-down.js');
        const { recordedLabs, stateRoot } = await import('../lab/state.js');
        const root = stateRoot(o.stateDir);
        const labs = o.lab ? [o.lab] : recordedLabs(root);
        if (labs.length === 0) {
          process.stdout.write(`no lab is up (nothing recorded in ${root})\n`);
          return;
        }
        for (const prefix of labs) {
          const left = await labDown(root, prefix);
          if (left.length) throw new Error(`lab '${prefix}' is down but left: ${left.join('; ')}`);
          process.stdout.write(`lab '${prefix}' removed\n`);
        }
      } catch (err) {
        fail(err);
      }
    });

  stateOption(lab.command('check').description('measure every link of a lab (RTT and bandwidth, against its spec)'))
    .option('--lab <prefix>', 'the lab to measure (default: the only one up)')
    .action(async (o: StateFlags) => {
      try {
        const { findLab, stateRoot } = await import('../lab/state.js');
        const { measureLink, describeMeasurement } = await import('../lab/link-check.js');
        const { describeCalibration } = await import('../lab/link-calibration.js');
        const state = findLab(stateRoot(o.stateDir), o.lab);
        for (const link of state.links) {
          const m = await measureLink(state, link.between[0], link.between[1], state.replica_ports[1]);
          const cal = state.link_calibration.find((c) => c.between.join() === link.between.join());
          process.stdout.write(`${describeMeasurement(m)}\n${cal ? `  at lab up: ${describeCalibration(cal, state.shaping?.delay ?? '?')}\n` : ''}`);
        }
      } catch (err) {
        fail(err);
      }
    });

  stateOption(lab.command('status').description('the labs that are up, as JSON'))
    .action(async (o: StateFlags) => {
      try {
        const { readState, recordedLabs, stateRoot } = await import('../lab/state.js');
        const root = stateRoot(o.stateDir);
        const labs = recordedLabs(root).map((p) => readState(root, p));
        process.stdout.write(`${JSON.stringify(labs, null, 2)}\n`);
      } catch (err) {
        fail(err);
      }
    });
}
