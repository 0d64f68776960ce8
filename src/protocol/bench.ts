/**
 * The files `tern bench load` and `tern bench experiment` write (JSON), read
 * back by the experiment's report and plots and by the dashboard's benchmark
 * page: one schema for all of them.
 */
import { z } from 'zod';

export const BenchProtocolSchema = z.enum(['rest', 'rest-binary', 'grpc']);
export type BenchProtocol = z.infer<typeof BenchProtocolSchema>;

export const HostStatsSchema = z.object({
  host: z.string(),
  /** Percent of one core (200 = two cores busy). */
  cpu_percent_mean: z.number().nullable(),
  cpu_percent_max: z.number().nullable(),
  memory_mb_mean: z.number(),
  memory_mb_max: z.number(),
  samples: z.number().int(),
});

/** One load step: closed-loop users or an open-loop Poisson rate. */
export const LoadStepSchema = z.object({
  mode: z.enum(['closed', 'open']),
  users: z.number().int().positive().optional(),
  rate_rps: z.number().positive().optional(),
  requests: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  errors_by_kind: z.record(z.string(), z.number().int()),
  first_error: z.string().optional(),
  seconds: z.number().nonnegative(),
  throughput_rps: z.number().nonnegative(),
  mean_ms: z.number(),
  stdev_ms: z.number(),
  p50_ms: z.number(),
  p90_ms: z.number(),
  p99_ms: z.number(),
  max_ms: z.number(),
  hosts: z.array(HostStatsSchema).default([]),
});
export type LoadStep = z.infer<typeof LoadStepSchema>;

export const LoadReportSchema = z.object({
  kind: z.literal('tern-bench-load'),
  target: z.string(),
  model: z.string(),
  protocol: BenchProtocolSchema,
  inputs: z.string(),
  warmup_s: z.number(),
  duration_s: z.number(),
  host_stats: z.string().optional(),
  machine: z.record(z.string(), z.unknown()),
  started_at: z.string(),
  steps: z.array(LoadStepSchema),
});
export type LoadReport = z.infer<typeof LoadReportSchema>;

/** One cell of the edge-vs-cloud matrix. */
export const ExperimentCellSchema = LoadStepSchema.extend({
  experiment: z.enum(['matrix', 'cache']),
  model: z.string(),
  site: z.string(),
  replicas: z.number().int().positive(),
  cache: z.boolean(),
});
export type ExperimentCell = z.infer<typeof ExperimentCellSchema>;

export const FindingSchema = z.object({
  finding: z.string(),
  /** null: the run lacks the cells to judge it. */
  reproduced: z.boolean().nullable(),
  evidence: z.string(),
});
export type Finding = z.infer<typeof FindingSchema>;

export const ExperimentReportSchema = z.object({
  kind: z.literal('tern-bench-experiment'),
  experiment: z.literal('edge-vs-cloud'),
  started_at: z.string(),
  finished_at: z.string(),
  environment: z.object({
    mode: z.enum(['lab', 'fleet']),
    target: z.string(),
    control: z.string(),
    protocol: BenchProtocolSchema,
    shaping: z.string().optional(),
    links: z.array(z.string()).default([]),
    hosts: z.array(z.string()).default([]),
  }),
  settings: z.object({
    models: z.array(z.string()),
    users: z.array(z.number().int()),
    replicas: z.array(z.number().int()),
    sites: z.array(z.string()),
    warmup_s: z.number(),
    duration_s: z.number(),
    cache: z.boolean(),
  }),
  machine: z.record(z.string(), z.unknown()),
  cells: z.array(ExperimentCellSchema),
  findings: z.array(FindingSchema),
});
export type ExperimentReport = z.infer<typeof ExperimentReportSchema>;
