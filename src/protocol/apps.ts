/**
 * `<repo>/apps.json`: Clipper-style applications. An application links a
 * public name to a model and promises an answer within `slo_ms`: when the model
 * cannot answer in time the `default_output` is returned instead of an error.
 */
import { z } from 'zod';

export const AppSpecSchema = z.object({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'app names may hold letters, digits, _ . -'),
  model: z.string().min(1),
  version: z.string().optional(),
  slo_ms: z.number().positive().default(100),
  default_output: z.unknown().default(null),
  /** Which model input the app's `input` feeds and which output it returns; default: the first. */
  input_name: z.string().optional(),
  output_name: z.string().optional(),
}).strict();
export type AppSpec = z.infer<typeof AppSpecSchema>;

export const AppsFileSchema = z.object({ apps: z.array(AppSpecSchema) }).strict();
export type AppsFile = z.infer<typeof AppsFileSchema>;
