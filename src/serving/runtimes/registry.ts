/** Model runtimes by the name a config's `backend` field uses. */
import type { ModelRuntime } from './model-runtime.js';
import { onnxRuntime } from './onnx-runtime.js';

const runtimes = new Map<string, ModelRuntime>();

export function registerRuntime(runtime: ModelRuntime): void {
  runtimes.set(runtime.name, runtime);
}

export function getRuntime(name: string): ModelRuntime {
  const r = runtimes.get(name);
  if (!r) throw new Error(`unknown backend '${name}' (known: ${[...runtimes.keys()].join(', ')})`);
  return r;
}

registerRuntime(onnxRuntime);
