/**
 * TensorFlow Serving's REST API (status, metadata, predict in row and columnar
 * form) over the same core, so TF Serving clients work unchanged. TF Serving
 * leaves dtypes to the model signature, so JSON values take the model's dtype.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { DATATYPE_INFO } from '../../protocol/datatypes.js';
import { TernError, badRequest } from '../../protocol/errors.js';
import type { TensorSpec } from '../../protocol/model-config.js';
import type { InferenceCore } from '../core/inference-core.js';
import type { VersionState } from '../core/model-version.js';
import { elementCount, jsonShape, reshapeJson, tensorFromJson, tensorToJson } from '../core/tensor-codec.js';
import type { Tensor } from '../core/types.js';
import { parseJson, parseWith } from './json-body.js';

interface Params { model: string; version?: string }

const TF_STATE: Record<VersionState, string> = {
  LOADING: 'LOADING', READY: 'AVAILABLE', UNAVAILABLE: 'END', UNLOADING: 'UNLOADING', UNLOADED: 'END',
};

const PredictSchema = z.object({
  signature_name: z.string().optional(),
  instances: z.array(z.unknown()).min(1, 'instances must not be empty').optional(),
  inputs: z.unknown().optional(),
}).refine((b) => (b.instances === undefined) !== (b.inputs === undefined), {
  message: 'give exactly one of "instances" (row format) or "inputs" (columnar format)',
});

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !('b64' in (v as object));
}

function tensorFor(spec: TensorSpec, value: unknown, shape: number[]): Tensor {
  return tensorFromJson(spec.name, spec.datatype, shape, value);
}

/** Row format: each instance is one example (a value, or an object of named inputs). */
function fromInstances(specs: TensorSpec[], instances: unknown[]): Tensor[] {
  const named = isObject(instances[0]);
  if (!named && specs.length !== 1) {
    throw badRequest(`the model takes ${specs.length} inputs (${specs.map((s) => s.name).join(', ')}): each instance must be an object naming them`);
  }
  return specs.map((spec) => {
    const values = instances.map((inst, i) => {
      if (!named) return inst;
      if (!isObject(inst) || !(spec.name in inst)) throw badRequest(`instance ${i} has no input '${spec.name}'`);
      return inst[spec.name];
    });
    return tensorFor(spec, values, [values.length, ...jsonShape(values[0])]);
  });
}

/** Columnar format: `inputs` is the tensor (single input) or an object of named tensors. */
function fromColumns(specs: TensorSpec[], inputs: unknown): Tensor[] {
  if (!isObject(inputs)) {
    if (specs.length !== 1) throw badRequest(`the model takes ${specs.length} inputs: "inputs" must be an object naming them`);
    return [tensorFor(specs[0], inputs, jsonShape(inputs))];
  }
  for (const name of Object.keys(inputs)) {
    if (!specs.some((s) => s.name === name)) throw badRequest(`unexpected input '${name}' (model takes: ${specs.map((s) => s.name).join(', ')})`);
  }
  return specs.filter((s) => s.name in inputs).map((s) => tensorFor(s, inputs[s.name], jsonShape(inputs[s.name])));
}

function toPredictions(outputs: Tensor[], rows: number): unknown[] {
  const perRow = outputs.map((t) => {
    const flat = tensorToJson(t);
    const inner = t.shape.slice(1);
    const step = elementCount(inner);
    return (r: number) => reshapeJson(flat.slice(r * step, (r + 1) * step), inner);
  });
  return Array.from({ length: rows }, (_, r) =>
    outputs.length === 1 ? perRow[0](r) : Object.fromEntries(outputs.map((t, k) => [t.name, perRow[k](r)])));
}

function toOutputs(outputs: Tensor[]): unknown {
  const value = (t: Tensor) => reshapeJson(tensorToJson(t), t.shape);
  return outputs.length === 1 ? value(outputs[0]) : Object.fromEntries(outputs.map((t) => [t.name, value(t)]));
}

const PREDICT_PATH = /^([^/:]+)(?:\/versions\/([^/:]+))?:(predict|classify|regress)$/;

function parsePredictPath(tail: string): Params {
  const m = PREDICT_PATH.exec(tail);
  if (!m) throw new TernError('ROUTE_NOT_FOUND', `no route for POST /v1/models/${tail} (expected /v1/models/{model}[/versions/{version}]:predict)`);
  if (m[3] !== 'predict') throw new TernError('ROUTE_NOT_FOUND', `:${m[3]} is not supported; tern serves :predict`);
  return { model: m[1], version: m[2] };
}

function signatureTensor(spec: TensorSpec) {
  return { dtype: DATATYPE_INFO[spec.datatype].tf, tensor_shape: { dim: spec.shape.map((d) => ({ size: String(d), name: '' })), unknown_rank: false }, name: spec.name };
}

export function registerTfServingRoutes(app: FastifyInstance, core: InferenceCore): void {
  const status = async (req: FastifyRequest<{ Params: Params }>) => {
    const entry = core.requireModel(req.params.model);
    if (req.params.version !== undefined && !entry.versions.has(req.params.version)) {
      throw new TernError('VERSION_NOT_FOUND', `model '${entry.name}' has no version '${req.params.version}' (served: ${[...entry.versions.keys()].join(', ') || 'none'})`);
    }
    const versions = core.modelStatus().find((m) => m.name === entry.name)!.versions
      .filter((v) => req.params.version === undefined || v.version === req.params.version);
    return {
      model_version_status: versions.map((v) => ({
        version: v.version, state: TF_STATE[v.state],
        status: { error_code: v.reason ? 'UNKNOWN' : 'OK', error_message: v.reason ?? '' },
      })),
    };
  };
  app.get('/v1/models/:model', status);
  app.get('/v1/models/:model/versions/:version', status);

  const metadata = async (req: FastifyRequest<{ Params: Params }>) => {
    const m = core.modelMetadata(req.params.model, req.params.version);
    const named = (specs: TensorSpec[]) => Object.fromEntries(specs.map((s) => [s.name, signatureTensor(s)]));
    return {
      model_spec: { name: m.name, signature_name: '', version: m.version },
      metadata: { signature_def: { signature_def: { serving_default: { inputs: named(m.inputs), outputs: named(m.outputs), method_name: 'tensorflow/serving/predict' } } } },
    };
  };
  app.get('/v1/models/:model/metadata', metadata);
  app.get('/v1/models/:model/versions/:version/metadata', metadata);

  const predict = async (req: FastifyRequest<{ Params: { '*': string } }>) => {
    const target = parsePredictPath(req.params['*']);
    const body = parseWith(PredictSchema, parseJson(req.body), 'predict request');
    const m = core.modelMetadata(target.model, target.version);
    const inputs = body.instances ? fromInstances(m.inputs, body.instances) : fromColumns(m.inputs, body.inputs);
    const res = await core.infer({ model: m.name, version: target.version, inputs, protocol: 'tfserving' });
    return body.instances ? { predictions: toPredictions(res.outputs, body.instances.length) } : { outputs: toOutputs(res.outputs) };
  };
  // TF Serving puts the verb after a colon (`iris:predict`), which router path
  // parameters cannot express, so the tail of the path is parsed here.
  app.post('/v1/models/*', predict);
}
