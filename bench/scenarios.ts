/**
 * The load benchmark's matrix: the command-line settings and the scenarios
 * (cells) they select. Running them is `run.ts`'s job, reporting `report.ts`'s.
 */
import { join } from 'node:path';
import type { LoadOptions } from './harness.js';
import { ROOT } from './paths.js';

/** How a row's server CPU time is divided into a per-unit figure. */
export interface CpuPer {
  /** The result field that counts the units (measured messages, or handshakes). */
  count: 'messages' | 'opened';
  /** Units per figure: 1e6 (CPU s per million messages) or 1e3 (per 1,000 handshakes). */
  per: number;
  /** Shown in tables, e.g. `s / 1M round trips`. */
  unit: string;
  /** Shown in the chart: `s/1M`, `s/1k`. */
  short: string;
}

/** A number shown in the table, taken from one run's result. */
export interface Row {
  id: string;
  title: string;
  metric: 'rate' | 'handshakes_per_s' | 'kib_per_conn';
  unit: string;
  higherIsBetter: boolean;
  /** Server CPU per unit of work, where the row measures work. */
  cpu?: CpuPer;
}

/** One kind of run; a connect run fills two rows (rate and memory). */
export interface Scenario {
  id: string;
  server: 'echo' | 'broadcast';
  /** The peer runs with its permessage-deflate on (and the load generator offers it). */
  deflate?: boolean;
  load: Omit<LoadOptions, 'port'>;
  rows: Row[];
}

/** The runner's command line, parsed. */
export interface Settings {
  quick: boolean;
  repeats: number;
  duration: number;
  warmup: number;
  /** `--window W[,W...]`: every broadcast cell at these windows only; null: the matrix's own (see {@link scenarios}). */
  windows: number[] | null;
  peers: string[] | null;
  only: string[] | null;
  out: string;
}

/** Parses the runner's flags; throws a RangeError on a bad value. */
export function parseSettings(argv: readonly string[]): Settings {
  const quick = argv.includes('--quick');
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const positive = (flag: string, v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${flag} needs a positive number, got ${v}`);
    return n;
  };
  const num = (flag: string, fallback: number): number => {
    const v = value(flag);
    return v === undefined ? fallback : positive(flag, v);
  };
  const windows = value('--window')
    ?.split(',')
    .map((w) => Math.round(positive('--window', w)));
  return {
    quick,
    repeats: Math.round(num('--repeats', quick ? 1 : 3)),
    duration: num('--duration', quick ? 1 : 3),
    warmup: num('--warmup', quick ? 0.3 : 1),
    windows: windows ?? null,
    peers: value('--peers')?.split(',') ?? null,
    only: value('--only')?.split(',') ?? null,
    out: value('--out') ?? join(ROOT, quick ? 'bench/results/tmp' : 'bench/results'),
  };
}

const KiB = 1024;
const sizeName = (size: number): string => (size >= KiB ? `${size / KiB} KiB` : `${size} B`);

/** Echo rows: server CPU per million round trips (one message in, one out). */
const ECHO_CPU: CpuPer = { count: 'messages', per: 1e6, unit: 's / 1M round trips', short: 's/1M' };
/** Broadcast rows: server CPU per million deliveries (one message to one receiver). */
const BROADCAST_CPU: CpuPer = { count: 'messages', per: 1e6, unit: 's / 1M deliveries', short: 's/1M' };

/**
 * The broadcast windows (messages the sender keeps in flight) for a receiver
 * count. Window 1 is latency-bound (one broadcast at a time), 64 gives the
 * server the most to batch. The full run covers every receiver count at
 * 1, 16 and 64; the quick run does so for 1,000 receivers and keeps 10,000
 * at 16.
 */
function windowsFor(s: Settings, receivers: number): number[] {
  if (s.windows) return s.windows;
  return s.quick && receivers > 1000 ? [16] : [1, 16, 64];
}

/**
 * Every cell of the run, in table order, filtered by `--only`: each
 * comma-separated term selects the scenario with exactly that id, or, when
 * none has it, every scenario whose id contains it (`--only broadcast-1000-32`
 * runs that cell at every window, `--only broadcast-1000-32-w1` only window 1).
 */
export function scenarios(s: Settings): Scenario[] {
  const list: Scenario[] = [];
  const timing = { duration: s.duration, warmup: s.warmup };
  for (const [size, text] of [
    [32, false],
    [16 * KiB, false],
    [16 * KiB, true],
  ] as const) {
    for (const depth of [1, 10]) {
      const name = `${sizeName(size)} ${text ? 'text' : 'binary'}`;
      const id = `echo-c100-d${depth}-${size}${text ? '-text' : ''}`;
      list.push({
        id,
        server: 'echo',
        load: { mode: 'echo', conns: 100, depth, size, text, ...timing },
        rows: [{ id, title: `echo 100 conns x depth ${depth}, ${name}`, metric: 'rate', unit: 'round trips/s', higherIsBetter: true, cpu: ECHO_CPU }],
      });
    }
  }
  for (const receivers of [1000, 10000]) {
    for (const size of [32, KiB]) {
      for (const window of windowsFor(s, receivers)) {
        const id = `broadcast-${receivers}-${size}-w${window}`;
        list.push({
          id,
          server: 'broadcast',
          load: { mode: 'broadcast', conns: receivers, window, size, ...timing, sources: receivers > 2000 ? 8 : 1 },
          rows: [
            {
              id,
              title: `broadcast ${receivers.toLocaleString('en-US')} receivers, ${sizeName(size)}, window ${window}`,
              metric: 'rate',
              unit: 'deliveries/s',
              higherIsBetter: true,
              cpu: BROADCAST_CPU,
            },
          ],
        });
      }
    }
  }
  // Issue 6: a compressible 1 KiB JSON document to 1,000 receivers that all
  // negotiated permessage-deflate (no context takeover either way, the
  // offer most servers answer with shared compression); every delivery must
  // arrive compressed (RSV1) and is inflated and checked byte for byte.
  // One window only (16, or those of --window): the windows are covered by
  // the plain rows, and this row is the slowest of the peers that compress
  // per receiver.
  for (const window of s.windows ?? [16]) {
    const id = `broadcast-deflate-1000-1024-w${window}`;
    list.push({
      id,
      server: 'broadcast',
      deflate: true,
      load: { mode: 'broadcast', conns: 1000, window, size: KiB, json: true, deflate: true, ...timing, sources: 1 },
      rows: [
        {
          id,
          title: `broadcast 1,000 receivers, 1 KiB JSON, permessage-deflate, window ${window}`,
          metric: 'rate',
          unit: 'deliveries/s',
          higherIsBetter: true,
          cpu: BROADCAST_CPU,
        },
      ],
    });
  }
  list.push({
    id: 'connect-10000',
    server: 'echo',
    load: { mode: 'connect', conns: 10000, concurrency: 200, sources: 8 },
    rows: [
      {
        id: 'connect-10000',
        title: 'connect 10,000 (200 in flight)',
        metric: 'handshakes_per_s',
        unit: 'handshakes/s',
        higherIsBetter: true,
        cpu: { count: 'opened', per: 1e3, unit: 's / 1k handshakes', short: 's/1k' },
      },
      { id: 'rss-10000', title: 'idle RSS per connection at 10,000', metric: 'kib_per_conn', unit: 'KiB/conn', higherIsBetter: false },
    ],
  });
  if (!s.only) return list;
  const picked = new Set<Scenario>();
  for (const term of s.only) {
    const exact = list.filter((sc) => sc.id === term);
    for (const sc of exact.length ? exact : list.filter((sc) => sc.id.includes(term))) picked.add(sc);
  }
  return list.filter((sc) => picked.has(sc));
}
