/**
 * The load benchmark's matrix and report, without sockets: which cells a
 * run selects (broadcast windows 1, 16 and 64), and how server CPU per unit
 * and the "best of uWS.js and Bun" ratios are taken from the runs.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { platformPackages } from '../bench/bun-binary.js';
import { PEERS } from '../bench/harness.js';
import type { LoadResult } from '../bench/harness.js';
import { buildCells, cpuPerUnitOf, cpuTable, summaryTable } from '../bench/report.js';
import type { Outcome } from '../bench/report.js';
import { parseSettings, scenarios } from '../bench/scenarios.js';

/** Equal within floating-point rounding (CPU figures are quotients). */
function near(actual: number | null | undefined, expected: number): void {
  assert.ok(typeof actual === 'number' && Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${String(actual)} ≈ ${expected}`);
}

const ids = (argv: string[]): string[] => scenarios(parseSettings(argv)).map((s) => s.id);

describe('the load benchmark matrix', () => {
  it('runs every broadcast cell at windows 1, 16 and 64 in the full run', () => {
    const all = ids([]);
    for (const receivers of [1000, 10000]) {
      for (const size of [32, 1024]) {
        for (const w of [1, 16, 64]) assert.ok(all.includes(`broadcast-${receivers}-${size}-w${w}`), `${receivers} x ${size} at window ${w}`);
      }
    }
    assert.ok(all.includes('broadcast-deflate-1000-1024-w16'));
    assert.ok(all.includes('connect-10000'));
  });

  it('covers the three windows for 1,000 receivers in the quick run and keeps 10,000 at 16', () => {
    const quick = ids(['--quick']).filter((id) => id.startsWith('broadcast-') && !id.includes('deflate'));
    assert.deepEqual(quick, [
      'broadcast-1000-32-w1',
      'broadcast-1000-32-w16',
      'broadcast-1000-32-w64',
      'broadcast-1000-1024-w1',
      'broadcast-1000-1024-w16',
      'broadcast-1000-1024-w64',
      'broadcast-10000-32-w16',
      'broadcast-10000-1024-w16',
    ]);
  });

  it('runs only the windows given by --window, and rejects a window that is not positive', () => {
    const broadcast = ids(['--window', '4,32']).filter((id) => id.startsWith('broadcast-'));
    assert.ok(broadcast.length > 0);
    for (const id of broadcast) assert.match(id, /-w(4|32)$/);
    assert.throws(() => parseSettings(['--window', '16,0']), RangeError);
  });

  it('selects an exact id alone, and every id containing a term that is not one', () => {
    assert.deepEqual(ids(['--only', 'broadcast-1000-32-w1']), ['broadcast-1000-32-w1']);
    assert.deepEqual(ids(['--only', 'broadcast-1000-32']), ['broadcast-1000-32-w1', 'broadcast-1000-32-w16', 'broadcast-1000-32-w64']);
    assert.deepEqual(ids(['--only', 'echo-c100-d10-32,connect']), ['echo-c100-d10-32', 'connect-10000']);
  });
});

/** A clean run's outcome with the fields the report reads. */
function run(fields: Partial<LoadResult>): Outcome {
  return { ok: true, result: { mode: 'broadcast', conns: 1000, error: null, cpu_pct: 50, ...fields } };
}

describe('the load benchmark report', () => {
  it('gives server CPU per million messages and per 1,000 handshakes, none for a failed run', () => {
    const [echo] = scenarios(parseSettings(['--only', 'echo-c100-d1-32']));
    const connect = scenarios(parseSettings(['--only', 'connect-10000']))[0]!;
    near(cpuPerUnitOf(echo!.rows[0]!.cpu, run({ server_cpu_s: 0.5, messages: 250_000 })), 2);
    near(cpuPerUnitOf(connect.rows[0]!.cpu, run({ server_cpu_s: 0.4, opened: 10_000 })), 0.04);
    assert.equal(cpuPerUnitOf(connect.rows[1]!.cpu, run({ server_cpu_s: 0.4, opened: 10_000 })), null, 'the RSS row has no CPU figure');
    assert.equal(cpuPerUnitOf(echo!.rows[0]!.cpu, run({ server_cpu_s: null, messages: 1 })), null);
    assert.equal(cpuPerUnitOf(echo!.rows[0]!.cpu, { ok: false, error: 'lost 3' }), null);
  });

  it('takes each ratio against the better of uWS.js and Bun of the same repeat', () => {
    const list = scenarios(parseSettings(['--only', 'broadcast-1000-32-w16', '--repeats', '2']));
    const peers = PEERS.filter((p) => ['wavecast', 'uws', 'bun'].includes(p.id));
    // Repeat 1: Bun is faster and leaner; repeat 2: uWS.js is.
    const outcomes = {
      [list[0]!.id]: {
        wavecast: [run({ rate: 2e6, messages: 2e6, server_cpu_s: 0.8 }), run({ rate: 2e6, messages: 2e6, server_cpu_s: 0.8 })],
        uws: [run({ rate: 1e6, messages: 1e6, server_cpu_s: 0.8 }), run({ rate: 4e6, messages: 4e6, server_cpu_s: 0.8 })],
        bun: [run({ rate: 1.6e6, messages: 1.6e6, server_cpu_s: 0.32 }), run({ rate: 1e6, messages: 1e6, server_cpu_s: 0.8 })],
      },
    };
    const [cell] = buildCells(list, peers, outcomes);
    // Throughput: 2 / 1.6 = 1.25 and 2 / 4 = 0.5, median 0.875.
    assert.equal(cell!.ratios.wavecast!.vsBest, 0.875);
    // CPU s per 1M: wavecast 0.4 both times; best 0.2 (Bun), then 0.2 (uWS.js): 2.0x.
    near(cell!.byPeer.wavecast!.cpuPerUnit, 0.4);
    near(cell!.ratios.wavecast!.cpuVsBest, 2);
    assert.deepEqual(cell!.best, ['uws', 'bun']);
    const summary = summaryTable([cell!], peers);
    assert.match(summary, /\| wavecast \| uWS\.js \| Bun \|/);
    assert.match(summary, /wavecast \/ best of uWS\.js, Bun/);
    assert.match(cpuTable([cell!], peers), /\(s \/ 1M deliveries\) \| 0\.400 \| 0\.500 \| 0\.500 \| 2\.00x \|/);
  });

  it('still takes the best-of ratios against uWS.js alone when Bun did not run', () => {
    const list = scenarios(parseSettings(['--only', 'echo-c100-d1-32']));
    const peers = PEERS.filter((p) => ['wavecast', 'uws'].includes(p.id));
    const outcomes = {
      [list[0]!.id]: { wavecast: [run({ rate: 3, messages: 3, server_cpu_s: 3e-6 })], uws: [run({ rate: 2, messages: 2, server_cpu_s: 4e-6 })] },
    };
    const [cell] = buildCells(list, peers, outcomes);
    near(cell!.ratios.wavecast!.vsBest, 1.5);
    near(cell!.ratios.wavecast!.cpuVsBest, 0.5);
  });
});

describe('finding Bun', () => {
  it('looks in the platform package npm installs for this machine', () => {
    assert.deepEqual(platformPackages('linux', 'x64', false), ['@oven/bun-linux-x64', '@oven/bun-linux-x64-baseline']);
    assert.deepEqual(platformPackages('linux', 'x64', true), ['@oven/bun-linux-x64-musl', '@oven/bun-linux-x64-musl-baseline']);
    assert.deepEqual(platformPackages('linux', 'arm64', true), ['@oven/bun-linux-aarch64-musl']);
    assert.deepEqual(platformPackages('darwin', 'arm64', false), ['@oven/bun-darwin-aarch64']);
    assert.deepEqual(platformPackages('linux', 'ia32', false), []);
  });
});
