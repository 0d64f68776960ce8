/** CPU limits of tern's containers (replicas and app workloads alike). */
import type Docker from 'dockerode';
import type { Engine } from './engine.js';

/** CPU weight per reserved core, against 1024 for each busy process of the host (see cpuReservation). */
const SHARES_PER_CORE = 8192;

/**
 * A replica's cores are a reservation as well as a cap, as for a Kubernetes
 * pod with equal request and limit: NanoCpus caps it, and a CPU weight keeps
 * it from getting less when the host is busy. The weight only counts against
 * the host's other work when the container's group sits beside it, so with
 * the cgroupfs manager the container's cgroup goes at the root (the engines'
 * default parents, libpod_parent and docker, weigh as one ordinary process
 * each); with systemd-managed cgroups the engine's slice is kept.
 */
export function cpuReservation(engine: Engine, cores: number): Pick<Docker.HostConfig, 'NanoCpus' | 'CpuShares' | 'CgroupParent'> {
  return {
    NanoCpus: Math.round(cores * 1e9),
    CpuShares: Math.max(2, Math.min(262_144, Math.round(cores * SHARES_PER_CORE))),
    ...(engine.cgroupDriver === 'cgroupfs' ? { CgroupParent: '/' } : {}),
  };
}

