// The native transport's loop: one epoll set, the slots, and the batch of
// events that goes to JS. No N-API here: the binding (transport-binding.cc)
// derives from Loop and implements Deliver(), the one place JS is called.
//
//   accept4 -> kPeeking: read the request head until it is complete (the
//   pieces of one that comes in several are kept, at most 16 KiB a slot)
//     - not a GET, a bare LF, no complete head within 16 KiB, or the peer
//       stopped sending: the descriptor is handed to JS with the bytes read
//       (event HTTP); JS puts them back in front of the socket's stream and
//       Node's http.Server parses the request as if it had read it itself
//       (and answers 400 or 431 where it should).
//     - a plainly valid upgrade while JS allows fast opens (no handshake
//       hook; see handshake-fast.h): the 101 is written, event OPEN with a
//       copy of the head (and DATA with any bytes after it) -> kOpen.
//     - any other complete GET head with nothing after it: event HEAD with a
//       copy of it -> kPending while JS decides: accept() writes the 101
//       (kOpen), reject() writes the refusal and closes after the client's
//       FIN (kRefusing, never reported again), release() hands the
//       descriptor to Node (plain HTTP after all; JS has the head). With
//       bytes after it, the descriptor is handed to Node (event HTTP) and
//       Node's 'upgrade' road decides.
//   open: reads (level-triggered, at most 256 KiB per connection per epoll
//   event, never more than maxBackpressure) become DATA events; EOF is END;
//   writes go straight to the kernel and what it does not take waits in a
//   per-connection queue flushed on EPOLLOUT (DRAIN when empty); close() of
//   the descriptor is CLOSE.
//
// THE RULE (what keeps one connection's bytes away from another's): JS runs
// only between epoll events. Before one is handled, the batch is made to
// have room for everything that event can add (kEventRoom events, a read
// chunk of data, a request head); if it has not, the batch goes to JS first.
// Nothing that handles an event (ReadHead, Read, FlushQueue, Close, Push) ever
// calls JS, so no offset, slot or state read while handling it can be
// changed under it. After each call into JS, the pump re-reads everything:
// the epoll events it still holds are checked against the slot's generation
// and state, because JS may have closed any connection, the listener, or the
// whole transport.
#ifndef WAVECAST_TRANSPORT_LOOP_H_
#define WAVECAST_TRANSPORT_LOOP_H_

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "handshake-fast.h"
#include "transport-conn.h"

namespace wavecast {
namespace transport {

// One non-blocking read (the descriptors are O_NONBLOCK), retried on EINTR:
// the bytes read, 0 at EOF, or -1 with errno set. syscall(), not recv():
// glibc makes recv() a cancellation point, wrapped in two calls that turn
// asynchronous cancellation on and off around it (with send()'s, 0.5-0.7%
// of the server's samples echoing 32-byte messages at depth 1, one read
// per message), and nothing cancels the thread that reads here. Under
// AddressSanitizer recv() it is: its interceptor checks that `into` holds
// `len` bytes, which a raw syscall would not.
inline ssize_t RecvNow(int fd, void* into, size_t len) {
  long n;
  do {
#if defined(__SANITIZE_ADDRESS__)
    n = recv(fd, into, len, 0);
#else
    n = syscall(SYS_recvfrom, fd, into, len, 0, nullptr, nullptr);
#endif
  } while (n < 0 && errno == EINTR);
  return static_cast<ssize_t>(n);
}

// Event types, shared with src/transport.ts.
enum Event : int32_t { kEvHead = 1, kEvHttp = 2, kEvData = 3, kEvEnd = 4, kEvClose = 5, kEvDrain = 6, kEvOpen = 7 };

// Each event is type, slot, generation, a, b (int32 each).
constexpr size_t kEventInts = 5;
constexpr size_t kMaxEvents = 2048;
// The most events one epoll event can add: DRAIN, then DATA, END or CLOSE,
// then CLOSE. Reserved (with margin) before each one is handled.
constexpr size_t kEventRoom = 4;
// One recv takes up to this much (SetReadSize): all a client has
// pipelined, most of the time (10 messages of 16 KiB in flight: one read
// and one write for the ten, where 64 KiB reads took three of each and cut
// a message in two at every read's end, which the parser then copied
// together; measured: a third less server CPU per round trip).
constexpr size_t kReadChunk = 256 * 1024;
// ... and at least this much.
constexpr size_t kMinReadChunk = 64 * 1024;
// A batch goes to JS once it holds this many bytes: JS answers the first
// messages (and the kernel sends the answers) while later ones are read,
// instead of reading every ready connection before answering any. Each
// call into JS has a cost of its own: at 64 KiB a batch of 16 KiB messages
// went to JS four messages at a time, about 24 calls per pump of 100
// ready clients; at 256 KiB, about 6 (measured: about 4% less server CPU
// per round trip echoing 16 KiB at depth 1; depth 10, 32 B and broadcast
// unchanged).
constexpr size_t kBatchBytes = 256 * 1024;
// A batch under kBatchBytes always has room for one more read.
constexpr size_t kDataCapacity = kBatchBytes + kReadChunk;
constexpr size_t kHeadMax = 16 * 1024;
// Request heads travel in a buffer of their own, never in the one whose
// views carry payloads to the app (cookies and tokens stay out of it).
constexpr size_t kHeadsCapacity = 256 * 1024;
constexpr int kEpollBatch = 256;
constexpr int kAcceptBatch = 256;
constexpr uint64_t kListenTag = ~uint64_t{0};
// Accepts per readiness of a listener other processes share (workerNum): a
// worker takes a few and goes back to epoll, so a burst spreads over the
// workers instead of going to whichever woke first.
constexpr int kSharedAcceptBatch = 16;

// A bound, listening, non-blocking, close-on-exec TCP socket with the
// transport's own options (SO_REUSEADDR, IPV6_V6ONLY as asked): 0 and *fd,
// or an errno. The primary of workerNum workers makes one for all of them.
int OpenListener(int family, const void* addr, unsigned addr_len, int backlog, bool v6only, int* fd);
// The port a listening socket is bound to (0 if it cannot be read).
int BoundPort(int fd);

// Blocks of kDataCapacity bytes, reused: a large batch is handed to JS in
// its block, which comes back when V8 frees the Buffer (see the binding).
// Not sooner: views into it may outlive the batch's JS call (a message the
// app keeps unread, whose payload is copied only when first read; input a
// throttled parser holds), and reading the next batch into the block would
// hand them other clients' bytes (transport-soundness.test.ts, "views into
// received bytes after their turn").
uint8_t* TakeBlock();
void GiveBlock(uint8_t* block);
// Frees the spare blocks that stayed unused since the last trim, keeping a
// few; at most once a second whoever calls it (the handshake sweep does).
void TrimBlocks();
// Blocks allocated (ever), alive (lent or spare) and spare, for tests.
struct BlockStats {
  double made = 0;
  size_t live = 0;
  size_t spare = 0;
};
BlockStats Blocks();

class Loop {
 public:
  Loop();
  virtual ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Sets up epoll on `uv`'s loop; false (errno set) on failure.
  bool Init(uv_loop_t* uv);

  // --- what JS asks (each refuses a stale handle) --------------------------
  // listen: 0 or an errno; `port` gets the port bound.
  int Listen(int family, const void* addr, unsigned addr_len, int backlog, bool v6only, int* port);
  // Listens on a socket this process inherited, listening already and
  // shared with other processes: registered with EPOLLEXCLUSIVE (which
  // spares a wake-up only where a task waits on this set directly; libuv
  // polls the set, so several workers may still wake and find nothing),
  // accepting kSharedAcceptBatch per readiness; closing it closes only this
  // copy. 0 or an errno; `port` gets the port bound.
  int ListenFd(int fd, int* port);
  // TCP_DEFER_ACCEPT on the listener: the kernel hands over a connection
  // once its first bytes are there (or after about `seconds` of silence),
  // and each is read right after its accept, saving a wake-up and an epoll
  // round per handshake. 0 turns it off. 0 or an errno.
  int DeferAccept(int seconds);
  void CloseListener();
  // Bytes queued afterwards, or -1 when the handle is not open for writing.
  double Write(int64_t handle, const struct iovec* iov, int iovcnt);
  // A pending slot (its head read already): writes `response`, then opens
  // (accept) or refuses it; false if the client is gone.
  bool Answer(int64_t handle, const struct iovec& response, bool accept);
  int Release(int64_t handle);
  void End(int64_t handle);
  void DestroySoon(int64_t handle);
  void Destroy(int64_t handle);
  void Pause(int64_t handle) { SetPaused(handle, true); }
  void Resume(int64_t handle) { SetPaused(handle, false); }
  double BytesOut(int64_t handle) const;
  // The peer's address, for a pending or upgraded slot.
  bool Peer(int64_t handle, struct sockaddr_storage* addr) const;
  int Sweep(uint32_t age, uint32_t head_cap);
  // Fast opens (handshake-fast.h): the next `budget` plainly valid upgrades
  // (0: none) with this path ('' for any) and heads of at most `max_head`
  // bytes are answered here and reported as OPEN.
  void SetFastOpen(int32_t budget, const char* path, size_t path_length, size_t max_head);
  // The most one recv takes from a connection, within [kMinReadChunk,
  // kReadChunk]: JS keeps it within a connection's maxBackpressure, so that
  // what one read makes the server answer (pongs to a ping flood) meets the
  // limit over several batches, each written before the next is read.
  void SetReadSize(size_t bytes);
  // Connections accepted and not yet upgraded, refused or handed to JS
  // (reading their head, or waiting for JS's decision).
  int Handshaking() const;
  void Dispose();
  bool disposed() const { return disposed_; }
  bool listening() const { return listen_fd_ >= 0; }

 protected:
  // Hands the batch to JS: `count` events in events(), data_size() bytes of
  // data() and heads_size() bytes of heads(). The only call into JS.
  virtual void Deliver(size_t count) = 0;
  // Drops what the binding holds of JS (callback, event array); called once
  // the transport is disposed and no batch is being read. May run twice.
  virtual void ReleaseJs() = 0;
  // Takes the data block (the batch's successor gets another).
  uint8_t* ReleaseData();
  int32_t* events() { return events_; }
  const uint8_t* data() const { return data_.get(); }
  size_t data_size() const { return data_size_; }
  const uint8_t* heads() const { return heads_.get(); }
  size_t heads_size() const { return heads_size_; }
  // The shared event array JS reads (set by the binding, kMaxEvents long).
  void set_events(int32_t* events) { events_ = events; }

 private:
  // loop (transport-loop.cc)
  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnIdle(uv_idle_t* handle);
  static void OnAcceptRetry(uv_timer_t* handle);
  static void OnHandleClosed(uv_handle_t* handle);
  void Pump();
  void Boundary();
  // Whether the batch has room for all one epoll event can add (see the top).
  bool HasRoom() const;
  void Flush();
  void Dispatch(const epoll_event& ev);
  void AcceptAll();
  void PauseAccepting();
  void ResumeAccepting();
  // Adds the listener to the epoll set (or takes it out): EPOLLEXCLUSIVE
  // registrations cannot be modified, only added and deleted.
  bool WatchListener(bool on);
  void Read(uint32_t slot, uint32_t ready);
  void Push(int32_t type, uint32_t slot, int32_t a, int32_t b);
  void Raise(int32_t type, uint32_t slot, int32_t a, int32_t b);
  void Close(uint32_t slot, int error);
  void CloseHandOffs(size_t from);
  uint32_t AllocSlot();
  void SetState(uint32_t slot, State to);
  void FreeSlot(uint32_t slot);
  // The slot a handle names, if its generation is current and its state is
  // one of `states` (a bit per State); else -1.
  int64_t Resolve(int64_t handle, uint32_t states) const;
  void SetInterest(uint32_t slot, uint32_t mask);
  void UpdateInterest(uint32_t slot);
  void SetPaused(int64_t handle, bool paused);
  uint32_t Now() const;
  // head (transport-head.cc)
  void ReadHead(uint32_t slot, uint32_t ready);
  void KeepPartial(uint32_t slot, size_t len);
  void HandOff(uint32_t slot, size_t len);
  void FastOpen(uint32_t slot, size_t head, size_t extra, const uint8_t* response);
  // writing (transport-write.cc)
  double Send(uint32_t slot, const struct iovec* iov, int iovcnt);
  void Enqueue(Conn& c, const struct iovec* iov, int iovcnt, size_t skip);
  void FlushQueue(uint32_t slot);
  void Emptied(uint32_t slot);
  void Shutdown(uint32_t slot);

  uv_loop_t* uv_ = nullptr;
  uv_poll_t poll_;
  uv_idle_t idle_;
  uv_timer_t accept_retry_;
  int open_handles_ = 0;
  int epfd_ = -1;
  int listen_fd_ = -1;
  bool listen_shared_ = false;
  bool read_after_accept_ = false;  // DeferAccept: heads are there at accept
  int reserve_fd_ = -1;  // given up on EMFILE to accept and drop one connection
  bool accept_paused_ = false;
  bool disposed_ = false;
  bool pumping_ = false;
  bool in_js_ = false;
  int32_t* events_ = nullptr;
  size_t event_count_ = 0;
  std::unique_ptr<uint8_t, void (*)(uint8_t*)> data_;
  size_t data_size_ = 0;
  std::unique_ptr<uint8_t[]> heads_;
  size_t heads_size_ = 0;
  std::vector<Conn> conns_;
  std::vector<uint32_t> free_slots_;
  // Events raised while JS runs or between batches (CLOSEs of connections JS
  // or a timer closed): moved into the batch at the next boundary.
  std::vector<int32_t> deferred_;
  uint8_t scratch_[kHeadMax];
  // The bytes read so far of heads that came in pieces, by slot (kPeeking
  // slots only; Conn::scanned is their length).
  std::unordered_map<uint32_t, std::string> partial_heads_;
  size_t read_size_ = kReadChunk;
  int32_t fast_budget_ = 0;
  std::string fast_path_;
  FastRules fast_rules_;

 public:
  // Set by the binding: the loop frees itself once its libuv handles are
  // closed and JS no longer holds it.
  bool js_alive = true;
  void DeleteWhenClosed();
};

constexpr uint32_t Bit(State s) { return uint32_t{1} << static_cast<int>(s); }

}  // namespace transport
}  // namespace wavecast

#endif  // WAVECAST_TRANSPORT_LOOP_H_
