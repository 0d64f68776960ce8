/**
 * Translates OIP v2 REST infer requests and responses (JSON and the binary
 * tensor data extension) to and from the core's tensors.
 */
import { BINARY_HEADER, OipInferRequestSchema, type OipInferResponse, type OipOutput } from '../../protocol/oip.js';
import { badTensor } from '../../protocol/errors.js';
import { tensorFromJson, tensorFromRaw, tensorToJson, tensorToRaw } from '../core/tensor-codec.js';
import type { InferRequest, InferResponse, Tensor } from '../core/types.js';
import { BinaryReader, joinBinaryBody, splitBinaryBody } from './binary-extension.js';
import { parseJson, parseWith } from './json-body.js';

export interface DecodedOipRequest {
  request: InferRequest;
  /** Output name -> send as binary. */
  binaryOutputs: Map<string, boolean>;
  binaryByDefault: boolean;
}

/** Triton's `timeout` request parameter is in microseconds. */
function deadlineFrom(parameters: Record<string, unknown> | undefined): number | undefined {
  const t = parameters?.timeout;
  if (t === undefined) return undefined;
  if (typeof t !== 'number' || !(t > 0)) throw badTensor(`parameter 'timeout' must be a positive number of microseconds, got ${JSON.stringify(t)}`);
  return Date.now() + t / 1000;
}

export function decodeOipRequest(model: string, version: string | undefined, body: Buffer, headers: Record<string, string | string[] | undefined>): DecodedOipRequest {
  const { json, binary } = splitBinaryBody(body, headers[BINARY_HEADER]);
  const req = parseWith(OipInferRequestSchema, parseJson(json), 'inference request');
  const reader = new BinaryReader(binary);
  const inputs: Tensor[] = req.inputs.map((input) => {
    const size = input.parameters?.binary_data_size;
    if (size !== undefined) {
      if (input.data !== undefined) throw badTensor(`input '${input.name}' has both binary_data_size and JSON data`);
      return tensorFromRaw(input.name, input.datatype, input.shape, reader.take(input.name, size));
    }
    if (input.data === undefined) throw badTensor(`input '${input.name}' has no data (give "data" or parameters.binary_data_size)`);
    return tensorFromJson(input.name, input.datatype, input.shape, input.data);
  });
  reader.finish();
  const binaryOutputs = new Map<string, boolean>();
  for (const o of req.outputs ?? []) {
    if (o.parameters?.binary_data !== undefined) binaryOutputs.set(o.name, o.parameters.binary_data === true);
  }
  return {
    request: {
      model, version, inputs,
      ...(req.id !== undefined ? { id: req.id } : {}),
      outputs: req.outputs?.map((o) => o.name),
      deadline: deadlineFrom(req.parameters),
    },
    binaryOutputs,
    binaryByDefault: req.parameters?.binary_data_output === true,
  };
}

export interface EncodedResponse {
  body: Buffer | OipInferResponse;
  /** Set when the body mixes JSON and binary outputs. */
  headerLength?: number;
}

export function encodeOipResponse(res: InferResponse, decoded: DecodedOipRequest): EncodedResponse {
  const blobs: Buffer[] = [];
  const outputs: OipOutput[] = res.outputs.map((t) => {
    const binary = decoded.binaryOutputs.get(t.name) ?? decoded.binaryByDefault;
    const base = { name: t.name, datatype: t.datatype, shape: t.shape };
    if (!binary) return { ...base, data: tensorToJson(t) };
    const raw = tensorToRaw(t);
    blobs.push(raw);
    return { ...base, parameters: { binary_data_size: raw.length } };
  });
  const header: OipInferResponse = {
    model_name: res.model, model_version: res.version,
    ...(res.id !== undefined ? { id: res.id } : {}),
    outputs,
  };
  if (blobs.length === 0) return { body: header };
  const { body, headerLength } = joinBinaryBody(header, blobs);
  return { body, headerLength };
}
