/**
 * Programs some tests need that `npm install` cannot bring: Debian's
 * Chromium (browser tests), redis-server and redis-cli (the Redis adapter) and openssl
 * (the wss tests' certificate). On a machine with only Node and npm, a test
 * whose program is missing is skipped, and node:test prints the reason with
 * the command that installs it. With `CI` or `WAVECAST_TEST_ALL=1` set a
 * missing program fails the test instead, so CI (`.ci/run`, which installs
 * them) can never go green by skipping.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** A program looked up on PATH and the Debian package that provides it. */
export interface Program {
  /** The command name searched on PATH. */
  readonly command: string;
  /** The Debian package to `apt-get install`. */
  readonly apt: string;
}

/** Headless Chromium, driven by playwright-core (browser.test.ts, deflate-browser.test.ts). */
export const CHROMIUM: Program = { command: 'chromium', apt: 'chromium' };
/** A private Redis on a free loopback port (redis-adapter.test.ts). */
export const REDIS_SERVER: Program = { command: 'redis-server', apt: 'redis-server' };
/** Creates and inspects the Redis Cluster of redis-cluster.test.ts (Debian ships it apart from the server). */
export const REDIS_CLI: Program = { command: 'redis-cli', apt: 'redis-tools' };
/** Makes the self-signed certificate of the wss tests. */
export const OPENSSL: Program = { command: 'openssl', apt: 'openssl' };

/** The absolute path of `command` on `searchPath` (PATH's syntax), or null. */
export function findOnPath(command: string, searchPath = process.env.PATH ?? ''): string | null {
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '') continue;
    const file = path.join(dir, command);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  return null;
}

/** Whether a missing program must fail rather than skip: `CI` or `WAVECAST_TEST_ALL` set to a true value. */
export function mustRunAll(env: NodeJS.ProcessEnv = process.env): boolean {
  const on = (v: string | undefined): boolean => v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
  return on(env.CI) || on(env.WAVECAST_TEST_ALL);
}

function missing(program: Program): string {
  return `${program.command} is not on PATH; install it with \`apt-get install ${program.apt}\``;
}

/**
 * node:test's `skip` option for a test that needs `program`: a reason (with
 * the install command) when it is missing, `false` when it is there or when
 * {@link mustRunAll} says a missing program fails (then
 * {@link requireProgram} in the test throws).
 */
export function skipWithout(program: Program, env: NodeJS.ProcessEnv = process.env): string | false {
  if (mustRunAll(env) || findOnPath(program.command, env.PATH ?? '') !== null) return false;
  return `${missing(program)} (set WAVECAST_TEST_ALL=1 to fail instead of skipping)`;
}

/** The absolute path of `program`; throws, saying how to install it, when it is missing. */
export function requireProgram(program: Program, env: NodeJS.ProcessEnv = process.env): string {
  const found = findOnPath(program.command, env.PATH ?? '');
  if (found === null) throw new Error(`${missing(program)} (as .ci/run does); the tests never download it`);
  return found;
}
