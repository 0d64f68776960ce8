/**
 * A node agent's MQTT session with the control plane: heartbeats and replica
 * status out, desired state, commands and the gateways' routing table in.
 *
 * - Connects as username = node id, password = node token, client id
 *   `agentClientId(node)`, with a persistent session (clean: false): QoS 1 commands
 *   sent while the agent is away are delivered when it returns.
 * - Last will: retained "offline" on `topics.presence(node)`, published by the
 *   broker when this connection dies without a DISCONNECT; the control plane reads
 *   it as the node going down. On every connect it publishes retained "online".
 * - Never blocks the agent: `connectAgentLink` returns at once and connects in the
 *   background (edge autonomy: the agent keeps working while the control plane is
 *   unreachable), reconnecting with exponential backoff and jitter (0.5 s doubling
 *   to 30 s). Heartbeats are dropped while disconnected (stale ones are useless);
 *   status messages are queued and sent on reconnect.
 * - Desired states are validated and delivered in revision order: a revision at or
 *   below the newest one seen is ignored, so the retained copy the broker sends
 *   again on every reconnect is harmless. Commands are delivered once per id.
 */
import { connect, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { DesiredStateSchema, topics, type DesiredState, type Heartbeat, type ReplicaStatus } from '../../protocol/fleet.js';
import { badRequest } from '../../protocol/errors.js';
import { ROUTES_TOPIC, RoutingTableSchema, type RoutingTable } from '../../protocol/routing.js';
import { RpcToAgentFrameSchema, type RpcFromAgentFrame, type RpcToAgentFrame } from '../../protocol/rpc.js';
import { agentClientId, isValidNodeId } from './acl.js';
import { CommandEnvelopeSchema, PRESENCE_OFFLINE, PRESENCE_ONLINE, decodeJson, type FleetCommand } from './messages.js';
import { applyReconnectBackoff, type BackoffOptions } from './reconnect-backoff.js';

export type { FleetCommand } from './messages.js';

export interface AgentLinkOptions {
  /** The broker's URL (the control plane's join response carries it as `mqtt_url`). */
  url: string;
  node: string;
  /** The node's token (from the join response). */
  token: string;
  log: Logger;
  /** Revision of a desired state the agent already applied (restored from disk); it and older ones are ignored. */
  appliedRevision?: number;
  /** MQTT keepalive in seconds (default 10: the broker fires the last will after 15 s of total silence). */
  keepaliveS?: number;
  backoff?: BackoffOptions;
}

export interface AgentLink {
  readonly node: string;
  readonly connected: boolean;
  /** Why the last connection attempt failed (e.g. "Connection refused: Bad username or password"), if it did. */
  readonly lastError: string | undefined;
  /** QoS 0; dropped while disconnected. */
  publishHeartbeat(heartbeat: Heartbeat): void;
  /** QoS 1; queued while disconnected and sent on reconnect. */
  publishStatus(status: ReplicaStatus): void;
  /** Called for every newer desired state; a callback added late first gets the newest one already received. Returns an unsubscribe function. */
  onDesired(cb: (desired: DesiredState) => void): () => void;
  /** Called for every newer routing table (the retained copy arrives on every connect). */
  onRoutes(cb: (table: RoutingTable) => void): () => void;
  /** Called once per command id. */
  onCommand(cb: (command: FleetCommand) => void): () => void;
  /** Frames of the control plane's calls to this agent (protocol/rpc.ts). */
  onRpc(cb: (frame: RpcToAgentFrame) => void): () => void;
  /** QoS 0; dropped while disconnected (the caller fails its call when the session drops). */
  publishRpc(frame: RpcFromAgentFrame): void;
  onConnectionChange(cb: (connected: boolean) => void): () => void;
  /** Publishes "offline", disconnects and stops reconnecting. */
  close(): Promise<void>;
}

/** Command ids remembered for dedup (QoS 1 redelivery happens within a session, so a window suffices). */
const SEEN_COMMANDS = 1024;
const CLOSE_TIMEOUT_MS = 2000;

class MqttAgentLink implements AgentLink {
  private readonly desiredCbs = new Set<(d: DesiredState) => void>();
  private readonly commandCbs = new Set<(c: FleetCommand) => void>();
  private readonly routesCbs = new Set<(t: RoutingTable) => void>();
  private readonly rpcCbs = new Set<(f: RpcToAgentFrame) => void>();
  private routesVersion = -1;
  private readonly connectionCbs = new Set<(connected: boolean) => void>();
  private readonly seenCommands = new Set<string>();
  private latestDesired: DesiredState | undefined;
  private revision: number;
  private wasConnected = false;
  private closed = false;
  lastError: string | undefined;

  constructor(readonly client: MqttClient, readonly node: string, private readonly log: Logger, appliedRevision: number) {
    this.revision = appliedRevision;
    client.on('connect', () => this.onConnect());
    client.on('close', () => this.setConnected(false));
    client.on('error', (err) => {
      this.lastError = err.message;
      this.log.warn({ err: err.message, node }, 'MQTT connection to the control plane failed');
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
  }

  get connected(): boolean {
    return this.client.connected;
  }

  publishHeartbeat(heartbeat: Heartbeat): void {
    if (!this.client.connected) return;
    this.client.publish(topics.heartbeat(this.node), JSON.stringify(heartbeat), { qos: 0 }, () => undefined);
  }

  publishStatus(status: ReplicaStatus): void {
    if (this.closed) return;
    this.client.publish(topics.status(this.node), JSON.stringify(status), { qos: 1 }, (err) => {
      if (err && !this.closed) this.log.warn({ err: err.message, replica: status.replica_id }, 'replica status not delivered');
    });
  }

  onDesired(cb: (desired: DesiredState) => void): () => void {
    this.desiredCbs.add(cb);
    const latest = this.latestDesired;
    if (latest) queueMicrotask(() => { if (this.desiredCbs.has(cb)) this.call(cb, latest, 'desired'); });
    return () => { this.desiredCbs.delete(cb); };
  }

  onRoutes(cb: (table: RoutingTable) => void): () => void {
    this.routesCbs.add(cb);
    return () => { this.routesCbs.delete(cb); };
  }

  onCommand(cb: (command: FleetCommand) => void): () => void {
    this.commandCbs.add(cb);
    return () => { this.commandCbs.delete(cb); };
  }

  onRpc(cb: (frame: RpcToAgentFrame) => void): () => void {
    this.rpcCbs.add(cb);
    return () => { this.rpcCbs.delete(cb); };
  }

  publishRpc(frame: RpcFromAgentFrame): void {
    if (!this.client.connected) return;
    this.client.publish(topics.rpcReply(this.node), JSON.stringify(frame), { qos: 0 }, () => undefined);
  }

  onConnectionChange(cb: (connected: boolean) => void): () => void {
    this.connectionCbs.add(cb);
    return () => { this.connectionCbs.delete(cb); };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.client.connected) {
      // A clean DISCONNECT suppresses the will: say "offline" ourselves.
      await withTimeout(this.client.publishAsync(topics.presence(this.node), PRESENCE_OFFLINE, { qos: 1, retain: true }), CLOSE_TIMEOUT_MS)
        .catch(() => undefined);
      await withTimeout(this.client.endAsync(), CLOSE_TIMEOUT_MS).catch(() => this.client.end(true));
    } else {
      this.client.end(true);
    }
    this.setConnected(false);
  }

  // -------------------------------------------------------------------------

  private onConnect(): void {
    this.lastError = undefined;
    this.client.publish(topics.presence(this.node), PRESENCE_ONLINE, { qos: 1, retain: true }, () => undefined);
    // Subscribing on every connect also makes the broker resend the retained desired state.
    this.client.subscribe({
      [topics.desired(this.node)]: { qos: 1 }, [topics.commands(this.node)]: { qos: 1 }, [ROUTES_TOPIC]: { qos: 1 }, [topics.rpc(this.node)]: { qos: 0 },
    }, (err) => {
      if (err && !this.closed) this.log.error({ err: err.message, node: this.node }, 'the broker refused the subscriptions to desired state and commands');
    });
    this.log.info({ node: this.node }, 'connected to the control plane');
    this.setConnected(true);
  }

  private setConnected(connected: boolean): void {
    if (connected === this.wasConnected) return;
    this.wasConnected = connected;
    if (!connected && !this.closed) this.log.warn({ node: this.node }, 'lost the control plane; reconnecting');
    for (const cb of this.connectionCbs) this.call(cb, connected, 'connection');
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === topics.desired(this.node)) this.onDesiredMessage(payload);
    else if (topic === topics.commands(this.node)) this.onCommandMessage(payload);
    else if (topic === ROUTES_TOPIC) this.onRoutesMessage(payload);
    else if (topic === topics.rpc(this.node)) this.onRpcMessage(payload);
  }

  private onRpcMessage(payload: Buffer): void {
    const decoded = decodeJson(payload, RpcToAgentFrameSchema);
    if (!decoded.ok) {
      this.log.warn({ node: this.node }, `ignored a malformed call frame: ${decoded.error}`);
      return;
    }
    for (const cb of this.rpcCbs) this.call(cb, decoded.value, 'rpc');
  }

  private onRoutesMessage(payload: Buffer): void {
    const decoded = decodeJson(payload, RoutingTableSchema);
    if (!decoded.ok) {
      this.log.warn({ node: this.node }, `ignored a malformed routing table: ${decoded.error}`);
      return;
    }
    if (decoded.value.version <= this.routesVersion) return;
    this.routesVersion = decoded.value.version;
    for (const cb of this.routesCbs) this.call(cb, decoded.value, 'routes');
  }

  private onDesiredMessage(payload: Buffer): void {
    if (payload.length === 0) {
      this.log.info({ node: this.node }, 'the control plane cleared this node\'s desired state');
      return;
    }
    const decoded = decodeJson(payload, DesiredStateSchema);
    if (!decoded.ok) {
      this.log.warn({ node: this.node }, `ignored a malformed desired state: ${decoded.error}`);
      return;
    }
    const desired = decoded.value;
    if (desired.node !== this.node) {
      this.log.warn({ node: this.node, for: desired.node }, 'ignored a desired state addressed to another node');
      return;
    }
    if (desired.revision <= this.revision) {
      this.log.debug({ revision: desired.revision, newest: this.revision }, 'ignored a desired state that is not newer');
      return;
    }
    this.revision = desired.revision;
    this.latestDesired = desired;
    for (const cb of this.desiredCbs) this.call(cb, desired, 'desired');
  }

  private onCommandMessage(payload: Buffer): void {
    const decoded = decodeJson(payload, CommandEnvelopeSchema);
    if (!decoded.ok) {
      this.log.warn({ node: this.node }, `ignored a malformed command: ${decoded.error}`);
      return;
    }
    const command = decoded.value;
    if (this.seenCommands.has(command.id)) {
      this.log.debug({ id: command.id }, 'ignored a repeated command');
      return;
    }
    this.seenCommands.add(command.id);
    if (this.seenCommands.size > SEEN_COMMANDS) this.seenCommands.delete(this.seenCommands.values().next().value as string);
    for (const cb of this.commandCbs) this.call(cb, command, 'command');
  }

  private call<T>(cb: (value: T) => void, value: T, what: string): void {
    try {
      cb(value);
    } catch (err) {
      this.log.error({ err }, `an agent ${what} callback failed`);
    }
  }
}

/** Starts the agent's MQTT session in the background and returns at once. */
export function connectAgentLink(options: AgentLinkOptions): AgentLink {
  if (!isValidNodeId(options.node)) throw badRequest(`invalid node id ${JSON.stringify(options.node)}`);
  const client = connect(options.url, {
    clientId: agentClientId(options.node),
    username: options.node,
    password: options.token,
    protocolVersion: 4,
    clean: false,
    keepalive: options.keepaliveS ?? 10,
    connectTimeout: 10_000,
    reconnectPeriod: 1000,
    reconnectOnConnackError: true,
    queueQoSZero: false,
    // mqtt.js would pre-allocate 65,536 small write buffers (~10 MB RSS): too much for a Pi's agent.
    writeCache: false,
    // subscriptions are renewed explicitly on every connect (see onConnect)
    resubscribe: false,
    will: { topic: topics.presence(options.node), payload: Buffer.from(PRESENCE_OFFLINE), qos: 1, retain: true },
  });
  applyReconnectBackoff(client, options.backoff);
  return new MqttAgentLink(client, options.node, options.log, options.appliedRevision ?? -1);
}

/** The link's mqtt.js client, for tests that need to cut the connection abruptly. */
export function agentLinkClient(link: AgentLink): MqttClient {
  if (!(link instanceof MqttAgentLink)) throw new TypeError('not an MQTT agent link');
  return link.client;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e); });
  });
}
