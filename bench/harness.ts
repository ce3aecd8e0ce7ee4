/**
 * The pieces the load benchmark runner and its smoke test share: building
 * the C load generator, starting a peer server pinned to CPU 0, running the
 * load generator pinned to CPU 1, and reading a process's RSS.
 *
 * Every child is bounded in time: a peer that does not print its ready line
 * within 15 s, or a load generator that outlives its own hard cap, is killed.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { findBun } from './bun-binary.js';
import { ROOT } from './paths.js';

export { ROOT };
/** Where the load generator's source and binary live. */
export const LOADGEN_SRC = join(ROOT, 'bench/load/loadgen.c');
export const LOADGEN_BIN = join(ROOT, 'bench/load/bin/loadgen');

/** One server implementation under test. */
export interface Peer {
  /** Stable key used in the JSON results. */
  id: string;
  /** Name shown in tables and charts. */
  label: string;
  /** argv, resolved against the repository root by the caller. */
  command: readonly string[];
  env: Readonly<Record<string, string>>;
  /** What the ready line must say for the run to count (e.g. `backend: 'native'`). */
  expect?: Readonly<Record<string, unknown>>;
  /**
   * For a peer that is not run by this Node: finds its runtime, whose path
   * replaces `command[0]`, or says why it cannot run here.
   */
  runtime?: () => { ok: true; path: string; version: string } | { ok: false; reason: string };
}

const node = process.execPath;
const peerJs = (name: string): string => join(ROOT, 'dist/bench/peers', `${name}.js`);

/** Every peer the suite knows, in table order. */
export const PEERS: readonly Peer[] = [
  {
    id: 'wavecast',
    label: 'wavecast',
    command: [node, peerJs('wavecast')],
    env: {},
    expect: { backend: 'native' },
  },
  {
    id: 'wavecast-borrow',
    label: 'wavecast (borrowFrames)',
    command: [node, peerJs('wavecast')],
    env: { BENCH_BORROW: '1' },
    expect: { backend: 'native', borrowFrames: true },
  },
  {
    id: 'wavecast-js',
    label: 'wavecast (JS)',
    command: [node, peerJs('wavecast')],
    env: { WAVECAST_NO_NATIVE: '1' },
    expect: { backend: 'js' },
  },
  {
    id: 'ws',
    label: 'ws',
    command: [node, peerJs('ws')],
    env: { WS_NO_BUFFER_UTIL: '1', WS_NO_UTF_8_VALIDATE: '1' },
  },
  { id: 'ws-native', label: 'ws + bufferutil', command: [node, peerJs('ws')], env: {} },
  { id: 'uws', label: 'uWS.js', command: [node, peerJs('uws')], env: {} },
  { id: 'bun', label: 'Bun', command: ['bun', join(ROOT, 'bench/peers/bun.ts')], env: {}, runtime: findBun },
];

/** Why `peer` cannot run on this machine, or null when it can. */
export function peerUnavailable(peer: Peer): string | null {
  const r = peer.runtime?.();
  return r && !r.ok ? r.reason : null;
}

/** The runtime version of a peer with its own runtime (Bun), for the notes of a run. */
export function peerRuntimeVersion(peer: Peer): string | null {
  const r = peer.runtime?.();
  return r?.ok ? r.version : null;
}

/** The peer's argv with its runtime resolved; throws where it cannot run. */
function peerCommand(peer: Peer): string[] {
  if (!peer.runtime) return [...peer.command];
  const r = peer.runtime();
  if (!r.ok) throw new Error(`${peer.label}: ${r.reason}`);
  return [r.path, ...peer.command.slice(1)];
}

/** Finds an executable on PATH, or null. */
export function which(name: string): string | null {
  const r = spawnSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

/**
 * Builds the load generator with the system C compiler when the binary is
 * missing or older than its source. Links zlib for permessage-deflate; where
 * zlib (Debian: zlib1g-dev) is missing it builds without it, and only the
 * compressed scenarios fail, saying why. Throws with the compiler's output.
 */
export function buildLoadgen(): string {
  const fresh = existsSync(LOADGEN_BIN) && statSync(LOADGEN_BIN).mtimeMs >= statSync(LOADGEN_SRC).mtimeMs;
  if (fresh) return LOADGEN_BIN;
  mkdirSync(dirname(LOADGEN_BIN), { recursive: true });
  const cc = process.env.CC ?? 'cc';
  const build = (extra: string[]) =>
    spawnSync(cc, ['-O2', '-Wall', '-o', LOADGEN_BIN, LOADGEN_SRC, ...extra], { encoding: 'utf8' });
  let r = build(['-lz']);
  if (r.status !== 0) {
    const withZlib = r.stderr;
    r = build(['-DLOADGEN_NO_ZLIB']);
    if (r.status !== 0) throw new Error(`building the load generator failed:\n${withZlib}\n${r.stderr}${r.error ?? ''}`);
    process.stderr.write('note: the load generator was built without zlib; permessage-deflate scenarios will fail\n');
  }
  return LOADGEN_BIN;
}

/** Whether `taskset` exists and this machine has at least two CPUs to pin to. */
export function canPin(): boolean {
  return which('taskset') !== null && (spawnSync('nproc', { encoding: 'utf8' }).stdout.trim() || '1') !== '1';
}

/**
 * Wraps argv so that it runs with a raised open-file limit (10,000
 * connections need 10,000 descriptors on each side) and, when possible,
 * pinned to `cpu`. `exec` keeps the pid, so the child's pid is the server's.
 */
function wrapped(argv: readonly string[], cpu: number | null): string[] {
  const pin = cpu !== null ? `taskset -c ${cpu} ` : '';
  const script = `ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec ${pin}"$@"`;
  return ['bash', '-c', script, 'bash', ...argv];
}

/** A running peer server. */
export interface RunningPeer {
  port: number;
  pid: number;
  info: Record<string, unknown>;
  stop(): Promise<void>;
}

/** How a peer is started beyond its scenario. */
export interface PeerOptions {
  /**
   * Turn on the peer's permessage-deflate (`BENCH_DEFLATE=1`, see
   * `bench/peers/common.ts`); its ready line must then say `perMessageDeflate: true`.
   */
  deflate?: boolean;
}

/** Starts `peer` for `scenario` and resolves once it prints its ready line. */
export function startPeer(
  peer: Peer,
  scenario: 'echo' | 'broadcast',
  cpu: number | null,
  options: PeerOptions = {},
): Promise<RunningPeer> {
  const [cmd, ...args] = wrapped([...peerCommand(peer), scenario, '--port', '0'], cpu);
  const expect = { ...peer.expect, ...(options.deflate ? { perMessageDeflate: true } : {}) };
  const child = spawn(cmd!, args, {
    cwd: ROOT,
    env: { ...process.env, ...peer.env, ...(options.deflate ? { BENCH_DEFLATE: '1' } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (stderr.length < 4000) stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${peer.label}: no ready line within 15 s\n${stderr}`));
    }, 15_000);
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      clearTimeout(timer);
      let info: Record<string, unknown>;
      try {
        info = JSON.parse(line) as Record<string, unknown>;
      } catch {
        child.kill('SIGKILL');
        reject(new Error(`${peer.label}: unexpected output: ${line}`));
        return;
      }
      for (const [key, value] of Object.entries(expect)) {
        if (info[key] !== value) {
          child.kill('SIGKILL');
          reject(new Error(`${peer.label}: expected ${key}=${String(value)}, the server says ${String(info[key])}`));
          return;
        }
      }
      resolve({
        port: Number(info.port),
        pid: child.pid!,
        info,
        stop: () => stopChild(child),
      });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${peer.label}: exited with ${code} before it was ready\n${stderr}`));
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const hard = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** The JSON line the load generator prints (fields depend on the mode). */
export interface LoadResult {
  mode: 'echo' | 'broadcast' | 'connect';
  conns: number;
  rate?: number;
  handshakes_per_s?: number;
  p50_us?: number;
  p99_us?: number;
  mismatches?: number;
  lost?: number;
  reordered?: number;
  undelivered?: number;
  protocol_errors?: number;
  closed?: number;
  opened?: number;
  /** --deflate: receivers that negotiated permessage-deflate. */
  deflate_conns?: number;
  /** Messages received with RSV1 set (compressed) and without. */
  compressed_messages?: number;
  plain_messages?: number;
  /** Frame bytes on the wire (headers included) per payload byte delivered. */
  wire_per_payload?: number;
  /** Compressed messages inflated, and those byte-identical to one already inflated and verified. */
  inflated?: number;
  inflate_cache_hits?: number;
  total_messages?: number;
  failed?: number;
  /** Absent when the run ended before traffic (a connection could not open). */
  cpu_pct?: number;
  /**
   * With `serverPid`: the server's CPU seconds (user + system, all threads)
   * over the measured window (connect: while the connections opened), and
   * that as a share of one CPU; null when the server could not be read.
   */
  server_cpu_s?: number | null;
  server_cpu_pct?: number | null;
  error: string | null;
  [key: string]: unknown;
}

/** Load generator flags, mapped one to one onto its command line. */
export interface LoadOptions {
  mode: 'echo' | 'broadcast' | 'connect';
  port: number;
  conns: number;
  depth?: number;
  window?: number;
  size?: number;
  text?: boolean;
  duration?: number;
  warmup?: number;
  concurrency?: number;
  hold?: number;
  sources?: number;
  timeout?: number;
  /** Offer permessage-deflate on receivers and echo connections. */
  deflate?: boolean;
  /** The offer, when not the default (no context takeover either way). */
  deflateOffer?: string;
  /** Broadcast payload: `size` bytes of JSON text instead of the hex + pattern layout. */
  json?: boolean;
  /** false: inflate every compressed message, even one byte-identical to a verified one (see loadgen.c). */
  inflateCache?: boolean;
  /** The server's pid: the load generator reports its CPU time over the measured window. */
  serverPid?: number;
}

function loadArgs(o: LoadOptions): string[] {
  const a = ['--mode', o.mode, '--port', String(o.port), '--conns', String(o.conns)];
  const num = (flag: string, v: number | undefined): void => {
    if (v !== undefined) a.push(flag, String(v));
  };
  num('--depth', o.depth);
  num('--window', o.window);
  num('--size', o.size);
  num('--duration', o.duration);
  num('--warmup', o.warmup);
  num('--concurrency', o.concurrency);
  num('--hold', o.hold);
  num('--sources', o.sources);
  num('--timeout', o.timeout);
  num('--server-pid', o.serverPid);
  if (o.text) a.push('--text');
  if (o.json) a.push('--json');
  if (o.inflateCache === false) a.push('--no-inflate-cache');
  if (o.deflateOffer !== undefined) a.push('--deflate-offer', o.deflateOffer);
  else if (o.deflate) a.push('--deflate');
  return a;
}

/** Seconds the load generator may take at most for these options. */
function hardCap(o: LoadOptions): number {
  return Math.ceil(60 + (o.warmup ?? 1) + (o.duration ?? 5) + 10 + (o.hold ?? 0));
}

/** Runs one echo or broadcast measurement and returns its JSON line. */
export function runLoad(o: LoadOptions, cpu: number | null): Promise<LoadResult> {
  const timeout = o.timeout ?? hardCap(o);
  const [cmd, ...args] = wrapped([LOADGEN_BIN, ...loadArgs({ ...o, timeout })], cpu);
  const child = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return collect(child, timeout + 5);
}

function collect(child: ChildProcess, timeoutSeconds: number): Promise<LoadResult> {
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutSeconds * 1000);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as LoadResult);
      } catch {
        reject(new Error(`load generator exited with ${code ?? signal}: ${err.trim() || out.trim()}`));
      }
    });
  });
}

/** Resident set size of a process in KiB, from /proc (Linux). */
export function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** A process and its descendants (a primary and its workers), from /proc (Linux; Node forks on its main thread). */
export function processTree(pid: number): number[] {
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    let children = '';
    try {
      children = readFileSync(`/proc/${tree[i]}/task/${tree[i]}/children`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    for (const child of children.trim().split(/\s+/)) if (child !== '') tree.push(Number(child));
  }
  return tree;
}

/**
 * Resident set size of a process and its descendants, summed, in KiB. Pages
 * the processes share (Node's code) count once per process: compare two
 * readings of the same tree, not trees of different sizes.
 */
export function treeRssKiB(pid: number): number {
  let total = 0;
  for (const p of processTree(pid)) {
    try {
      total += rssKiB(p);
    } catch {
      // exited between the listing and the read
    }
  }
  return total;
}

/** A process's resident set now and at its peak (VmHWM), in KiB, from /proc (Linux). */
export function memoryKiB(pid: number): { rss_kib: number; hwm_kib: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
  if (!rss || !hwm) throw new Error(`no VmRSS / VmHWM for pid ${pid}`);
  return { rss_kib: Number(rss[1]), hwm_kib: Number(hwm[1]) };
}

/** Result of a connect run: handshake rate and the server's RSS growth (its whole process tree's). */
export interface ConnectResult extends LoadResult {
  rss_before_kib: number;
  rss_after_kib: number;
  kib_per_conn: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Opens `o.conns` connections as fast as the concurrency bound allows, then,
 * with all of them idle, reads the server's RSS. `before` is read after a
 * small warm-up batch has opened and closed, so one-time costs (code paths
 * compiled, pools created on first use) are not charged to each connection.
 */
export async function runConnect(
  o: LoadOptions,
  server: RunningPeer,
  cpu: number | null,
  /** Called with every connection open and idle, after the RSS reading. */
  whileHeld?: () => void,
): Promise<ConnectResult> {
  o = { ...o, serverPid: server.pid };
  await runLoad({ ...o, conns: Math.min(200, o.conns), hold: 0, timeout: 30 }, cpu);
  await sleep(500);
  const before = treeRssKiB(server.pid);
  const hold = 120;
  const timeout = hardCap({ ...o, hold });
  const [cmd, ...args] = wrapped([LOADGEN_BIN, ...loadArgs({ ...o, hold, timeout })], cpu);
  const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const first = await new Promise<LoadResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('connect run: no result within the time cap'));
    }, timeout * 1000);
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(out.slice(0, nl)) as LoadResult);
        } catch {
          reject(new Error(`connect run: bad output ${out}`));
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`connect run exited with ${code}: ${err.trim()}`));
    });
  });
  // Let the server finish whatever the last handshakes started.
  await sleep(1000);
  const after = treeRssKiB(server.pid);
  whileHeld?.();
  child.stdin!.end();
  await new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const opened = first.opened ?? 0;
  return {
    ...first,
    rss_before_kib: before,
    rss_after_kib: after,
    kib_per_conn: opened > 0 ? (after - before) / opened : NaN,
  };
}
