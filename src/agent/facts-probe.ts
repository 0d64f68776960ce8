/**
 * The hardware probe: what a node is (systeminformation), which accelerators it
 * has, and its CPU score. The agent runs it as a short-lived child process at
 * join, so systeminformation and the benchmark's compiled code never stay in
 * the agent's memory (and the benchmark runs with the JIT even when the agent
 * itself runs lean); `probeHardware` in facts.ts falls back to running it in
 * process.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { measureCpuScore } from './cpu-score.js';

export interface HardwareProbe {
  hostname: string;
  arch: string;
  os: string;
  cpus: number;
  cpu_model: string;
  memory_bytes: number;
  cpu_score: number;
  accelerators: string[];
  /** CPU temperature when the board exposes one. */
  temperature_c?: number;
}

/**
 * Accelerators found on this machine, honestly: device nodes and release files
 * that exist, nothing inferred. NVIDIA GPUs (`/dev/nvidia<N>`), Jetson boards
 * (`/etc/nv_tegra_release`), Rockchip NPUs (`/dev/rknpu`, RK3588 and kin).
 */
export function detectAccelerators(root = '/'): string[] {
  const found: string[] = [];
  const dev = `${root.replace(/\/$/, '')}/dev`;
  let devices: string[] = [];
  try {
    devices = readdirSync(dev);
  } catch {
    devices = [];
  }
  for (const d of devices.filter((n) => /^nvidia[0-9]+$/.test(n)).sort()) found.push(`nvidia-gpu:${d.slice('nvidia'.length)}`);
  const tegra = `${root.replace(/\/$/, '')}/etc/nv_tegra_release`;
  if (existsSync(tegra)) {
    const release = /#\s*(R[0-9]+)[^,]*,\s*REVISION:\s*([0-9.]+)/.exec(readFileSync(tegra, 'utf8'));
    found.push(release ? `nvidia-jetson:${release[1]}.${release[2]}` : 'nvidia-jetson');
  }
  if (devices.includes('rknpu')) found.push('rockchip-npu');
  return found;
}

export async function runHardwareProbe(cpuScoreMs = 200): Promise<HardwareProbe> {
  const si = await import('systeminformation');
  const [osInfo, cpu, temp] = await Promise.all([
    si.osInfo().catch(() => undefined),
    si.cpu().catch(() => undefined),
    si.cpuTemperature().catch(() => undefined),
  ]);
  const score = measureCpuScore({ durationMs: cpuScoreMs });
  const distro = osInfo?.distro ? `${osInfo.distro}${osInfo.release ? ` ${osInfo.release}` : ''}` : '';
  return {
    hostname: osInfo?.hostname || os.hostname(),
    // The architecture Node (and so ONNX Runtime) runs as: what a replica's binaries must match.
    arch: process.arch,
    os: distro ? `${os.platform()} (${distro}, kernel ${os.release()})` : `${os.platform()} (kernel ${os.release()})`,
    cpus: cpu?.cores || os.availableParallelism(),
    cpu_model: [cpu?.manufacturer, cpu?.brand].filter(Boolean).join(' ') || os.cpus()[0]?.model || '',
    memory_bytes: os.totalmem(),
    cpu_score: score.ops_per_second,
    accelerators: detectAccelerators(),
    temperature_c: typeof temp?.main === 'number' && temp.main > 0 ? temp.main : undefined,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ms = Number(process.argv[2] ?? 200);
  runHardwareProbe(Number.isFinite(ms) && ms > 0 ? ms : 200).then(
    (probe) => process.stdout.write(`${JSON.stringify(probe)}\n`),
    (err: unknown) => {
      process.stderr.write(`hardware probe failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
