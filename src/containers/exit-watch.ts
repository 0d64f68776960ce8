/**
 * Notices when containers stop, from one event stream per engine connection
 * (`GET /events`, container `die` events, filtered by label), instead of one
 * `POST /containers/{id}/wait` per container: Podman 4.3's compatible wait
 * polls so hard that the service burns a whole core for as long as it waits.
 *
 * A container watched after it already stopped, or an event lost while the
 * stream reconnects, is caught by inspecting the watched containers whenever
 * the stream (re)connects.
 */
import type { Logger } from 'pino';
import type { Engine } from './engine.js';
import { isNotFound } from './engine.js';

interface EngineEvent { Type?: string; Action?: string; status?: string; id?: string; Actor?: { ID?: string } }

export class ExitWatch {
  private readonly waiting = new Map<string, () => void>();
  private stream: NodeJS.ReadableStream | undefined;
  private connecting: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly engine: Engine, private readonly labelFilter: string[], private readonly log?: Logger) {}

  /** Resolves once container `id` has stopped (or is gone). */
  async exited(id: string): Promise<void> {
    const done = new Promise<void>((resolve) => this.waiting.set(id, resolve));
    await this.connect();
    await this.check(id);
    return done;
  }

  private fire(id: string): void {
    const resolve = this.waiting.get(id);
    if (!resolve) return;
    this.waiting.delete(id);
    resolve();
  }

  /** Inspects a watched container: fires when it is not running any more. */
  private async check(id: string): Promise<void> {
    try {
      const info = await this.engine.docker.getContainer(id).inspect();
      if (!info.State.Running) this.fire(id);
    } catch (err) {
      if (isNotFound(err)) this.fire(id);
    }
  }

  private connect(): Promise<void> {
    if (this.stream || this.closed) return Promise.resolve();
    this.connecting ??= (async () => {
      try {
        const stream = (await this.engine.docker.getEvents({ filters: { type: ['container'], label: this.labelFilter } })) as NodeJS.ReadableStream;
        this.stream = stream;
        let pending = '';
        stream.on('data', (chunk: Buffer) => {
          pending += chunk.toString('utf8');
          const lines = pending.split('\n');
          pending = lines.pop() ?? '';
          for (const line of lines) this.onEvent(line);
        });
        const lost = () => {
          if (this.stream !== stream) return;
          this.stream = undefined;
          if (!this.closed) setTimeout(() => void this.reconnect(), 1000).unref();
        };
        stream.on('end', lost);
        stream.on('error', lost);
        stream.on('close', lost);
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  private async reconnect(): Promise<void> {
    if (this.closed || this.waiting.size === 0) return;
    try {
      await this.connect();
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'container engine event stream lost; retrying');
      setTimeout(() => void this.reconnect(), 2000).unref();
      return;
    }
    await Promise.all([...this.waiting.keys()].map((id) => this.check(id)));
  }

  private onEvent(line: string): void {
    if (!line.trim()) return;
    let e: EngineEvent;
    try {
      e = JSON.parse(line) as EngineEvent;
    } catch {
      return;
    }
    const action = e.Action ?? e.status;
    const id = e.Actor?.ID ?? e.id;
    if (id && (action === 'die' || action === 'destroy' || action === 'remove')) this.fire(id);
  }

  close(): void {
    this.closed = true;
    const s = this.stream as (NodeJS.ReadableStream & { destroy?: () => void }) | undefined;
    this.stream = undefined;
    s?.destroy?.();
  }
}
