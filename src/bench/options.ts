/** Parses a bench's command line; a bad option ends the process with one line naming it (exit 2), no stack trace. */
export function optionsOrExit<T>(bench: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    process.stderr.write(`${bench}: ${err instanceof Error ? err.message : String(err)} (see --help)\n`);
    process.exit(2);
  }
}
