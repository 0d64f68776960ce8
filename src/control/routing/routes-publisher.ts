/**
 * Publishes the routing table whenever it changes: a new version (a
 * millisecond clock that never goes backwards within this process, so it also
 * keeps growing across control-plane restarts), sent retained to every
 * gateway over MQTT and handed to the control plane's own gateway directly.
 *
 * It also answers the drain protocol's question "have the gateways stopped
 * routing to this replica?": each agent's heartbeat carries the table version
 * its gateway routes by; a version is acknowledged once every live node that
 * runs a gateway reports it or a newer one.
 */
import type { Logger } from 'pino';
import type { RoutingTable } from '../../protocol/routing.js';
import type { NodeRecord, Store } from '../store/store.js';
import { computeRoutes } from './routing-table.js';

export interface RoutesSink {
  publishRoutes(table: RoutingTable): Promise<void> | void;
}

export class RoutesPublisher {
  private fingerprint: string | undefined;
  private table: RoutingTable | undefined;
  /** The routing-table version each node's gateway reported last. */
  private readonly gatewayVersions = new Map<string, number>();
  private readonly listeners = new Set<(table: RoutingTable) => void>();

  constructor(private readonly store: Store, private readonly sink: RoutesSink, private readonly log: Logger) {}

  get current(): RoutingTable | undefined {
    return this.table;
  }

  /** In-process gateways (the control plane's own) get every new table at once. */
  subscribe(listener: (table: RoutingTable) => void): () => void {
    this.listeners.add(listener);
    if (this.table) listener(this.table);
    return () => { this.listeners.delete(listener); };
  }

  /** Recomputes the table (with the caller's snapshot of the nodes, if it has one); publishes and returns true when it changed. */
  refresh(nodes?: Map<string, NodeRecord>): boolean {
    const routes = computeRoutes(this.store, nodes);
    const fingerprint = JSON.stringify(routes);
    if (fingerprint === this.fingerprint) return false;
    const version = Math.max((this.table?.version ?? 0) + 1, Date.now());
    const table: RoutingTable = { version, generated_at: Date.now(), routes };
    this.fingerprint = fingerprint;
    this.table = table;
    for (const l of this.listeners) l(table);
    void Promise.resolve(this.sink.publishRoutes(table)).catch((err: unknown) => {
      if (this.table === table) this.fingerprint = undefined; // publish again on the next refresh
      this.log.warn({ err, version }, 'routing table not published; will retry');
    });
    return true;
  }

  /** Records what a node's gateway routes by; true when that changed. */
  onGatewayVersion(node: string, version: number | undefined): boolean {
    if (version === undefined || this.gatewayVersions.get(node) === version) return false;
    this.gatewayVersions.set(node, version);
    return true;
  }

  forgetNode(node: string): void {
    this.gatewayVersions.delete(node);
  }

  /** True when every node in `liveNodes` that runs a gateway routes by `version` or newer. */
  acknowledged(version: number, liveNodes: Iterable<string>): boolean {
    for (const node of liveNodes) {
      const seen = this.gatewayVersions.get(node);
      if (seen !== undefined && seen < version) return false;
    }
    return true;
  }
}
