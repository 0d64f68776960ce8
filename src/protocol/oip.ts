/**
 * Open Inference Protocol v2 (KServe / Triton) REST messages. The JSON body of
 * an infer request, with or without the binary tensor data extension. Tensor
 * `data` is validated against the datatype and shape by the tensor codec.
 */
import { z } from 'zod';
import { DataTypeSchema } from './datatypes.js';

/** What `GET /v2` (server metadata) says, from a model server and from a gateway alike. */
export const SERVER_NAME = 'tern';
export const SERVER_VERSION = '0.1.0';
export const SERVER_EXTENSIONS = ['binary_tensor_data', 'model_repository', 'statistics', 'parameters'];

const Parameters = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));

export const OipInputSchema = z.object({
  name: z.string({ error: 'every input needs a string "name"' }).min(1, 'input names must not be empty'),
  shape: z.array(z.number({ error: 'shape entries must be integers' }).int('shape entries must be integers').min(0, 'shape entries must be non-negative')),
  datatype: DataTypeSchema,
  parameters: Parameters.optional(),
  data: z.unknown().optional(),
});

export const OipRequestedOutputSchema = z.object({
  name: z.string().min(1),
  parameters: Parameters.optional(),
});

export const OipInferRequestSchema = z.object({
  id: z.string().optional(),
  parameters: Parameters.optional(),
  inputs: z.array(OipInputSchema).min(1, 'a request needs at least one input'),
  outputs: z.array(OipRequestedOutputSchema).optional(),
});
export type OipInferRequest = z.infer<typeof OipInferRequestSchema>;

export interface OipOutput {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, unknown>;
  data?: unknown[];
}

export interface OipInferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  parameters?: Record<string, unknown>;
  outputs: OipOutput[];
}

/** Header carrying the JSON length when a body mixes JSON and binary tensors. */
export const BINARY_HEADER = 'inference-header-content-length';
