/**
 * Finds a Bun binary that runs, for the Bun peer of the load benchmark.
 *
 * The npm package `bun` (a devDependency) carries the binary in a
 * platform package among its optional dependencies
 * (`@oven/bun-linux-x64`, `@oven/bun-linux-aarch64-musl`, ...). Its own
 * `postinstall` only moves that binary over the placeholder
 * `node_modules/bun/bin/bun.exe`, and npm 11 may not run install scripts,
 * so the placeholder alone proves nothing: every candidate is run with
 * `--version` before it is used.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ROOT } from './paths.js';

/** A Bun binary that answered `--version`. */
export interface BunFound {
  ok: true;
  path: string;
  version: string;
  /** Where it was found, for the notes of a run. */
  source: string;
}

/** Why no Bun binary can run here. */
export interface BunMissing {
  ok: false;
  reason: string;
}

/** Runs `path --version`; the version string, or null when it does not run. */
function versionOf(path: string): string | null {
  if (!existsSync(path)) return null;
  // A bounded wait: a broken binary must not hang the benchmark.
  const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  const out = r.status === 0 ? r.stdout.trim() : '';
  return /^\d+\.\d+\.\d+/.test(out) ? out : null;
}

/** Whether this Linux uses musl (no glibc version in Node's report). */
function isMusl(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}

/**
 * The `@oven/bun-*` packages that may hold a binary for this machine, best
 * first. Bun names arm64 `aarch64`; the `-baseline` builds (for x64 CPUs
 * without AVX2) were published by older versions and are tried after the
 * default one.
 */
export function platformPackages(platform: NodeJS.Platform = process.platform, arch: string = process.arch, musl = platform === 'linux' && isMusl()): string[] {
  const cpu = arch === 'arm64' ? 'aarch64' : arch === 'x64' ? 'x64' : null;
  if (!cpu || (platform !== 'linux' && platform !== 'darwin')) return [];
  const base = `@oven/bun-${platform}-${cpu}${musl ? '-musl' : ''}`;
  return cpu === 'x64' ? [base, `${base}-baseline`] : [base];
}

let cached: BunFound | BunMissing | undefined;

/**
 * Looks for Bun, once per process: `node_modules/.bin/bun` (works when the
 * postinstall ran), then the binary inside the platform package (works
 * when it did not), then `bun` on PATH.
 */
export function findBun(): BunFound | BunMissing {
  if (cached) return cached;
  const tried: string[] = [];
  const attempt = (path: string, source: string): BunFound | null => {
    tried.push(path);
    const version = versionOf(path);
    return version ? { ok: true, path, version, source } : null;
  };
  const bin = join(ROOT, 'node_modules/.bin/bun');
  let found = attempt(bin, 'node_modules/.bin/bun');
  const require = createRequire(join(ROOT, 'package.json'));
  for (const pkg of platformPackages()) {
    if (found) break;
    let dir: string;
    try {
      dir = dirname(require.resolve(`${pkg}/package.json`));
    } catch {
      continue; // not installed: npm installs only the package for this platform
    }
    found = attempt(join(dir, 'bin/bun'), `${pkg}/bin/bun`);
  }
  if (!found) {
    const r = spawnSync('bash', ['-c', 'command -v bun'], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) found = attempt(r.stdout.trim(), 'PATH');
  }
  if (found) return (cached = found);
  const wanted = platformPackages();
  const reason = wanted.length
    ? `no Bun binary runs here (tried ${tried.join(', ')}; run \`npm ci\`, which installs ${wanted[0]} through the devDependency \`bun\`)`
    : `Bun publishes no binary for ${process.platform}-${process.arch}`;
  return (cached = { ok: false, reason });
}
