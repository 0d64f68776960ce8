/**
 * The benches as a user starts them: a bad option ends with one line naming
 * it and exit 2, before any server starts; and --halt-poll-ns sets the vCPU
 * idle setting for the run only, putting the old value back at exit.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { haltPollOption, idleSetting } from '../src/bench/halt-poll.js';

const run = promisify(execFile);
const SERVING = path.resolve('dist/bench/serving-bench.js');
const GATEWAY = path.resolve('dist/bench/gateway-bench.js');
const HALT_POLL = '/sys/module/haltpoll/parameters/guest_halt_poll_ns';

async function fails(script: string, args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await run('node', [script, ...args], { timeout: 30_000 });
  } catch (e) {
    const err = e as { code: number; stderr: string };
    return { code: err.code, stderr: err.stderr };
  }
  throw new Error(`${path.basename(script)} ${args.join(' ')} succeeded but should have failed`);
}

describe('bench options', () => {
  it.each([
    [SERVING, ['--rounds', '0'], /bench:serving: --rounds must be a whole number >= 1, got '0'/],
    [SERVING, ['--duration', 'soon'], /bench:serving: --duration must be a number of seconds/],
    [SERVING, ['--halt-poll-ns', '-5'], /bench:serving: Option '--halt-poll-ns' argument is ambiguous/],
    [SERVING, ['--halt-poll-ns=-5'], /bench:serving: --halt-poll-ns must be a whole number of nanoseconds, got '-5'/],
    [GATEWAY, ['--window-ms', 'x'], /bench:gateway: --window-ms must be a whole number >= 100, got 'x'/],
    [GATEWAY, ['--rounds', '1.5'], /bench:gateway: --rounds must be a whole number >= 1, got '1.5'/],
    [GATEWAY, ['--halt-poll-ns', 'lots'], /bench:gateway: --halt-poll-ns must be a whole number of nanoseconds/],
  ])('%s %j ends with one line and exit 2', async (script, args, message) => {
    const { code, stderr } = await fails(script, args);
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(message);
  });

  it('reads the idle setting and parses --halt-poll-ns', () => {
    const idle = idleSetting();
    expect(idle.guest_halt_poll_ns === null || Number.isInteger(idle.guest_halt_poll_ns)).toBe(true);
    expect(haltPollOption(undefined)).toBeUndefined();
    expect(haltPollOption('200000')).toBe(200000);
    expect(() => haltPollOption('2e5')).toThrow(/whole number of nanoseconds/);
  });

  it('sets guest_halt_poll_ns for the run and restores it at exit', async (ctx) => {
    const root = process.getuid?.() === 0;
    if (!existsSync(HALT_POLL) || !root) {
      const why = !existsSync(HALT_POLL) ? `${HALT_POLL} is absent (not a KVM guest with the haltpoll cpuidle driver)` : 'it needs root';
      if (!existsSync(HALT_POLL)) {
        // Without the driver the option must say so in one line rather than pretend.
        const { code, stderr } = await fails(SERVING, ['--halt-poll-ns', '200000', '--models', 'none']);
        expect(code).toBe(2);
        expect(stderr).toMatch(/needs the haltpoll cpuidle driver/);
      }
      process.stdout.write(`skipping the halt-poll round trip: ${why}\n`);
      ctx.skip();
      return;
    }
    const before = readFileSync(HALT_POLL, 'utf8').trim();
    const during = before === '123456' ? '654321' : '123456';
    try {
      // A bench that sets it and then fails on an unknown model: the value must still come back.
      const script = [
        `import { readFileSync } from 'node:fs';`,
        `import { setHaltPollForRun } from ${JSON.stringify(path.resolve('dist/bench/halt-poll.js'))};`,
        `setHaltPollForRun(${during});`,
        `console.log(readFileSync(${JSON.stringify(HALT_POLL)}, 'utf8').trim());`,
        'process.exit(3);',
      ].join('\n');
      const seen = await run('node', ['--input-type=module', '-e', script]).catch((e: { code: number; stdout: string }) => e);
      expect((seen as { code: number }).code).toBe(3);
      expect((seen as { stdout: string }).stdout.trim()).toBe(during);
      expect(readFileSync(HALT_POLL, 'utf8').trim()).toBe(before);
    } finally {
      writeFileSync(HALT_POLL, before);
    }
  });
});
