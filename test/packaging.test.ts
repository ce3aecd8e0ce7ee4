/**
 * The package as a user gets it: `npm pack`, install the tarball into an
 * empty project (offline: its only dependencies, node-addon-api and
 * node-gyp-build, come from the npm cache), load the installed copy and see
 * the committed linux-x64 prebuild, not a compile, give the native backend.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const platform = `${process.platform}-${process.arch}`;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** What the probe prints from inside the installed copy. */
const PROBE = `
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
const require = createRequire(path.join(process.cwd(), 'index.js'));
const pkg = path.dirname(require.resolve('wavecast/package.json'));
const native = await import(pathToFileURL(path.join(pkg, 'dist/src/native.js')).href);
const gypBuild = createRequire(path.join(pkg, 'package.json'))('node-gyp-build');
let loaded = null;
try { loaded = gypBuild.path(pkg); } catch {}
console.log(JSON.stringify({ pkg, backend: native.backend, loaded, writeBatch: typeof native.writeBatch }));
`;

interface Probe {
  pkg: string;
  backend: string;
  loaded: string | null;
  writeBatch: string;
}

test(
  'the packed tarball installs offline into an empty project and loads the prebuilt addon',
  { skip: platform === 'linux-x64' ? false : `the committed prebuild is linux-x64, this is ${platform}`, timeout: 90_000 },
  async () => {
    assert.ok(existsSync(path.join(root, 'dist/src/native.js')), 'npm run build ran first');
    const dir = await mkdtemp(path.join(tmpdir(), 'wavecast-pack-'));
    try {
      const packed = await run(npm, ['pack', '--silent', '--pack-destination', dir], { cwd: root, timeout: 30_000 });
      const tarball = path.join(dir, packed.stdout.trim().split('\n').pop() as string);
      assert.ok(existsSync(tarball), `npm pack wrote ${tarball}`);

      const project = path.join(dir, 'project');
      await mkdir(project);
      await writeFile(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'wavecast-probe', version: '1.0.0', private: true, type: 'module' }),
      );
      await writeFile(path.join(project, 'probe.mjs'), PROBE);
      await run(npm, ['install', '--offline', '--no-audit', '--no-fund', tarball], { cwd: project, timeout: 45_000 });

      const installed = path.join(project, 'node_modules/wavecast');
      for (const file of ['binding.gyp', 'native/addon.cc', 'native/mask.cc', 'native/utf8.cc', 'dist/src/native.js']) {
        assert.ok(existsSync(path.join(installed, file)), `ships ${file}`);
      }
      assert.ok((await readdir(path.join(installed, 'prebuilds', platform))).some((f) => f.endsWith('.node')), 'ships the prebuild');
      assert.ok(!existsSync(path.join(installed, 'build')), 'did not compile: a prebuild fits');

      const env = { ...process.env };
      delete env.WAVECAST_NO_NATIVE;
      const out = await run(process.execPath, ['probe.mjs'], { cwd: project, env, timeout: 15_000 });
      const probe = JSON.parse(out.stdout) as Probe;
      assert.equal(probe.backend, 'native');
      assert.equal(probe.writeBatch, 'function');
      assert.equal(probe.loaded, path.join(probe.pkg, 'prebuilds', platform, 'wavecast.node'));

      const js = await run(process.execPath, ['probe.mjs'], { cwd: project, env: { ...env, WAVECAST_NO_NATIVE: '1' }, timeout: 15_000 });
      assert.equal((JSON.parse(js.stdout) as Probe).backend, 'js', 'WAVECAST_NO_NATIVE=1 forces the JS fallback');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
);
