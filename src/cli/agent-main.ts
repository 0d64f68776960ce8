#!/usr/bin/env -S node --lite-mode --max-semi-space-size=1
/**
 * `tern-agent`: `tern agent` with V8's lite mode on from the process's first
 * instruction (the flags are LEAN_V8_FLAGS in agent/footprint.ts). Set at run
 * time instead, as `tern agent` does, lite mode comes after V8 has already
 * compiled the CLI with its optimizing tiers, whose code pages then stay
 * resident: measured 62 MB idle RSS that way against 56 MB this way.
 * The `./tern` wrapper starts `./tern agent` with the same flags.
 */
process.argv.splice(2, 0, 'agent');
await import('./main.js');
