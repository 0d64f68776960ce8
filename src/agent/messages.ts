/**
 * The agent's modules talk by messages on one bus (as KubeEdge's edge modules
 * do through beehive); this file lists every message, who sends it and who
 * listens. Modules:
 *   hub          the MQTT session to the control plane (hub.ts)
 *   supervisor   the workload manager: replicas and their drivers (replica-supervisor.ts)
 *   commands     one-off commands, idempotent by id (commands.ts)
 *   heartbeat    node stats every interval (agent.ts, with stats.ts)
 *   gateway      the node's inference entry point (../gateway/)
 */
import { EventEmitter } from 'node:events';
import type { DesiredState, ReplicaStatus } from '../protocol/fleet.js';
import type { RoutingTable } from '../protocol/routing.js';
import type { AgentCommand } from './commands.js';

export interface AgentMessages {
  /** hub -> supervisor: the control plane's desired state for this node. */
  'desired-state': [DesiredState];
  /** hub -> gateway: a newer routing table from the control plane. */
  routes: [RoutingTable];
  /** hub -> commands: a command for this node (may be a redelivery). */
  command: [AgentCommand];
  /** supervisor -> hub: a replica changed state (sent now, or re-reported on reconnect). */
  'replica-status': [ReplicaStatus];
  /** hub -> all: the session to the control plane came up (true) or went down (false). */
  'link-state': [boolean];
}

export const MESSAGES = {
  desiredState: 'desired-state',
  routes: 'routes',
  command: 'command',
  replicaStatus: 'replica-status',
  linkState: 'link-state',
} as const satisfies Record<string, keyof AgentMessages>;

export class AgentBus extends EventEmitter<AgentMessages> {}
