/**
 * Cross-talk under churn (issue #11, item 6): a real server process, a
 * seeded storm of clients (connects, FIN, half-close, RST, closes from
 * inside `open` and `message`, a mass close of ~2,000 connections in one
 * listener with the loop then blocked, late handshakes and large messages
 * meanwhile, heartbeat sweeps, broadcasts and publishes meeting reset peers,
 * a ping flood from a client that never reads), on each listener. Every
 * frame either side receives must belong to the connection it arrived on;
 * every open is matched by one close; nothing is left at the end (see
 * `fixtures/stress-driver.ts` for the rounds and every invariant).
 *
 * STRESS_SEED replays a run, STRESS_SECONDS sets its length per listener
 * (default 10). The seed is in the test's name and in any failure. An odd
 * seed runs the server with `borrowFrames`, so that its batches are taken
 * back as soon as they are delivered; an even one without.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { nativeTransportAvailable } from '../src/transport.js';
import type { StressOptions, StressResult } from './fixtures/stress-driver.js';

const DRIVER = fileURLToPath(new URL('./fixtures/stress-driver.js', import.meta.url));
const SEED = process.env.STRESS_SEED !== undefined ? Number(process.env.STRESS_SEED) : randomInt(2 ** 31);
const SECONDS = Number(process.env.STRESS_SECONDS ?? 10);
const BORROW = SEED % 2 === 1;

/**
 * Both listeners, unless the environment has already chosen one (CI runs
 * the suite once per backend): then the one it chose.
 */
const forced = process.env.WAVECAST_NO_NATIVE_TRANSPORT !== undefined || process.env.WAVECAST_NO_NATIVE !== undefined;
const listeners: StressOptions['transport'][] = forced || !nativeTransportAvailable ? ['inherit'] : ['native', 'node'];

/** Runs the driver in a child with a raised descriptor limit (its clients need thousands). */
function drive(options: StressOptions, log: (line: string) => void): Promise<StressResult> {
  return new Promise((resolve, reject) => {
    const command =
      'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ' +
      `exec "${process.execPath}" "${DRIVER}" run '${JSON.stringify(options)}'`;
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n')) if (line !== '') log(line);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!) as StressResult);
      } catch {
        reject(new Error(`the driver exited with ${code} and no result: ${out.slice(-500)}`));
      }
    });
  });
}

describe(`cross-talk stress (seed ${SEED}, replay with STRESS_SEED=${SEED})`, { skip: process.platform !== 'linux' && 'needs /proc' }, () => {
  for (const transport of listeners) {
    test(`${transport === 'inherit' ? "the environment's listener" : `the ${transport} listener`}: no frame reaches another connection, every open gets one close, nothing leaks`, { timeout: (SECONDS + 90) * 1000 }, async (t) => {
      const options: StressOptions = { seed: SEED, seconds: SECONDS, transport, connections: 2000, borrowFrames: BORROW };
      const result = await drive(options, (line) => t.diagnostic(line));
      const s = result.server;
      t.diagnostic(
        `${result.transport}${BORROW ? ' (borrowFrames)' : ''}: ${result.rounds} rounds in ${result.seconds.toFixed(1)} s, ${result.clients.connects} connections, ` +
          `${result.clients.messagesOut} messages out, ${result.clients.framesIn} frames in (${result.clients.relaysIn} relays); server opens ${s?.opens} closes ${s?.closes}, ` +
          `flood peak ${s?.floodPeakQueued} B, fds ${result.fdsBefore} -> ${result.fdsAfter}, RSS ${(result.rssBefore / 2 ** 20).toFixed(0)} -> ${((s?.rss ?? 0) / 2 ** 20).toFixed(0)} MiB`,
      );
      assert.ok(result.rounds > 0, 'at least one round ran');
      assert.deepEqual(result.failures, [], `seed ${SEED} on ${result.transport} (replay: STRESS_SEED=${SEED} npm test)`);
    });
  }
});
