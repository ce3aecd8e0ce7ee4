// One connection of the native transport, as a slot: its life cycle as one
// state machine, its write queue, and what identifies it to JS. No N-API and
// no system calls here (see transport-loop.h for the loop that drives it).
#ifndef WAVECAST_TRANSPORT_CONN_H_
#define WAVECAST_TRANSPORT_CONN_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

// Invariants of the transport are checked with WAVECAST_CHECK in the
// sanitizer build (native/asan.sh defines WAVECAST_CHECKS) and cost nothing
// in a release build. WAVECAST_REQUIRE is checked in every build: it guards
// a write into a fixed-size array, where going on would corrupt memory.
#define WAVECAST_FAIL(what)                                                                     \
  (std::fprintf(stderr, "wavecast transport: invariant broken at %s:%d: %s\n", __FILE__, __LINE__, \
                what),                                                                          \
   std::abort())
#define WAVECAST_REQUIRE(cond) ((cond) ? (void)0 : WAVECAST_FAIL(#cond))
#if defined(WAVECAST_CHECKS)
#define WAVECAST_CHECK(cond) WAVECAST_REQUIRE(cond)
#else
#define WAVECAST_CHECK(cond) ((void)0)
#endif

namespace wavecast {
namespace transport {

// The life cycle of a slot. Reading has two further conditions that do not
// change what the slot is (Conn::paused, Conn::read_eof).
//
//   kFree ── accept4 ──> kPeeking ── complete GET head ──> kPending
//   kPeeking ──> kFree               (handed to Node as HTTP, or gone before a request: JS never knew it)
//   kPeeking ──> kOpen               (fast open: the transport wrote the 101; JS hears OPEN)
//   kPending ──> kOpen               (accept: 101 written)
//   kPending ──> kRefusing           (reject: JS forgets the slot)
//   kPending ──> kFree               (release: the descriptor goes to Node)
//   kOpen ──> kEndQueued             (end() with bytes queued: FIN once they are out)
//   kOpen | kEndQueued ──> kWriteShut        (our FIN sent; closes at the peer's FIN)
//   kOpen | kEndQueued ──> kCloseQueued      (destroySoon() with bytes queued)
//   kRefusing ──> kFree              (closed; JS forgot it, so no event)
//   any state JS knows ──> kClosed   (descriptor closed; one CLOSE event is on its way)
//   kClosed ──> kFree                (only after JS has been handed that CLOSE event)
//
// A slot is reused only from kFree, so a slot JS knows never names a newer
// connection before JS has seen the older one's CLOSE; the generation makes
// a handle JS kept after that refer to nothing.
enum class State : uint8_t {
  kFree,
  kPeeking,
  kPending,
  kOpen,
  kEndQueued,
  kCloseQueued,
  kWriteShut,
  kRefusing,
  kClosed,
};

constexpr int kStateCount = 9;

inline bool Allowed(State from, State to) {
  // Rows: from; columns: to, in the enum's order.
  static const bool kTable[kStateCount][kStateCount] = {
      //            Free   Peek   Pend   Open   EndQ   CloQ   WShut  Refus  Closed
      /* Free    */ {false, true, false, false, false, false, false, false, false},
      /* Peeking */ {true, false, true, true, false, false, false, false, false},
      /* Pending */ {true, false, false, true, false, false, false, true, true},
      /* Open    */ {false, false, false, false, true, true, true, false, true},
      /* EndQ    */ {false, false, false, false, false, true, true, false, true},
      /* CloseQ  */ {false, false, false, false, false, false, false, false, true},
      /* WShut   */ {false, false, false, false, false, false, false, false, true},
      /* Refusing*/ {true, false, false, false, false, false, false, false, false},
      /* Closed  */ {true, false, false, false, false, false, false, false, false},
  };
  return kTable[static_cast<int>(from)][static_cast<int>(to)];
}

// JS knows the slot: it gets exactly one CLOSE event for it.
inline bool Known(State s) {
  return s == State::kPending || s == State::kOpen || s == State::kEndQueued || s == State::kCloseQueued ||
         s == State::kWriteShut || s == State::kClosed;
}

// Upgraded and not yet closed: bytes read become DATA events.
inline bool Upgraded(State s) {
  return s == State::kOpen || s == State::kEndQueued || s == State::kCloseQueued || s == State::kWriteShut;
}

// What JS holds for a connection: the slot in the low 24 bits, the slot's
// generation above them, as one integer exact in a double (2^53).
constexpr int kSlotBits = 24;
constexpr uint32_t kMaxSlots = uint32_t{1} << kSlotBits;
constexpr uint32_t kGenMask = (uint32_t{1} << (53 - kSlotBits)) - 1;

inline int64_t HandleOf(uint32_t slot, uint32_t gen) { return (int64_t{gen} << kSlotBits) | slot; }
inline uint32_t SlotOf(int64_t handle) { return static_cast<uint32_t>(handle & (kMaxSlots - 1)); }
inline uint32_t GenOf(int64_t handle) { return static_cast<uint32_t>(handle >> kSlotBits); }

// Bytes the kernel has not taken yet, in order. Bounded by the JS side's
// policy: data messages over `maxBackpressure` are refused there, and a
// connection over it is not read (so it cannot make us write more) until
// this queue drains.
struct Queue {
  std::vector<uint8_t> bytes;
  size_t start = 0;
  size_t size() const { return bytes.size() - start; }
};

// 56 bytes per connection, plus the queue while the kernel refuses bytes.
struct Conn {
  int fd = -1;
  uint32_t gen = 0;       // bumped per use of the slot: stale epoll events and handles are refused
  uint32_t interest = 0;  // the events registered with epoll
  uint32_t born = 0;      // loop time (ms) at accept, for the handshake deadline
  uint16_t scanned = 0;   // kPeeking: bytes of the head read so far (kept in Loop::partial_heads_)
  State state = State::kFree;
  bool paused = false;    // reading stopped by JS (backpressure, inflate)
  bool read_eof = false;  // the peer's FIN has been read
  uint8_t peer_family = 0;     // AF_INET or AF_INET6, from accept4 (0: unknown)
  uint16_t peer_port = 0;      // network byte order
  uint8_t peer_addr[16] = {};  // the client's address (4 bytes used for AF_INET)
  double bytes_out = 0;
  std::unique_ptr<Queue> queue;

  bool HasQueued() const { return queue && queue->size() > 0; }

  void SetPeer(const sockaddr_storage& addr) {
    peer_family = 0;
    if (addr.ss_family == AF_INET) {
      const sockaddr_in& in4 = reinterpret_cast<const sockaddr_in&>(addr);
      peer_family = AF_INET;
      peer_port = in4.sin_port;
      std::memcpy(peer_addr, &in4.sin_addr, 4);
    } else if (addr.ss_family == AF_INET6) {
      const sockaddr_in6& in6 = reinterpret_cast<const sockaddr_in6&>(addr);
      peer_family = AF_INET6;
      peer_port = in6.sin6_port;
      std::memcpy(peer_addr, &in6.sin6_addr, 16);
    }
  }

  bool GetPeer(sockaddr_storage* addr) const {
    *addr = {};
    if (peer_family == AF_INET) {
      sockaddr_in* in4 = reinterpret_cast<sockaddr_in*>(addr);
      in4->sin_family = AF_INET;
      in4->sin_port = peer_port;
      std::memcpy(&in4->sin_addr, peer_addr, 4);
      return true;
    }
    if (peer_family == AF_INET6) {
      sockaddr_in6* in6 = reinterpret_cast<sockaddr_in6*>(addr);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = peer_port;
      std::memcpy(&in6->sin6_addr, peer_addr, 16);
      return true;
    }
    return false;
  }
};

}  // namespace transport
}  // namespace wavecast

#endif  // WAVECAST_TRANSPORT_CONN_H_
