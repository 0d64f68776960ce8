/** Images on an engine: load an archive, look one up, check that a node can run it. */
import { createReadStream } from 'node:fs';
import type { Engine } from './engine.js';
import { engineMessage, isNotFound } from './engine.js';
import { platformOf } from './platform.js';

export interface ImageFacts {
  id: string;
  platform: string;
  sizeBytes: number;
  labels: Record<string, string>;
}

/** Loads a docker-save archive; resolves with what the engine says it loaded. */
export async function loadImageArchive(engine: Engine, archive: string): Promise<string> {
  const res = await engine.docker.loadImage(createReadStream(archive), { quiet: true });
  const chunks: Buffer[] = [];
  for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  const messages = text.split('\n').filter(Boolean).map((l) => {
    try {
      return JSON.parse(l) as { stream?: string; error?: string; message?: string };
    } catch {
      return { stream: l };
    }
  });
  const failed = messages.find((m) => m.error);
  if (failed) throw new Error(`the engine refused the image archive: ${failed.error}`);
  return messages.map((m) => m.stream ?? m.message ?? '').join(' ').trim();
}

/** The image's facts, or undefined when the engine does not have it. */
export async function inspectImage(engine: Engine, ref: string): Promise<ImageFacts | undefined> {
  try {
    const info = await engine.docker.getImage(ref).inspect();
    return { id: info.Id, platform: platformOf(info.Os, info.Architecture), sizeBytes: info.Size, labels: info.Config?.Labels ?? {} };
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw new Error(`cannot inspect image ${ref}: ${engineMessage(err)}`);
  }
}

/** Throws a message naming both platforms when `image` is not for one the node runs. */
export function checkPlatform(ref: string, image: ImageFacts, nodePlatforms: string[]): void {
  if (!nodePlatforms.includes(image.platform)) {
    throw new Error(`image ${ref} is built for ${image.platform}, but this node runs ${nodePlatforms.join(', ')}; build it for this node with: tern image build --platform ${nodePlatforms[0]}`);
  }
}
