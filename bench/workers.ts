/**
 * wavecast with workers (`npm run bench:workers`): one process, 2 workers on
 * the native transport (one listening socket every worker inherits), and 2
 * workers with `nativeTransport: false` (node:cluster's round-robin: the
 * primary accepts each connection and passes it to a worker, which serves it
 * on a Node socket). Per configuration:
 *
 * - connect: 10,000 handshakes (200 in flight), their rate, then the idle
 *   RSS per connection summed over every server process (primary + workers);
 * - broadcast: receivers on /recv, one sender on /send, window W; deliveries
 *   per second across workers;
 * - server CPU seconds per million deliveries (per 10,000 handshakes for
 *   connect), summed over every server process, sampled by the load
 *   generator over the measured window;
 * - the spread of the 10,000 connections over the workers.
 *
 * Pinning on a 2-core machine: the single process runs on CPU 0 and the load
 * generator on CPU 1, as in `npm run bench`. The workers cannot have a core
 * each and leave one to the load generator, so they run unpinned on both
 * cores while the load generator stays on CPU 1: the table says so.
 *
 * Prints one JSON line per run and a table of medians. Flags: --repeats N
 * (3), --duration S (3), --warmup S (1), --window W (16), --receivers N
 * (1000), --size B (32), --conns N (10000).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { buildLoadgen, canPin, processTree, ROOT, runConnect, runLoad, startPeer, type Peer } from './harness.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const repeats = Number(flag('--repeats', '3'));
const duration = Number(flag('--duration', '3'));
const warmup = Number(flag('--warmup', '1'));
const window = Number(flag('--window', '16'));
const receivers = Number(flag('--receivers', '1000'));
const size = Number(flag('--size', '32'));
const conns = Number(flag('--conns', '10000'));

const node = process.execPath;
const peer = (label: string, workers: number, native: boolean): Peer => ({
  id: `wavecast-workers-${workers}${native ? '' : '-node'}`,
  label,
  command: [node, join(ROOT, 'dist/bench/peers/wavecast-workers.js')],
  env: { BENCH_WORKERS: String(workers), BENCH_NATIVE: native ? '1' : '0' },
});
const configs = [
  { peer: peer('1 process (CPU 0)', 1, true), workers: 1 },
  { peer: peer('2 workers, native (unpinned)', 2, true), workers: 2 },
  { peer: peer('2 workers, nativeTransport: false (unpinned)', 2, false), workers: 2 },
];

interface Cell {
  kibPerConn: number[];
  handshakes: number[];
  handshakeCpu: number[];
  deliveries: number[];
  deliveryCpu: number[];
  spread: string[];
}

/** How many established TCP connections each worker (or the lone process) holds, from /proc. */
function spreadOf(rootPid: number, workers: number): string {
  const pids = processTree(rootPid);
  const serving = workers === 1 ? [rootPid] : pids.filter((p) => p !== rootPid);
  const inodes = new Map<string, number>();
  for (const [i, pid] of serving.entries()) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.set(m[1], i);
      } catch {
        // closed meanwhile
      }
    }
  }
  const counts = serving.map(() => 0);
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // state 01: ESTABLISHED
      if (f.length > 9 && f[3] === '01' && inodes.has(f[9])) counts[inodes.get(f[9])!]++;
    }
  }
  return counts.join(' / ');
}

const median = (xs: number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};
const fmt = (x: number, digits = 0): string =>
  Number.isNaN(x) ? 'failed' : x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

buildLoadgen();
const pin = canPin();
const cells: Cell[] = [];
for (const { peer: p, workers } of configs) {
  const cell: Cell = { kibPerConn: [], handshakes: [], handshakeCpu: [], deliveries: [], deliveryCpu: [], spread: [] };
  const serverCpu = pin && workers === 1 ? 0 : null;
  for (let r = 0; r < repeats; r++) {
    const server = await startPeer(p, 'broadcast', serverCpu);
    try {
      let spread = '';
      const connect = await runConnect({ mode: 'connect', port: server.port, conns, concurrency: 200, sources: 8 }, server, pin ? 1 : null, () => {
        spread = spreadOf(server.pid, workers);
      });
      console.log(JSON.stringify({ peer: p.id, spread, ...connect }));
      if (connect.error === null && connect.opened === conns) {
        cell.kibPerConn.push(connect.kib_per_conn);
        cell.handshakes.push(connect.handshakes_per_s ?? NaN);
        cell.handshakeCpu.push(((connect.server_cpu_s ?? NaN) / conns) * 10_000);
        cell.spread.push(spread);
      }
      const load = await runLoad(
        { mode: 'broadcast', port: server.port, conns: receivers, window, size, duration, warmup, sources: receivers > 2000 ? 8 : 1, serverPid: server.pid },
        pin ? 1 : null,
      );
      console.log(JSON.stringify({ peer: p.id, receivers, size, ...load }));
      if (load.error === null && typeof load.rate === 'number') {
        cell.deliveries.push(load.rate);
        cell.deliveryCpu.push(((load.server_cpu_s ?? NaN) / (load.rate * duration)) * 1e6);
      }
    } finally {
      await server.stop();
    }
  }
  cells.push(cell);
}

const header = `| median of ${repeats} | ${configs.map((c) => c.peer.label).join(' | ')} |`;
const row = (name: string, values: string[]): string => `| ${name} | ${values.join(' | ')} |`;
console.log(
  [
    '',
    header,
    `|---|${configs.map(() => '---:').join('|')}|`,
    row(`idle RSS per connection at ${conns.toLocaleString('en-US')}, all processes (KiB)`, cells.map((c) => fmt(median(c.kibPerConn), 2))),
    row(`handshakes/s (${conns.toLocaleString('en-US')}, 200 in flight)`, cells.map((c) => fmt(median(c.handshakes)))),
    row('server CPU s per 10,000 handshakes', cells.map((c) => fmt(median(c.handshakeCpu), 2))),
    row(`broadcast deliveries/s (${receivers.toLocaleString('en-US')} receivers, ${size} B, window ${window})`, cells.map((c) => fmt(median(c.deliveries)))),
    row('server CPU s per million deliveries', cells.map((c) => fmt(median(c.deliveryCpu), 2))),
    row(`connections per worker at ${conns.toLocaleString('en-US')}`, cells.map((c) => c.spread.join('; ') || 'failed')),
  ].join('\n'),
);
console.log(
  `\nload generator on CPU 1${pin ? '' : ' (not pinned: taskset or a second CPU missing)'}; ${duration} s measured after ${warmup} s warm-up; ` +
    'server CPU and RSS are summed over the primary and its workers',
);
