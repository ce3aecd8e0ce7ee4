/**
 * What every benchmark peer shares: its command line and the line it prints
 * when it listens, which the runner waits for.
 *
 * A peer runs one scenario, given as the first argument:
 * - `echo`: every message goes back to its sender with the same opcode.
 * - `broadcast`: connections on `/recv` are receivers; each message from a
 *   connection on `/send` goes to every receiver (not back to the sender),
 *   using the peer's own best broadcast idiom.
 */
export type Scenario = 'echo' | 'broadcast';

/**
 * Whether this run measures permessage-deflate (RFC 7692): the runner sets
 * `BENCH_DEFLATE=1`, each peer turns on its own compression with its own
 * defaults, and says so in its ready line (`perMessageDeflate: true`), which
 * the runner checks.
 */
export const deflate = process.env.BENCH_DEFLATE === '1';

/** Parsed `<scenario> [--port N]` arguments. */
export interface PeerArgs {
  scenario: Scenario;
  port: number;
}

/** Reads the peer's command line; exits with a usage line when it is wrong. */
export function parseArgs(argv: readonly string[] = process.argv.slice(2)): PeerArgs {
  const scenario = argv[0];
  const portIndex = argv.indexOf('--port');
  const port = portIndex >= 0 ? Number(argv[portIndex + 1]) : 0;
  if ((scenario !== 'echo' && scenario !== 'broadcast') || !Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write('usage: <peer> echo|broadcast [--port N]\n');
    process.exit(2);
  }
  return { scenario, port };
}

/** Prints the one JSON line the runner waits for. */
export function ready(port: number, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ ready: true, port, pid: process.pid, ...extra }) + '\n');
}

/** Stops the peer on SIGTERM / SIGINT by calling `stop` and exiting. */
export function onStop(stop: () => unknown): void {
  const bye = (): void => {
    Promise.resolve()
      .then(stop)
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', bye);
  process.once('SIGINT', bye);
}
