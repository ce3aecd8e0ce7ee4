/**
 * The package as a user gets it. Its file list is the committed one
 * (test/package-files.txt). `npm pack`, then install the tarball into an
 * empty project with its dependencies (node-addon-api, node-gyp-build)
 * packed from this project's own node_modules, `--offline` and with an empty
 * npm cache of its own: so the test needs neither the registry nor a warm
 * cache. The installed copy loads its committed prebuild (not a compile),
 * its `wavecast` command runs, and its source maps carry their sources.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));
const platform = `${process.platform}-${process.arch}`;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const EXPECTED_FILES = path.join(root, 'test', 'package-files.txt');
/** The platforms the package ships a prebuild for. */
const PREBUILT = ['linux-arm64', 'linux-x64'];

/** What the probe prints from inside the installed copy. */
const PROBE = `
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
const require = createRequire(path.join(process.cwd(), 'index.js'));
const pkg = path.dirname(require.resolve('wavecast/package.json'));
const native = await import(pathToFileURL(path.join(pkg, 'dist/src/native.js')).href);
console.log(JSON.stringify({ pkg, backend: native.backend, status: native.nativeStatus, writeBatch: typeof native.writeBatch }));
`;

interface Probe {
  pkg: string;
  backend: string;
  status: { state: string; path: string | null; reason: string };
  writeBatch: string;
}

/** The environment of every npm call here: an empty cache of its own, nothing forced off. */
function npmEnv(cache: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_cache: cache, npm_config_update_notifier: 'false' };
  delete env.WAVECAST_NO_NATIVE;
  delete env.WAVECAST_PREBUILD;
  return env;
}

describe('the package', () => {
  let dir: string;
  before(async () => {
    assert.ok(existsSync(path.join(root, 'dist/src/native.js')), 'npm run build ran first');
    dir = await mkdtemp(path.join(tmpdir(), 'wavecast-pack-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('ships exactly the files in test/package-files.txt', async () => {
    const { stdout } = await run(npm, ['pack', '--dry-run', '--json', '--loglevel=error'], {
      cwd: root,
      env: npmEnv(path.join(dir, 'cache-list')),
      timeout: 60_000,
    });
    const packed = (JSON.parse(stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path).sort();
    const expected = readFileSync(EXPECTED_FILES, 'utf8').split('\n').filter((line) => line !== '').sort();
    const added = packed.filter((f) => !expected.includes(f));
    const missing = expected.filter((f) => !packed.includes(f));
    assert.deepEqual(
      { added, missing },
      { added: [], missing: [] },
      `the packed files differ from ${path.relative(root, EXPECTED_FILES)}: update it if the change is meant`,
    );
    for (const file of ['LICENSE', 'README.md', 'dist/src/cli.js', ...PREBUILT.map((p) => `prebuilds/${p}/wavecast.node`)]) {
      assert.ok(packed.includes(file), `ships ${file}`);
    }
  });

  test(
    'installs offline from an empty npm cache into an empty project, loads the prebuild and runs its command',
    { skip: PREBUILT.includes(platform) ? false : `the package ships prebuilds for ${PREBUILT.join(' and ')}, this is ${platform}`, timeout: 120_000 },
    async () => {
      const env = npmEnv(path.join(dir, 'cache-install'));
      const tarballs = path.join(dir, 'tarballs');
      await mkdir(tarballs);
      const pack = async (what: string): Promise<string> => {
        const { stdout } = await run(npm, ['pack', '--silent', '--pack-destination', tarballs, what], { cwd: root, env, timeout: 60_000 });
        return path.join(tarballs, stdout.trim().split('\n').pop() as string);
      };
      const own = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
      // The dependencies as this project has them installed (the lockfile's versions).
      const deps = await Promise.all(Object.keys(own.dependencies).map((name) => pack(path.join(root, 'node_modules', name))));
      const tarball = await pack(root);

      const project = path.join(dir, 'project');
      await mkdir(project);
      await writeFile(
        path.join(project, 'package.json'),
        JSON.stringify({ name: 'wavecast-probe', version: '1.0.0', private: true, type: 'module' }),
      );
      await writeFile(path.join(project, 'probe.mjs'), PROBE);
      await run(npm, ['install', '--offline', '--no-audit', '--no-fund', tarball, ...deps], { cwd: project, env, timeout: 90_000 });

      const installed = path.join(project, 'node_modules/wavecast');
      assert.ok((await readdir(path.join(installed, 'prebuilds', platform))).some((f) => f.endsWith('.node')), 'ships the prebuild');
      assert.ok(!existsSync(path.join(installed, 'build')), 'did not compile: a prebuild fits');

      const out = await run(process.execPath, ['probe.mjs'], { cwd: project, env, timeout: 15_000 });
      const probe = JSON.parse(out.stdout) as Probe;
      assert.equal(probe.backend, 'native', probe.status.reason);
      assert.equal(probe.status.state, 'loaded');
      assert.equal(probe.writeBatch, 'function');
      assert.equal(probe.status.path, path.join(probe.pkg, 'prebuilds', platform, 'wavecast.node'));

      const js = await run(process.execPath, ['probe.mjs'], { cwd: project, env: { ...env, WAVECAST_NO_NATIVE: '1' }, timeout: 15_000 });
      assert.equal((JSON.parse(js.stdout) as Probe).backend, 'js', 'WAVECAST_NO_NATIVE=1 forces the JS fallback');

      // npx wavecast: the bin is linked and runs from the installed copy.
      const help = await run(path.join(project, 'node_modules/.bin/wavecast'), ['--help'], { cwd: project, env, timeout: 15_000 });
      assert.match(help.stdout, /^Usage: wavecast <command>/);

      // Every source map a shipped file names ships too, with its sources inside:
      // the maps' src/*.ts paths are not in the package.
      let maps = 0;
      const walk = async (folder: string): Promise<void> => {
        for (const entry of await readdir(folder, { withFileTypes: true })) {
          const file = path.join(folder, entry.name);
          if (entry.isDirectory()) await walk(file);
          else if (entry.name.endsWith('.js')) {
            const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(await readFile(file, 'utf8'))?.[1];
            if (url === undefined) continue;
            const mapFile = path.join(folder, url);
            assert.ok(existsSync(mapFile), `${path.relative(installed, file)} names ${url}, which ships`);
            const map = JSON.parse(await readFile(mapFile, 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
            map.sources.forEach((source, i) => {
              assert.ok(
                typeof map.sourcesContent?.[i] === 'string' || existsSync(path.resolve(folder, source)),
                `${path.relative(installed, mapFile)}: ${source} is neither inlined nor shipped`,
              );
            });
            maps++;
          }
        }
      };
      await walk(path.join(installed, 'dist'));
      assert.ok(maps > 10, `checked the maps (${maps})`);
    },
  );
});
