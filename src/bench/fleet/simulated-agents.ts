/**
 * Simulated agents for the fleet bench: each joins through the real REST API
 * and keeps a real agent MQTT session (control/mqtt/agent-link.ts: node
 * credentials, persistent session, last will, retained "online", desired state
 * in revision order), but runs no workloads. A desired state is answered the
 * way a real agent answers it: every new replica is reported `starting`, then
 * `ready` with a port after `replicaStartMs`; replicas no longer listed are
 * reported `stopped` and dropped; heartbeats carry the replicas and the applied
 * revision.
 *
 * Heartbeats of the whole fleet come from one scheduler: agents get evenly
 * spread phases within the period, and one timer sends every heartbeat that is
 * due, recording how late it was (so a bench process that cannot keep up shows
 * it instead of silently sending less).
 *
 * Failures: `kill` resets the agent's TCP connection (no DISCONNECT, so the
 * broker publishes its last will, as when a device loses power or its process
 * dies); `hangAfterNextHeartbeat` stops an agent right after its next heartbeat
 * without closing anything (a hung process or a half-open link): it neither
 * sends nor reads, and only the control plane's heartbeat timeout can see it.
 */
import type { Socket } from 'node:net';
import { pino, type Logger } from 'pino';
import { agentLinkClient, connectAgentLink, type AgentLink } from '../../control/mqtt/agent-link.js';
import type { DesiredState, Heartbeat, NodeFacts, ReplicaState, ReplicaStatus } from '../../protocol/fleet.js';
import type { ControlClient } from './control-client.js';

export type AgentState = 'new' | 'joined' | 'live' | 'killed' | 'hung' | 'closed';

interface SimReplica { id: string; generation: number; state: ReplicaState; port: number }

export interface FleetCounters {
  heartbeatsSent: number;
  /** Heartbeats not sent because the agent's link was down. */
  heartbeatsSkipped: number;
  statusesSent: number;
  desiredReceived: number;
  /** Connections lost that the bench did not cause. */
  unexpectedDisconnects: number;
  replicasReady: number;
}

export interface SimulatedFleetOptions {
  nodes: number;
  heartbeatHz: number;
  /** Delay between a replica's `starting` and `ready` reports. */
  replicaStartMs: number;
  log?: Logger;
}

const GIB = 2 ** 30;
const FIRST_PORT = 20_000;
const TICK_MS = 5;

function facts(index: number): NodeFacts {
  const name = `sim-${String(index).padStart(4, '0')}`;
  return {
    hostname: name,
    arch: 'x64',
    os: 'linux',
    cpus: 4,
    cpu_model: 'simulated',
    memory_bytes: 8 * GIB,
    // Spread a little so the scheduler's speed term differs between nodes.
    cpu_score: 1000 + (index * 37) % 200,
    accelerators: [],
    labels: { 'tern.dev/bench': 'fleet' },
    site: `site-${index % 10}`,
    zone: `zone-${index % 3}`,
    address: '127.0.0.1',
    agent_version: 'fleet-bench-sim',
  };
}

export class SimulatedAgent {
  state: AgentState = 'new';
  node = '';
  token = '';
  mqttUrl = '';
  link: AgentLink | undefined;
  seq = 0;
  appliedRevision = 0;
  readonly replicas = new Map<string, SimReplica>();
  private nextPort = FIRST_PORT;
  /** performance.now() when the next heartbeat is due. */
  nextDue = 0;
  /** Date.now() of the last heartbeat sent. */
  lastHeartbeatAt = 0;
  hangAfterNextHeartbeat = false;
  /** Date.now() of the failure the bench caused (kill, or the last heartbeat before hanging). */
  failedAt = 0;

  constructor(readonly index: number, readonly facts: NodeFacts) {}

  get socket(): Socket | undefined {
    return this.link ? (agentLinkClient(this.link).stream as Socket | undefined) : undefined;
  }

  takePort(): number {
    return this.nextPort++;
  }
}

/** How late heartbeats were sent relative to their schedule. */
export interface LagSummary { count: number; p50Ms: number; p99Ms: number; maxMs: number }

export class SimulatedFleet {
  readonly agents: SimulatedAgent[];
  readonly counters: FleetCounters = {
    heartbeatsSent: 0, heartbeatsSkipped: 0, statusesSent: 0, desiredReceived: 0, unexpectedDisconnects: 0, replicasReady: 0,
  };
  /** Date.now() of the latest `ready` report sent. */
  lastReadyAt = 0;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private order: SimulatedAgent[] = [];
  private cursor = 0;
  private lags: number[] = [];

  constructor(private readonly options: SimulatedFleetOptions) {
    this.agents = Array.from({ length: options.nodes }, (_, i) => new SimulatedAgent(i, facts(i)));
    // The agent link logs every (re)connect at info; a thousand of them say nothing.
    this.log = options.log ?? pino({ level: 'error' });
  }

  /** Every agent joins with the same join token, `concurrency` requests at a time. */
  async joinAll(api: ControlClient, joinToken: string, concurrency: number, onProgress: (done: number) => void): Promise<void> {
    let done = 0;
    await forEachLimit(this.agents, concurrency, async (a) => {
      const res = await api.join(joinToken, a.facts);
      a.node = res.node_id;
      a.token = res.node_token;
      a.mqttUrl = res.mqtt_url;
      a.state = 'joined';
      onProgress(++done);
    });
  }

  /** Opens every agent's MQTT session, `concurrency` handshakes at a time; resolves when all are connected. */
  async connectAll(concurrency: number, timeoutMs: number, onProgress: (done: number) => void): Promise<void> {
    let done = 0;
    await forEachLimit(this.agents, concurrency, (a) => this.connect(a, timeoutMs).then(() => onProgress(++done)));
  }

  private connect(a: SimulatedAgent, timeoutMs: number): Promise<void> {
    const link = connectAgentLink({ url: a.mqttUrl, node: a.node, token: a.token, log: this.log });
    a.link = link;
    link.onDesired((d) => this.applyDesired(a, d));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${a.node} did not connect to ${a.mqttUrl} within ${timeoutMs} ms${link.lastError ? `: ${link.lastError}` : ''}`)), timeoutMs);
      link.onConnectionChange((connected) => {
        if (connected && a.state === 'joined') {
          clearTimeout(timer);
          a.state = 'live';
          resolve();
        } else if (!connected && a.state === 'live') {
          this.counters.unexpectedDisconnects++;
        }
      });
    });
  }

  /** Starts the heartbeats of every live agent, evenly spread over one period. */
  startHeartbeats(): void {
    const period = 1000 / this.options.heartbeatHz;
    const start = performance.now() + TICK_MS;
    this.order = [...this.agents];
    this.order.forEach((a, i) => { a.nextDue = start + (i * period) / this.order.length; });
    this.cursor = 0;
    this.timer = setInterval(() => this.tick(period), TICK_MS);
  }

  stopHeartbeats(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Heartbeat send lateness since the last call (and starts a new window). */
  takeLag(): LagSummary {
    const lags = this.lags.sort((x, y) => x - y);
    this.lags = [];
    const at = (q: number) => (lags.length ? lags[Math.min(lags.length - 1, Math.floor(q * lags.length))] : 0);
    return { count: lags.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: lags.length ? lags[lags.length - 1] : 0 };
  }

  private tick(period: number): void {
    const now = performance.now();
    for (let n = 0; n < this.order.length; n++) {
      const a = this.order[this.cursor];
      if (a.nextDue > now) return;
      a.nextDue += period;
      this.cursor = (this.cursor + 1) % this.order.length;
      if (a.state !== 'live') continue;
      this.lags.push(now - (a.nextDue - period));
      this.heartbeat(a);
    }
  }

  private heartbeat(a: SimulatedAgent): void {
    const link = a.link!;
    if (!link.connected) {
      this.counters.heartbeatsSkipped++;
      return;
    }
    const hb: Heartbeat = {
      seq: a.seq++,
      ts: Date.now(),
      cpu_percent: 5 + (a.index % 20),
      memory_used_bytes: 2 * GIB + (a.index % 100) * 2 ** 20,
      memory_total_bytes: a.facts.memory_bytes,
      load1: 0.2,
      agent_rss_bytes: 40 * 2 ** 20,
      applied_revision: a.appliedRevision,
      replicas: [...a.replicas.values()].map((r) => ({ id: r.id, generation: r.generation, state: r.state, cpu_percent: 1, rss_bytes: 64 * 2 ** 20 })),
    };
    link.publishHeartbeat(hb);
    this.counters.heartbeatsSent++;
    a.lastHeartbeatAt = hb.ts;
    if (a.hangAfterNextHeartbeat) {
      a.hangAfterNextHeartbeat = false;
      a.state = 'hung';
      a.failedAt = hb.ts;
      // Neither read nor write from now on; the TCP connection stays open.
      a.socket?.pause();
    }
  }

  private status(a: SimulatedAgent, s: Omit<ReplicaStatus, 'ts'>): void {
    a.link!.publishStatus({ ...s, ts: Date.now() });
    this.counters.statusesSent++;
  }

  private applyDesired(a: SimulatedAgent, d: DesiredState): void {
    if (a.state !== 'live') return;
    this.counters.desiredReceived++;
    const wanted = new Set(d.replicas.map((r) => r.id));
    for (const [id, r] of a.replicas) {
      if (wanted.has(id)) continue;
      a.replicas.delete(id);
      this.status(a, { replica_id: id, generation: r.generation, state: 'stopped' });
    }
    for (const spec of d.replicas) {
      const have = a.replicas.get(spec.id);
      if (have && have.generation === spec.generation) continue;
      const r: SimReplica = { id: spec.id, generation: spec.generation, state: 'starting', port: a.takePort() };
      a.replicas.set(r.id, r);
      this.status(a, { replica_id: r.id, generation: r.generation, state: 'starting' });
      setTimeout(() => {
        if (a.state !== 'live' || a.replicas.get(r.id) !== r) return;
        r.state = 'ready';
        this.status(a, { replica_id: r.id, generation: r.generation, state: 'ready', port: r.port });
        this.counters.replicasReady++;
        this.lastReadyAt = Date.now();
      }, this.options.replicaStartMs);
    }
    a.appliedRevision = d.revision;
  }

  /** Resets the agent's TCP connection at once (no DISCONNECT: the broker publishes its last will). */
  kill(a: SimulatedAgent): void {
    a.state = 'killed';
    a.failedAt = Date.now();
    const socket = a.socket;
    if (socket && !socket.destroyed) socket.resetAndDestroy();
    // Forced end: no DISCONNECT packet (the stream is gone anyway) and no reconnect.
    agentLinkClient(a.link!).end(true);
  }

  /** Live agents, in a fixed pseudo-random order (so failures hit nodes all over the fleet). */
  liveAgents(): SimulatedAgent[] {
    return this.agents.filter((a) => a.state === 'live').sort((x, y) => ((x.index * 7919) % 1009) - ((y.index * 7919) % 1009));
  }

  /** Disconnects every agent cleanly (each says "offline" itself). */
  async close(timeoutMs = 10_000): Promise<void> {
    this.stopHeartbeats();
    const closing = this.agents.map(async (a) => {
      if (!a.link) return;
      const was = a.state;
      a.state = 'closed';
      if (was === 'hung' || was === 'killed') agentLinkClient(a.link).end(true);
      else await a.link.close();
    });
    await Promise.race([Promise.all(closing), new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    for (const a of this.agents) if (a.link) agentLinkClient(a.link).end(true);
  }
}

/** Runs `fn` over `items` with at most `limit` at a time; the first error stops new work and is thrown. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}
