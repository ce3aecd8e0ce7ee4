/**
 * Cross-worker broadcast beside the single process (`npm run bench:workers`):
 * the broadcast scenario of the load benchmark (receivers on /recv, one
 * sender on /send, window W) against wavecast in one process and with 2
 * workers. Prints one JSON line per run and a table of medians.
 *
 * Pinning on a 2-core machine: the single process runs on CPU 0 and the load
 * generator on CPU 1, as in `npm run bench`. The workers cannot have a core
 * each and leave one to the load generator, so they run unpinned on both
 * cores while the load generator stays on CPU 1: the table says so.
 *
 * Flags: --repeats N (3), --duration S (3), --warmup S (1), --window W (16),
 * --receivers N,N (1000), --sizes B,B (32,1024).
 */
import { join } from 'node:path';
import { buildLoadgen, canPin, ROOT, runLoad, startPeer, type Peer } from './harness.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1]! : fallback;
};
const repeats = Number(flag('--repeats', '3'));
const duration = Number(flag('--duration', '3'));
const warmup = Number(flag('--warmup', '1'));
const window = Number(flag('--window', '16'));
const receiverCounts = flag('--receivers', '1000').split(',').map(Number);
const sizes = flag('--sizes', '32,1024').split(',').map(Number);

const node = process.execPath;
const single: Peer = { id: 'wavecast', label: 'wavecast, 1 process', command: [node, join(ROOT, 'dist/bench/peers/wavecast.js')], env: {} };
const workers: Peer = {
  id: 'wavecast-workers',
  label: 'wavecast, 2 workers',
  command: [node, join(ROOT, 'dist/bench/peers/wavecast-workers.js')],
  env: { BENCH_WORKERS: '2' },
};

buildLoadgen();
const pin = canPin();
const rows: string[] = [];
for (const receivers of receiverCounts) {
  for (const size of sizes) {
    const cells: string[] = [];
    for (const peer of [single, workers]) {
      const serverCpu = pin && peer === single ? 0 : null;
      const rates: number[] = [];
      for (let r = 0; r < repeats; r++) {
        const server = await startPeer(peer, 'broadcast', serverCpu);
        try {
          const result = await runLoad(
            { mode: 'broadcast', port: server.port, conns: receivers, window, size, duration, warmup, sources: receivers > 2000 ? 8 : 1 },
            pin ? 1 : null,
          );
          console.log(JSON.stringify({ peer: peer.id, receivers, size, ...result }));
          if (result.error === null && typeof result.rate === 'number') rates.push(result.rate);
        } finally {
          await server.stop();
        }
      }
      rates.sort((x, y) => x - y);
      const median = rates.length ? rates[Math.floor(rates.length / 2)]! : NaN;
      cells.push(Number.isNaN(median) ? 'failed' : Math.round(median).toLocaleString('en-US'));
    }
    rows.push(`| ${receivers.toLocaleString('en-US')} receivers, ${size} B | ${cells.join(' | ')} |`);
  }
}
console.log(`\n| broadcast, deliveries/s (median of ${repeats}) | 1 process (CPU 0) | 2 workers (unpinned) |\n|---|---:|---:|\n${rows.join('\n')}`);
console.log(`\nload generator on CPU 1${pin ? '' : ' (not pinned: taskset or a second CPU missing)'}; window ${window}; ${duration} s measured after ${warmup} s warm-up`);
