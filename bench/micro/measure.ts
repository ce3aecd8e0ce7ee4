/**
 * Shared by the micro-benchmarks: the sizes, a tinybench run that reports the
 * median throughput of each task in GB/s, and the markdown table.
 *
 * A task runs its operation `repeat` times per sample so that a sample lasts
 * tens of microseconds even at 16 bytes, where the timer would otherwise
 * dominate. GB/s = bytes per call * repeat / median sample time (1 GB = 1e9 B).
 * BENCH_ROUNDS (default 5) and BENCH_TIME_MS per task and round (default 100)
 * trade run time for steadiness.
 */
import { Bench } from 'tinybench';

/** The sizes every micro-benchmark covers. */
export const SIZES = [16, 125, 1024, 16 * 1024, 64 * 1024, 1024 * 1024];

/** `16 B`, `1 KiB`, `1 MiB`. */
export function sizeLabel(n: number): string {
  if (n >= 1 << 20) return `${n / (1 << 20)} MiB`;
  if (n >= 1024) return `${n / 1024} KiB`;
  return `${n} B`;
}

/** Calls per sample so that one sample handles about 256 KiB (at least one call). */
export function repeatFor(size: number): number {
  return Math.max(1, Math.floor((256 * 1024) / size));
}

/** One row of results: task name -> median GB/s at each size. */
export type Results = Map<string, number[]>;

/** The median of `values` (which it sorts). */
function median(values: number[]): number {
  values.sort((a, b) => a - b);
  const mid = values.length >> 1;
  return values.length % 2 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

/**
 * Runs `tasks` (name -> one call) at `size` and records median GB/s under
 * `column`. The tasks take turns over several rounds and the result is the
 * median of the per-round medians, so a burst of load from something else
 * on the machine skews one round of one task, not the table.
 */
export async function measure(
  results: Results,
  column: number,
  size: number,
  tasks: Record<string, () => unknown>,
): Promise<void> {
  const repeat = repeatFor(size);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
  const time = Number(process.env.BENCH_TIME_MS ?? 100);
  const perRound = new Map<string, number[]>();
  for (let round = 0; round < rounds; round++) {
    const bench = new Bench({ time, warmup: round === 0 });
    for (const [name, call] of Object.entries(tasks)) {
      bench.add(name, () => {
        for (let k = 0; k < repeat; k++) call();
      });
    }
    await bench.run();
    for (const task of bench.tasks) {
      const r = task.result;
      if (r.state !== 'completed') throw new Error(`${task.name} at ${size} B: ${r.state}`);
      const list = perRound.get(task.name) ?? [];
      list.push((size * repeat) / (r.latency.p50 * 1e6));
      perRound.set(task.name, list);
    }
  }
  for (const [name, list] of perRound) {
    const row = results.get(name) ?? [];
    row[column] = median(list);
    results.set(name, row);
  }
}

/** A markdown table: one row per task, one column per size, GB/s with 2 decimals. */
export function table(title: string, results: Results, sizes: number[] = SIZES): string {
  const lines = [
    `### ${title}`,
    '',
    `| median GB/s | ${sizes.map(sizeLabel).join(' | ')} |`,
    `|---|${sizes.map(() => '---:').join('|')}|`,
  ];
  for (const [name, row] of results) {
    lines.push(`| ${name} | ${sizes.map((_, i) => (row[i] === undefined ? '' : row[i].toFixed(2))).join(' | ')} |`);
  }
  return lines.join('\n');
}
