/**
 * Who may do what on the fleet's MQTT broker. One rule set, used by the embedded
 * broker (aedes) and mirrored by the Mosquitto ACL printed in fleet-hub.ts:
 * - the control plane may publish and subscribe anywhere;
 * - a node may publish only its own heartbeat, status, presence and call
 *   replies, and subscribe only to its own desired state, commands and calls
 *   (exact topics, no wildcards) and to the shared routing table (read only);
 * - a node connects with the client id `agentClientId(node)`, so that no node can
 *   take over another node's (or the control plane's) session.
 */
import { TOPIC_PREFIX, topics } from '../../protocol/fleet.js';
import { ROUTES_TOPIC } from '../../protocol/routing.js';

/** The identity a connection authenticated as. */
export type Principal = { kind: 'control' } | { kind: 'node'; node: string };

/**
 * Node ids are one MQTT topic level: no `/`, no wildcards, no `$` at the start.
 * The registry issues ids of this form; anything else is refused at connect.
 */
const NODE_ID = /^[A-Za-z0-9_.-]{1,128}$/;

export function isValidNodeId(node: string): boolean {
  return NODE_ID.test(node);
}

/** The MQTT client id a node's agent connects with (one session per node). */
export function agentClientId(node: string): string {
  return `tern-agent-${node}`;
}

const NODE_PUBLISH_KINDS = new Set(['heartbeat', 'status', 'presence', 'rpc-reply']);
const NODE_SUBSCRIBE_KINDS = new Set(['desired', 'commands', 'rpc']);

/** `kind` of `tern/nodes/<node>/<kind>` when it is exactly this node's topic; otherwise undefined. */
function ownTopicKind(node: string, topic: string): string | undefined {
  const prefix = `${TOPIC_PREFIX}/${node}/`;
  if (!topic.startsWith(prefix)) return undefined;
  const kind = topic.slice(prefix.length);
  return kind.includes('/') ? undefined : kind;
}

export function mayPublish(principal: Principal, topic: string): boolean {
  // $SYS is the broker's own namespace (aedes' default authorizePublish refuses it too).
  if (topic.startsWith('$SYS')) return false;
  if (principal.kind === 'control') return true;
  const kind = ownTopicKind(principal.node, topic);
  return kind !== undefined && NODE_PUBLISH_KINDS.has(kind);
}

export function maySubscribe(principal: Principal, topicFilter: string): boolean {
  if (principal.kind === 'control') return true;
  if (topicFilter === ROUTES_TOPIC) return true;
  const kind = ownTopicKind(principal.node, topicFilter);
  return kind !== undefined && NODE_SUBSCRIBE_KINDS.has(kind);
}

/** The topics a node may publish and subscribe to, for documentation and error messages. */
export function nodeTopics(node: string): { publish: string[]; subscribe: string[] } {
  return {
    publish: [topics.heartbeat(node), topics.status(node), topics.presence(node), topics.rpcReply(node)],
    subscribe: [topics.desired(node), topics.commands(node), topics.rpc(node), ROUTES_TOPIC],
  };
}
