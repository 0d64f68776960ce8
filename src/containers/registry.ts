/**
 * Images from OCI registries through the engine: a node pulls an image its
 * replica names when the engine lacks it; `tern image push` sends a local
 * image to a registry. Registries are reached by the engine (its TLS and
 * insecure-registry settings apply), never by tern directly.
 */
import type { Engine } from './engine.js';
import { engineMessage } from './engine.js';

export interface ImageRef {
  /** host[:port], when the reference names one. */
  registry?: string;
  repository: string;
  tag: string;
}

/** Splits `host:port/repo/name:tag`; the first component is a registry when it has a dot or a port, or is localhost (Docker's rule). */
export function parseImageRef(ref: string): ImageRef {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let registry: string | undefined;
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    if (/[.:]/.test(first) || first === 'localhost') {
      registry = first;
      rest = rest.slice(slash + 1);
    }
  }
  // Without the registry, a colon can only start the tag.
  const colon = rest.lastIndexOf(':');
  return {
    ...(registry ? { registry } : {}),
    repository: colon >= 0 ? rest.slice(0, colon) : rest,
    tag: digest ?? (colon >= 0 ? rest.slice(colon + 1) : 'latest'),
  };
}

export type ProgressEvent = { status?: string; id?: string; progress?: string; error?: string };

function follow(engine: Engine, stream: NodeJS.ReadableStream, onProgress?: (e: ProgressEvent) => void): Promise<ProgressEvent[]> {
  return new Promise((resolve, reject) => {
    engine.docker.modem.followProgress(stream, (err: Error | null, out: ProgressEvent[]) => {
      if (err) return reject(err);
      const failed = out.find((e) => e.error);
      return failed ? reject(new Error(failed.error)) : resolve(out);
    }, (e: ProgressEvent) => onProgress?.(e));
  });
}

/** Pulls `ref`; rejects with the engine's reason. */
export async function pullImage(engine: Engine, ref: string, onProgress?: (e: ProgressEvent) => void): Promise<void> {
  try {
    await follow(engine, await engine.docker.pull(ref), onProgress);
  } catch (err) {
    throw new Error(`cannot pull image ${ref}: ${engineMessage(err)}`);
  }
}

/** Tags the local image `local` as `<registry>/<repository>:<tag>` and pushes it; returns the pushed reference. */
export async function pushImage(engine: Engine, local: string, registry: string, onProgress?: (e: ProgressEvent) => void): Promise<string> {
  const { repository, tag } = parseImageRef(local);
  const remoteRepo = `${registry}/${repository}`;
  try {
    await engine.docker.getImage(local).tag({ repo: remoteRepo, tag });
    await follow(engine, await engine.docker.getImage(remoteRepo).push({ tag }), onProgress);
  } catch (err) {
    throw new Error(`cannot push ${local} to ${registry}: ${engineMessage(err)}`);
  }
  return `${remoteRepo}:${tag}`;
}
