/**
 * The rule for tests that need a program npm cannot install (programs.ts):
 * skipped with the install command when it is missing, failed instead under
 * CI or WAVECAST_TEST_ALL, run when it is there.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { findOnPath, mustRunAll, requireProgram, skipWithout, type Program } from './programs.js';

describe('programs the tests need', () => {
  const empty = mkdtempSync(path.join(tmpdir(), 'wavecast-path-empty-'));
  const bin = mkdtempSync(path.join(tmpdir(), 'wavecast-path-bin-'));
  const tool = path.join(bin, 'wavecast-fake-tool');
  writeFileSync(tool, '#!/bin/sh\n');
  chmodSync(tool, 0o755);
  writeFileSync(path.join(bin, 'not-executable'), '');
  after(() => {
    rmSync(empty, { recursive: true, force: true });
    rmSync(bin, { recursive: true, force: true });
  });
  const program: Program = { command: 'wavecast-fake-tool', apt: 'wavecast-fake-package' };

  test('finds an executable on PATH, in PATH order, and nothing that is missing or not executable', () => {
    assert.equal(findOnPath('wavecast-fake-tool', [empty, bin].join(path.delimiter)), tool);
    assert.equal(findOnPath('wavecast-fake-tool', empty), null);
    assert.equal(findOnPath('not-executable', bin), null);
    assert.equal(findOnPath('wavecast-fake-tool', ''), null);
  });

  test('a missing program skips with the apt-get command, outside CI', () => {
    const reason = skipWithout(program, { PATH: empty });
    assert.equal(typeof reason, 'string');
    assert.match(reason as string, /wavecast-fake-tool is not on PATH/);
    assert.match(reason as string, /apt-get install wavecast-fake-package/);
  });

  test('under CI or WAVECAST_TEST_ALL a missing program does not skip, and requireProgram throws', () => {
    for (const env of [{ CI: 'true' }, { CI: '1' }, { WAVECAST_TEST_ALL: '1' }]) {
      assert.equal(mustRunAll(env), true, JSON.stringify(env));
      assert.equal(skipWithout(program, { ...env, PATH: empty }), false, JSON.stringify(env));
    }
    for (const env of [{}, { CI: '' }, { CI: 'false' }, { WAVECAST_TEST_ALL: '0' }]) {
      assert.equal(mustRunAll(env), false, JSON.stringify(env));
    }
    assert.throws(() => requireProgram(program, { PATH: empty }), /apt-get install wavecast-fake-package/);
  });

  test('a program that is there runs, and requireProgram gives its path', () => {
    assert.equal(skipWithout(program, { PATH: bin }), false);
    assert.equal(requireProgram(program, { PATH: bin }), tool);
  });
});
