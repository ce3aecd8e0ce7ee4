/**
 * Why the addon did or did not load (src/native.ts `nativeStatus`): forced
 * off, no build for this platform, a build that fails to load. Each case runs
 * in a child process, since the backend is chosen once per process; the
 * loader is pointed at another folder with `WAVECAST_PREBUILD`, the override
 * node-gyp-build itself documents, so the real loading code runs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { backend, nativeStatus } from '../src/native.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const nativeJs = pathToFileURL(fileURLToPath(new URL('../src/native.js', import.meta.url))).href;
const indexJs = pathToFileURL(fileURLToPath(new URL('../src/index.js', import.meta.url))).href;
const platform = `${process.platform}-${process.arch}`;

/**
 * What a child process reports: the backend, the status (checked equal to
 * what `server.stats().native` says), and what it wrote to stderr.
 */
async function probe(env: Record<string, string>): Promise<{ backend: string; status: typeof nativeStatus; stderr: string }> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['WAVECAST_NO_NATIVE', 'WAVECAST_DEBUG', 'WAVECAST_PREBUILD']) delete childEnv[name];
  // Both modules import native.js; the debug line must still come once.
  const script = `
    const native = await import(${JSON.stringify(nativeJs)});
    const { Server } = await import(${JSON.stringify(indexJs)});
    const stats = new Server({ port: 0 }).stats();
    console.log(JSON.stringify({ backend: native.backend, status: native.nativeStatus, stats: stats.native }));`;
  const { stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...childEnv, ...env },
    timeout: 20_000,
  });
  const out = JSON.parse(stdout) as { backend: string; status: typeof nativeStatus; stats: unknown };
  assert.deepEqual(out.stats, out.status, 'server.stats().native is the same status');
  return { backend: out.backend, status: out.status, stderr };
}

describe('why the addon did or did not load', () => {
  const dirs: string[] = [];
  const tempDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wavecast-addon-'));
    dirs.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('this process: the status agrees with the backend', () => {
    assert.equal(nativeStatus.platform, platform);
    if (backend === 'native') {
      assert.equal(nativeStatus.state, 'loaded');
      assert.ok(nativeStatus.path !== null && existsSync(nativeStatus.path), `${nativeStatus.path} exists`);
    } else {
      assert.notEqual(nativeStatus.state, 'loaded');
      assert.ok(nativeStatus.reason.length > 0);
    }
  });

  test('WAVECAST_NO_NATIVE=1 says it was forced off, and WAVECAST_DEBUG=1 prints that once to stderr', async () => {
    const child = await probe({ WAVECAST_NO_NATIVE: '1', WAVECAST_DEBUG: '1' });
    assert.equal(child.backend, 'js');
    assert.equal(child.status.state, 'disabled');
    assert.equal(child.status.path, null);
    assert.match(child.status.reason, /WAVECAST_NO_NATIVE is set/);
    assert.equal(child.stderr, `wavecast: backend js, addon disabled: ${child.status.reason}\n`);
  });

  test('without WAVECAST_DEBUG nothing is printed', async () => {
    const child = await probe({ WAVECAST_NO_NATIVE: '1' });
    assert.equal(child.status.state, 'disabled');
    assert.equal(child.stderr, '');
  });

  test('no build and no prebuild for this platform: says so, names the platform and how to build one', async () => {
    const child = await probe({ WAVECAST_PREBUILD: tempDir(), WAVECAST_DEBUG: '1' });
    assert.equal(child.backend, 'js');
    assert.equal(child.status.state, 'no-build');
    assert.equal(child.status.path, null);
    assert.ok(child.status.reason.includes(`no prebuild for ${platform}`), child.status.reason);
    assert.match(child.status.reason, /npm run build:native/);
    assert.equal(child.stderr, `wavecast: backend js, addon no-build: ${child.status.reason}\n`);
  });

  // A build that is there but cannot load: a prebuild for another CPU (the
  // real-world case: a copied node_modules), and a file that is no library.
  const foreign = ['linux-arm64', 'linux-x64']
    .filter((p) => p !== platform)
    .map((p) => path.join(root, 'prebuilds', p, 'wavecast.node'))
    .find((file) => existsSync(file));
  const foreignCpu = foreign === undefined ? '' : path.basename(path.dirname(foreign)).replace('linux-', '');
  const broken: [string, (file: string) => void, string][] = [
    ['a file that is not a shared library', (file) => writeFileSync(file, 'not an ELF file\n'), ''],
  ];
  if (foreign !== undefined) {
    broken.push([
      `the prebuild for another CPU (${path.relative(root, foreign)})`,
      (file) => copyFileSync(foreign, file),
      // glibc only says "No such file or directory" for that.
      ` (it is built for ${foreignCpu}, this process is ${process.arch})`,
    ]);
  }

  for (const [what, make, cpuNote] of broken) {
    test(`a build that fails to load (${what}): a load error with the loader's message`, async () => {
      const dir = tempDir();
      mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true });
      const file = path.join(dir, 'build', 'Release', 'wavecast.node');
      make(file);
      const child = await probe({ WAVECAST_PREBUILD: dir, WAVECAST_DEBUG: '1' });
      assert.equal(child.backend, 'js');
      assert.equal(child.status.state, 'load-error');
      assert.equal(child.status.path, file);
      const prefix = `${file} failed to load${cpuNote}: `;
      assert.ok(child.status.reason.startsWith(prefix), child.status.reason);
      assert.ok(child.status.reason.length > prefix.length + 5, 'carries the loader message');
      assert.equal(child.stderr, `wavecast: backend js, addon load-error: ${child.status.reason}\n`);
    });
  }

  test(
    'WAVECAST_DEBUG=1 with the addon loaded prints the file and the SIMD paths',
    { skip: backend === 'native' ? false : `the addon is not loaded here (${nativeStatus.reason})` },
    async () => {
      const child = await probe({ WAVECAST_DEBUG: '1' });
      assert.equal(child.status.state, 'loaded');
      assert.equal(child.status.path, nativeStatus.path);
      assert.match(child.stderr, /^wavecast: backend native, addon loaded: loaded \S+wavecast\.node \(SIMD: mask \w+, utf8 \w+\)\n$/);
    },
  );
});
