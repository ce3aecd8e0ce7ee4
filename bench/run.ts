/**
 * The load benchmark (issue 5): every peer in `bench/peers/` through the same
 * matrix, server pinned to CPU 0 and the C load generator to CPU 1, a fresh
 * server for every run, peers interleaved within each repeat so that drift on
 * a shared machine hits them alike. Besides each run's throughput the load
 * generator reports the server's CPU time over the same measured window
 * (issue 14), so cells where the load generator is the limit still compare
 * the servers: by CPU seconds per million messages.
 *
 *   npm run bench          3 repeats, medians; writes bench/results/<date>.json,
 *                          latest.md and latest.svg
 *   npm run bench:quick    1 short repeat of every cell (see README for the
 *                          time), prints the tables, writes under
 *                          bench/results/tmp/
 *
 * Flags: --quick, --repeats N, --duration S, --warmup S, --window W[,W...]
 * (every broadcast cell at these windows only; by default 1, 16 and 64, see
 * scenarios.ts), --peers id,id, --only term[,term] (scenario ids, exact or
 * substring: `--only deflate` runs the permessage-deflate row alone,
 * `--only broadcast-1000-32` that cell at each window), --out DIR.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { PEERS, buildLoadgen, canPin, memoryKiB, peerRuntimeVersion, peerUnavailable, runConnect, runLoad, startPeer } from './harness.js';
import type { LoadResult, Peer } from './harness.js';
import { bestLabel, buildCells, chart, cpuPerUnitOf, cpuTable, detailTable, fmt, fmtCpu, metricOf, summaryTable } from './report.js';
import type { Outcome } from './report.js';
import { parseSettings, scenarios } from './scenarios.js';
import type { Scenario } from './scenarios.js';

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
    const load = { ...sc.load, port: server.port, serverPid: server.pid };
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
    const missing = peerUnavailable(peer);
    if (missing) {
      skipped[peer.id] = missing;
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
        const cpu = cpuPerUnitOf(main.cpu, o);
        process.stderr.write(
          `[${done}/${total}] ${sc.id} ${peer.label}: ${v === null ? 'FAILED' : fmt(v, main.unit) + ' ' + main.unit}` +
            `${o.result?.cpu_pct !== undefined ? `, loadgen CPU ${o.result.cpu_pct.toFixed(0)}%` : ''}` +
            `${cpu !== null ? `, server CPU ${fmtCpu(cpu)} ${main.cpu!.unit} (${(o.result?.server_cpu_pct ?? NaN).toFixed(0)}%)` : ''}` +
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
  const windows = [...new Set(list.flatMap((sc) => (sc.load.mode === 'broadcast' ? [sc.load.window!] : [])))].sort((a, b) => a - b);
  const bun = peers.find((p) => p.id === 'bun');
  const best = bestLabel(peers);
  const notes = [
    `${how}, ${date}: ${settings.repeats} repeat(s) per cell, median; ${settings.warmup} s warm-up + ${settings.duration} s measured per run; broadcast windows ${
      windows.join(', ') || 'none'
    }; ${seconds} s in all.`,
    `Machine: ${machineLine}; load average ${String(info.loadavg_start)} at start, ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(',')} at end.`,
    ...(bun ? [`Bun ${peerRuntimeVersion(bun) ?? '?'} (the devDependency \`bun\`), its own \`Bun.serve\` with pub/sub for broadcast.`] : []),
    `Ratios are taken repeat by repeat against the ws (no native helpers), the uWS.js and the best of the ${best} runs of the same repeat, then the median. ⚠ after a value: a failed or unclean run (see the detail table); ⚠ after the CPU: the load generator reached 90% in some run of that row, so the fastest peer there (see the detail table) may be limited by it.`,
    `Server CPU per unit: the server process's CPU time (user + system, all threads), sampled by the load generator at the start and end of the measured window (connect: while the 10,000 connections open), divided by the round trips, deliveries or handshakes counted in that window. Lower is better; where the load generator limits the throughput, this is the fair comparison. The ratio is against the lowest of ${best} in the same repeat (below 1.00x: wavecast needs less CPU). On loopback part of the kernel's work for a packet is charged to the process that sends it, the same way for every peer.`,
    ...(list.some((sc) => sc.deflate)
      ? [
          'permessage-deflate row: each peer with its own compression at its defaults (wavecast `perMessageDeflate: true`, which compresses a broadcast once; ws `perMessageDeflate: true`, which compresses per receiver; uWS.js `SHARED_COMPRESSOR` with `publish(..., compress = true)`, which in uWS.js 3.0.6 compresses again for each subscriber: the compressor is shared memory, not shared work). Receivers offer `permessage-deflate; client_no_context_takeover; server_no_context_takeover`, the sender offers nothing and sends plain. The payload is a 1,024-byte JSON document; every delivery must carry RSV1 and is inflated, or found byte-identical to a frame of the same message already inflated and verified (no context takeover makes that the same check), then compared byte for byte. The detail table gives frame bytes per payload byte (wire / payload) and the server RSS right after the run (its peak in parentheses).',
        ]
      : []),
    ...Object.entries(skipped).map(([id, why]) => `Skipped ${id}: ${why}.`),
  ];
  const summary = summaryTable(cells, peers);
  const cpu = cpuTable(cells, peers);
  const detail = detailTable(cells, peers);
  const markdown = `# Load benchmark\n\n${notes.join('\n\n')}\n\n${summary}\n\n## Server CPU per unit of work\n\n${cpu}\n\n## Every peer, every cell\n\n${detail}\n`;
  mkdirSync(settings.out, { recursive: true });
  const json = {
    date: new Date().toISOString(),
    command: how,
    settings,
    machine: { ...info, loadavg_end: os.loadavg().map((x) => +x.toFixed(2)), pinned: pin },
    peers: peers.map((p) => ({ id: p.id, label: p.label, env: p.env, runtime_version: peerRuntimeVersion(p) ?? undefined })),
    skipped,
    scenarios: list.map((sc) => ({ id: sc.id, load: sc.load, rows: sc.rows, runs: outcomes[sc.id] })),
    cells: cells.map((c) => ({
      row: c.row.id,
      title: c.row.title,
      unit: c.row.unit,
      higher_is_better: c.row.higherIsBetter,
      cpu_unit: c.row.cpu?.unit,
      best_of: c.best,
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
  process.stdout.write(`\n${notes.join('\n')}\n\n${summary}\n\n${cpu}\n\n`);
  if (!settings.quick) process.stdout.write(`${detail}\n\n`);
  process.stdout.write(`wrote ${join(settings.out, `${base}.json`)}, ${mdName}, ${svgName}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
