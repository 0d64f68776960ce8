/** Parses a bench's command line; a bad option ends the process with one line naming it (exit 2), no stack trace. */
export function optionsOrExit<T>(bench: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    // node:util's parseArgs explains some mistakes over several lines: keep them on one.
    const message = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
    process.stderr.write(`${bench}: ${message} (see --help)\n`);
    process.exit(2);
  }
}
