#include "handshake-fast.h"

#include <openssl/sha.h>

#include <cstring>

// SHA-1 comes from the OpenSSL that Node links and exports, through its
// low-level calls: OpenSSL 3's one-shot SHA1() fetches the digest under a
// lock on every call (it measured 510 ns a fastUpgrade() against 270 ns).
// They are deprecated since OpenSSL 3.0, so they are weak here: a Node
// whose OpenSSL lacks them (or that has none) loads the addon all the same
// and every handshake goes to the JS decision.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#pragma weak SHA1_Init
#pragma weak SHA1_Update
#pragma weak SHA1_Final

namespace wavecast {

namespace {

constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
constexpr size_t kGuidLength = sizeof kGuid - 1;
constexpr size_t kKeyLength = 24;
// More field lines than this go to JS, which allows up to 1,000.
constexpr int kMaxFieldLines = 100;

// Byte classes: RFC 9110 5.6.2 tchar, and the field value bytes taken here.
constexpr uint8_t kTchar = 1;
constexpr uint8_t kValue = 2;

struct Classes {
  uint8_t of[256] = {};
  constexpr Classes() {
    for (int c = '0'; c <= '9'; c++) of[c] |= kTchar;
    for (int c = 'a'; c <= 'z'; c++) of[c] |= kTchar;
    for (int c = 'A'; c <= 'Z'; c++) of[c] |= kTchar;
    const char* extra = "!#$%&'*+-.^_`|~";
    for (int i = 0; extra[i] != 0; i++) of[static_cast<uint8_t>(extra[i])] |= kTchar;
    for (int c = 0x20; c <= 0x7e; c++) of[c] |= kValue;
    of['\t'] |= kValue;
  }
};
constexpr Classes kClasses;

bool IsTchar(uint8_t c) { return (kClasses.of[c] & kTchar) != 0; }

// Field value bytes taken here: visible ASCII, SP and HTAB. obs-text
// (0x80-0xff) is valid HTTP but goes to JS, whose String.prototype.trim
// would treat U+00A0 as white space.
bool IsValueByte(uint8_t c) { return (kClasses.of[c] & kValue) != 0; }

bool IsOws(uint8_t c) { return c == ' ' || c == '\t'; }

uint8_t Lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? static_cast<uint8_t>(c + 32) : c; }

// Whether bytes [p, p + n) are `lower` (lowercase ASCII), ignoring ASCII case.
template <size_t N>
bool Is(const uint8_t* p, size_t n, const char (&lower)[N]) {
  if (n != N - 1) return false;
  for (size_t i = 0; i < n; i++) {
    if (Lower(p[i]) != static_cast<uint8_t>(lower[i])) return false;
  }
  return true;
}

// Whether a comma-separated value lists `lower`, each item trimmed of OWS
// and compared without ASCII case (hasToken() in src/protocol/handshake.ts).
template <size_t N>
bool HasToken(const uint8_t* v, size_t n, const char (&lower)[N]) {
  size_t start = 0;
  while (start <= n) {
    size_t end = start;
    while (end < n && v[end] != ',') end++;
    size_t a = start;
    size_t b = end;
    while (a < b && IsOws(v[a])) a++;
    while (b > a && IsOws(v[b - 1])) b--;
    if (Is(v + a, b - a, lower)) return true;
    start = end + 1;
  }
  return false;
}

bool IsBase64Char(uint8_t c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' || c == '/';
}

// Base64 of exactly 16 bytes (RFC 6455 4.2.1 item 5): 21 characters, one
// of A Q g w (the last 4 bits are zero), then "==".
bool IsKey(const uint8_t* k, size_t n) {
  if (n != kKeyLength) return false;
  for (size_t i = 0; i < 21; i++) {
    if (!IsBase64Char(k[i])) return false;
  }
  return (k[21] == 'A' || k[21] == 'Q' || k[21] == 'g' || k[21] == 'w') && k[22] == '=' && k[23] == '=';
}

void Base64(const uint8_t* in, size_t n, char* out) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out[o++] = kAlphabet[v >> 18];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = kAlphabet[v & 63];
  }
  if (n - i == 2) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8);
    out[o++] = kAlphabet[v >> 18];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = '=';
  } else if (n - i == 1) {
    const uint32_t v = uint32_t{in[i]} << 16;
    out[o++] = kAlphabet[v >> 18];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = '=';
    out[o++] = '=';
  }
}

// SHA-1 with Node's OpenSSL (SHA extensions where the CPU has them); false
// where the calls are missing.
bool Sha1(const uint8_t* data, size_t length, uint8_t digest[SHA_DIGEST_LENGTH]) {
  if (SHA1_Init == nullptr || SHA1_Update == nullptr || SHA1_Final == nullptr) return false;
  SHA_CTX sha;
  return SHA1_Init(&sha) == 1 && SHA1_Update(&sha, data, length) == 1 && SHA1_Final(digest, &sha) == 1;
}

#pragma GCC diagnostic pop

// What a field line told: the fields the decision reads, and how often.
struct Fields {
  const uint8_t* upgrade = nullptr;
  size_t upgrade_length = 0;
  const uint8_t* connection = nullptr;
  size_t connection_length = 0;
  const uint8_t* key = nullptr;
  size_t key_length = 0;
  const uint8_t* version = nullptr;
  size_t version_length = 0;
  int hosts = 0;
  size_t host_length = 0;
};

// One field line [p, end): false if it is not plainly valid or names a
// field that makes the request JS's to decide.
bool TakeField(const uint8_t* p, const uint8_t* end, Fields* f) {
  const uint8_t* colon = p;
  while (colon < end && IsTchar(*colon)) colon++;
  if (colon == p || colon == end || *colon != ':') return false;
  const uint8_t* v = colon + 1;
  const uint8_t* v_end = end;
  for (const uint8_t* q = v; q < v_end; q++) {
    if (!IsValueByte(*q)) return false;
  }
  while (v < v_end && IsOws(*v)) v++;
  while (v_end > v && IsOws(v_end[-1])) v_end--;
  const size_t name_length = static_cast<size_t>(colon - p);
  const size_t n = static_cast<size_t>(v_end - v);
  auto once = [&](const uint8_t** at, size_t* length) {
    if (*at != nullptr) return false;  // repeated: JS combines the values
    *at = v;
    *length = n;
    return true;
  };
  if (Is(p, name_length, "host")) {
    f->hosts++;
    f->host_length = n;
    return f->hosts == 1;
  }
  if (Is(p, name_length, "upgrade")) return once(&f->upgrade, &f->upgrade_length);
  if (Is(p, name_length, "connection")) return once(&f->connection, &f->connection_length);
  if (Is(p, name_length, "sec-websocket-key")) return once(&f->key, &f->key_length);
  if (Is(p, name_length, "sec-websocket-version")) return once(&f->version, &f->version_length);
  // A subprotocol or extension offer, a body, or a name a plain object
  // treats specially: the JS decision handles these.
  return !Is(p, name_length, "sec-websocket-protocol") && !Is(p, name_length, "sec-websocket-extensions") &&
         !Is(p, name_length, "content-length") && !Is(p, name_length, "transfer-encoding") &&
         !Is(p, name_length, "__proto__");
}

}  // namespace

bool FastUpgrade(const uint8_t* head, size_t length, const FastRules& rules, uint8_t* response) {
  if (length > rules.max_head || length < 16 || std::memcmp(head, "GET /", 5) != 0) return false;
  const uint8_t* const end = head + length - 2;  // the blank line's CRLF
  // Request line: GET, an origin-form target of visible ASCII, HTTP/1.1.
  const uint8_t* target = head + 4;
  const uint8_t* p = target;
  while (p < end && *p > 0x20 && *p < 0x7f) p++;
  static const char kVersion[] = " HTTP/1.1\r\n";
  if (static_cast<size_t>(end - p) < sizeof kVersion - 1 || std::memcmp(p, kVersion, sizeof kVersion - 1) != 0) {
    return false;
  }
  if (rules.path_length > 0) {
    const uint8_t* q = target;
    while (q < p && *q != '?') q++;
    if (static_cast<size_t>(q - target) != rules.path_length || std::memcmp(target, rules.path, rules.path_length) != 0) {
      return false;
    }
  }
  p += sizeof kVersion - 1;
  Fields f;
  int lines = 0;
  while (p < end) {
    if (++lines > kMaxFieldLines) return false;
    const uint8_t* line_end = p;
    while (line_end < end && !(line_end[0] == '\r' && line_end[1] == '\n')) line_end++;
    if (line_end >= end || !TakeField(p, line_end, &f)) return false;
    p = line_end + 2;
  }
  if (f.hosts != 1 || f.host_length == 0 || f.upgrade == nullptr || f.connection == nullptr || f.key == nullptr ||
      f.version == nullptr) {
    return false;
  }
  if (!HasToken(f.upgrade, f.upgrade_length, "websocket") || !HasToken(f.connection, f.connection_length, "upgrade") ||
      !IsKey(f.key, f.key_length) || f.version_length != 2 || f.version[0] != '1' || f.version[1] != '3') {
    return false;
  }
  uint8_t keyed[kKeyLength + kGuidLength];
  std::memcpy(keyed, f.key, kKeyLength);
  std::memcpy(keyed + kKeyLength, kGuid, kGuidLength);
  uint8_t digest[SHA_DIGEST_LENGTH];
  if (!Sha1(keyed, sizeof keyed, digest)) return false;
  static const char kStart[] =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  char* out = reinterpret_cast<char*>(response);
  std::memcpy(out, kStart, sizeof kStart - 1);
  out += sizeof kStart - 1;
  Base64(digest, sizeof digest, out);
  std::memcpy(out + 28, "\r\n\r\n", 4);
  static_assert(sizeof kStart - 1 + 28 + 4 == kFastResponseLength, "the 101's length");
  return true;
}

}  // namespace wavecast
