/**
 * The hub: this node's MQTT session to the control plane (the link from
 * control/mqtt/agent-link.ts), bridged to the agent's bus.
 *   in:  desired states -> 'desired-state', routing tables -> 'routes',
 *        commands -> 'command' (validated), the control plane's calls -> the
 *        RPC server (rpc-server.ts), whose calls end when the session drops
 *   out: 'replica-status' -> status topic, while connected; on every
 *        (re)connect the current status of every replica is sent again, so
 *        nothing needs queueing through an outage; heartbeats while connected.
 */
import type { Logger } from 'pino';
import type { Heartbeat, ReplicaStatus } from '../protocol/fleet.js';
import type { RpcFromAgentFrame } from '../protocol/rpc.js';
import { connectAgentLink, type AgentLink, type AgentLinkOptions } from '../control/mqtt/agent-link.js';
import { AgentCommandSchema } from './commands.js';
import { MESSAGES, type AgentBus } from './messages.js';
import type { RpcServer } from './rpc-server.js';

export interface HubConfig {
  bus: AgentBus;
  url: string;
  node: string;
  token: string;
  /** Revision already applied (restored from disk): the link ignores it and older ones. */
  appliedRevision?: number;
  /** Current replica statuses, re-sent on every connect. */
  statuses: () => ReplicaStatus[];
  log: Logger;
  /** Runs the control plane's calls (container operations). */
  rpc?: RpcServer;
  /** Test seam for another transport; default: the MQTT agent link. */
  connect?: (options: AgentLinkOptions) => AgentLink;
}

export class Hub {
  private readonly link: AgentLink;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly forwardStatus = (status: ReplicaStatus) => {
    if (this.link.connected) this.link.publishStatus(status);
  };

  constructor(private readonly config: HubConfig) {
    const { bus, log } = config;
    this.link = (config.connect ?? connectAgentLink)({ url: config.url, node: config.node, token: config.token, log, appliedRevision: config.appliedRevision });
    this.unsubscribe.push(
      this.link.onDesired((desired) => bus.emit(MESSAGES.desiredState, desired)),
      this.link.onRoutes((table) => bus.emit(MESSAGES.routes, table)),
      this.link.onCommand((raw) => {
        const parsed = AgentCommandSchema.safeParse(raw);
        if (!parsed.success) {
          log.warn({ id: raw.id, kind: raw.kind, issues: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) }, 'ignoring an unknown or malformed command');
          return;
        }
        bus.emit(MESSAGES.command, parsed.data);
      }),
      this.link.onRpc((frame) => config.rpc?.onFrame(frame)),
      this.link.onConnectionChange((connected) => {
        if (!connected) config.rpc?.abortAll('the agent lost its MQTT session');
        if (connected) for (const s of config.statuses()) this.link.publishStatus({ ...s, ts: Date.now() });
        bus.emit(MESSAGES.linkState, connected);
      }),
    );
    bus.on(MESSAGES.replicaStatus, this.forwardStatus);
  }

  get connected(): boolean {
    return this.link.connected;
  }

  get lastError(): string | undefined {
    return this.link.lastError;
  }

  publishRpc(frame: RpcFromAgentFrame): void {
    this.link.publishRpc(frame);
  }

  publishHeartbeat(heartbeat: Heartbeat): void {
    this.link.publishHeartbeat(heartbeat);
  }

  async close(): Promise<void> {
    this.config.bus.off(MESSAGES.replicaStatus, this.forwardStatus);
    for (const u of this.unsubscribe.splice(0)) u();
    await this.link.close();
  }
}
