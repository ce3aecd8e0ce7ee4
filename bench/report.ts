/**
 * The load benchmark's report: runs folded into cells (medians and ratios
 * taken repeat by repeat), the markdown tables and the SVG chart.
 */
import type { LoadResult, Peer } from './harness.js';
import type { CpuPer, Row, Scenario } from './scenarios.js';

/** One run's outcome: the load generator's line, or why there is none. */
export type Outcome = { ok: true; result: LoadResult & Record<string, unknown> } | { ok: false; error: string; result?: LoadResult };

/** The peers wavecast is held against for "the best of" ratios, in order. */
export const FASTEST_PEERS = ['uws', 'bun'] as const;

/** One peer's figures in one row. */
export interface PeerCell {
  median: number;
  /** The row's metric per repeat (null: the run failed). */
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
  /** Server CPU seconds per `row.cpu.per` units of work, per repeat, and their median. */
  cpuValues: (number | null)[];
  cpuPerUnit: number;
  /** Server CPU over the measured window as a share of one CPU (median, %). */
  serverCpuPct: number;
}

/** Ratios of one peer against others, each the median of per-repeat ratios. */
export interface Ratios {
  vsWs: number;
  vsUws: number;
  /** Throughput (or the row's metric) against the best of uWS.js and Bun in the same repeat. */
  vsBest: number;
  /** Server CPU per unit against the lowest of uWS.js and Bun in the same repeat (below 1: less CPU). */
  cpuVsBest: number;
}

/** One table row: every peer's figures and the ratios. */
export interface Cell {
  row: Row;
  scenario: string;
  byPeer: Record<string, PeerCell>;
  ratios: Record<string, Ratios>;
  /** Which of uWS.js and Bun ran (the "best of" ratios use these). */
  best: string[];
}

/** The median, NaN for none. */
export const median = (xs: readonly number[]): number => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The row's metric from one run, or null when the run failed. */
export function metricOf(row: Row, o: Outcome): number | null {
  if (!o.ok) return null;
  const v = o.result[row.metric];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** Server CPU seconds per `cpu.per` units of work in one run, or null. */
export function cpuPerUnitOf(cpu: CpuPer | undefined, o: Outcome): number | null {
  if (!cpu || !o.ok) return null;
  const seconds = o.result.server_cpu_s;
  const count = o.result[cpu.count];
  if (typeof seconds !== 'number' || typeof count !== 'number' || count <= 0) return null;
  return (seconds / count) * cpu.per;
}

/**
 * Per-repeat ratio a / b over the repeats where both ran cleanly, then the
 * median. `b` may hold several series: per repeat the best of them is taken
 * (the highest, or the lowest when `higherIsBetter` is false).
 */
function pairRatio(a: (number | null)[], bs: ((number | null)[] | undefined)[], higherIsBetter = true): number {
  const rs: number[] = [];
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const ys = bs.map((b) => b?.[i]).filter((y): y is number => y != null && y !== 0);
    if (x == null || !ys.length) continue;
    rs.push(x / (higherIsBetter ? Math.max(...ys) : Math.min(...ys)));
  }
  return median(rs);
}

/** Folds every run into cells, one per row of every scenario. */
export function buildCells(list: Scenario[], peers: Peer[], outcomes: Record<string, Record<string, Outcome[]>>): Cell[] {
  const cells: Cell[] = [];
  const finite = (xs: number[]): number[] => xs.filter(Number.isFinite);
  for (const sc of list) {
    for (const row of sc.rows) {
      const byPeer: Cell['byPeer'] = {};
      for (const peer of peers) {
        const runs = outcomes[sc.id]?.[peer.id] ?? [];
        const values = runs.map((o) => metricOf(row, o));
        const cpuValues = runs.map((o) => cpuPerUnitOf(row.cpu, o));
        const ok = runs.filter((o): o is Extract<Outcome, { ok: true }> => o.ok);
        byPeer[peer.id] = {
          median: median(values.filter((v): v is number => v !== null)),
          values,
          p50: median(finite(ok.map((o) => o.result.p50_us ?? NaN))),
          p99: median(finite(ok.map((o) => o.result.p99_us ?? NaN))),
          cpuMax: Math.max(0, ...runs.map((o) => o.result?.cpu_pct ?? 0)),
          errors: runs.flatMap((o) => (o.ok ? [] : [o.error])),
          wirePerPayload: median(ok.map((o) => o.result.wire_per_payload ?? NaN).filter((v) => Number.isFinite(v) && v > 0)),
          rssKiB: median(finite(ok.map((o) => Number(o.result.server_rss_kib ?? NaN)))),
          hwmKiB: median(finite(ok.map((o) => Number(o.result.server_hwm_kib ?? NaN)))),
          cpuValues,
          cpuPerUnit: median(cpuValues.filter((v): v is number => v !== null)),
          serverCpuPct: row.cpu ? median(finite(ok.map((o) => o.result.server_cpu_pct ?? NaN))) : NaN,
        };
      }
      const best = FASTEST_PEERS.filter((id) => byPeer[id]);
      const ratios: Cell['ratios'] = {};
      for (const peer of peers) {
        const me = byPeer[peer.id]!;
        ratios[peer.id] = {
          vsWs: pairRatio(me.values, [byPeer.ws?.values]),
          vsUws: pairRatio(me.values, [byPeer.uws?.values]),
          vsBest: pairRatio(me.values, best.map((id) => byPeer[id]!.values), row.higherIsBetter),
          // Less CPU per unit is better.
          cpuVsBest: pairRatio(me.cpuValues, best.map((id) => byPeer[id]!.cpuValues), false),
        };
      }
      cells.push({ row, scenario: sc.id, byPeer, ratios, best });
    }
  }
  return cells;
}

/** A rate, count or size for a table. */
export function fmt(v: number, unit: string): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (unit === 'KiB/conn') return `${v.toFixed(2)} KiB`;
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (v >= 1e4) return `${Math.round(v / 1e3)}k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}
/** Server CPU seconds per unit, three significant digits. */
export const fmtCpu = (v: number): string => (!Number.isFinite(v) ? 'n/a' : v >= 100 ? v.toFixed(0) : v.toPrecision(3));
const fmtMiB = (kib: number): string => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(0)} MiB` : '');
const fmtRatio = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}x` : 'n/a');
const fmtPct = (p: number): string => (Number.isFinite(p) ? `${p.toFixed(0)}%` : '');
const fmtUs = (us: number): string =>
  !Number.isFinite(us) ? 'n/a' : us >= 1000 ? `${(us / 1000).toFixed(us >= 1e4 ? 0 : 1)} ms` : `${us.toFixed(0)} µs`;

/** "uWS.js, Bun": the labels of the peers the "best of" ratios were taken against. */
export function bestLabel(peers: Peer[]): string {
  const labels = FASTEST_PEERS.flatMap((id) => peers.filter((p) => p.id === id).map((p) => p.label));
  return labels.length ? labels.join(', ') : 'none';
}

const header = (head: string[]): string[] => [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];

/** The main table: each row's metric per peer, the ratios, and the load generator's CPU. */
export function summaryTable(cells: Cell[], peers: Peer[]): string {
  const best = bestLabel(peers);
  const lines = header([
    'scenario',
    ...peers.map((p) => p.label),
    'wavecast / ws',
    'wavecast / uWS',
    `wavecast / best of ${best}`,
    `server CPU per unit, wavecast / best of ${best}`,
    'loadgen CPU (max)',
  ]);
  for (const c of cells) {
    const flags = (id: string): string => (c.byPeer[id]!.errors.length ? ' ⚠' : '');
    const values = peers.map((p) => fmt(c.byPeer[p.id]!.median, c.row.unit) + flags(p.id));
    const w = c.ratios.wavecast;
    const cpu = Math.max(...peers.map((p) => c.byPeer[p.id]!.cpuMax));
    const unit = c.row.higherIsBetter ? c.row.unit : `${c.row.unit}, lower is better`;
    lines.push(
      `| ${c.row.title} (${unit}) | ${values.join(' | ')} | ${fmtRatio(w?.vsWs ?? NaN)} | ${fmtRatio(w?.vsUws ?? NaN)} | ${fmtRatio(
        w?.vsBest ?? NaN,
      )} | ${c.row.cpu ? fmtRatio(w?.cpuVsBest ?? NaN) : ''} | ${c.row.metric === 'kib_per_conn' ? '' : `${cpu.toFixed(0)}%${cpu >= 90 ? ' ⚠' : ''}`} |`,
    );
  }
  return lines.join('\n');
}

/**
 * Server CPU seconds per unit of work (per million round trips or
 * deliveries, per 1,000 handshakes), lower is better: the fair figure where
 * the load generator, not the server, limits the throughput.
 */
export function cpuTable(cells: Cell[], peers: Peer[]): string {
  const best = bestLabel(peers);
  const lines = header([
    'server CPU per unit (lower is better)',
    ...peers.map((p) => p.label),
    `wavecast / best of ${best}`,
    'wavecast server CPU',
    'loadgen CPU (max)',
  ]);
  for (const c of cells) {
    if (!c.row.cpu) continue;
    const values = peers.map((p) => fmtCpu(c.byPeer[p.id]!.cpuPerUnit));
    const cpu = Math.max(...peers.map((p) => c.byPeer[p.id]!.cpuMax));
    lines.push(
      `| ${c.row.title} (${c.row.cpu.unit}) | ${values.join(' | ')} | ${fmtRatio(c.ratios.wavecast?.cpuVsBest ?? NaN)} | ${fmtPct(
        c.byPeer.wavecast?.serverCpuPct ?? NaN,
      )} | ${cpu.toFixed(0)}%${cpu >= 90 ? ' ⚠' : ''} |`,
    );
  }
  return lines.join('\n');
}

/** Every peer in every cell: repeats, latencies, CPU on both sides, memory, problems. */
export function detailTable(cells: Cell[], peers: Peer[]): string {
  const head = [
    'scenario',
    'peer',
    'median',
    'runs',
    'p50',
    'p99',
    'vs ws',
    'vs uWS',
    'vs best',
    'loadgen CPU',
    'server CPU',
    'server CPU / unit',
    'wire / payload',
    'server RSS end (peak)',
    'problems',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|---|---|${'---:|'.repeat(head.length - 3)}---|`];
  for (const c of cells) {
    for (const p of peers) {
      const b = c.byPeer[p.id]!;
      const r = c.ratios[p.id]!;
      const latency = c.row.metric === 'rate';
      const cols = [
        c.row.id,
        p.label,
        fmt(b.median, c.row.unit),
        `${b.values.filter((v) => v !== null).length}/${b.values.length}`,
        latency ? fmtUs(b.p50) : '',
        latency ? fmtUs(b.p99) : '',
        fmtRatio(r.vsWs),
        fmtRatio(r.vsUws),
        fmtRatio(r.vsBest),
        c.row.metric === 'kib_per_conn' ? '' : `${b.cpuMax.toFixed(0)}%`,
        fmtPct(b.serverCpuPct),
        c.row.cpu ? `${fmtCpu(b.cpuPerUnit)} ${c.row.cpu.unit}` : '',
        Number.isFinite(b.wirePerPayload) ? b.wirePerPayload.toFixed(3) : '',
        `${fmtMiB(b.rssKiB)}${Number.isFinite(b.hwmKiB) ? ` (${fmtMiB(b.hwmKiB)})` : ''}`,
        [...new Set(b.errors)].join('; ').replaceAll('|', '/'),
      ];
      lines.push(`| ${cols.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

const COLORS: Record<string, string> = {
  wavecast: '#2563eb',
  'wavecast-borrow': '#1e40af',
  'wavecast-js': '#93c5fd',
  ws: '#9ca3af',
  'ws-native': '#4b5563',
  uws: '#f59e0b',
  bun: '#ec4899',
};

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/**
 * A hand-written horizontal bar chart: one group per row, bars scaled to the
 * row's best, each labelled with its value and, where the row has one, the
 * server's CPU per unit of work.
 */
export function chart(cells: Cell[], peers: Peer[], title: string): string {
  const barH = 14;
  const gap = 4;
  const groupPad = 26;
  const left = 20;
  const labelW = 120;
  const barW = 460;
  const width = left + labelW + barW + 220;
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
      const b = c.byPeer[p.id]!;
      const w = Number.isFinite(b.median) ? Math.max(1, (b.median / max) * barW) : 0;
      const cpu = c.row.cpu && Number.isFinite(b.cpuPerUnit) ? `  (server CPU ${fmtCpu(b.cpuPerUnit)} ${c.row.cpu.short})` : '';
      const label = fmt(b.median, c.row.unit) + cpu;
      parts.push(`<text x="${left + labelW - 6}" y="${y + barH - 3}" font-size="11" text-anchor="end">${esc(p.label)}</text>`);
      parts.push(`<rect x="${left + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${COLORS[p.id] ?? '#000'}"/>`);
      parts.push(`<text x="${(left + labelW + w + 5).toFixed(1)}" y="${y + barH - 3}" font-size="11">${esc(label)}</text>`);
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
