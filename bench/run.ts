/**
 * The load benchmark (issue 5): every peer in `bench/peers/` through the same
 * matrix, server pinned to CPU 0 and the C load generator to CPU 1, a fresh
 * server for every run, peers interleaved within each repeat so that drift on
 * a shared machine hits them alike.
 *
 *   npm run bench          3 repeats, medians; writes bench/results/<date>.json,
 *                          latest.md and latest.svg
 *   npm run bench:quick    1 short repeat of every cell (about 2 minutes),
 *                          prints the table, writes under bench/results/tmp/
 *
 * Flags: --quick, --repeats N, --duration S, --warmup S, --window W,
 * --peers id,id, --only substring (scenario ids; `--only deflate` runs the
 * permessage-deflate broadcast row alone), --out DIR.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  PEERS,
  ROOT,
  buildLoadgen,
  canPin,
  memoryKiB,
  runConnect,
  runLoad,
  startPeer,
  which,
} from './harness.js';
import type { LoadOptions, LoadResult, Peer } from './harness.js';

/** A number shown in the table, taken from one run's result. */
interface Row {
  id: string;
  title: string;
  metric: 'rate' | 'handshakes_per_s' | 'kib_per_conn';
  unit: string;
  higherIsBetter: boolean;
}

/** One kind of run; a connect run fills two rows (rate and memory). */
interface Scenario {
  id: string;
  server: 'echo' | 'broadcast';
  /** The peer runs with its permessage-deflate on (and the load generator offers it). */
  deflate?: boolean;
  load: Omit<LoadOptions, 'port'>;
  rows: Row[];
}

interface Settings {
  quick: boolean;
  repeats: number;
  duration: number;
  warmup: number;
  window: number;
  peers: string[] | null;
  only: string | null;
  out: string;
}

function parseSettings(argv: readonly string[]): Settings {
  const quick = argv.includes('--quick');
  const value = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (flag: string, fallback: number): number => {
    const v = value(flag);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new RangeError(`${flag} needs a positive number, got ${v}`);
    return n;
  };
  return {
    quick,
    repeats: Math.round(num('--repeats', quick ? 1 : 3)),
    duration: num('--duration', quick ? 1 : 3),
    warmup: num('--warmup', quick ? 0.3 : 1),
    window: Math.round(num('--window', 16)),
    peers: value('--peers')?.split(',') ?? null,
    only: value('--only') ?? null,
    out: value('--out') ?? join(ROOT, quick ? 'bench/results/tmp' : 'bench/results'),
  };
}

const KiB = 1024;

function scenarios(s: Settings): Scenario[] {
  const list: Scenario[] = [];
  const timing = { duration: s.duration, warmup: s.warmup };
  for (const [size, text] of [
    [32, false],
    [16 * KiB, false],
    [16 * KiB, true],
  ] as const) {
    for (const depth of [1, 10]) {
      const name = `${size >= KiB ? `${size / KiB} KiB` : `${size} B`} ${text ? 'text' : 'binary'}`;
      const id = `echo-c100-d${depth}-${size}${text ? '-text' : ''}`;
      list.push({
        id,
        server: 'echo',
        load: { mode: 'echo', conns: 100, depth, size, text, ...timing },
        rows: [{ id, title: `echo 100 conns x depth ${depth}, ${name}`, metric: 'rate', unit: 'round trips/s', higherIsBetter: true }],
      });
    }
  }
  for (const receivers of [1000, 10000]) {
    for (const size of [32, KiB]) {
      const id = `broadcast-${receivers}-${size}`;
      list.push({
        id,
        server: 'broadcast',
        load: {
          mode: 'broadcast',
          conns: receivers,
          window: s.window,
          size,
          ...timing,
          sources: receivers > 2000 ? 8 : 1,
        },
        rows: [
          {
            id,
            title: `broadcast ${receivers.toLocaleString('en-US')} receivers, ${size >= KiB ? '1 KiB' : '32 B'}, window ${s.window}`,
            metric: 'rate',
            unit: 'deliveries/s',
            higherIsBetter: true,
          },
        ],
      });
    }
  }
  // Issue 6: a compressible 1 KiB JSON document to 1,000 receivers that all
  // negotiated permessage-deflate (no context takeover either way, the
  // offer most servers answer with shared compression); every delivery must
  // arrive compressed (RSV1) and is inflated and checked byte for byte.
  list.push({
    id: 'broadcast-deflate-1000-1024',
    server: 'broadcast',
    deflate: true,
    load: { mode: 'broadcast', conns: 1000, window: s.window, size: KiB, json: true, deflate: true, ...timing, sources: 1 },
    rows: [
      {
        id: 'broadcast-deflate-1000-1024',
        title: `broadcast 1,000 receivers, 1 KiB JSON, permessage-deflate, window ${s.window}`,
        metric: 'rate',
        unit: 'deliveries/s',
        higherIsBetter: true,
      },
    ],
  });
  list.push({
    id: 'connect-10000',
    server: 'echo',
    load: { mode: 'connect', conns: 10000, concurrency: 200, sources: 8 },
    rows: [
      { id: 'connect-10000', title: 'connect 10,000 (200 in flight)', metric: 'handshakes_per_s', unit: 'handshakes/s', higherIsBetter: true },
      { id: 'rss-10000', title: 'idle RSS per connection at 10,000', metric: 'kib_per_conn', unit: 'KiB/conn', higherIsBetter: false },
    ],
  });
  return s.only ? list.filter((sc) => sc.id.includes(s.only!)) : list;
}

/** One run's outcome: the load generator's line, or why there is none. */
type Outcome = { ok: true; result: LoadResult & Record<string, unknown> } | { ok: false; error: string; result?: LoadResult };

/** Why a result does not count, or null when it is clean. */
function faults(r: LoadResult): string | null {
  const bad: string[] = [];
  if (r.error) bad.push(r.error);
  for (const key of ['mismatches', 'lost', 'reordered', 'undelivered', 'protocol_errors', 'closed', 'failed'] as const) {
    const v = r[key];
    if (typeof v === 'number' && v > 0) bad.push(`${key} ${v}`);
  }
  if (r.mode === 'connect' && r.opened !== r.conns) bad.push(`opened ${r.opened ?? 0} of ${r.conns}`);
  if (r.deflate === true) {
    // The row measures compressed delivery: a peer that negotiates and then
    // sends plain frames is not measured by it.
    if ((r.deflate_conns ?? 0) < r.conns) bad.push(`deflate negotiated on ${r.deflate_conns ?? 0} of ${r.conns}`);
    if (!r.compressed_messages) bad.push('no compressed (RSV1) message');
    if (r.plain_messages) bad.push(`${r.plain_messages} messages not compressed`);
  }
  return bad.length ? bad.join(', ') : null;
}

const median = (xs: readonly number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function serverMemory(pid: number): { server_rss_kib?: number; server_hwm_kib?: number } {
  try {
    const m = memoryKiB(pid);
    return { server_rss_kib: m.rss_kib, server_hwm_kib: m.hwm_kib };
  } catch {
    return {}; // the server is gone (its failure is reported by the run) or this is not Linux
  }
}

async function runOnce(peer: Peer, sc: Scenario, pin: boolean): Promise<Outcome> {
  let server;
  try {
    server = await startPeer(peer, sc.server, pin ? 0 : null, { deflate: sc.deflate === true });
  } catch (e) {
    return { ok: false, error: (e as Error).message.split('\n')[0]! };
  }
  try {
    const load = { ...sc.load, port: server.port };
    const result =
      sc.load.mode === 'connect'
        ? await runConnect(load, server, pin ? 1 : null)
        : // The server's memory right after the traffic, and its peak.
          { ...(await runLoad(load, pin ? 1 : null)), ...serverMemory(server.pid) };
    const fault = faults(result);
    return fault ? { ok: false, error: fault, result } : { ok: true, result };
  } catch (e) {
    return { ok: false, error: (e as Error).message.split('\n')[0]! };
  } finally {
    await server.stop();
  }
}

/** Probes each peer once; returns the runnable ones and notes for the rest. */
async function availablePeers(wanted: string[] | null, pin: boolean): Promise<{ peers: Peer[]; skipped: Record<string, string> }> {
  const peers: Peer[] = [];
  const skipped: Record<string, string> = {};
  for (const peer of PEERS) {
    if (wanted && !wanted.includes(peer.id)) continue;
    if (peer.id === 'bun' && !which('bun')) {
      skipped[peer.id] = '`bun` is not on PATH (the npm package `bun` ships it; not installed here)';
      continue;
    }
    try {
      const server = await startPeer(peer, 'echo', pin ? 0 : null);
      await server.stop();
      peers.push(peer);
    } catch (e) {
      skipped[peer.id] = (e as Error).message.split('\n')[0]!;
    }
  }
  return { peers, skipped };
}

function machine(): Record<string, unknown> {
  let distro = '';
  try {
    distro = /^PRETTY_NAME="?([^"\n]*)/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '';
  } catch {
    // not Linux: leave it empty
  }
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cpus: cpus.length,
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    os: `${distro || os.type()} (kernel ${os.release()})`,
    node: process.version,
    loadavg_start: os.loadavg().map((x) => +x.toFixed(2)),
  };
}

// ---------------------------------------------------------------- report

interface Cell {
  row: Row;
  scenario: string;
  byPeer: Record<
    string,
    {
      median: number;
      values: (number | null)[];
      p50: number;
      p99: number;
      cpuMax: number;
      errors: string[];
      /** Frame bytes per payload byte received (1.00 plus headers when nothing is compressed). */
      wirePerPayload: number;
      /** Server RSS right after the traffic and its peak, KiB (echo and broadcast runs). */
      rssKiB: number;
      hwmKiB: number;
    }
  >;
  ratios: Record<string, { vsWs: number; vsUws: number }>;
}

function metricOf(row: Row, o: Outcome): number | null {
  if (!o.ok) return null;
  const v = o.result[row.metric];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** Per-repeat ratio a/b over the repeats where both ran cleanly, then the median. */
function pairRatio(a: (number | null)[], b: (number | null)[] | undefined): number {
  if (!b) return NaN;
  const rs: number[] = [];
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x != null && y != null && y !== 0) rs.push(x / y);
  }
  return median(rs);
}

function buildCells(list: Scenario[], peers: Peer[], outcomes: Record<string, Record<string, Outcome[]>>): Cell[] {
  const cells: Cell[] = [];
  for (const sc of list) {
    for (const row of sc.rows) {
      const byPeer: Cell['byPeer'] = {};
      for (const peer of peers) {
        const runs = outcomes[sc.id]?.[peer.id] ?? [];
        const values = runs.map((o) => metricOf(row, o));
        const ok = runs.filter((o): o is Extract<Outcome, { ok: true }> => o.ok);
        byPeer[peer.id] = {
          median: median(values.filter((v): v is number => v !== null)),
          values,
          p50: median(ok.map((o) => o.result.p50_us ?? NaN).filter(Number.isFinite)),
          p99: median(ok.map((o) => o.result.p99_us ?? NaN).filter(Number.isFinite)),
          cpuMax: Math.max(0, ...runs.map((o) => o.result?.cpu_pct ?? 0)),
          errors: runs.flatMap((o) => (o.ok ? [] : [o.error])),
          wirePerPayload: median(ok.map((o) => o.result.wire_per_payload ?? NaN).filter((v) => Number.isFinite(v) && v > 0)),
          rssKiB: median(ok.map((o) => Number(o.result.server_rss_kib ?? NaN)).filter(Number.isFinite)),
          hwmKiB: median(ok.map((o) => Number(o.result.server_hwm_kib ?? NaN)).filter(Number.isFinite)),
        };
      }
      const ratios: Cell['ratios'] = {};
      for (const peer of peers) {
        ratios[peer.id] = {
          vsWs: pairRatio(byPeer[peer.id]!.values, byPeer.ws?.values),
          vsUws: pairRatio(byPeer[peer.id]!.values, byPeer.uws?.values),
        };
      }
      cells.push({ row, scenario: sc.id, byPeer, ratios });
    }
  }
  return cells;
}

function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (unit === 'KiB/conn') return `${v.toFixed(2)} KiB`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e4) return `${Math.round(v / 1e3)}k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}
const fmtMiB = (kib: number): string => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(0)} MiB` : '');
const fmtRatio = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a');
const fmtUs = (us: number): string =>
  !Number.isFinite(us) ? 'n/a' : us >= 1000 ? `${(us / 1000).toFixed(us >= 1e4 ? 0 : 1)} ms` : `${us.toFixed(0)} µs`;

function summaryTable(cells: Cell[], peers: Peer[]): string {
  const head = ['scenario', ...peers.map((p) => p.label), 'wavecast / ws', 'wavecast / uWS', 'loadgen CPU (max)'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const c of cells) {
    const flags = (id: string): string => (c.byPeer[id]!.errors.length ? ' ⚠' : '');
    const values = peers.map((p) => fmt(c.byPeer[p.id]!.median, c.row.unit) + flags(p.id));
    const w = c.ratios.wavecast;
    const cpu = Math.max(...peers.map((p) => c.byPeer[p.id]!.cpuMax));
    const unit = c.row.higherIsBetter ? c.row.unit : `${c.row.unit}, lower is better`;
    lines.push(
      `| ${c.row.title} (${unit}) | ${values.join(' | ')} | ${fmtRatio(w?.vsWs ?? NaN)} | ${fmtRatio(w?.vsUws ?? NaN)} | ${
        c.row.metric === 'kib_per_conn' ? '' : `${cpu.toFixed(0)}%${cpu >= 90 ? ' ⚠' : ''}`
      } |`,
    );
  }
  return lines.join('\n');
}

function detailTable(cells: Cell[], peers: Peer[]): string {
  const head = ['scenario', 'peer', 'median', 'runs', 'p50', 'p99', 'vs ws', 'vs uWS', 'loadgen CPU', 'wire / payload', 'server RSS end (peak)', 'problems'];
  const lines = [`| ${head.join(' | ')} |`, `|---|---|${'---:|'.repeat(9)}---|`];
  for (const c of cells) {
    for (const p of peers) {
      const b = c.byPeer[p.id]!;
      const r = c.ratios[p.id]!;
      const latency = c.row.metric === 'rate';
      lines.push(
        `| ${c.row.id} | ${p.label} | ${fmt(b.median, c.row.unit)} | ${b.values.filter((v) => v !== null).length}/${b.values.length} | ${
          latency ? fmtUs(b.p50) : ''
        } | ${latency ? fmtUs(b.p99) : ''} | ${fmtRatio(r.vsWs)} | ${fmtRatio(r.vsUws)} | ${
          c.row.metric === 'kib_per_conn' ? '' : `${b.cpuMax.toFixed(0)}%`
        } | ${Number.isFinite(b.wirePerPayload) ? b.wirePerPayload.toFixed(3) : ''} | ${fmtMiB(b.rssKiB)}${
          Number.isFinite(b.hwmKiB) ? ` (${fmtMiB(b.hwmKiB)})` : ''
        } | ${[...new Set(b.errors)].join('; ').replaceAll('|', '/')} |`,
      );
    }
  }
  return lines.join('\n');
}

const COLORS: Record<string, string> = {
  wavecast: '#2563eb',
  'wavecast-js': '#93c5fd',
  ws: '#9ca3af',
  'ws-native': '#4b5563',
  uws: '#f59e0b',
  bun: '#ec4899',
};

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** A hand-written horizontal bar chart: one group per row, bars scaled to the row's best. */
function chart(cells: Cell[], peers: Peer[], title: string): string {
  const barH = 14;
  const gap = 4;
  const groupPad = 26;
  const left = 20;
  const labelW = 120;
  const barW = 460;
  const width = left + labelW + barW + 110;
  let y = 58;
  const parts: string[] = [];
  parts.push(`<text x="${left}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  let lx = left;
  for (const p of peers) {
    parts.push(`<rect x="${lx}" y="34" width="12" height="12" fill="${COLORS[p.id] ?? '#000'}"/>`);
    parts.push(`<text x="${lx + 16}" y="44.5" font-size="12">${esc(p.label)}</text>`);
    lx += 24 + p.label.length * 7;
  }
  for (const c of cells) {
    y += groupPad;
    const better = c.row.higherIsBetter ? 'higher is better' : 'lower is better';
    parts.push(`<text x="${left}" y="${y - 6}" font-size="12.5" font-weight="bold">${esc(`${c.row.title} — ${c.row.unit}, ${better}`)}</text>`);
    const vals = peers.map((p) => c.byPeer[p.id]!.median).filter(Number.isFinite);
    const max = Math.max(...vals, 1e-9);
    for (const p of peers) {
      const v = c.byPeer[p.id]!.median;
      const w = Number.isFinite(v) ? Math.max(1, (v / max) * barW) : 0;
      parts.push(`<text x="${left + labelW - 6}" y="${y + barH - 3}" font-size="11" text-anchor="end">${esc(p.label)}</text>`);
      parts.push(`<rect x="${left + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[p.id] ?? '#000'}"/>`);
      parts.push(`<text x="${(left + labelW + w + 5).toFixed(1)}" y="${y + barH - 3}" font-size="11">${esc(fmt(v, c.row.unit))}</text>`);
      y += barH + gap;
    }
  }
  const height = y + 16;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const settings = parseSettings(process.argv.slice(2));
  buildLoadgen();
  const pin = canPin();
  if (!pin) process.stderr.write('note: taskset or a second CPU is missing; server and load generator are not pinned\n');
  const { peers, skipped } = await availablePeers(settings.peers, pin);
  for (const [id, why] of Object.entries(skipped)) process.stderr.write(`skipping ${id}: ${why}\n`);
  if (!peers.length) throw new Error('no peer could start');
  const list = scenarios(settings);
  const info = machine();
  const started = Date.now();
  const outcomes: Record<string, Record<string, Outcome[]>> = {};
  const total = list.length * settings.repeats * peers.length;
  let done = 0;
  for (const sc of list) {
    outcomes[sc.id] = Object.fromEntries(peers.map((p) => [p.id, [] as Outcome[]]));
    for (let r = 0; r < settings.repeats; r++) {
      // Rotate the order each repeat so no peer always runs first or last.
      const order = peers.map((_, i) => peers[(i + r) % peers.length]!);
      for (const peer of order) {
        const o = await runOnce(peer, sc, pin);
        outcomes[sc.id]![peer.id]!.push(o);
        done++;
        const main = sc.rows[0]!;
        const v = metricOf(main, o);
        process.stderr.write(
          `[${done}/${total}] ${sc.id} ${peer.label}: ${v === null ? 'FAILED' : fmt(v, main.unit) + ' ' + main.unit}` +
            `${o.result?.cpu_pct !== undefined ? `, loadgen CPU ${o.result.cpu_pct.toFixed(0)}%` : ''}` +
            `${sc.deflate && o.result?.wire_per_payload ? `, wire/payload ${o.result.wire_per_payload.toFixed(3)}` : ''}` +
            `${o.ok ? '' : ` (${o.error})`}\n`,
        );
        // Give the kernel a moment to retire the sockets of the last run.
        await sleep(200);
      }
    }
  }
  const cells = buildCells(list, peers, outcomes);
  const seconds = Math.round((Date.now() - started) / 1000);
  const date = new Date().toISOString().slice(0, 10);
  const how = settings.quick ? 'npm run bench:quick' : 'npm run bench';
  const machineLine = `${String(info.cpu)}, ${String(info.cpus)} CPUs (server pinned to CPU 0, load generator to CPU 1), ${String(
    info.memory_gib,
  )} GiB, ${String(info.os)}, Node ${String(info.node)}`;
  const notes = [
    `${how}, ${date}: ${settings.repeats} repeat(s) per cell, median; ${settings.warmup} s warm-up + ${settings.duration} s measured per run; broadcast window ${settings.window}; ${seconds} s in all.`,
    `Machine: ${machineLine}; load average ${String(info.loadavg_start)} at start, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(',')} at end.`,
    'Ratios are taken repeat by repeat against the ws (no native helpers) and uWS.js runs of the same repeat, then the median. ⚠ after a value: a failed or unclean run (see the detail table); ⚠ after the CPU: the load generator reached 90% in some run of that row, so the fastest peer there (see the detail table) may be limited by it.',
    ...(list.some((sc) => sc.deflate)
      ? [
          'permessage-deflate row: each peer with its own compression at its defaults (wavecast `perMessageDeflate: true`, which compresses a broadcast once; ws `perMessageDeflate: true`, which compresses per receiver; uWS.js `SHARED_COMPRESSOR` with `publish(..., compress = true)`, which in uWS.js 3.0.6 compresses again for each subscriber: the compressor is shared memory, not shared work). Receivers offer `permessage-deflate; client_no_context_takeover; server_no_context_takeover`, the sender offers nothing and sends plain. The payload is a 1,024-byte JSON document; every delivery must carry RSV1 and is inflated, or found byte-identical to a frame of the same message already inflated and verified (no context takeover makes that the same check), then compared byte for byte. The detail table gives frame bytes per payload byte (wire / payload) and the server RSS right after the run (its peak in parentheses).',
        ]
      : []),
    ...Object.entries(skipped).map(([id, why]) => `Skipped ${id}: ${why}.`),
  ];
  const summary = summaryTable(cells, peers);
  const detail = detailTable(cells, peers);
  const markdown = `# Load benchmark\n\n${notes.join('\n\n')}\n\n${summary}\n\n## Every peer, every cell\n\n${detail}\n`;
  mkdirSync(settings.out, { recursive: true });
  const json = {
    date: new Date().toISOString(),
    command: how,
    settings,
    machine: { ...info, loadavg_end: os.loadavg().map((x) => +x.toFixed(2)), pinned: pin },
    peers: peers.map((p) => ({ id: p.id, label: p.label, env: p.env })),
    skipped,
    scenarios: list.map((sc) => ({ id: sc.id, load: sc.load, rows: sc.rows, runs: outcomes[sc.id] })),
    cells: cells.map((c) => ({
      row: c.row.id,
      title: c.row.title,
      unit: c.row.unit,
      higher_is_better: c.row.higherIsBetter,
      peers: c.byPeer,
      ratios: c.ratios,
    })),
  };
  const base = settings.quick ? `quick-${date}` : date;
  writeFileSync(join(settings.out, `${base}.json`), JSON.stringify(json, null, 2) + '\n');
  const mdName = settings.quick ? 'quick.md' : 'latest.md';
  const svgName = settings.quick ? 'quick.svg' : 'latest.svg';
  writeFileSync(join(settings.out, mdName), markdown);
  writeFileSync(join(settings.out, svgName), chart(cells, peers, `wavecast load benchmark, ${date} (${how})`));
  process.stdout.write(`\n${notes.join('\n')}\n\n${summary}\n\n`);
  if (!settings.quick) process.stdout.write(`${detail}\n\n`);
  process.stdout.write(`wrote ${join(settings.out, `${base}.json`)}, ${mdName}, ${svgName}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
