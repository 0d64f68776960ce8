/**
 * Commands from the control plane (topic `tern/nodes/<node>/commands`, QoS 1,
 * so they may arrive twice): each has an id, and a handled id is never acted on
 * again, across agent restarts too (the last ids are kept in commands.json).
 *
 *   drain            stop every replica on this node; desired states up to the
 *                    current revision are then recorded but not run, until a
 *                    newer revision arrives (the control plane moves the
 *                    replicas elsewhere and sends one)
 *   restart-replica  restart one replica now (no backoff)
 *
 * The schema belongs in protocol/fleet.ts once the control plane sends these.
 */
import path from 'node:path';
import { z } from 'zod';
import { readStateFile, STATE_FILES, writeStateFile } from './state-files.js';

export const AgentCommandSchema = z.discriminatedUnion('kind', [
  z.object({ id: z.string().min(1).max(200), kind: z.literal('drain'), reason: z.string().optional() }),
  z.object({ id: z.string().min(1).max(200), kind: z.literal('restart-replica'), replica_id: z.string().min(1), reason: z.string().optional() }),
]);
export type AgentCommand = z.infer<typeof AgentCommandSchema>;

const HandledSchema = z.object({ handled: z.array(z.string()) });

/** Remembers the ids of handled commands (the newest `capacity`). */
export class CommandLog {
  private readonly ids: string[] = [];
  private readonly seen = new Set<string>();
  private readonly file: string;
  private writing: Promise<void> = Promise.resolve();

  constructor(dataDir: string, private readonly capacity = 512) {
    this.file = path.join(dataDir, STATE_FILES.commands);
  }

  async load(): Promise<void> {
    const saved = await readStateFile(this.file, HandledSchema).catch(() => undefined);
    for (const id of saved?.handled ?? []) this.remember(id);
  }

  has(id: string): boolean {
    return this.seen.has(id);
  }

  private remember(id: string): void {
    if (this.seen.has(id)) return;
    this.ids.push(id);
    this.seen.add(id);
    while (this.ids.length > this.capacity) this.seen.delete(this.ids.shift()!);
  }

  /** Marks a command handled; false when it was handled before (a redelivery). */
  async record(id: string): Promise<boolean> {
    if (this.seen.has(id)) return false;
    this.remember(id);
    const snapshot = [...this.ids];
    this.writing = this.writing.then(() => writeStateFile(this.file, { handled: snapshot })).catch(() => undefined);
    await this.writing;
    return true;
  }
}
