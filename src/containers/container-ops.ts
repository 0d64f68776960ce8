/**
 * Operations on one container of an engine, as an operator needs them:
 * list tern's containers, inspect, stop / start / restart / remove, logs
 * (tail, since, follow: streamed as the engine sends them), a one-off command
 * (exec) with its exit code, and copying a file in or out (the Engine API's
 * tar archives). The CLI uses these on a node's engine; they are also what an
 * agent would run for the control plane's container API.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Docker from 'dockerode';
import tarStream from 'tar-stream';
import { TernError } from '../protocol/errors.js';
import type { ContainerSummary } from '../protocol/rpc.js';
import { engineMessage, isNotFound, type Engine } from './engine.js';
import { LABELS } from './labels.js';
import { Demuxer, type LogChunk } from './logs.js';

export type { ContainerSummary };

export async function listContainers(engine: Engine, all = true): Promise<ContainerSummary[]> {
  const list = await engine.docker.listContainers({ all, filters: { label: [LABELS.kind] } });
  return list.map((c) => ({
    name: (c.Names?.[0] ?? c.Id).replace(/^\//, ''), id: c.Id.slice(0, 12), image: c.Image, state: c.State, kind: c.Labels?.[LABELS.kind] ?? '', labels: c.Labels ?? {},
  })).sort((a, b) => a.name.localeCompare(b.name));
}

/** The container, checked to exist (a clear error naming it otherwise). */
export async function container(engine: Engine, name: string): Promise<{ c: Docker.Container; info: Docker.ContainerInspectInfo }> {
  const c = engine.docker.getContainer(name);
  try {
    return { c, info: await c.inspect() };
  } catch (err) {
    if (isNotFound(err)) throw new TernError('NOT_FOUND', `no container '${name}' on ${engine.kind} at ${engine.url} (see: tern containers ls)`);
    throw new Error(`cannot inspect container ${name}: ${engineMessage(err)}`);
  }
}

export type Lifecycle = 'start' | 'stop' | 'restart' | 'rm';

export async function lifecycle(engine: Engine, name: string, op: Lifecycle, graceS = 5): Promise<void> {
  const { c } = await container(engine, name);
  try {
    if (op === 'start') await c.start();
    else if (op === 'stop') await c.stop({ t: graceS });
    else if (op === 'restart') await c.restart({ t: graceS });
    else await c.remove({ force: true });
  } catch (err) {
    const status = (err as { statusCode?: number }).statusCode;
    if (status === 304) return; // already in that state
    throw new TernError('CONFLICT', `cannot ${op} container ${name}: ${engineMessage(err)}`);
  }
}

/** Takes one chunk of output; a returned promise holds the stream back until it settles (backpressure). */
export type ChunkSink = (c: LogChunk) => void | Promise<void>;

function chunkWriter(onChunk: ChunkSink): Writable {
  return new Writable({
    objectMode: true,
    write(chunk: LogChunk, _e, cb) {
      Promise.resolve(onChunk(chunk)).then(() => cb(), cb);
    },
  });
}

export interface LogOptions { follow?: boolean; tail?: number; since?: number; timestamps?: boolean; signal?: AbortSignal }

/** Streams a container's output to `onChunk`; resolves when the engine ends the stream (or `signal` aborts a follow). */
export async function streamLogs(engine: Engine, name: string, o: LogOptions, onChunk: ChunkSink): Promise<void> {
  const { c, info } = await container(engine, name);
  const options = { stdout: true, stderr: true, timestamps: o.timestamps ?? false, ...(o.tail !== undefined ? { tail: o.tail } : {}), ...(o.since !== undefined ? { since: o.since } : {}) };
  if (!o.follow) {
    const buf = (await c.logs({ ...options, follow: false })) as unknown as Buffer;
    const { demuxBuffer } = await import('./logs.js');
    for (const chunk of info.Config.Tty ? [{ stream: 'stdout' as const, data: buf }] : demuxBuffer(buf)) await onChunk(chunk);
    return;
  }
  const stream = (await c.logs({ ...options, follow: true })) as NodeJS.ReadableStream & { destroy(): void };
  o.signal?.addEventListener('abort', () => stream.destroy(), { once: true });
  await pipeline(stream, new Demuxer(), chunkWriter(onChunk)).catch((err: unknown) => {
    if (!o.signal?.aborted) throw err;
  });
}

/** Runs a command in a running container; resolves with its exit code once its output has been passed on. */
export async function exec(engine: Engine, name: string, cmd: string[], onChunk: ChunkSink): Promise<number> {
  const { c, info } = await container(engine, name);
  if (!info.State.Running) throw new TernError('CONFLICT', `container ${name} is not running (${info.State.Status}); start it first`);
  const e = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await e.start({ hijack: true, stdin: false });
  await pipeline(stream, new Demuxer(), chunkWriter(onChunk));
  for (let i = 0; i < 50; i++) {
    const r = await e.inspect();
    if (!r.Running) return r.ExitCode ?? 0;
    await new Promise((res) => setTimeout(res, 20));
  }
  return (await e.inspect()).ExitCode ?? 0;
}

/** Where a copied-in file goes and what it looks like there. */
export interface CopyTarget { dest: string; size: number; mode?: number; mtime?: Date }

/** A local file to copy in, checked, and where it lands: `dest` ending in / is a folder, and the file keeps its name. */
export async function uploadTarget(local: string, dest: string): Promise<Required<CopyTarget>> {
  const st = await stat(local).catch(() => undefined);
  if (!st?.isFile()) throw new Error(`'${local}' is not a file`);
  return { dest: dest.endsWith('/') ? `${dest}${path.basename(local)}` : dest, size: st.size, mode: st.mode & 0o777, mtime: st.mtime };
}

/** Copies a local file into the container at `dest` (a folder ending in /, or a path whose folder exists); `onProgress` gets bytes sent. */
export async function copyIn(engine: Engine, name: string, local: string, dest: string, onProgress?: (sent: number, total: number) => void): Promise<void> {
  await copyInStream(engine, name, createReadStream(local), await uploadTarget(local, dest), onProgress, local);
}

/**
 * Writes `size` bytes from `source` into the container as the file `t.dest`
 * (its folder must exist): the Engine API takes a tar archive, so the bytes
 * become its one entry as they arrive, without a copy on disk.
 */
export async function copyInStream(
  engine: Engine, name: string, source: NodeJS.ReadableStream, t: CopyTarget, onProgress?: (sent: number, total: number) => void, label = 'the upload',
): Promise<void> {
  const { c } = await container(engine, name);
  const folder = path.posix.dirname(t.dest);
  const pack = tarStream.pack();
  let sent = 0;
  const entry = pack.entry({ name: path.posix.basename(t.dest), size: t.size, mode: t.mode ?? 0o644, mtime: t.mtime ?? new Date() });
  const counter = new Transform({ transform(chunk: Buffer, _e, cb) { sent += chunk.length; onProgress?.(sent, t.size); cb(null, chunk); } });
  const feeding = pipeline(source, counter, entry).then(() => pack.finalize());
  try {
    await Promise.all([c.putArchive(pack as unknown as NodeJS.ReadableStream, { path: folder }), feeding]);
  } catch (err) {
    pack.destroy();
    const why = (err as { code?: string }).code === 'ERR_STREAM_PREMATURE_CLOSE' || /size mismatch/i.test((err as Error).message)
      ? `${label} ended after ${sent} of ${t.size} bytes` : engineMessage(err);
    throw new TernError(isNotFound(err) ? 'NOT_FOUND' : 'CONFLICT', `cannot copy ${label} into ${name}:${t.dest}: ${why}`);
  }
}

/** Copies a file out of the container to `local`; resolves with its size. */
export async function copyOut(engine: Engine, name: string, src: string, local: string): Promise<number> {
  return copyOutStream(engine, name, src, () => createWriteStream(local));
}

/** Streams a file out of the container into the writable `open` returns (called once the file is found); resolves with its size. */
export async function copyOutStream(engine: Engine, name: string, src: string, open: () => NodeJS.WritableStream): Promise<number> {
  const { c } = await container(engine, name);
  let archive: NodeJS.ReadableStream;
  try {
    archive = await c.getArchive({ path: src });
  } catch (err) {
    if (isNotFound(err)) throw new TernError('NOT_FOUND', `cannot copy ${name}:${src}: no such file in the container`);
    throw new Error(`cannot copy ${name}:${src}: ${engineMessage(err)}`);
  }
  const extract = tarStream.extract();
  let size = -1;
  const reading = pipeline(archive, extract);
  for await (const entry of extract) {
    if (size < 0 && entry.header.type === 'file') {
      size = entry.header.size ?? 0;
      await pipeline(entry, open());
    } else {
      entry.resume();
    }
  }
  await reading;
  if (size < 0) throw new TernError('BAD_REQUEST', `${name}:${src} is not a file`);
  return size;
}
