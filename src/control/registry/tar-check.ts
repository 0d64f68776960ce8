/**
 * A model packed as tar must be a readable archive (plain or gzip) with
 * `model.onnx` at its top level, and no entry may point outside the directory
 * it is unpacked into (agents extract these archives).
 */
import { t as listTar } from 'tar';
import { TernError } from '../../protocol/errors.js';

function topLevelName(entry: string): string {
  return entry.replace(/^(\.\/)+/, '');
}

function unsafeEntry(entry: string): boolean {
  return entry.startsWith('/') || entry.split('/').includes('..');
}

export async function checkModelTar(file: string): Promise<string[]> {
  const entries: string[] = [];
  try {
    await listTar({ file, strict: true, onReadEntry: (e) => { entries.push(e.path); e.resume(); } });
  } catch (e) {
    throw new TernError('BAD_REQUEST', `upload is not a readable tar archive: ${(e as Error).message}`);
  }
  const unsafe = entries.find(unsafeEntry);
  if (unsafe) throw new TernError('BAD_REQUEST', `tar entry "${unsafe}" points outside the archive's directory`);
  if (!entries.some((e) => topLevelName(e) === 'model.onnx')) {
    const shown = entries.slice(0, 5).join(', ') || 'nothing';
    throw new TernError('BAD_REQUEST', `tar archive has no model.onnx at its top level (it holds ${shown}${entries.length > 5 ? ', ...' : ''})`);
  }
  return entries;
}
