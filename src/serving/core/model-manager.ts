/**
 * Keeps the loaded models in step with the repository on disk: loads and warms
 * new versions before they take traffic, drains and unloads removed ones, marks
 * broken ones UNAVAILABLE with the reason, and leaves every other model serving.
 * Reloads are serialized; file events are debounced.
 */
import chokidar, { type FSWatcher } from 'chokidar';
import path from 'node:path';
import type { Logger } from 'pino';
import type { ModelConfig } from '../../protocol/model-config.js';
import { ModelConfigSchema } from '../../protocol/model-config.js';
import { getRuntime } from '../runtimes/registry.js';
import type { InferenceHost } from '../runtimes/model-runtime.js';
import type { ServingMetrics } from './metrics.js';
import { ModelVersion, type VersionStatus } from './model-version.js';
import { scanRepository, selectVersions, type ModelSource } from './model-repository.js';
import { PredictionCache } from './prediction-cache.js';
import { elementCount, tensorFromJson } from './tensor-codec.js';

export interface ModelEntry {
  name: string;
  config: ModelConfig;
  configText: string;
  /** Set when config.json is unusable: no version can serve. */
  error?: string;
  versions: Map<string, ModelVersion>;
  cache?: PredictionCache;
}

export interface ModelStatus {
  name: string;
  backend: string;
  error?: string;
  versions: VersionStatus[];
}

const DEFAULT_CONFIG: ModelConfig = ModelConfigSchema.parse({});

export class ModelManager {
  readonly models = new Map<string, ModelEntry>();
  private reloading: Promise<void> = Promise.resolve();
  private watcher?: FSWatcher;
  private debounce?: NodeJS.Timeout;
  /** Runs after every reload (the app registry re-reads apps.json here). */
  onReloaded?: () => Promise<void>;

  constructor(
    readonly root: string,
    private readonly host: InferenceHost,
    private readonly metrics: ServingMetrics,
    private readonly log: Logger,
  ) {}

  /** Queues a full re-scan; resolves when it (and any before it) finished. */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reconcile()).catch((err) => {
      this.log.error({ err }, 'repository reload failed');
    });
    return this.reloading;
  }

  /** Resolves once the watcher has seen the whole tree, so no later change is missed. */
  watch(debounceMs = 250): Promise<void> {
    const watcher = chokidar.watch(this.root, { ignoreInitial: true, depth: 3, awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 } });
    this.watcher = watcher;
    watcher.on('all', () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void this.reload(), debounceMs);
    });
    return new Promise((resolve) => watcher.once('ready', () => resolve()));
  }

  async close(): Promise<void> {
    clearTimeout(this.debounce);
    await this.watcher?.close();
    await this.reloading;
    for (const entry of this.models.values()) {
      await Promise.all([...entry.versions.values()].map((v) => v.unload()));
    }
    this.models.clear();
  }

  status(): ModelStatus[] {
    return [...this.models.values()].map((e) => ({
      name: e.name,
      backend: e.config.backend,
      ...(e.error ? { error: e.error } : {}),
      versions: [...e.versions.values()].map((v) => v.status).sort((a, b) => Number(b.version) - Number(a.version)),
    }));
  }

  private async reconcile(): Promise<void> {
    const sources = await scanRepository(this.root);
    for (const [name, entry] of this.models) {
      if (!sources.has(name)) await this.removeModel(name, entry);
    }
    // Plain models first so pipelines that call them find them ready.
    const isPipeline = (s: ModelSource) => (s.config && s.config.backend !== 'onnx' ? 1 : 0);
    const ordered = [...sources.values()].sort((a, b) => isPipeline(a) - isPipeline(b));
    for (const source of ordered) await this.syncModel(source);
    this.publishStates();
    await this.onReloaded?.();
  }

  private async removeModel(name: string, entry: ModelEntry): Promise<void> {
    this.log.info({ model: name }, 'model removed from repository; draining');
    this.models.delete(name);
    await Promise.all([...entry.versions.values()].map((v) => v.unload()));
  }

  private async syncModel(source: ModelSource): Promise<void> {
    let entry = this.models.get(source.name);
    const config = source.config ?? DEFAULT_CONFIG;
    if (!entry || entry.configText !== source.configText || entry.error !== source.configError) {
      // A changed config reloads every version under the new settings.
      const fresh: ModelEntry = {
        name: source.name, config, configText: source.configText, error: source.configError, versions: new Map(),
        cache: config.cache ? new PredictionCache(config.cache.max_bytes) : undefined,
      };
      const old = entry;
      if (old) fresh.versions = new Map(old.versions);
      this.models.set(source.name, fresh);
      entry = fresh;
      await this.syncVersions(entry, source, true);
      return;
    }
    await this.syncVersions(entry, source, false);
  }

  private async syncVersions(entry: ModelEntry, source: ModelSource, configChanged: boolean): Promise<void> {
    if (entry.error) {
      await Promise.all([...entry.versions.values()].map((v) => v.unload()));
      entry.versions.clear();
      return;
    }
    const wanted = new Set(selectVersions(entry.config.version_policy, [...source.versions.keys()]));
    // Load first, retire after: the old version serves until its successor is ready.
    for (const version of wanted) {
      const current = entry.versions.get(version);
      const fp = source.versions.get(version)!;
      if (current && current.fingerprint === fp && !configChanged) continue;
      await this.loadVersion(entry, source, version, fp, current);
    }
    for (const [version, current] of entry.versions) {
      if (!wanted.has(version)) {
        entry.versions.delete(version);
        this.log.info({ model: entry.name, version }, 'version removed; draining then unloading');
        void current.unload();
      }
    }
  }

  /** Loads and warms a version beside the current one, then swaps it in. */
  private async loadVersion(entry: ModelEntry, source: ModelSource, version: string, fp: string, current?: ModelVersion): Promise<void> {
    const mv = new ModelVersion(entry.name, version, path.join(source.dir, version), entry.config, fp);
    if (!current) entry.versions.set(version, mv);
    const started = performance.now();
    const runtime = safeRuntime(entry.config.backend);
    if (typeof runtime === 'string') {
      mv.state = 'UNAVAILABLE';
      mv.reason = runtime;
    } else {
      await mv.load(runtime, this.host, this.batchObserver(entry.name));
      if (mv.state === 'LOADING') await this.warmUp(mv);
      mv.markReady();
    }
    entry.versions.set(version, mv);
    if (current && current !== mv) void current.unload();
    const ms = Math.round(performance.now() - started);
    if (mv.state === 'READY') this.log.info({ model: entry.name, version, ms }, 'version ready');
    else this.log.warn({ model: entry.name, version, reason: mv.reason }, 'version unavailable');
  }

  /**
   * One zero-filled request so the first client does not pay for lazy
   * initialisation. Variable dims get a small size; a failure there is only
   * logged when the shape was a guess, but fails a fully specified model.
   */
  private async warmUp(mv: ModelVersion): Promise<void> {
    if (mv.inputs.some((i) => i.datatype === 'BYTES')) return;
    const guessed = mv.inputs.some((i) => i.shape.slice(1).includes(-1));
    const inputs = mv.inputs.map((spec) => {
      const shape = spec.shape.map((d, k) => (d >= 0 ? d : k === 0 ? 1 : 32));
      return tensorFromJson(spec.name, spec.datatype, shape, new Array(elementCount(shape)).fill(spec.datatype === 'BOOL' ? false : 0));
    });
    try {
      await mv.runDirect(inputs);
    } catch (err) {
      if (guessed) {
        this.log.debug({ model: mv.modelName, err: (err as Error).message }, 'warm-up with guessed shapes failed');
        return;
      }
      mv.state = 'UNAVAILABLE';
      mv.reason = `warm-up inference failed: ${(err as Error).message}`;
    }
  }

  /** Records each batch of `model` into its series, looked up once here rather than per batch. */
  private batchObserver(model: string): (b: { size: number; computeMs: number }) => void {
    const m = this.metrics.forBatches(model);
    return (b) => {
      m.size.observe(b.size);
      m.compute.observe(b.computeMs / 1000);
    };
  }

  /** Requests waiting in each model's queues (all versions), read when metrics are scraped. */
  *queueLengths(): Iterable<[string, number]> {
    for (const e of this.models.values()) {
      let waiting = 0;
      for (const v of e.versions.values()) waiting += v.queueLength;
      yield [e.name, waiting];
    }
  }

  private publishStates(): void {
    this.metrics.modelState.reset();
    for (const e of this.models.values()) {
      for (const v of e.versions.values()) this.metrics.modelState.set({ model: e.name, version: v.version, state: v.state }, 1);
    }
  }
}

function safeRuntime(name: string) {
  try {
    return getRuntime(name);
  } catch (e) {
    return (e as Error).message;
  }
}
