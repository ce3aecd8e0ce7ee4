/*
 * loadgen: a single-threaded, epoll-driven RFC 6455 load generator for the
 * wavecast benchmark suite (issue 5).
 *
 * It is a real WebSocket client: it sends the opening handshake and checks
 * Sec-WebSocket-Accept (SHA-1 + base64 are implemented below, no OpenSSL),
 * masks every frame with a fresh key from a xorshift PRNG (RFC 6455 5.3), and
 * parses server frames with a streaming parser that handles 7/16/64-bit
 * lengths, fragmentation, control frames and partial reads.
 *
 * Modes (one JSON line on stdout per run):
 *   echo       C connections, D messages in flight each, payload S bytes.
 *              Every echo is checked byte for byte against what was sent.
 *   broadcast  C receivers on /recv plus one sender on /send. The sender
 *              keeps at most W messages not yet delivered to every receiver.
 *              Payload = 16 hex digits of sequence number + 16 hex digits of
 *              send time (ns, CLOCK_MONOTONIC) + a deterministic body, so each
 *              delivery is checked byte for byte, timed, and counted for loss
 *              and reordering.
 *   connect    C handshakes with at most K in flight, then holds the idle
 *              connections until stdin is closed (or --hold seconds pass), so
 *              the runner can read the server's RSS.
 *
 * Options for compression (RFC 7692):
 *   --deflate  receivers and echo connections offer permessage-deflate
 *              (--deflate-offer sets the offer; by default
 *              "permessage-deflate; client_no_context_takeover;
 *              server_no_context_takeover"). A server that declines fails the
 *              run. Messages with RSV1 are inflated (raw inflate after
 *              appending 00 00 ff ff), with a fresh context per message when
 *              the server agreed to server_no_context_takeover and a context
 *              kept per connection otherwise, then checked as usual. The
 *              sender never offers it: client-to-server compression is not
 *              what is measured. The JSON line reports how many messages came
 *              compressed and the wire bytes (frame headers included) per
 *              payload byte.
 *              Without context takeover, inflating is a pure function of the
 *              compressed bytes, so a receiver whose compressed frame for seq
 *              is byte-identical to one already inflated and verified for seq
 *              reuses that result (a memcmp instead of an inflate; counted as
 *              inflate_cache_hits, off with --no-inflate-cache): the load
 *              generator would otherwise spend more CPU inflating a shared
 *              broadcast than the server spends compressing it (measured:
 *              inflating every delivery saturates it at about 290k 1 KiB
 *              deliveries/s, against 1.9M with the cache at 74% CPU).
 *   --json     (broadcast) the payload is --size bytes of JSON text, a
 *              realistic, compressible document:
 *              {"seq":"<16 hex>","t":"<16 hex>","items":[{"id":..,"name":..,
 *              "price":..,"qty":..,"tags":[..]},..],"note":"..."}
 *              built per message from seq; each delivery is compared byte for
 *              byte with the message the sender sent.
 *
 * CPU use of this process (getrusage user+sys over wall time of the measured
 * phase) is reported so the runner can show that the load generator was not
 * the bottleneck. With --server-pid P it also reports the server's CPU time
 * (user + system, every thread) over exactly the same window: the measured
 * phase of echo and broadcast, the opening of the connections in connect
 * mode; with workers, the server is its process tree (the primary, its
 * workers and what they spawn, found through /proc/P/task/P/children:
 * Node forks on its main thread). The load generator samples it itself
 * because only it knows the window's edges; on 2 cores a cell can be limited by the load generator,
 * and the server's CPU per message is then the fair figure. It reads the
 * server's process CPU clock (clock_getcpuclockid, nanoseconds), or
 * /proc/P/stat utime + stime (clock ticks) where that clock cannot be had.
 * Only loopback addresses are accepted.
 *
 * Build: cc -O2 -o bench/load/bin/loadgen bench/load/loadgen.c -lz
 * (without zlib: add -DLOADGEN_NO_ZLIB and drop -lz; --deflate is then refused)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if !defined(LOADGEN_NO_ZLIB) && defined(__has_include)
#if __has_include(<zlib.h>)
#include <zlib.h>
#define HAVE_ZLIB 1
#endif
#endif
#ifndef HAVE_ZLIB
#define HAVE_ZLIB 0
#endif

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------ utils */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "loadgen: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(2);
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* --server-pid: the server's CPU time, all threads (live and exited). */
static int server_pid;
static int server_clock_ok;
static clockid_t server_clock;

static void server_cpu_init(void) {
  if (server_pid > 0 && clock_getcpuclockid((pid_t)server_pid, &server_clock) == 0) {
    struct timespec ts;
    server_clock_ok = clock_gettime(server_clock, &ts) == 0;
  }
}

/* utime + stime of process `pid` and of its children it has reaped (cutime +
 * cstime), in clock ticks, from /proc/pid/stat; -1 when it cannot be read. */
static double proc_ticks(int pid, int with_own) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = 0;
  /* The command name (field 2) may hold spaces and parentheses: fields are
   * counted from the last ')'. utime, stime, cutime, cstime are fields 14-17. */
  char *p = strrchr(line, ')');
  unsigned long long ut, st;
  long long cut, cst;
  if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &ut, &st, &cut, &cst) != 4) return -1;
  return (double)(with_own ? ut + st : 0) + (double)(cut + cst);
}

/* Ticks of every descendant of `pid` (the workers of a primary, and what
 * they spawn): each one's own time and its reaped children's, so a worker
 * that exits mid-window still counts once its parent has reaped it. */
static double descendant_ticks(int pid, int depth) {
  if (depth > 8) return 0;
  char path[96];
  snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  double total = 0;
  int child;
  while (fscanf(f, "%d", &child) == 1) {
    const double t = proc_ticks(child, 1);
    if (t >= 0) total += t + descendant_ticks(child, depth + 1);
  }
  fclose(f);
  return total;
}

/* Seconds of CPU the server has used so far, or -1 when it cannot be read
 * (no --server-pid, or the process is gone). The server is its whole process
 * tree: a primary and its workers count together. Threads other than a
 * process's main one count through the process's own clock or stat line. */
static double server_cpu_seconds(void) {
  if (server_pid <= 0) return -1;
  const double tick = (double)sysconf(_SC_CLK_TCK);
  const double descendants = descendant_ticks(server_pid, 0);
  if (server_clock_ok) {
    struct timespec ts;
    const double reaped = proc_ticks(server_pid, 0);
    if (reaped < 0 || clock_gettime(server_clock, &ts) != 0) return -1;
    return (double)ts.tv_sec + ts.tv_nsec / 1e9 + (reaped + descendants) / tick;
  }
  const double own = proc_ticks(server_pid, 1);
  return own < 0 ? -1 : (own + descendants) / tick;
}

/* Appends ,"server_cpu_s":x,"server_cpu_pct":y (null when unknown) for a
 * window of `secs` seconds between samples a and b. */
static void print_server_cpu(double a, double b, double secs) {
  if (a < 0 || b < 0 || b < a) {
    printf(",\"server_cpu_s\":null,\"server_cpu_pct\":null");
    return;
  }
  printf(",\"server_cpu_s\":%.6f,\"server_cpu_pct\":%.1f", b - a, 100.0 * (b - a) / (secs > 0 ? secs : 1));
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t rng_next(void) { /* xorshift64* */
  uint64_t x = rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  rng_state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}
static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) die("out of memory (%zu bytes)", n);
  return p;
}

/* ---------------------------------------------------------- SHA-1, base64 */

typedef struct {
  uint32_t h[5];
  uint64_t len;
  uint8_t buf[64];
  size_t n;
} sha1_ctx;

static inline uint32_t rol(uint32_t x, int s) { return (x << s) | (x >> (32 - s)); }

static void sha1_block(sha1_ctx *c, const uint8_t *p) {
  uint32_t w[80];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4];
  for (int i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) { f = (b & cc) | (~b & d); k = 0x5A827999; }
    else if (i < 40) { f = b ^ cc ^ d; k = 0x6ED9EBA1; }
    else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDC; }
    else { f = b ^ cc ^ d; k = 0xCA62C1D6; }
    uint32_t t = rol(a, 5) + f + e + k + w[i];
    e = d; d = cc; cc = rol(b, 30); b = a; a = t;
  }
  c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
  sha1_ctx c = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
  c.len = (uint64_t)len * 8;
  while (len >= 64) { sha1_block(&c, data); data += 64; len -= 64; }
  uint8_t tail[128] = {0};
  memcpy(tail, data, len);
  tail[len] = 0x80;
  size_t tl = len + 1 + 8 <= 64 ? 64 : 128;
  for (int i = 0; i < 8; i++) tail[tl - 1 - i] = (uint8_t)(c.len >> (8 * i));
  sha1_block(&c, tail);
  if (tl == 128) sha1_block(&c, tail + 64);
  for (int i = 0; i < 5; i++) {
    out[4 * i] = c.h[i] >> 24; out[4 * i + 1] = c.h[i] >> 16;
    out[4 * i + 2] = c.h[i] >> 8; out[4 * i + 3] = c.h[i];
  }
}

static void base64(const uint8_t *in, size_t n, char *out) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0, o = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = t[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
    out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63];
    out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = 0;
}

/* RFC 6455 4.1: the client checks that Sec-WebSocket-Accept is
 * base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). */
static void accept_for(const char *key, char out[29]) {
  char buf[64 + 36];
  size_t kl = strlen(key);
  memcpy(buf, key, kl);
  memcpy(buf + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  uint8_t dg[20];
  sha1((const uint8_t *)buf, kl + 36, dg);
  base64(dg, 20, out);
}

/* -------------------------------------------------------------- histogram */

/* Log-linear histogram over nanoseconds: 64 sub-buckets per power of two
 * (about 1.6% precision), exact below 64 ns. */
#define HBUCKETS 3840
static uint64_t hist[HBUCKETS];
static uint64_t hist_n;

static inline void hist_add(uint64_t v) {
  unsigned idx;
  if (v < 64) idx = (unsigned)v;
  else {
    int msb = 63 - __builtin_clzll(v);
    idx = (unsigned)(msb - 5) * 64 + (unsigned)((v >> (msb - 6)) & 63);
  }
  hist[idx]++;
  hist_n++;
}

static double hist_pct(double p) {
  if (!hist_n) return 0;
  uint64_t want = (uint64_t)(p * (double)hist_n);
  if (want >= hist_n) want = hist_n - 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HBUCKETS; i++) {
    seen += hist[i];
    if (seen > want) {
      if (i < 64) return i / 1000.0;
      unsigned msb = i / 64 + 5, sub = i % 64;
      double lo = (double)((64ull + sub) << (msb - 6));
      double width = (double)(1ull << (msb - 6));
      return (lo + width / 2) / 1000.0; /* microseconds, bucket midpoint */
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- options */

enum { MODE_ECHO, MODE_BROADCAST, MODE_CONNECT };

static struct {
  int mode;
  const char *host;
  int port;
  const char *path;
  int conns;
  int depth;      /* echo: messages in flight per connection */
  int window;     /* broadcast: messages not yet delivered to every receiver */
  size_t size;
  int text;
  double duration, warmup;
  int concurrency;  /* handshakes in flight */
  double hold;      /* connect: max seconds to hold idle connections */
  int sources;      /* bind to 127.0.0.1 .. 127.0.0.N round robin */
  double timeout;   /* hard cap on the whole run */
  int deflate;      /* offer permessage-deflate (not on the broadcast sender) */
  const char *deflate_offer;
  int inflate_cache;
  int json;         /* broadcast payload is JSON text */
} opt = {MODE_ECHO, "127.0.0.1", 0, NULL, 100, 1, 16, 32, 0, 5, 1, 200, 30, 1, 120, 0,
         "permessage-deflate; client_no_context_takeover; server_no_context_takeover", 1, 0};

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --mode echo|broadcast|connect --port N [--host 127.0.0.1] [--path /]\n"
          "  [--conns C] [--depth D] [--window W] [--size S] [--text|--binary]\n"
          "  [--duration s] [--warmup s] [--concurrency K] [--hold s] [--sources N] [--timeout s]\n"
          "  [--deflate] [--deflate-offer 'permessage-deflate; ...'] [--no-inflate-cache] [--json]\n"
          "  [--server-pid P]\n");
  exit(2);
}

/* ------------------------------------------------------------ connections */

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };
enum { ROLE_ECHO, ROLE_RECV, ROLE_SEND, ROLE_IDLE };

typedef struct {
  uint8_t *p;
  size_t len, cap, off; /* data lives in p[off .. len) */
} buf_t;

typedef struct conn {
  int fd;
  int state;
  int role;
  int want_out; /* EPOLLOUT armed */
  char key[25];
  char accept[29];
  buf_t in, out;
  /* streaming frame parser */
  uint8_t *msg;      /* fragments of the current message */
  size_t msg_len, msg_cap;
  int msg_opcode;    /* 0 = none in progress */
  /* echo: in-flight sequence numbers and send times, in order */
  uint64_t next_send, next_recv;
  uint64_t *sent_at; /* ring of depth entries */
  /* broadcast receiver */
  uint64_t expect;
  /* permessage-deflate */
  int deflate;       /* negotiated */
  int z_reset;       /* server_no_context_takeover: a fresh context per message */
  int msg_rsv1;      /* the message being assembled is compressed */
  size_t msg_wire;   /* its frame bytes so far */
#if HAVE_ZLIB
  z_stream *zs;      /* this connection's context, with context takeover only */
#endif
} conn_t;

static int epfd;
static conn_t *conns;
static int nconns;      /* including the sender in broadcast mode */
static int nopen, nfailed, nclosed_unexpected;
static uint64_t mismatches, protocol_errors, lost, reordered, pings;
static uint64_t measured_msgs, total_msgs;
/* permessage-deflate: what receivers got (all phases, the sender excluded) */
static uint64_t z_compressed, z_plain, z_wire, z_payload, z_inflated, z_cache_hits;
static int deflate_conns;
static int measuring;
static int stop_sending;
static char errbuf[256];

static uint8_t *pattern; /* deterministic message body source */
static size_t pattern_len;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->off && b->len + extra > b->cap) {
    memmove(b->p, b->p + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
  }
  if (b->len + extra > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + extra) nc *= 2;
    b->p = xrealloc(b->p, nc);
    b->cap = nc;
  }
}

static void arm(conn_t *c, int out) {
  if (c->want_out == out) return;
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

static int inflight; /* handshakes started and not finished */

/* Frames are built in one shared scratch buffer that stays in cache and is
 * written out right after the event that produced them; only bytes the
 * kernel does not take move to the connection's own buffer. Per-connection
 * buffers of 100 x 160 KiB would miss the cache on every store. */
static buf_t scratch;
static conn_t *scratch_owner;

static void conn_close(conn_t *c, int unexpected) {
  if (c->state == ST_CLOSED) return;
  if (scratch_owner == c) { scratch_owner = NULL; scratch.len = scratch.off = 0; }
  if (c->state == ST_OPEN) nopen--;
  else { inflight--; nfailed++; } /* closed before the handshake completed */
  if (unexpected) nclosed_unexpected++;
  c->state = ST_CLOSED;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->fd = -1;
}

static void flush_scratch(void) {
  conn_t *c = scratch_owner;
  scratch_owner = NULL;
  while (c && c->state != ST_CLOSED && scratch.len > scratch.off) {
    ssize_t n = write(c->fd, scratch.p + scratch.off, scratch.len - scratch.off);
    if (n > 0) { scratch.off += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      size_t rest = scratch.len - scratch.off;
      buf_reserve(&c->out, rest);
      memcpy(c->out.p + c->out.len, scratch.p + scratch.off, rest);
      c->out.len += rest;
      arm(c, 1);
      break;
    }
    scratch.len = scratch.off = 0;
    conn_close(c, 1);
    return;
  }
  scratch.len = scratch.off = 0;
}

/* Where the next frame for c goes: after c's unsent bytes if it has any,
 * else into the scratch buffer (handing it over from its previous owner). */
static buf_t *out_for(conn_t *c) {
  if (c->out.len > c->out.off) return &c->out;
  if (scratch_owner != c) {
    if (scratch_owner) flush_scratch();
    scratch_owner = c;
  }
  return &scratch;
}

static void flush_out(conn_t *c) {
  if (scratch_owner == c) {
    flush_scratch();
    if (c->state == ST_CLOSED) return;
  }
  while (c->out.len > c->out.off) {
    ssize_t n = write(c->fd, c->out.p + c->out.off, c->out.len - c->out.off);
    if (n > 0) { c->out.off += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { arm(c, 1); return; }
    conn_close(c, 1);
    return;
  }
  c->out.off = c->out.len = 0;
  arm(c, 0);
}

typedef uint8_t v16u8 __attribute__((vector_size(16)));

/* Append one masked frame. The payload is given in up to three pieces so
 * that messages are masked straight from the pattern without a staging copy. */
static void send_frame(conn_t *c, int opcode, const uint8_t *a, size_t al, const uint8_t *b, size_t bl,
                       const uint8_t *d, size_t dl) {
  size_t len = al + bl + dl;
  buf_t *o = out_for(c);
  buf_reserve(o, len + 14);
  uint8_t *h = o->p + o->len;
  size_t hl;
  h[0] = 0x80 | (uint8_t)opcode;
  if (len < 126) { h[1] = 0x80 | (uint8_t)len; hl = 2; }
  else if (len < 65536) { h[1] = 0x80 | 126; h[2] = (uint8_t)(len >> 8); h[3] = (uint8_t)len; hl = 4; }
  else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    hl = 10;
  }
  /* RFC 6455 5.3: a fresh, unpredictable masking key for every frame. */
  uint32_t mask = (uint32_t)(rng_next() >> 32);
  memcpy(h + hl, &mask, 4);
  uint8_t *dst = h + hl + 4;
  const uint8_t *parts[3] = {a, b, d};
  size_t lens[3] = {al, bl, dl};
  size_t pos = 0;
  uint64_t m64 = (uint64_t)mask | ((uint64_t)mask << 32);
  for (int k = 0; k < 3; k++) {
    const uint8_t *src = parts[k];
    size_t n = lens[k], i = 0;
    /* bring pos to a multiple of 4 so the 64-bit mask lines up */
    while (i < n && (pos & 3)) { dst[pos] = src[i] ^ ((uint8_t *)&mask)[pos & 3]; i++; pos++; }
    /* 16 bytes at a time with GCC/Clang vector types (SSE2 at -O2 on
     * x86-64), four at once: masking must not make this the bottleneck. */
    v16u8 mv;
    memcpy(&mv, &m64, 8);
    memcpy((uint8_t *)&mv + 8, &m64, 8);
    for (; i + 64 <= n; i += 64, pos += 64) {
      v16u8 a0, a1, a2, a3;
      memcpy(&a0, src + i, 16);
      memcpy(&a1, src + i + 16, 16);
      memcpy(&a2, src + i + 32, 16);
      memcpy(&a3, src + i + 48, 16);
      a0 ^= mv; a1 ^= mv; a2 ^= mv; a3 ^= mv;
      memcpy(dst + pos, &a0, 16);
      memcpy(dst + pos + 16, &a1, 16);
      memcpy(dst + pos + 32, &a2, 16);
      memcpy(dst + pos + 48, &a3, 16);
    }
    for (; i + 8 <= n; i += 8, pos += 8) {
      uint64_t v;
      memcpy(&v, src + i, 8);
      v ^= m64;
      memcpy(dst + pos, &v, 8);
    }
    for (; i < n; i++, pos++) dst[pos] = src[i] ^ ((uint8_t *)&mask)[pos & 3];
  }
  o->len += hl + 4 + len;
}

static inline void hex16(uint64_t v, uint8_t *out) {
  static const char d[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--) { out[i] = (uint8_t)d[v & 15]; v >>= 4; }
}

/* Message layout: 16 hex digits of seq [+ 16 hex digits of send time] + body,
 * body = pattern[off .. off + n] where off depends on seq so consecutive
 * messages differ everywhere; in text mode the pattern is UTF-8 made of
 * 4-byte units and the offset is a multiple of 4. */
static size_t hdr_len(void) { return opt.mode == MODE_BROADCAST ? 32 : 16; }
static inline size_t body_off(uint64_t seq) { return (size_t)(seq % 61) * 4; }

static void send_message(conn_t *c, uint64_t seq, uint64_t ts) {
  uint8_t hdr[32];
  size_t hl = hdr_len();
  if (hl > opt.size) hl = opt.size;
  uint8_t full[32];
  hex16(seq, full);
  hex16(ts, full + 16);
  memcpy(hdr, full, hl);
  send_frame(c, opt.text ? 1 : 2, hdr, hl, pattern + body_off(seq), opt.size - hl, NULL, 0);
}

static int check_message(const uint8_t *p, size_t n, uint64_t seq, uint64_t ts) {
  if (n != opt.size) return 0;
  uint8_t full[32];
  hex16(seq, full);
  hex16(ts, full + 16);
  size_t hl = hdr_len();
  if (hl > n) hl = n;
  if (memcmp(p, full, hl) != 0) return 0;
  return memcmp(p + hl, pattern + body_off(seq), n - hl) == 0;
}

static int parse_hex16(const uint8_t *p, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    uint8_t ch = p[i];
    if (ch >= '0' && ch <= '9') v = v << 4 | (uint64_t)(ch - '0');
    else if (ch >= 'a' && ch <= 'f') v = v << 4 | (uint64_t)(ch - 'a' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

/* -------------------------------------------------------------- broadcast */

static conn_t *sender;
static uint64_t b_next;       /* next seq the sender will send */
static uint64_t b_head;       /* every seq < b_head reached every receiver */
static uint32_t *b_remaining; /* receivers still missing seq, ring of window */
static uint64_t *b_sent_at;   /* ring of window */
static int nreceivers;
static uint64_t last_progress;
static uint8_t *b_msg; /* --json: ring of window messages as sent, size + 1 bytes each */

static inline uint8_t *json_slot(uint64_t seq) { return b_msg + (size_t)(seq % (uint64_t)opt.window) * (opt.size + 1); }

/* A JSON document of exactly `size` bytes (size >= 64) for seq: a product
 * feed page, the kind of text that permessage-deflate is turned on for. The
 * items vary with seq so consecutive messages differ. */
static void build_json(uint8_t *out, size_t size, uint64_t seq, uint64_t ts) {
  static const char *names[] = {"Espresso machine", "Trail running shoes", "Noise-cancelling headphones",
                                "Cast iron skillet", "Mechanical keyboard", "Yoga mat", "Desk lamp",
                                "Insulated water bottle", "Backpack 30L", "Wireless mouse", "Chef knife",
                                "Rain jacket"};
  static const char *tags[] = {"kitchen", "outdoor", "audio", "office", "sale", "new", "eco", "bestseller"};
  static const char tail_note[] = "prices include VAT; shipping is calculated at checkout. ";
  static const char close_s[] = "],\"note\":\"\"}";
  char *o = (char *)out;
  size_t n = (size_t)snprintf(o, size + 1, "{\"seq\":\"%016" PRIx64 "\",\"t\":\"%016" PRIx64 "\",\"items\":[", seq, ts);
  uint64_t h = seq * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  char item[256];
  for (unsigned i = 0;; i++) {
    h ^= h >> 31; h *= 0xBF58476D1CE4E5B9ull; h ^= h >> 29;
    int il = snprintf(item, sizeof item,
                      "%s{\"id\":%" PRIu64 ",\"name\":\"%s\",\"price\":%u.%02u,\"qty\":%u,\"tags\":[\"%s\",\"%s\"]}",
                      i ? "," : "", seq * 16 + i, names[h % 12], (unsigned)((h >> 8) % 500), (unsigned)((h >> 20) % 100),
                      (unsigned)((h >> 28) % 20 + 1), tags[(h >> 36) % 8], tags[(h >> 40) % 8]);
    if (n + (size_t)il + sizeof close_s - 1 > size) break;
    memcpy(o + n, item, (size_t)il);
    n += (size_t)il;
  }
  memcpy(o + n, "],\"note\":\"", 10);
  n += 10;
  for (size_t k = 0; n < size - 2; n++, k++) o[n] = tail_note[k % (sizeof tail_note - 1)];
  o[n++] = '"';
  o[n++] = '}';
}

/* Where seq and the send time are: fixed offsets in both layouts. */
static int parse_seq_ts(const uint8_t *p, size_t n, uint64_t *seq, uint64_t *ts) {
  if (opt.json) {
    return n >= 64 && memcmp(p, "{\"seq\":\"", 8) == 0 && parse_hex16(p + 8, seq) &&
           memcmp(p + 24, "\",\"t\":\"", 7) == 0 && parse_hex16(p + 31, ts);
  }
  return n >= 32 && parse_hex16(p, seq) && parse_hex16(p + 16, ts);
}

static void broadcast_pump(uint64_t now) {
  if (!sender || sender->state != ST_OPEN || stop_sending) return;
  int sent = 0;
  while (b_next - b_head < (uint64_t)opt.window) {
    size_t slot = (size_t)(b_next % (uint64_t)opt.window);
    b_remaining[slot] = (uint32_t)nreceivers;
    b_sent_at[slot] = now;
    if (opt.json) {
      uint8_t *m = json_slot(b_next);
      build_json(m, opt.size, b_next, now);
      send_frame(sender, 1, m, opt.size, NULL, 0, NULL, 0);
    } else {
      send_message(sender, b_next, now);
    }
    b_next++;
    sent = 1;
  }
  if (sent) flush_out(sender);
}

static void broadcast_settle(uint64_t seq) {
  /* one receiver got (or definitively missed) seq */
  size_t slot = (size_t)(seq % (uint64_t)opt.window);
  if (seq < b_head || seq >= b_next) return;
  if (b_remaining[slot] && --b_remaining[slot] == 0) {
    while (b_head < b_next && b_remaining[b_head % (uint64_t)opt.window] == 0) b_head++;
  }
}

static void on_broadcast(conn_t *c, const uint8_t *p, size_t n, uint64_t now) {
  uint64_t seq, ts;
  if (!parse_seq_ts(p, n, &seq, &ts)) { mismatches++; return; }
  if (seq >= b_next) { mismatches++; return; }
  if (seq < c->expect) { reordered++; return; }
  if (seq > c->expect) {
    /* the messages in between never came (they cannot come later without
     * being reordered); count them lost and release the window. */
    for (uint64_t s = c->expect; s < seq; s++) { lost++; broadcast_settle(s); }
  }
  c->expect = seq + 1;
  if (seq >= b_head && b_sent_at[seq % (uint64_t)opt.window] != ts) mismatches++;
  else if (opt.json ? seq < b_head || n != opt.size || memcmp(p, json_slot(seq), n) != 0 : !check_message(p, n, seq, ts))
    mismatches++;
  total_msgs++;
  if (measuring) { measured_msgs++; hist_add(now - ts); }
  last_progress = now;
  broadcast_settle(seq);
}

/* ------------------------------------------------------------------- echo */

static void echo_pump(conn_t *c, uint64_t now) {
  if (stop_sending) return;
  while (c->next_send - c->next_recv < (uint64_t)opt.depth) {
    c->sent_at[c->next_send % (uint64_t)opt.depth] = now;
    send_message(c, c->next_send, 0);
    c->next_send++;
  }
}

static void on_echo(conn_t *c, int opcode, const uint8_t *p, size_t n, uint64_t now) {
  if (c->next_recv >= c->next_send) { mismatches++; return; }
  uint64_t seq = c->next_recv++;
  if (opcode != (opt.text ? 1 : 2) || !check_message(p, n, seq, 0)) mismatches++;
  total_msgs++;
  if (measuring) { measured_msgs++; hist_add(now - c->sent_at[seq % (uint64_t)opt.depth]); }
  last_progress = now;
  echo_pump(c, now);
}

/* ------------------------------------------------------------ frame parse */

static void on_message(conn_t *c, int opcode, const uint8_t *p, size_t n, uint64_t now) {
  switch (c->role) {
    case ROLE_ECHO: on_echo(c, opcode, p, n, now); break;
    case ROLE_RECV: on_broadcast(c, p, n, now); break;
    default: break; /* the sender and idle connections ignore what they get */
  }
}

/* ------------------------------------------------------------ inflating */

#if HAVE_ZLIB
static z_stream z_fresh; /* shared by every connection without context takeover */
static int z_fresh_ready;
static uint8_t *zout;    /* opt.size + 1 bytes: anything longer is a mismatch anyway */

/* The inflate cache, one entry per window slot: the compressed bytes of seq
 * that inflated to a payload verified for seq, and that payload. */
static uint64_t *zc_seq;
static uint8_t **zc_comp, **zc_plain;
static size_t *zc_clen, *zc_plen, *zc_ccap;

/* RFC 7692 7.2.2: append 00 00 ff ff to the message's payload and inflate
 * it raw. Returns 0 on corrupt data; a message longer than opt.size is cut
 * at opt.size + 1 bytes, which no check accepts. */
static int inflate_message(conn_t *c, const uint8_t *p, size_t n, size_t *out_len) {
  static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
  z_stream *z;
  if (c->z_reset) {
    z = &z_fresh;
    if (!z_fresh_ready) {
      if (inflateInit2(z, -15) != Z_OK) die("inflateInit2 failed");
      z_fresh_ready = 1;
    } else if (inflateReset(z) != Z_OK) die("inflateReset failed");
  } else {
    if (!c->zs) {
      c->zs = calloc(1, sizeof(z_stream));
      if (!c->zs || inflateInit2(c->zs, -15) != Z_OK) die("inflateInit2 failed");
    }
    z = c->zs;
  }
  size_t cap = opt.size + 1;
  z->next_out = zout;
  z->avail_out = (uInt)cap;
  int ended = 0;
  for (int part = 0; part < 2 && !ended && z->avail_out; part++) {
    z->next_in = (Bytef *)(uintptr_t)(part ? tail : p);
    z->avail_in = (uInt)(part ? sizeof tail : n);
    while (z->avail_in && z->avail_out) {
      int r = inflate(z, Z_SYNC_FLUSH);
      if (r == Z_STREAM_END) {
        /* a final block (BFINAL): the context ends with this message */
        ended = 1;
        if (!c->z_reset) inflateReset(z);
        break;
      }
      if (r == Z_BUF_ERROR) break;
      if (r != Z_OK) {
        snprintf(errbuf, sizeof errbuf, "inflate: %s", z->msg ? z->msg : "corrupt data");
        return 0;
      }
    }
  }
  *out_len = cap - z->avail_out;
  return 1;
}
#endif

/* A whole data message arrived (wire = its frame bytes, headers included).
 * Returns 0 if the connection was closed. */
static int deliver(conn_t *c, int opcode, int rsv1, const uint8_t *p, size_t n, size_t wire, uint64_t now) {
  if (c->role == ROLE_SEND || c->role == ROLE_IDLE) return 1; /* they ignore what they get */
  z_wire += wire;
  if (!rsv1) {
    z_plain++;
    z_payload += n;
    on_message(c, opcode, p, n, now);
    return 1;
  }
  z_compressed++;
#if HAVE_ZLIB
  uint64_t seq = c->expect;
  size_t slot = (size_t)(seq % (uint64_t)opt.window);
  int cacheable = opt.inflate_cache && c->z_reset && c->role == ROLE_RECV && seq >= b_head && seq < b_next;
  if (cacheable && zc_seq[slot] == seq && zc_clen[slot] == n && memcmp(zc_comp[slot], p, n) == 0) {
    z_cache_hits++;
    z_payload += zc_plen[slot];
    on_message(c, opcode, zc_plain[slot], zc_plen[slot], now);
    return 1;
  }
  size_t out_len;
  if (!inflate_message(c, p, n, &out_len)) {
    protocol_errors++;
    conn_close(c, 1);
    return 0;
  }
  z_inflated++;
  z_payload += out_len;
  uint64_t mm = mismatches, ls = lost, ro = reordered;
  on_message(c, opcode, zout, out_len, now);
  if (cacheable && mismatches == mm && lost == ls && reordered == ro && c->expect == seq + 1) {
    if (zc_ccap[slot] < n) {
      zc_comp[slot] = xrealloc(zc_comp[slot], n);
      zc_ccap[slot] = n;
    }
    memcpy(zc_comp[slot], p, n);
    memcpy(zc_plain[slot], zout, out_len);
    zc_clen[slot] = n;
    zc_plen[slot] = out_len;
    zc_seq[slot] = seq;
  }
  return 1;
#else
  (void)opcode; (void)p; (void)n; (void)now;
  protocol_errors++;
  conn_close(c, 1);
  return 0;
#endif
}

/* Returns 0 if the connection was closed. */
static int parse_frames(conn_t *c, uint64_t now) {
  buf_t *b = &c->in;
  for (;;) {
    size_t avail = b->len - b->off;
    const uint8_t *h = b->p + b->off;
    if (avail < 2) break;
    int fin = h[0] >> 7, rsv = (h[0] >> 4) & 7, opcode = h[0] & 15, masked = h[1] >> 7;
    int rsv1 = rsv >> 2; /* RFC 7692: the message is compressed (only if negotiated) */
    uint64_t len = h[1] & 127;
    size_t hl = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (uint64_t)h[2] << 8 | h[3];
      hl = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
      hl = 10;
    }
    /* RFC 6455 5.1: a server MUST NOT mask any frames that it sends. */
    if (masked || (rsv & 3) || (rsv1 && !c->deflate) || len > (1ull << 31)) {
      protocol_errors++;
      snprintf(errbuf, sizeof errbuf, "bad frame header from server");
      conn_close(c, 1);
      return 0;
    }
    if (avail < hl + len) {
      buf_reserve(b, hl + len - avail);
      break;
    }
    const uint8_t *pl = b->p + b->off + hl;
    b->off += hl + (size_t)len;
    if (opcode >= 8) {
      if (!fin || len > 125 || rsv1) { protocol_errors++; conn_close(c, 1); return 0; }
      if (opcode == 9) { pings++; send_frame(c, 10, pl, (size_t)len, NULL, 0, NULL, 0); }
      else if (opcode == 8) {
        send_frame(c, 8, pl, len >= 2 ? 2 : 0, NULL, 0, NULL, 0);
        flush_out(c);
        if (c->state != ST_CLOSED) conn_close(c, 1);
        snprintf(errbuf, sizeof errbuf, "server closed a connection (close code %d)",
                 len >= 2 ? (pl[0] << 8 | pl[1]) : 1005);
        return 0;
      } else if (opcode != 10) { protocol_errors++; conn_close(c, 1); return 0; }
      continue;
    }
    if (opcode == 0) {
      /* RFC 7692 6.1: RSV1 only on a message's first frame */
      if (!c->msg_opcode || rsv1) { protocol_errors++; conn_close(c, 1); return 0; }
    } else if (opcode == 1 || opcode == 2) {
      if (c->msg_opcode) { protocol_errors++; conn_close(c, 1); return 0; }
      if (fin) {
        if (!deliver(c, opcode, rsv1, pl, (size_t)len, hl + (size_t)len, now)) return 0;
        continue;
      }
      c->msg_opcode = opcode;
      c->msg_len = 0;
      c->msg_rsv1 = rsv1;
      c->msg_wire = 0;
    } else { protocol_errors++; conn_close(c, 1); return 0; }
    /* fragment of a message: assemble */
    if (c->msg_len + len > c->msg_cap) {
      c->msg_cap = (c->msg_len + (size_t)len) * 2;
      c->msg = xrealloc(c->msg, c->msg_cap);
    }
    memcpy(c->msg + c->msg_len, pl, (size_t)len);
    c->msg_len += (size_t)len;
    c->msg_wire += hl + (size_t)len;
    if (fin) {
      int op = c->msg_opcode;
      c->msg_opcode = 0;
      if (!deliver(c, op, c->msg_rsv1, c->msg, c->msg_len, c->msg_wire, now)) return 0;
    }
  }
  if (b->off == b->len) b->off = b->len = 0;
  return 1;
}

/* ------------------------------------------------------------- handshake */

static int hdr_has(const char *head, const char *name, const char *value, int token) {
  size_t nl = strlen(name);
  const char *p = strstr(head, "\r\n");
  while (p && p[2] != '\r') {
    const char *line = p + 2;
    const char *eol = strstr(line, "\r\n");
    if (!eol) return 0;
    if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      size_t vl = (size_t)(eol - v), want = strlen(value);
      while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
      if (!token) return vl == want && strncmp(v, value, vl) == 0;
      /* comma-separated token list, case-insensitive (RFC 6455 4.1 item 3) */
      for (size_t i = 0; i + want <= vl; i++)
        if (strncasecmp(v + i, value, want) == 0 && (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + want == vl || v[i + want] == ',' || v[i + want] == ' '))
          return 1;
      return 0;
    }
    p = eol;
  }
  return 0;
}

/* The value of header `name` in a response head, or NULL. */
static const char *hdr_value(const char *head, const char *name, size_t *len) {
  size_t nl = strlen(name);
  const char *p = strstr(head, "\r\n");
  while (p && p[2] != '\r') {
    const char *line = p + 2;
    const char *eol = strstr(line, "\r\n");
    if (!eol) return NULL;
    if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      size_t vl = (size_t)(eol - v);
      while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
      *len = vl;
      return v;
    }
    p = eol;
  }
  return NULL;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
  return s;
}

/* RFC 7692 7.1: the server's answer to our one offer. It must name
 * permessage-deflate once, with known parameters, each at most once, window
 * bits 8..15 (quoted or not), and client_max_window_bits only if offered. */
static int accept_deflate(conn_t *c, const char *v, size_t vl) {
  char buf[512];
  if (vl >= sizeof buf || memchr(v, ',', vl)) return 0;
  memcpy(buf, v, vl);
  buf[vl] = 0;
  char *save = NULL;
  char *tok = strtok_r(buf, ";", &save);
  if (!tok || strcasecmp(trim(tok), "permessage-deflate") != 0) return 0;
  int seen[4] = {0, 0, 0, 0};
  static const char *names[] = {"server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
                                "client_max_window_bits"};
  while ((tok = strtok_r(NULL, ";", &save))) {
    char *name = trim(tok), *val = strchr(name, '=');
    if (val) { *val++ = 0; name = trim(name); val = trim(val); }
    int k = 0;
    while (k < 4 && strcasecmp(name, names[k]) != 0) k++;
    if (k == 4 || seen[k]++) return 0;
    if (k < 2) {
      if (val) return 0;
      if (k == 0) c->z_reset = 1;
      continue;
    }
    if (!val) return 0;
    size_t l = strlen(val);
    if (l >= 2 && val[0] == '"' && val[l - 1] == '"') { val[l - 1] = 0; val++; }
    char *end;
    long bits = strtol(val, &end, 10);
    if (*end || end == val || bits < 8 || bits > 15) return 0;
    if (k == 3 && !strstr(opt.deflate_offer, "client_max_window_bits")) return 0;
  }
  return 1;
}

static void send_handshake(conn_t *c) {
  uint8_t raw[16];
  for (int i = 0; i < 16; i += 8) { uint64_t r = rng_next(); memcpy(raw + i, &r, 8); }
  base64(raw, 16, c->key);
  accept_for(c->key, c->accept);
  const char *path = opt.path ? opt.path
                     : c->role == ROLE_SEND ? "/send"
                     : c->role == ROLE_RECV ? "/recv"
                                            : "/echo";
  char req[1024];
  int offer = opt.deflate && c->role != ROLE_SEND;
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                   path, opt.host, opt.port, c->key, offer ? "Sec-WebSocket-Extensions: " : "",
                   offer ? opt.deflate_offer : "", offer ? "\r\n" : "");
  if (n < 0 || (size_t)n >= sizeof req) die("handshake request too long");
  buf_reserve(&c->out, (size_t)n);
  memcpy(c->out.p + c->out.len, req, (size_t)n);
  c->out.len += (size_t)n;
  c->state = ST_HANDSHAKE;
  flush_out(c);
}

static void on_open(conn_t *c, uint64_t now);

/* Returns 0 if closed or still waiting. */
static int read_handshake(conn_t *c, uint64_t now) {
  buf_t *b = &c->in;
  buf_reserve(b, 1);
  b->p[b->len] = 0;
  char *end = strstr((char *)b->p + b->off, "\r\n\r\n");
  if (!end) {
    if (b->len - b->off > 16384) goto fail;
    return 0;
  }
  end[2] = 0; /* terminate after the last header line's CRLF */
  const char *head = (const char *)b->p + b->off;
  if (strncmp(head, "HTTP/1.1 101", 12) != 0) goto fail;
  if (!hdr_has(head, "Upgrade", "websocket", 1) || !hdr_has(head, "Connection", "upgrade", 1) ||
      !hdr_has(head, "Sec-WebSocket-Accept", c->accept, 0)) {
    snprintf(errbuf, sizeof errbuf, "bad handshake response (Sec-WebSocket-Accept or Upgrade)");
    protocol_errors++;
    conn_close(c, 0);
    return 0;
  }
  size_t el = 0;
  const char *ext = hdr_value(head, "Sec-WebSocket-Extensions", &el);
  int offered = opt.deflate && c->role != ROLE_SEND;
  if (ext && el && !offered) {
    snprintf(errbuf, sizeof errbuf, "server answered an extension that was not offered");
    protocol_errors++;
    conn_close(c, 0);
    return 0;
  }
  if (offered) {
    if (!ext || !el) {
      snprintf(errbuf, sizeof errbuf, "server declined permessage-deflate");
      conn_close(c, 0);
      return 0;
    }
    if (!accept_deflate(c, ext, el)) {
      snprintf(errbuf, sizeof errbuf, "bad Sec-WebSocket-Extensions answer: %.*s", (int)(el > 120 ? 120 : el), ext);
      protocol_errors++;
      conn_close(c, 0);
      return 0;
    }
    c->deflate = 1;
    deflate_conns++;
  }
  b->off = (size_t)(end + 4 - (char *)b->p);
  c->state = ST_OPEN;
  nopen++;
  on_open(c, now);
  return c->state == ST_OPEN;
fail:
  if (!errbuf[0]) {
    char line[80];
    snprintf(line, sizeof line, "%s", (char *)b->p + b->off);
    char *cr = strchr(line, '\r');
    if (cr) *cr = 0;
    snprintf(errbuf, sizeof errbuf, "handshake refused: %s", line);
  }
  conn_close(c, 0);
  return 0;
}

/* -------------------------------------------------------------- connecting */

static struct sockaddr_in server_addr;

static void start_connect(conn_t *c, int idx) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s (raise ulimit -n)", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt.sources > 1) {
    /* Spread source addresses over 127.0.0.1..N so many connections to one
     * port do not exhaust the ephemeral range of a single address. */
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(idx % opt.sources));
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind source: %s", strerror(errno));
  }
  c->fd = fd;
  c->state = ST_CONNECTING;
  c->want_out = 1;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
  int r = connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
  if (r < 0 && errno != EINPROGRESS) {
    snprintf(errbuf, sizeof errbuf, "connect: %s", strerror(errno));
    conn_close(c, 0);
  }
}


static void on_open(conn_t *c, uint64_t now) {
  inflight--;
  if (c->role == ROLE_ECHO && c->sent_at == NULL) c->sent_at = xmalloc(sizeof(uint64_t) * (size_t)opt.depth);
  (void)now;
}

static buf_t shared_in;

static void swap_in(conn_t *c) {
  buf_t t = c->in;
  c->in = shared_in;
  shared_in = t;
  c->in.len = c->in.off = 0;
  shared_in.len = shared_in.off = 0;
}

static void read_input(conn_t *c, uint64_t now);

static void handle_event(conn_t *c, uint32_t events, uint64_t now) {
  if (c->state == ST_CONNECTING) {
    if (events & (EPOLLERR | EPOLLHUP)) {
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
      snprintf(errbuf, sizeof errbuf, "connect: %s", strerror(err ? err : ECONNREFUSED));
      conn_close(c, 0);
      return;
    }
    if (events & EPOLLOUT) send_handshake(c);
    if (c->state == ST_CLOSED) return;
  }
  if (events & EPOLLOUT && c->state != ST_CLOSED) flush_out(c);
  if (c->state == ST_CLOSED) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    /* A connection with no partial frame pending reads into the shared,
     * cache-hot buffer, and gives it back once everything is parsed; only a
     * partial frame keeps it (and leaves its old buffer in its place). So
     * 10,000 idle or broadcast connections do not each touch 16 KiB. */
    int borrowed = c->in.len == c->in.off;
    if (borrowed) swap_in(c);
    read_input(c, now);
    if (borrowed && c->in.len == c->in.off) swap_in(c);
    if (c->state == ST_OPEN && (scratch_owner == c || c->out.len > c->out.off)) flush_out(c);
  }
}

static void read_input(conn_t *c, uint64_t now) {
  for (;;) {
    buf_t *b = &c->in;
    /* echo reads big batches; thousands of broadcast or idle connections
     * each get less, so their buffers stay small */
    buf_reserve(b, opt.mode == MODE_ECHO ? 65536 : 16384);
    size_t want = b->cap - b->len - 1; /* one spare byte for read_handshake's NUL */
    ssize_t n = read(c->fd, b->p + b->len, want);
    if (n > 0) {
      b->len += (size_t)n;
      if (c->state == ST_HANDSHAKE) {
        if (!read_handshake(c, now)) {
          if (c->state == ST_CLOSED) return;
          continue;
        }
      }
      if (!parse_frames(c, now)) return;
      if ((size_t)n < want) break; /* short read: the socket is drained */
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (c->state == ST_HANDSHAKE) {
      if (!errbuf[0]) snprintf(errbuf, sizeof errbuf, "server closed during handshake");
      conn_close(c, 0);
    } else {
      if (!errbuf[0]) snprintf(errbuf, sizeof errbuf, "server closed a connection");
      conn_close(c, 1);
    }
    return;
  }
}

/* Run the event loop until pred() holds or the deadline passes. */
static struct epoll_event events[1024];

static int poll_once(int timeout_ms) {
  int n = epoll_wait(epfd, events, 1024, timeout_ms);
  if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
  for (int i = 0; i < n; i++) {
    uint64_t now = now_ns();
    handle_event((conn_t *)events[i].data.ptr, events[i].events, now);
  }
  return n < 0 ? 0 : n;
}

/* Open conns[from..to) with at most opt.concurrency handshakes in flight.
 * Returns the wall time taken in ns. */
static uint64_t open_all(int from, int to, uint64_t deadline) {
  uint64_t t0 = now_ns();
  int next = from;
  while (now_ns() < deadline) {
    while (next < to && inflight < opt.concurrency) {
      inflight++;
      start_connect(&conns[next], next);
      next++;
    }
    if (next >= to && inflight <= 0) break;
    poll_once(10);
  }
  return now_ns() - t0;
}

/* ------------------------------------------------------------------- main */

static double parse_num(const char *s) {
  char *e;
  double v = strtod(s, &e);
  if (*e) die("not a number: %s", s);
  return v;
}

static void build_pattern(void) {
  pattern_len = opt.size + 61 * 4 + 8;
  pattern = xmalloc(pattern_len);
  if (opt.text) {
    /* 4-byte UTF-8 units, ASCII and multi-byte mixed: "a\xc3\xa9 ", "\xe2\x9c\x93z",
     * "\xf0\x9f\x8c\x8a" (U+1F30A), "wave". A body cut at any 4-byte boundary
     * is valid; the last partial unit is ASCII padding. */
    static const char *units[] = {"a\xc3\xa9 ", "\xe2\x9c\x93z", "\xf0\x9f\x8c\x8a", "wave", "cast", "\xd0\xb6\xd0\xb8"};
    size_t i = 0, k = 0;
    for (; i + 4 <= pattern_len; i += 4, k++) memcpy(pattern + i, units[(k * 7 + k / 5) % 6], 4);
    for (; i < pattern_len; i++) pattern[i] = 'x';
    /* The body length may not be a multiple of 4: make the bytes of any body's
     * last partial unit ASCII by cutting it at a unit boundary. */
    size_t body = opt.size > hdr_len() ? opt.size - hdr_len() : 0;
    size_t tail = body % 4;
    if (tail) {
      /* body starts at off (multiple of 4) and ends at off + body: the unit
       * containing the end is at off + body - tail, for every off. Make all
       * units ASCII so that any cut is valid. Only for odd sizes. */
      for (size_t j = 0; j < pattern_len; j++) pattern[j] = (uint8_t)('a' + j % 26);
    }
  } else {
    for (size_t i = 0; i < pattern_len; i++) pattern[i] = (uint8_t)(rng_next() >> 56);
  }
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
    if (ARG("--mode")) {
      if (!strcmp(v, "echo")) opt.mode = MODE_ECHO;
      else if (!strcmp(v, "broadcast")) opt.mode = MODE_BROADCAST;
      else if (!strcmp(v, "connect")) opt.mode = MODE_CONNECT;
      else usage();
    } else if (ARG("--host")) opt.host = v;
    else if (ARG("--port")) opt.port = (int)parse_num(v);
    else if (ARG("--path")) opt.path = v;
    else if (ARG("--conns")) opt.conns = (int)parse_num(v);
    else if (ARG("--depth")) opt.depth = (int)parse_num(v);
    else if (ARG("--window")) opt.window = (int)parse_num(v);
    else if (ARG("--size")) opt.size = (size_t)parse_num(v);
    else if (ARG("--duration")) opt.duration = parse_num(v);
    else if (ARG("--warmup")) opt.warmup = parse_num(v);
    else if (ARG("--concurrency")) opt.concurrency = (int)parse_num(v);
    else if (ARG("--hold")) opt.hold = parse_num(v);
    else if (ARG("--sources")) opt.sources = (int)parse_num(v);
    else if (ARG("--timeout")) opt.timeout = parse_num(v);
    else if (ARG("--server-pid")) server_pid = (int)parse_num(v);
    else if (ARG("--deflate-offer")) { opt.deflate = 1; opt.deflate_offer = v; }
    else if (!strcmp(a, "--deflate")) opt.deflate = 1;
    else if (!strcmp(a, "--no-inflate-cache")) opt.inflate_cache = 0;
    else if (!strcmp(a, "--json")) opt.json = opt.text = 1;
    else if (!strcmp(a, "--text")) opt.text = 1;
    else if (!strcmp(a, "--binary")) opt.text = 0;
    else usage();
#undef ARG
  }
  if (opt.port <= 0 || opt.port > 65535) usage();
  if (opt.conns < 1 || opt.conns > 60000 || opt.depth < 1 || opt.depth > 4096 || opt.window < 1 ||
      opt.window > 65536 || opt.concurrency < 1 || opt.sources < 1 || opt.sources > 250 ||
      opt.duration <= 0 || opt.warmup < 0 || opt.size > (64u << 20))
    die("option out of range");
  if (opt.mode == MODE_ECHO && opt.size < 16) die("echo needs --size >= 16 (sequence number)");
  if (opt.mode == MODE_BROADCAST && opt.size < 32) die("broadcast needs --size >= 32 (sequence + time)");
  if (opt.json && (opt.mode != MODE_BROADCAST || opt.size < 64)) die("--json is for broadcast with --size >= 64");
  if (opt.deflate && !HAVE_ZLIB)
    die("built without zlib: --deflate needs zlib.h (Debian: apt-get install zlib1g-dev) and -lz");
  if (opt.deflate && strncasecmp(opt.deflate_offer, "permessage-deflate", 18) != 0)
    die("--deflate-offer must start with permessage-deflate");
  if (inet_pton(AF_INET, opt.host, &server_addr.sin_addr) != 1) die("--host must be an IPv4 address");
  if ((ntohl(server_addr.sin_addr.s_addr) >> 24) != 127) die("--host must be a loopback address");
  server_addr.sin_family = AF_INET;
  server_addr.sin_port = htons((uint16_t)opt.port);
  server_cpu_init();

  signal(SIGPIPE, SIG_IGN);
  /* A hard cap on the whole run, whatever the server does. */
  alarm((unsigned)(opt.timeout + 0.999));
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  rng_state ^= now_ns() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
  if (!rng_state) rng_state = 1;
  build_pattern();

  epfd = epoll_create1(EPOLL_CLOEXEC);
  nconns = opt.conns + (opt.mode == MODE_BROADCAST ? 1 : 0);
  conns = calloc((size_t)nconns, sizeof(conn_t));
  if (!conns) die("out of memory");
  for (int i = 0; i < nconns; i++) {
    conns[i].fd = -1;
    conns[i].state = ST_CLOSED;
    conns[i].role = opt.mode == MODE_ECHO ? ROLE_ECHO : opt.mode == MODE_CONNECT ? ROLE_IDLE : ROLE_RECV;
  }
  if (opt.mode == MODE_BROADCAST) {
    sender = &conns[opt.conns];
    sender->role = ROLE_SEND;
    nreceivers = opt.conns;
    b_remaining = calloc((size_t)opt.window, sizeof(uint32_t));
    b_sent_at = calloc((size_t)opt.window, sizeof(uint64_t));
    if (opt.json) b_msg = xmalloc((size_t)opt.window * (opt.size + 1));
  }
#if HAVE_ZLIB
  if (opt.deflate) {
    size_t w = (size_t)opt.window;
    zout = xmalloc(opt.size + 1);
    zc_seq = xmalloc(w * sizeof *zc_seq);
    for (size_t i = 0; i < w; i++) zc_seq[i] = UINT64_MAX;
    zc_comp = calloc(w, sizeof *zc_comp);
    zc_plain = calloc(w, sizeof *zc_plain);
    zc_clen = calloc(w, sizeof *zc_clen);
    zc_plen = calloc(w, sizeof *zc_plen);
    zc_ccap = calloc(w, sizeof *zc_ccap);
    if (!zc_comp || !zc_plain || !zc_clen || !zc_plen || !zc_ccap) die("out of memory");
    for (size_t i = 0; i < w; i++) zc_plain[i] = xmalloc(opt.size + 1);
  }
#endif

  const char *mode_name = opt.mode == MODE_ECHO ? "echo" : opt.mode == MODE_BROADCAST ? "broadcast" : "connect";
  uint64_t t_start = now_ns();
  uint64_t connect_deadline = t_start + (uint64_t)(60e9);
  double cpu0 = cpu_seconds();
  double server0 = server_cpu_seconds();
  uint64_t open_ns = open_all(0, nconns, connect_deadline);
  double server1 = server_cpu_seconds();
  double cpu_open = cpu_seconds() - cpu0;
  int opened = nopen;

  if (opt.mode == MODE_CONNECT) {
    double secs = (double)open_ns / 1e9;
    printf("{\"mode\":\"connect\",\"conns\":%d,\"opened\":%d,\"failed\":%d,\"seconds\":%.4f,"
           "\"handshakes_per_s\":%.1f,\"concurrency\":%d,\"sources\":%d,\"cpu_pct\":%.1f",
           opt.conns, opened, nfailed, secs, opened / (secs > 0 ? secs : 1), opt.concurrency, opt.sources,
           100.0 * cpu_open / (secs > 0 ? secs : 1));
    print_server_cpu(server0, server1, secs);
    printf(",\"error\":%s%s%s}\n", errbuf[0] ? "\"" : "", errbuf[0] ? errbuf : "null", errbuf[0] ? "\"" : "");
    fflush(stdout);
    /* Hold the idle connections until stdin closes or --hold passes; answer
     * pings meanwhile so a heartbeat does not count as idle memory churn. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev); /* fails harmlessly if stdin is not pollable */
    uint64_t hold_end = now_ns() + (uint64_t)(opt.hold * 1e9);
    int done = 0;
    while (!done && now_ns() < hold_end) {
      int n = epoll_wait(epfd, events, 1024, 100);
      for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == NULL) {
          char tmp[256];
          ssize_t r = read(0, tmp, sizeof tmp);
          if (r <= 0) done = 1;
          continue;
        }
        handle_event((conn_t *)events[i].data.ptr, events[i].events, now_ns());
      }
    }
    return opened == opt.conns ? 0 : 1;
  }

  if (opened != nconns) {
    printf("{\"mode\":\"%s\",\"conns\":%d,\"opened\":%d,\"error\":\"%s\"}\n", mode_name, opt.conns, opened,
           errbuf[0] ? errbuf : "could not open every connection");
    return 1;
  }

  /* Traffic: warmup, then the measured phase. */
  uint64_t t0 = now_ns();
  last_progress = t0;
  if (opt.mode == MODE_ECHO) {
    for (int i = 0; i < nconns; i++) { echo_pump(&conns[i], t0); flush_out(&conns[i]); }
  } else {
    broadcast_pump(t0);
  }
  uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
  uint64_t meas_end = warm_end + (uint64_t)(opt.duration * 1e9);
  double cpu_m0 = 0, server_m0 = -1;
  uint64_t meas_start = 0;
  int stalled = 0;
  for (;;) {
    uint64_t now = now_ns();
    /* The warm-up lasts --warmup seconds and at least until every
     * connection has had a full round: each echo connection D replies, and
     * the first window of broadcasts delivered to every receiver. A slow
     * fan-out would otherwise be measured before its first delivery. */
    int warmed = opt.mode == MODE_ECHO ? total_msgs >= (uint64_t)nconns * (uint64_t)opt.depth
                                       : b_head >= (uint64_t)opt.window;
    if (!measuring && now >= warm_end && warmed) {
      meas_end = now + (uint64_t)(opt.duration * 1e9);
      measuring = 1;
      measured_msgs = 0;
      memset(hist, 0, sizeof hist);
      hist_n = 0;
      meas_start = now;
      cpu_m0 = cpu_seconds();
      server_m0 = server_cpu_seconds();
    }
    if (measuring && now >= meas_end) break;
    if (now - last_progress > 5000000000ull) { stalled = 1; break; }
    if (nopen < nconns) break; /* a connection died: report it */
    poll_once(5);
    if (opt.mode == MODE_BROADCAST) broadcast_pump(now_ns());
  }
  double server_m1 = meas_start ? server_cpu_seconds() : -1;
  uint64_t meas_ns = now_ns() - (meas_start ? meas_start : t0);
  double cpu_m = cpu_seconds() - cpu_m0;
  if (!meas_start) cpu_m = 0;
  measuring = 0; /* what arrives while draining is checked, not counted */

  /* Drain: stop sending, wait for what is in flight so loss is exact. */
  stop_sending = 1;
  if (!stalled) {
    last_progress = now_ns();
    while (now_ns() - last_progress < 5000000000ull && nopen == nconns) {
      int busy = 0;
      if (opt.mode == MODE_ECHO) {
        for (int i = 0; i < nconns && !busy; i++) busy = conns[i].next_recv < conns[i].next_send;
      } else {
        busy = b_head < b_next;
      }
      if (!busy) break;
      poll_once(5);
    }
  }
  uint64_t undelivered = 0;
  if (opt.mode == MODE_ECHO) {
    for (int i = 0; i < nconns; i++) undelivered += conns[i].next_send - conns[i].next_recv;
  } else {
    for (uint64_t s = b_head; s < b_next; s++) undelivered += b_remaining[s % (uint64_t)opt.window];
  }
  double secs = (double)meas_ns / 1e9;
  double rate = measured_msgs / (secs > 0 ? secs : 1);
  if (stalled && !errbuf[0]) snprintf(errbuf, sizeof errbuf, "no progress for 5 s");
  printf("{\"mode\":\"%s\",\"conns\":%d,\"depth\":%d,\"window\":%d,\"size\":%zu,\"text\":%s,"
         "\"seconds\":%.4f,\"messages\":%" PRIu64 ",\"rate\":%.1f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
         "\"max_us\":%.2f,\"total_messages\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"mismatches\":%" PRIu64
         ",\"lost\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"undelivered\":%" PRIu64 ",\"protocol_errors\":%" PRIu64
         ",\"closed\":%d,\"pings\":%" PRIu64 ",\"connect_s\":%.3f,\"cpu_pct\":%.1f,\"json\":%s,\"deflate\":%s,"
         "\"deflate_conns\":%d,\"compressed_messages\":%" PRIu64 ",\"plain_messages\":%" PRIu64
         ",\"wire_bytes\":%" PRIu64 ",\"payload_bytes\":%" PRIu64 ",\"wire_per_payload\":%.4f,\"inflated\":%" PRIu64
         ",\"inflate_cache_hits\":%" PRIu64,
         mode_name, opt.conns, opt.mode == MODE_ECHO ? opt.depth : 0, opt.mode == MODE_BROADCAST ? opt.window : 0,
         opt.size, opt.text ? "true" : "false", secs, measured_msgs, rate, hist_pct(0.50), hist_pct(0.99),
         hist_pct(1.0), total_msgs, opt.mode == MODE_BROADCAST ? b_next : 0, mismatches, lost, reordered,
         undelivered, protocol_errors, nclosed_unexpected, pings, (double)open_ns / 1e9,
         100.0 * cpu_m / (secs > 0 ? secs : 1), opt.json ? "true" : "false", opt.deflate ? "true" : "false",
         deflate_conns, z_compressed, z_plain, z_wire, z_payload, z_payload ? (double)z_wire / (double)z_payload : 0.0,
         z_inflated, z_cache_hits);
  print_server_cpu(server_m0, server_m1, secs);
  printf(",\"error\":%s%s%s}\n", errbuf[0] ? "\"" : "", errbuf[0] ? errbuf : "null", errbuf[0] ? "\"" : "");
  fflush(stdout);
  int ok = !mismatches && !lost && !reordered && !protocol_errors && !nclosed_unexpected && !stalled && !undelivered;
  return ok ? 0 : 1;
}
