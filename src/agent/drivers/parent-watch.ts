/**
 * Preloaded (`node --import`) into every replica the process driver starts, so
 * replicas never outlive their agent: the agent holds an IPC channel to each
 * child, and when the agent goes away (even by SIGKILL) the channel closes and
 * the replica leaves and removes its cgroup (nobody else would) and stops
 * itself with SIGTERM (tern serve's graceful shutdown).
 */
import { isMainThread } from 'node:worker_threads';
import { leaveReplicaCgroups } from '../cgroups.js';

if (isMainThread && process.channel) {
  process.channel.unref();
  process.on('disconnect', () => {
    // Should the graceful path hang, leave anyway.
    setTimeout(() => process.exit(1), 10_000).unref();
    void leaveReplicaCgroups().finally(() => process.kill(process.pid, 'SIGTERM'));
  });
}
