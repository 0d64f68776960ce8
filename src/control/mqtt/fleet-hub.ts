/**
 * The control plane's side of the fleet's MQTT traffic: one MQTT client that
 * listens to every node's heartbeats, replica status and presence, tells the
 * control plane which nodes are up and down, and publishes desired state and
 * commands to nodes.
 *
 * Failure detection (the issue's "within 3 s by default"):
 * - presence "offline" is the agent's last will: the broker publishes it the
 *   moment the agent's connection dies without a DISCONNECT (process killed, socket
 *   reset, keepalive expired): nodeDown { reason: 'last-will' } at once;
 * - a node whose last heartbeat is older than `heartbeatTimeoutMs` is declared down
 *   with { reason: 'heartbeat-timeout' } (hung agent, half-open link, partition).
 *   Silence is measured against proof that the broker path works, not against the
 *   wall clock alone: the hub keeps one probe message at a time travelling to
 *   itself through the broker (every `probeIntervalMs`, 100 ms), and each probe is
 *   sent only after the previous one came back. When probe k returns, everything
 *   that reached the broker before probe k-1 was sent has been delivered to us
 *   (the broker read probe k-1 no earlier, and probe k strictly later, on the same
 *   ordered connection), so a node is declared silent only if nothing came from it
 *   for `heartbeatTimeoutMs` before that instant. A stall of this process (the
 *   embedded broker lives in it), of the broker, or of the hub's connection thus
 *   never turns into a fleet-wide false "down"; after the hub reconnects, every
 *   node gets a fresh `heartbeatTimeoutMs` to be heard again. Detection comes
 *   heartbeatTimeoutMs + about two probe round trips (~100-250 ms) after the last
 *   heartbeat.
 *
 * Per message the hub does one topic split, one JSON.parse and one zod safeParse
 * (~10 us on the build machines; measured in test/mqtt-fleet-hub.test.ts).
 *
 * External broker (`--mqtt-url mqtt://host:1883`): FleetHub needs only a URL and
 * credentials, so Mosquitto or EMQX work unchanged. Authentication and the ACL
 * are then the broker's job, not tern's. With Mosquitto 2's dynamic-security
 * plugin, `--mqtt-dynsec` lets tern create and delete node accounts itself
 * (mosquitto-dynsec.ts). Without it, a static setup (tested with Debian's
 * 2.0.11 in test/mqtt-mosquitto.test.ts):
 *
 *   # /etc/mosquitto/conf.d/tern.conf
 *   listener 1883
 *   allow_anonymous false
 *   # one user for the control plane, one per node (username = node id,
 *   # password = the node's token); kept in sync by whoever issues node tokens,
 *   # or replaced by an auth plugin (e.g. mosquitto-go-auth's HTTP backend)
 *   password_file /etc/mosquitto/tern.passwd
 *   acl_file /etc/mosquitto/tern.acl
 *   # one session per user: a node cannot take over another node's session
 *   use_username_as_clientid true
 *
 *   # /etc/mosquitto/tern.acl
 *   user tern-control
 *   topic readwrite #
 *   pattern write tern/nodes/%u/heartbeat
 *   pattern write tern/nodes/%u/status
 *   pattern write tern/nodes/%u/presence
 *   pattern read tern/nodes/%u/desired
 *   pattern read tern/nodes/%u/commands
 *   pattern read tern/nodes/%u/rpc
 *   pattern write tern/nodes/%u/rpc-reply
 *   # every gateway reads the shared routing table
 *   pattern read tern/routes
 *
 * The control user needs `tern/nodes/#` and its probe topic `tern/control/probe/<client id>`.
 * Differences from the embedded broker: Mosquitto acknowledges and drops a
 * refused PUBLISH (the embedded broker disconnects the client, see
 * embedded-broker.ts), and 2.0.11 grants a refused SUBSCRIBE (SUBACK QoS 1) but
 * delivers nothing on it (the embedded broker answers 128).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  DesiredStateSchema, HeartbeatSchema, ReplicaStatusSchema, TOPIC_PREFIX, parseNodeTopic, topics,
  type DesiredState, type Heartbeat, type ReplicaStatus,
} from '../../protocol/fleet.js';
import { TernError, badRequest, formatZodError } from '../../protocol/errors.js';
import { ROUTES_TOPIC, type RoutingTable } from '../../protocol/routing.js';
import { RpcFromAgentFrameSchema, type RpcFromAgentFrame, type RpcToAgentFrame } from '../../protocol/rpc.js';
import { isValidNodeId } from './acl.js';
import { CommandEnvelopeSchema, PRESENCE_OFFLINE, PRESENCE_ONLINE, decodeJson, type FleetCommand } from './messages.js';
import { applyReconnectBackoff, type BackoffOptions } from './reconnect-backoff.js';

export interface FleetHubOptions {
  /** `mqtt://host:port` of the embedded broker or an external one. */
  url: string;
  username?: string;
  password?: string;
  /** A node not heard from for this long is declared down (default 3000 ms). */
  heartbeatTimeoutMs?: number;
  /** How often the liveness probe goes round (default 100 ms). */
  probeIntervalMs?: number;
  /** How long `connect` waits for the broker before failing (default 10 s). */
  connectTimeoutMs?: number;
  /** Reconnect backoff after the first connection (default 500 ms doubling to 30 s). */
  backoff?: BackoffOptions;
  /** MQTT client id (default `tern-control-<random>`; the session is clean). */
  clientId?: string;
  log: Logger;
}

export type NodeDownReason = 'last-will' | 'heartbeat-timeout';

export interface NodeDownInfo {
  reason: NodeDownReason;
  /** Date.now() of the node's last heartbeat or "online"; undefined if this hub never heard it. */
  lastSeenMs: number | undefined;
}

export type NodeLivenessState = 'up' | 'down' | 'expected';

export interface NodeLiveness {
  node: string;
  /** 'expected': named by `expectNodes`, not heard from yet. */
  state: NodeLivenessState;
  lastSeenMs: number | undefined;
}

export interface FleetHubStats {
  /** Messages received on node topics (valid or not). */
  received: number;
  /** Messages dropped as malformed. */
  dropped: number;
  connected: boolean;
}

export interface FleetHubEvents {
  heartbeat: [node: string, heartbeat: Heartbeat];
  status: [node: string, status: ReplicaStatus];
  nodeUp: [node: string];
  nodeDown: [node: string, info: NodeDownInfo];
  /** An agent (re)connected to the broker: presence "online", also when the hub already saw it up. */
  agentSession: [node: string];
  /** A frame of a call to a node's agent (node-rpc.ts). */
  rpc: [node: string, frame: RpcFromAgentFrame];
  /** The hub's own connection to the broker. */
  connection: [connected: boolean];
}

interface NodeEntry {
  state: NodeLivenessState;
  /** Date.now() of the last heartbeat or "online"; 0 = never. */
  lastSeen: number;
  /** Start of the current silence window (lastSeen, or later after a hub reconnect / expectNodes). */
  silentSince: number;
  /** Rate limit for "dropped malformed message" warnings. */
  lastWarnAt: number;
  suppressedWarnings: number;
}

const WARN_EVERY_MS = 10_000;
/** A probe not back after this long is taken as lost (QoS 0) and replaced. */
const PROBE_LOST_MS = 2000;

export class FleetHub extends EventEmitter<FleetHubEvents> {
  private readonly nodes = new Map<string, NodeEntry>();
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly probeTopic: string;
  private probeTimer: NodeJS.Timeout | undefined;
  /** Send time of the probe in flight (0: none). */
  private probeSentAt = 0;
  /** Send time of the newest probe that came back. */
  private probeReturnedSentAt = 0;
  /** Everything that reached the broker before this instant has been delivered to us (0: no proof yet). */
  private pathOkAt = 0;
  private received = 0;
  private dropped = 0;
  private closed = false;
  private linkUp = true;

  private constructor(private readonly client: MqttClient, options: FleetHubOptions, clientId: string) {
    super();
    this.log = options.log;
    this.timeoutMs = options.heartbeatTimeoutMs ?? 3000;
    this.probeTopic = `tern/control/probe/${clientId}`;
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('connect', () => this.onReconnect());
    client.on('close', () => {
      if (!this.linkUp) return;
      this.linkUp = false;
      if (!this.closed) this.log.warn({ url: options.url }, 'fleet hub lost the MQTT broker; reconnecting');
      this.fire('connection', false);
    });
    const every = options.probeIntervalMs ?? 100;
    this.probeTimer = setInterval(() => this.probe(), every);
    this.probeTimer.unref();
  }

  /** Connects, subscribes to every node's heartbeat, status and presence, and starts failure detection. */
  static async connect(options: FleetHubOptions): Promise<FleetHub> {
    const clientId = options.clientId ?? `tern-control-${randomBytes(4).toString('hex')}`;
    const mqttOptions: IClientOptions = {
      clientId,
      username: options.username,
      password: options.password,
      protocolVersion: 4,
      clean: true,
      keepalive: 10,
      connectTimeout: options.connectTimeoutMs ?? 10_000,
      reconnectPeriod: 1000,
      reconnectOnConnackError: true,
      // stale probes and commands are worse than none: QoS 0 is not queued while offline
      queueQoSZero: false,
      resubscribe: true,
    };
    const client = connect(options.url, mqttOptions);
    client.on('error', (err) => options.log.warn({ err: err.message, url: options.url }, 'MQTT connection error'));
    try {
      await firstConnect(client, options.url, options.connectTimeoutMs ?? 10_000);
    } catch (err) {
      client.end(true);
      throw err;
    }
    applyReconnectBackoff(client, options.backoff);
    const hub = new FleetHub(client, options, clientId);
    try {
      await hub.subscribe();
    } catch (err) {
      await hub.close();
      throw err;
    }
    options.log.info({ url: options.url, clientId }, 'fleet hub connected');
    return hub;
  }

  private async subscribe(): Promise<void> {
    const filters = {
      [`${TOPIC_PREFIX}/+/heartbeat`]: { qos: 0 as const },
      [`${TOPIC_PREFIX}/+/status`]: { qos: 1 as const },
      [`${TOPIC_PREFIX}/+/presence`]: { qos: 1 as const },
      [`${TOPIC_PREFIX}/+/rpc-reply`]: { qos: 0 as const },
      [this.probeTopic]: { qos: 0 as const },
    };
    try {
      await this.client.subscribeAsync(filters);
    } catch (err) {
      throw new TernError('INTERNAL', `the MQTT broker refused the fleet subscriptions (${Object.keys(filters).join(', ')}): ${(err as Error).message}; with an external broker, give the control plane's user read access to tern/#`);
    }
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Publishes a node's desired state, retained (a node that connects later gets it) with QoS 1; resolves on PUBACK. */
  async publishDesired(state: DesiredState): Promise<void> {
    const parsed = DesiredStateSchema.safeParse(state);
    if (!parsed.success) throw badRequest(`invalid desired state for node ${String(state?.node)}: ${formatZodError(parsed.error)}`);
    this.checkNode(parsed.data.node);
    await this.publish(topics.desired(parsed.data.node), JSON.stringify(parsed.data), true);
  }

  /** The gateways' routing table, retained (a gateway that connects later gets the newest). */
  async publishRoutes(table: RoutingTable): Promise<void> {
    await this.publish(ROUTES_TOPIC, JSON.stringify(table), true);
  }

  /** Removes a node's retained desired state (for a node that leaves the fleet). */
  async clearDesired(node: string): Promise<void> {
    this.checkNode(node);
    await this.publish(topics.desired(node), '', true);
  }

  /** Sends a one-off command, QoS 1 (queued by the broker for an agent that is offline); agents dedup by id. */
  async sendCommand(node: string, command: FleetCommand): Promise<void> {
    this.checkNode(node);
    const parsed = CommandEnvelopeSchema.safeParse(command);
    if (!parsed.success) throw badRequest(`invalid command for node ${node}: ${formatZodError(parsed.error)}`);
    await this.publish(topics.commands(node), JSON.stringify(parsed.data), false);
  }

  /** A frame of a call to a node's agent, QoS 0 (never queued: see protocol/rpc.ts). */
  publishRpc(node: string, frame: RpcToAgentFrame): void {
    this.checkNode(node);
    if (this.closed || !this.client.connected) return;
    this.client.publish(topics.rpc(node), JSON.stringify(frame), { qos: 0 }, () => undefined);
  }

  /**
   * Nodes the control plane believes are up but this hub has not heard from (for
   * example after a control-plane restart): each is declared down with reason
   * 'heartbeat-timeout' unless it speaks within heartbeatTimeoutMs.
   */
  expectNodes(nodes: Iterable<string>): void {
    const now = Date.now();
    for (const node of nodes) {
      if (this.nodes.has(node)) continue;
      this.nodes.set(node, { state: 'expected', lastSeen: 0, silentSince: now, lastWarnAt: 0, suppressedWarnings: 0 });
    }
  }

  /** Stops tracking a node (it left the fleet). */
  forgetNode(node: string): void {
    this.nodes.delete(node);
  }

  knownNodes(): NodeLiveness[] {
    return [...this.nodes].map(([node, e]) => ({ node, state: e.state, lastSeenMs: e.lastSeen || undefined }));
  }

  stats(): FleetHubStats {
    return { received: this.received, dropped: this.dropped, connected: this.client.connected };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.probeTimer);
    await this.client.endAsync();
  }

  // -------------------------------------------------------------------------

  private checkNode(node: string): void {
    if (typeof node !== 'string' || !isValidNodeId(node)) throw badRequest(`invalid node id ${JSON.stringify(node)}`);
  }

  private async publish(topic: string, payload: string, retain: boolean): Promise<void> {
    if (this.closed) throw new TernError('INTERNAL', 'the fleet hub is closed');
    await this.client.publishAsync(topic, payload, { qos: 1, retain });
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === this.probeTopic) {
      this.onProbe(Number(payload.toString()));
      return;
    }
    const parsed = parseNodeTopic(topic);
    if (!parsed) return;
    this.received++;
    const { node, kind } = parsed;
    if (kind === 'heartbeat') {
      const decoded = decodeJson(payload, HeartbeatSchema);
      if (!decoded.ok) return this.drop(node, kind, decoded.error);
      this.seen(node);
      this.fire('heartbeat', node, decoded.value);
    } else if (kind === 'status') {
      const decoded = decodeJson(payload, ReplicaStatusSchema);
      if (!decoded.ok) return this.drop(node, kind, decoded.error);
      this.fire('status', node, decoded.value);
    } else if (kind === 'rpc-reply') {
      const decoded = decodeJson(payload, RpcFromAgentFrameSchema);
      if (!decoded.ok) return this.drop(node, kind, decoded.error);
      this.fire('rpc', node, decoded.value);
    } else if (kind === 'presence') {
      const text = payload.toString();
      if (text === PRESENCE_ONLINE) {
        this.seen(node);
        this.fire('agentSession', node);
      } else if (text === PRESENCE_OFFLINE) this.down(node, 'last-will');
      else if (text !== '') this.drop(node, kind, `presence must be "${PRESENCE_ONLINE}" or "${PRESENCE_OFFLINE}", got ${JSON.stringify(text.slice(0, 40))}`);
    }
  }

  /** A sign of life: heartbeat or presence "online". */
  private seen(node: string): void {
    const now = Date.now();
    let e = this.nodes.get(node);
    if (!e) {
      e = { state: 'down', lastSeen: 0, silentSince: now, lastWarnAt: 0, suppressedWarnings: 0 };
      this.nodes.set(node, e);
    }
    e.lastSeen = now;
    e.silentSince = now;
    if (e.state !== 'up') {
      e.state = 'up';
      this.log.debug({ node }, 'node up');
      this.fire('nodeUp', node);
    }
  }

  private down(node: string, reason: NodeDownReason): void {
    let e = this.nodes.get(node);
    if (!e) {
      e = { state: 'expected', lastSeen: 0, silentSince: Date.now(), lastWarnAt: 0, suppressedWarnings: 0 };
      this.nodes.set(node, e);
    }
    if (e.state === 'down') return;
    e.state = 'down';
    const lastSeenMs = e.lastSeen || undefined;
    this.log.warn({ node, reason, silentMs: lastSeenMs === undefined ? undefined : Date.now() - lastSeenMs }, 'node down');
    this.fire('nodeDown', node, { reason, lastSeenMs });
  }

  private drop(node: string, kind: string, error: string): void {
    this.dropped++;
    const e = this.nodes.get(node);
    const now = Date.now();
    if (e && now - e.lastWarnAt < WARN_EVERY_MS) {
      e.suppressedWarnings++;
      return;
    }
    const suppressed = e?.suppressedWarnings ?? 0;
    if (e) {
      e.lastWarnAt = now;
      e.suppressedWarnings = 0;
    }
    this.log.warn({ node, kind, suppressed }, `dropped malformed ${kind} message from node ${node}: ${error}`);
  }

  /** Sends the next liveness probe through the broker, unless one is still travelling. */
  private probe(): void {
    if (!this.client.connected || this.closed) return;
    const now = Date.now();
    if (this.probeSentAt !== 0 && now - this.probeSentAt < PROBE_LOST_MS) return;
    if (this.probeSentAt !== 0) this.probeReturnedSentAt = 0; // lost (QoS 0): restart the chain
    this.probeSentAt = now;
    this.client.publish(this.probeTopic, String(now), { qos: 0 }, () => undefined);
  }

  private onProbe(sentAt: number): void {
    if (sentAt !== this.probeSentAt) return; // a probe given up on, or another hub's
    this.probeSentAt = 0;
    this.pathOkAt = this.probeReturnedSentAt;
    this.probeReturnedSentAt = sentAt;
    if (this.pathOkAt > 0) this.sweep();
  }

  /** Declares down every node silent for longer than the timeout, as of the last proof that the broker delivers. */
  private sweep(): void {
    const horizon = this.pathOkAt - this.timeoutMs;
    for (const [node, e] of this.nodes) {
      if (e.state !== 'down' && e.silentSince < horizon) this.down(node, 'heartbeat-timeout');
    }
  }

  /** On every (re)connect: the probe chain restarts and nodes get a fresh timeout window, measured from now. */
  private onReconnect(): void {
    const now = Date.now();
    this.probeSentAt = 0;
    this.probeReturnedSentAt = 0;
    this.pathOkAt = 0;
    for (const e of this.nodes.values()) if (e.silentSince < now) e.silentSince = now;
    if (this.linkUp) return;
    this.linkUp = true;
    this.log.info('fleet hub reconnected to the MQTT broker');
    this.fire('connection', true);
  }

  /** Emits to each listener on its own, so that one listener's exception neither reaches the MQTT message loop nor starves the others. */
  private fire<K extends keyof FleetHubEvents>(event: K, ...args: FleetHubEvents[K]): void {
    for (const listener of this.rawListeners(event) as ((...a: FleetHubEvents[K]) => void)[]) {
      try {
        listener.apply(this, args);
      } catch (err) {
        this.log.error({ err, event }, `a fleet hub ${String(event)} listener failed`);
      }
    }
  }
}

/** Resolves on the first CONNACK; rejects with a clear error on refusal, network failure or timeout. */
function firstConnect(client: MqttClient, url: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let lastError: Error | undefined;
    const timer = setTimeout(() => finish(new TernError('INTERNAL',
      `cannot reach the MQTT broker at ${url} within ${timeoutMs} ms${lastError ? `: ${lastError.message}` : ''}`)), timeoutMs);
    const onConnect = (): void => finish();
    const onError = (err: Error & { code?: unknown }): void => {
      lastError = err;
      // CONNACK refusals (bad credentials, not authorized) will not fix themselves: fail now.
      if (typeof err.code === 'number') finish(new TernError('INTERNAL', `the MQTT broker at ${url} refused the control plane: ${err.message}`));
    };
    function finish(err?: Error): void {
      clearTimeout(timer);
      client.off('connect', onConnect);
      client.off('error', onError);
      if (err) reject(err);
      else resolve();
    }
    client.on('connect', onConnect);
    client.on('error', onError);
  });
}
