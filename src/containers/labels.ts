/**
 * Labels tern puts on the containers it runs: how an agent finds its own
 * containers again after it restarts (adoption), tells them from anyone
 * else's, and knows what each one is without a database.
 */
export const LABELS = {
  /** Which agent runs it: a hash of the agent's data directory (several agents may share one engine). */
  owner: 'tern.owner',
  node: 'tern.node',
  replica: 'tern.replica',
  deployment: 'tern.deployment',
  generation: 'tern.generation',
  /** `model` (a tern serve replica), `workload` (a replica of a container deployment) or `app` (tern run / compose on the node). */
  kind: 'tern.kind',
  port: 'tern.port',
  grpcPort: 'tern.grpc-port',
} as const;

export type LabelSet = Record<string, string>;

export function ownerFilter(owner: string): { label: string[] } {
  return { label: [`${LABELS.owner}=${owner}`] };
}
