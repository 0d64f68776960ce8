/**
 * Clipper-style applications: a public name linked to a model with a latency
 * SLO. When the model cannot answer within the SLO (slow, overloaded, not
 * loaded) the app's default output is returned, never an error; only a request
 * the model could never accept (bad input) is an error.
 */
import type { AppSpec } from '../../protocol/apps.js';
import { TernError, asTernError, badRequest } from '../../protocol/errors.js';
import type { InferenceCore, ModelMetadata } from './inference-core.js';
import { readApps } from './model-repository.js';
import { elementCount, jsonShape, reshapeJson, tensorFromJson, tensorToJson } from './tensor-codec.js';
import type { Tensor } from './types.js';

export interface AppPrediction {
  query_id: number;
  output: unknown;
  default: boolean;
  default_explanation?: string;
}

/** Client mistakes stay errors; everything else falls back to the default output. */
function isClientError(e: TernError): boolean {
  return e.httpStatus >= 400 && e.httpStatus < 500 && e.code !== 'MODEL_NOT_FOUND' && e.code !== 'VERSION_NOT_FOUND';
}

export class AppRegistry {
  private apps = new Map<string, AppSpec>();
  private nextQueryId = 0;
  error?: string;

  constructor(private readonly core: InferenceCore) {}

  async reload(): Promise<void> {
    try {
      this.apps = new Map((await readApps(this.core.manager.root)).map((a) => [a.name, a]));
      this.error = undefined;
    } catch (e) {
      this.error = (e as Error).message;
      this.core.log.error({ err: this.error }, 'apps.json not loaded; keeping the previous apps');
    }
  }

  list(): AppSpec[] { return [...this.apps.values()]; }

  async predict(name: string, input: unknown): Promise<AppPrediction> {
    const app = this.apps.get(name);
    if (!app) throw new TernError('APP_NOT_FOUND', `unknown application '${name}' (known: ${[...this.apps.keys()].join(', ') || 'none'})`);
    const query_id = this.nextQueryId++;
    const fallback = (why: string): AppPrediction => ({ query_id, output: app.default_output, default: true, default_explanation: why });
    let tensor: Tensor;
    let batched = false;
    try {
      const meta = this.core.modelMetadata(app.model, app.version);
      batched = meta.max_batch_size > 0;
      tensor = this.inputTensor(app, meta, input);
    } catch (err) {
      const e = asTernError(err);
      if (isClientError(e)) throw e;
      return fallback(e.message);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<AppPrediction>((resolve) => {
      timer = setTimeout(() => resolve(fallback(`no answer within the ${app.slo_ms} ms SLO`)), app.slo_ms);
    });
    const inference = this.core
      .infer({ model: app.model, version: app.version, inputs: [tensor], outputs: app.output_name ? [app.output_name] : undefined, deadline: Date.now() + app.slo_ms, protocol: 'clipper' })
      .then((res): AppPrediction => ({ query_id, output: appOutput(res.outputs, app.output_name !== undefined, batched), default: false }))
      .catch((err): AppPrediction => {
        const e = asTernError(err);
        if (isClientError(e)) throw e;
        return fallback(e.message);
      });
    try {
      return await Promise.race([inference, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** One example in, as a batch of one when the model batches. BYTES take raw uploads or base64 strings. */
  private inputTensor(app: AppSpec, meta: ModelMetadata, input: unknown): Tensor {
    const spec = app.input_name ? meta.inputs.find((i) => i.name === app.input_name) : meta.inputs[0];
    if (!spec) throw badRequest(`app '${app.name}': model '${app.model}' has no input '${app.input_name}'`);
    if (meta.inputs.length > 1) throw badRequest(`app '${app.name}': model '${app.model}' takes several inputs; apps feed exactly one`);
    if (spec.datatype === 'BYTES') {
      const bytes = Buffer.isBuffer(input) ? input : typeof input === 'string' ? Buffer.from(input, 'base64') : undefined;
      if (!bytes) throw badRequest(`app '${app.name}' takes bytes: upload them raw or send "input" as a base64 string`);
      return { name: spec.name, datatype: 'BYTES', shape: spec.shape.map(() => 1), data: [bytes] };
    }
    if (input === undefined) throw badRequest('the request needs an "input" field');
    const dims = jsonShape(input);
    const shape = dims.length + 1 === spec.shape.length ? [1, ...dims] : dims;
    return tensorFromJson(spec.name, spec.datatype, shape, input);
  }
}

/**
 * The answer for the one example: the first row of each output when the model
 * batches, else the whole output; one named output gives its value alone.
 */
function appOutput(outputs: Tensor[], single: boolean, batched: boolean): unknown {
  const row = (t: Tensor) => {
    if (!batched) return reshapeJson(tensorToJson(t), t.shape);
    const inner = t.shape.slice(1);
    return reshapeJson(tensorToJson(t).slice(0, elementCount(inner)), inner);
  };
  if (single || outputs.length === 1) return row(outputs[0]);
  return Object.fromEntries(outputs.map((t) => [t.name, row(t)]));
}
