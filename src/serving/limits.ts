/** Serving defaults shared by the server and the CLI (kept apart so the CLI need not load fastify to show them). */
export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
