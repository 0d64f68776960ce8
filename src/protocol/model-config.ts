/**
 * `<repo>/<model>/config.json`: how a model is served. Shapes follow Triton's
 * convention: when `max_batch_size > 0` the shapes listed here leave out the
 * leading batch dimension, which the server adds (as -1) in model metadata.
 */
import { z } from 'zod';
import { DataTypeSchema } from './datatypes.js';

export const TensorSpecSchema = z.object({
  name: z.string().min(1),
  datatype: DataTypeSchema,
  /** -1 marks a variable dimension. */
  shape: z.array(z.number().int().min(-1)),
});
export type TensorSpec = z.infer<typeof TensorSpecSchema>;

export const DynamicBatchingSchema = z.object({
  max_queue_delay_us: z.number().int().min(0).default(0),
  preferred_batch_sizes: z.array(z.number().int().positive()).default([]),
  /** Requests waiting beyond this answer 503. 0 = unbounded. */
  max_queue_size: z.number().int().min(0).default(1024),
}).strict();

export const AdaptiveBatchingSchema = z.object({
  /** Keep the latency of one batch under this (Clipper's AIMD). */
  slo_ms: z.number().positive(),
  /** Additive increase step and multiplicative decrease factor. */
  additive_step: z.number().int().positive().default(2),
  backoff_factor: z.number().gt(0).lt(1).default(0.9),
  max_queue_size: z.number().int().min(0).default(1024),
}).strict();

export const VersionPolicySchema = z.union([
  z.object({ latest: z.object({ num_versions: z.number().int().positive() }).strict() }).strict(),
  z.object({ all: z.object({}).strict() }).strict(),
  z.object({ specific: z.object({ versions: z.array(z.number().int().positive()).min(1) }).strict() }).strict(),
]);
export type VersionPolicy = z.infer<typeof VersionPolicySchema>;

export const ModelConfigSchema = z.object({
  /** Defaults to the directory name; must match it when given. */
  name: z.string().optional(),
  /** Which model runtime executes it: `onnx` (default) or a pipeline such as `ocr`. */
  backend: z.string().default('onnx'),
  platform: z.string().optional(),
  max_batch_size: z.number().int().min(0).default(0),
  inputs: z.array(TensorSpecSchema).optional(),
  outputs: z.array(TensorSpecSchema).optional(),
  dynamic_batching: DynamicBatchingSchema.optional(),
  adaptive_batching: AdaptiveBatchingSchema.optional(),
  /** Number of inference sessions (Triton's instance_group count). */
  instances: z.number().int().positive().default(1),
  /**
   * Where sessions run: `thread` (a worker thread each, the default) or `inline`
   * on the main thread, for models so fast that the thread hop dominates.
   */
  execution: z.enum(['thread', 'inline']).default('thread'),
  /** Threads per session (ONNX Runtime intra-op). 0 = runtime default. */
  threads: z.number().int().min(0).default(1),
  version_policy: VersionPolicySchema.default({ latest: { num_versions: 1 } }),
  cache: z.object({ max_bytes: z.number().int().positive() }).strict().optional(),
  /** Free-form settings for a backend (e.g. the OCR pipeline's component models). */
  parameters: z.record(z.string(), z.unknown()).optional(),
}).strict();

export type ModelConfigInput = z.input<typeof ModelConfigSchema>;
export type ModelConfig = z.infer<typeof ModelConfigSchema>;
