/**
 * `npm run soak -- --minutes N --connections 10000 [--seed S] [--transport native|node|both]`:
 * the cross-talk stress of `test/stress.test.ts` for a long time and many
 * connections (the driver is shared: `test/fixtures/stress-driver.ts`).
 * Prints a table and the JSON of each run; exits 1 if any invariant broke.
 * The npm script raises `ulimit -n` for this process (its clients), the
 * driver raises it for the server child.
 */
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { runStress, type StressResult } from '../test/fixtures/stress-driver.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '5' },
    connections: { type: 'string', default: '10000' },
    seed: { type: 'string' },
    transport: { type: 'string', default: 'both' },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : randomInt(2 ** 31);
const transports = values.transport === 'both' ? (['native', 'node'] as const) : [values.transport as 'native' | 'node'];
const MiB = (n: number): string => `${(n / 2 ** 20).toFixed(0)} MiB`;

const results: StressResult[] = [];
for (const transport of transports) {
  console.log(`soak: seed ${seed}, ${transport} listener, ${values.minutes} min, ${values.connections} connections a round`);
  results.push(
    await runStress({
      seed,
      seconds: Number(values.minutes) * 60,
      transport,
      connections: Number(values.connections),
      log: (line) => console.log(`  ${line}`),
    }),
  );
}

const rows: [string, (r: StressResult) => string | number][] = [
  ['listener', (r) => r.transport],
  ['seconds', (r) => r.seconds.toFixed(0)],
  ['rounds', (r) => r.rounds],
  ['connections churned', (r) => r.clients.connects],
  ['messages sent by clients', (r) => r.clients.messagesOut],
  ['frames received by clients', (r) => r.clients.framesIn],
  ['messages received by the server', (r) => r.server?.messages ?? '-'],
  ['mix-ups (clients)', (r) => r.clients.mixups],
  ['mix-ups (server)', (r) => r.server?.mixups ?? '-'],
  ['opens / closes', (r) => `${r.server?.opens ?? '-'} / ${r.server?.closes ?? '-'}`],
  ['never closed', (r) => r.server?.unclosed.length ?? '-'],
  ['lost / not closed / not expired', (r) => `${r.lost} / ${r.notClosed} / ${r.notExpired}`],
  ['ping flood peak queue', (r) => `${r.server?.floodPeakQueued ?? '-'} B (bound ${r.bounds.floodQueued})`],
  ['server fds before / after', (r) => `${r.fdsBefore} / ${r.fdsAfter}`],
  ['server RSS before / after / peak', (r) => `${MiB(r.rssBefore)} / ${MiB(r.server?.rss ?? 0)} / ${MiB(r.server?.peakRss ?? 0)}`],
  ['failures', (r) => r.failures.length],
];
const width = Math.max(...rows.map(([name]) => name.length));
console.log(`\nseed ${seed}`);
for (const [name, cell] of rows) console.log(`${name.padEnd(width)}  ${results.map((r) => String(cell(r)).padEnd(34)).join('')}`);
for (const r of results) for (const f of r.failures) console.log(`FAIL (${r.transport}): ${f}`);
console.log(JSON.stringify({ seed, results }));
process.exitCode = results.some((r) => r.failures.length > 0) ? 1 : 0;
