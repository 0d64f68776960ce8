/**
 * Where `tern containers ...` operates: this machine's engine directly, or a
 * node of the fleet through the control plane (`--node`), which runs the
 * same operations on that node's engine (control/api/routes/container-routes.ts).
 * Both offer the same operations, so each command is written once.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { ChunkSink, Lifecycle, LogOptions } from '../containers/container-ops.js';
import type { ContainerOutputLine, ContainerSummary } from '../protocol/rpc.js';
import type { ApiClient } from './api-client.js';

export type Progress = (sent: number, total: number) => void;

export interface ContainerTarget {
  list(): Promise<ContainerSummary[]>;
  inspect(name: string): Promise<unknown>;
  lifecycle(name: string, op: Lifecycle, graceS: number): Promise<void>;
  logs(name: string, o: LogOptions, onChunk: ChunkSink): Promise<void>;
  /** Resolves with the command's exit code. */
  exec(name: string, cmd: string[], onChunk: ChunkSink): Promise<number>;
  /** `dest` ending in / is a folder: the file keeps its name. */
  copyIn(name: string, local: string, dest: string, onProgress?: Progress): Promise<void>;
  /** Resolves with the file's size. */
  copyOut(name: string, src: string, local: string): Promise<number>;
}

export async function localTarget(engineUrl: string | undefined): Promise<ContainerTarget> {
  const [{ connectEngine }, ops] = await Promise.all([import('../containers/engine.js'), import('../containers/container-ops.js')]);
  const engine = await connectEngine(engineUrl);
  return {
    list: () => ops.listContainers(engine),
    inspect: async (name) => (await ops.container(engine, name)).info,
    lifecycle: (name, op, graceS) => ops.lifecycle(engine, name, op, graceS),
    logs: (name, o, onChunk) => ops.streamLogs(engine, name, o, onChunk),
    exec: (name, cmd, onChunk) => ops.exec(engine, name, cmd, onChunk),
    copyIn: (name, local, dest, onProgress) => ops.copyIn(engine, name, local, dest, onProgress),
    copyOut: (name, src, local) => ops.copyOut(engine, name, src, local),
  };
}

/** Reads an NDJSON body line by line, passing output on and returning the last non-output line. */
async function readOutput(res: Response, onChunk: ChunkSink): Promise<ContainerOutputLine | undefined> {
  let pending = '';
  let last: ContainerOutputLine | undefined;
  const take = async (line: string) => {
    if (!line) return;
    const o = JSON.parse(line) as ContainerOutputLine;
    if (o.error) throw new Error(o.error);
    if (o.text !== undefined) await onChunk({ stream: o.stream ?? 'stdout', data: Buffer.from(o.text, 'utf8') });
    else last = o;
  };
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    pending += Buffer.from(chunk).toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) await take(line);
  }
  await take(pending);
  return last;
}

export function remoteTarget(api: ApiClient, node: string): ContainerTarget {
  const base = `/nodes/${encodeURIComponent(node)}/containers`;
  const one = (name: string) => `${base}/${encodeURIComponent(name)}`;
  return {
    list: async () => (await api.get<{ containers: ContainerSummary[] }>(base)).containers,
    inspect: (name) => api.get(one(name)),
    lifecycle: async (name, op, graceS) => {
      if (op === 'rm') await api.request('DELETE', one(name));
      else await api.post(`${one(name)}/${op}?time=${graceS}`);
    },
    logs: async (name, o, onChunk) => {
      const q = new URLSearchParams({ format: 'ndjson', follow: String(!!o.follow), timestamps: String(!!o.timestamps) });
      if (o.tail !== undefined) q.set('tail', String(o.tail));
      if (o.since !== undefined) q.set('since', String(o.since));
      try {
        await readOutput(await api.send('GET', `${one(name)}/logs?${q}`, undefined, {}, o.signal), onChunk);
      } catch (err) {
        if (!o.signal?.aborted) throw err;
      }
    },
    exec: async (name, cmd, onChunk) => {
      const res = await api.send('POST', `${one(name)}/exec`, JSON.stringify({ cmd }), { 'content-type': 'application/json' });
      const end = await readOutput(res, onChunk);
      if (end?.exit_code === undefined) throw new Error(`exec in ${name} on node ${node}: the output ended without an exit code`);
      return end.exit_code;
    },
    copyIn: async (name, local, dest, onProgress) => {
      const target = await (await import('../containers/container-ops.js')).uploadTarget(local, dest);
      let sent = 0;
      const counted = createReadStream(local).pipe(new Transform({ transform(c: Buffer, _e, cb) { sent += c.length; onProgress?.(sent, target.size); cb(null, c); } }));
      const q = new URLSearchParams({ path: target.dest, mode: target.mode.toString(8) });
      await api.send('PUT', `${one(name)}/files?${q}`, Readable.toWeb(counted) as unknown as BodyInit, {
        'content-type': 'application/octet-stream', 'content-length': String(target.size),
      });
    },
    copyOut: async (name, src, local) => {
      const res = await api.send('GET', `${one(name)}/files?${new URLSearchParams({ path: src })}`);
      // Written aside and renamed at the end: a download cut off half-way leaves no file that looks complete.
      const part = `${local}.part`;
      try {
        await pipeline(Readable.fromWeb(res.body as WebReadableStream<Uint8Array>), createWriteStream(part));
      } catch (err) {
        await rm(part, { force: true });
        throw new Error(`the download of ${name}:${src} from node ${node} was cut off: ${(err as Error).message}`);
      }
      await rename(part, local);
      return (await stat(local)).size;
    },
  };
}
