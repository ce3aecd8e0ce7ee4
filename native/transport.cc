// The native transport (see transport.h). One Transport per server:
//
//   accept4 -> kHttp: peek (MSG_PEEK) until the request head is complete
//     - not a GET, no complete head within 16 KiB, or the peer stopped
//       sending: the descriptor is handed to JS untouched (event HTTP) and
//       Node's http.Server reads the request from the kernel as if it had
//       accepted it itself.
//     - a complete GET head: event HEAD with a copy of it -> kPending while
//       JS decides: accept() consumes the head and writes the 101 (kOpen),
//       reject() consumes it, writes the refusal and closes after the
//       client's FIN (kRejected, never reported again), release() hands the
//       descriptor to Node (plain HTTP after all).
//   kOpen: reads (level-triggered, at most 64 KiB per connection per turn)
//   become DATA events; EOF is END; writes go straight to the kernel and
//   what it does not take waits in a per-connection queue flushed on
//   EPOLLOUT (DRAIN when empty); close() of the descriptor is CLOSE.
//
// Events are 4 int32s each in one shared Int32Array, data in one Buffer per
// batch: JS is called once per batch, not once per socket. A slot JS knows
// (kPending, kOpen) is reported closed exactly once, and is not reused before
// that CLOSE event has been delivered, so a slot number in JS never names a
// newer connection.
//
// Memory per idle open connection: one Conn (40 bytes) and the kernel's
// socket; the write queue exists only while the kernel refuses bytes.
#include "transport.h"

#if defined(WAVECAST_HAVE_TRANSPORT)

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

namespace wavecast {
namespace {

enum State : uint8_t { kFree, kHttp, kPending, kOpen, kRejected, kZombie };

enum Flag : uint8_t {
  kPaused = 1,
  kReadEof = 2,
  kWriteShut = 4,
  kShutAfterFlush = 8,
  kCloseAfterFlush = 16,
};

// Event types, shared with src/transport.ts.
enum Event : int32_t { kEvHead = 1, kEvHttp = 2, kEvData = 3, kEvEnd = 4, kEvClose = 5, kEvDrain = 6 };

constexpr size_t kEventInts = 4;
constexpr size_t kMaxEvents = 2048;
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kDataCapacity = 128 * 1024;
// A batch goes to JS once it holds this many bytes: JS answers the first
// messages (and the kernel sends the answers) while later ones are read,
// instead of reading every ready connection before answering any.
constexpr size_t kBatchBytes = 64 * 1024;
constexpr size_t kHeadMax = 16 * 1024;
constexpr int kEpollBatch = 256;
constexpr int kAcceptBatch = 256;
constexpr uint64_t kListenTag = ~uint64_t{0};

// A batch's bytes reach JS in a Buffer. A small batch is copied into one of
// its exact size; a large one is handed over as it is, in its block, and the
// block comes back here when V8 frees the Buffer. Reusing blocks keeps the
// hot path off fresh memory: allocating (and first touching) a new 64 KiB
// and more per batch cost a page fault per 4 KiB, which was most of the
// server's time when echoing 16 KiB messages.
constexpr size_t kCopyMax = 16 * 1024;
constexpr size_t kSpareBlocks = 32;
std::mutex block_mutex;  // finalizers may run where the transport does not
std::vector<uint8_t*> spare_blocks;

uint8_t* TakeBlock() {
  {
    std::lock_guard<std::mutex> lock(block_mutex);
    if (!spare_blocks.empty()) {
      uint8_t* block = spare_blocks.back();
      spare_blocks.pop_back();
      return block;
    }
  }
  return static_cast<uint8_t*>(std::malloc(kDataCapacity));
}

void GiveBlock(uint8_t* block) {
  {
    std::lock_guard<std::mutex> lock(block_mutex);
    if (spare_blocks.size() < kSpareBlocks) {
      spare_blocks.push_back(block);
      return;
    }
  }
  std::free(block);
}

void OnBlockFreed(napi_env, void* block, void*) { GiveBlock(static_cast<uint8_t*>(block)); }

// Bytes the kernel has not taken yet, in order.
struct Queue {
  std::vector<uint8_t> bytes;
  size_t start = 0;
  size_t size() const { return bytes.size() - start; }
};

struct Conn {
  int fd = -1;
  uint32_t gen = 0;       // bumped per use of the slot: stale epoll events are ignored
  uint32_t interest = 0;  // the events registered with epoll
  uint32_t born = 0;      // loop time (ms) at accept, for the handshake deadline
  uint8_t state = kFree;
  uint8_t flags = 0;
  double bytes_out = 0;
  std::unique_ptr<Queue> queue;
};

class Transport {
 public:
  napi_env env;
  uv_loop_t* loop = nullptr;
  int epfd = -1;
  int listen_fd = -1;
  int reserve_fd = -1;  // given up on EMFILE to accept and drop one connection
  uv_poll_t poll;
  uv_idle_t idle;
  int open_handles = 0;
  bool js_alive = true;
  bool disposed = false;
  bool pumping = false;
  bool in_callback = false;
  napi_ref callback = nullptr;
  napi_ref events_ref = nullptr;
  napi_async_context async_context = nullptr;
  int32_t* events = nullptr;
  size_t event_count = 0;
  std::unique_ptr<uint8_t, void (*)(uint8_t*)> data{TakeBlock(), GiveBlock};
  size_t data_size = 0;
  std::vector<Conn> conns;
  std::vector<uint32_t> free_slots;
  std::vector<int32_t> deferred;  // events raised outside a batch
  uint8_t scratch[kHeadMax];

  explicit Transport(napi_env e) : env(e) {}

  uint64_t Tag(uint32_t slot) const { return (uint64_t{conns[slot].gen} << 32) | slot; }

  uint32_t Now() const { return static_cast<uint32_t>(uv_now(loop)); }

  uint32_t AllocSlot() {
    uint32_t slot;
    if (!free_slots.empty()) {
      slot = free_slots.back();
      free_slots.pop_back();
    } else {
      slot = static_cast<uint32_t>(conns.size());
      conns.emplace_back();
    }
    conns[slot].gen++;
    return slot;
  }

  void FreeSlot(uint32_t slot) {
    Conn& c = conns[slot];
    c.state = kFree;
    c.flags = 0;
    c.interest = 0;
    c.fd = -1;
    c.bytes_out = 0;
    c.queue.reset();
    free_slots.push_back(slot);
  }

  // Open and not ending: what write(), writev() and writeBatch() accept.
  bool Writable(int64_t slot) const {
    return Valid(slot, false) && !(conns[slot].flags & (kWriteShut | kShutAfterFlush | kCloseAfterFlush));
  }

  bool Valid(int64_t slot, bool pending_ok) const {
    if (slot < 0 || static_cast<uint64_t>(slot) >= conns.size()) return false;
    const uint8_t s = conns[slot].state;
    return s == kOpen || (pending_ok && s == kPending);
  }

  void SetInterest(uint32_t slot, uint32_t mask) {
    Conn& c = conns[slot];
    if (c.fd < 0 || mask == c.interest) return;
    epoll_event ev = {};
    ev.events = mask;
    ev.data.u64 = Tag(slot);
    epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
    c.interest = mask;
  }

  // Level-triggered reading unless paused or at EOF; EPOLLOUT while bytes wait.
  void UpdateInterest(uint32_t slot) {
    const Conn& c = conns[slot];
    uint32_t mask = 0;
    if (!(c.flags & (kPaused | kReadEof))) mask |= EPOLLIN | EPOLLRDHUP;
    if (c.queue && c.queue->size() > 0) mask |= EPOLLOUT;
    SetInterest(slot, mask);
  }

  // --- events -------------------------------------------------------------

  void Push(int32_t type, uint32_t slot, int32_t a, int32_t b) {
    if (event_count == kMaxEvents) Flush();
    int32_t* e = events + event_count * kEventInts;
    e[0] = type;
    e[1] = static_cast<int32_t>(slot);
    e[2] = a;
    e[3] = b;
    event_count++;
  }

  // An event from outside a batch (a JS call, a timer): delivered by the
  // next one, which the idle handle makes happen on this loop turn.
  void Raise(int32_t type, uint32_t slot, int32_t a, int32_t b) {
    if (pumping && !in_callback) {
      Push(type, slot, a, b);
      return;
    }
    deferred.insert(deferred.end(), {type, static_cast<int32_t>(slot), a, b});
    if (!disposed && !uv_is_active(reinterpret_cast<uv_handle_t*>(&idle))) uv_idle_start(&idle, OnIdle);
  }

  // Calls JS with the events gathered so far, then frees the slots whose
  // CLOSE it has seen.
  void Flush() {
    if (event_count == 0) return;
    const size_t count = event_count;
    if (!disposed) Call(count);
    for (size_t i = 0; i < count; i++) {
      const int32_t* e = events + i * kEventInts;
      if (e[0] == kEvClose && conns[e[1]].state == kZombie) FreeSlot(static_cast<uint32_t>(e[1]));
    }
    event_count = 0;
    data_size = 0;
  }

  void Call(size_t count) {
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value fn;
    napi_value recv;
    napi_value argv[2];
    napi_get_reference_value(env, callback, &fn);
    // make_callback needs an object as `this`.
    napi_get_global(env, &recv);
    napi_create_uint32(env, static_cast<uint32_t>(count), &argv[0]);
    if (data_size > kCopyMax) {
      // The block goes with the Buffer; this batch's successor gets another.
      uint8_t* block = data.release();
      data.reset(TakeBlock());
      napi_create_external_buffer(env, data_size, block, OnBlockFreed, nullptr, &argv[1]);
    } else if (data_size > 0) {
      void* copy;
      napi_create_buffer_copy(env, data_size, data.get(), &copy, &argv[1]);
    } else {
      napi_get_undefined(env, &argv[1]);
    }
    in_callback = true;
    napi_value result;
    const napi_status status = napi_make_callback(env, async_context, recv, fn, 2, argv, &result);
    in_callback = false;
    if (status == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env, &error);
      napi_fatal_exception(env, error);
    }
    napi_close_handle_scope(env, scope);
  }

  // Room for `bytes` more in this batch's data, calling JS first if needed.
  void Reserve(size_t bytes) {
    if (kDataCapacity - data_size < bytes) Flush();
  }

  static void OnPoll(uv_poll_t* handle, int status, int) {
    if (status < 0) return;
    static_cast<Transport*>(handle->data)->Pump();
  }

  static void OnIdle(uv_idle_t* handle) {
    uv_idle_stop(handle);
    static_cast<Transport*>(handle->data)->Pump();
  }

  void Pump() {
    if (pumping || disposed) return;
    pumping = true;
    for (size_t i = 0; i + kEventInts <= deferred.size(); i += kEventInts) {
      Push(deferred[i], static_cast<uint32_t>(deferred[i + 1]), deferred[i + 2], deferred[i + 3]);
    }
    deferred.clear();
    epoll_event evs[kEpollBatch];
    for (int round = 0; round < 8 && !disposed; round++) {
      const int n = epoll_wait(epfd, evs, kEpollBatch, 0);
      if (n <= 0) break;
      for (int i = 0; i < n && !disposed; i++) Dispatch(evs[i]);
      if (n < kEpollBatch) break;
    }
    if (!disposed) Flush();
    pumping = false;
  }

  void Dispatch(const epoll_event& ev) {
    if (ev.data.u64 == kListenTag) {
      AcceptAll();
      return;
    }
    const uint32_t slot = static_cast<uint32_t>(ev.data.u64);
    if (slot >= conns.size() || conns[slot].gen != static_cast<uint32_t>(ev.data.u64 >> 32)) return;
    switch (conns[slot].state) {
      case kHttp:
        Peek(slot, ev.events);
        break;
      case kPending:
        // Gone (or done sending: FIN) before JS decided: the upgrade is
        // abandoned, as ws does with a socket no longer readable.
        if (ev.events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) Close(slot, true, SocketError(conns[slot].fd));
        break;
      case kOpen:
      case kRejected:
        if (ev.events & EPOLLOUT) FlushQueue(slot);
        if ((conns[slot].state == kOpen || conns[slot].state == kRejected) &&
            (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
          Read(slot, ev.events);
        }
        break;
      default:
        break;
    }
  }

  static int SocketError(int fd) {
    int error = 0;
    socklen_t len = sizeof error;
    if (fd >= 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    return error;
  }

  // --- accepting and the request head ---------------------------------------

  void AcceptAll() {
    for (int i = 0; i < kAcceptBatch && listen_fd >= 0; i++) {
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
          // Out of descriptors: refuse one connection rather than spin on a
          // level-triggered listener (libuv's trick).
          close(reserve_fd);
          const int dropped = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
          if (dropped >= 0) close(dropped);
          reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
          continue;
        }
        return;  // EAGAIN, or an error the next readiness retries
      }
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const uint32_t slot = AllocSlot();
      Conn& c = conns[slot];
      c.fd = fd;
      c.state = kHttp;
      c.born = Now();
      epoll_event ev = {};
      // Edge-triggered while peeking: bytes left in the kernel must not wake
      // us again until more arrive.
      ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = Tag(slot);
      if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        FreeSlot(slot);
        continue;
      }
      c.interest = ev.events;
    }
  }

  void Peek(uint32_t slot, uint32_t ready) {
    Conn& c = conns[slot];
    ssize_t n;
    do {
      n = recv(c.fd, scratch, kHeadMax, MSG_PEEK);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      // Closed or reset before a request: nobody knew of it.
      Close(slot, false, 0);
      return;
    }
    static const char kGet[] = "GET ";
    const size_t got = static_cast<size_t>(n);
    if (std::memcmp(scratch, kGet, got < 4 ? got : 4) != 0) {
      HandOff(slot);
      return;
    }
    const void* end = memmem(scratch, got, "\r\n\r\n", 4);
    if (end == nullptr) {
      // Too long for a handshake, or the client stopped sending: Node's
      // parser answers (431, 400) or waits, as for any HTTP request.
      if (got == kHeadMax || (ready & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) HandOff(slot);
      return;
    }
    const size_t head = static_cast<const uint8_t*>(end) - scratch + 4;
    Reserve(head);
    std::memcpy(data.get() + data_size, scratch, head);
    Push(kEvHead, slot, static_cast<int32_t>(data_size), static_cast<int32_t>(head));
    data_size += head;
    // Still edge-triggered: further bytes wait in the kernel without waking
    // us, and the interest stays as it is (one epoll_ctl less per handshake).
    c.state = kPending;
  }

  // The descriptor leaves the transport for Node's http.Server.
  void HandOff(uint32_t slot) {
    Conn& c = conns[slot];
    const int fd = c.fd;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
    FreeSlot(slot);
    Push(kEvHttp, slot, fd, 0);
  }

  // Reads and drops the `len` head bytes that were peeked.
  bool Consume(int fd, size_t len) {
    while (len > 0) {
      const ssize_t n = recv(fd, scratch, len < kHeadMax ? len : kHeadMax, MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      len -= static_cast<size_t>(n);
    }
    return true;
  }

  // --- reading --------------------------------------------------------------

  void Read(uint32_t slot, uint32_t ready) {
    if (conns[slot].flags & (kPaused | kReadEof)) {
      // Not reading, but the peer is gone both ways (or the socket failed):
      // level-triggered HUP/ERR would wake us forever.
      if (ready & (EPOLLHUP | EPOLLERR)) Close(slot, conns[slot].state == kOpen, SocketError(conns[slot].fd));
      return;
    }
    if (data_size >= kBatchBytes) Flush();
    Reserve(kReadChunk);
    Conn& c = conns[slot];
    uint8_t* into = data.get() + data_size;
    ssize_t n;
    do {
      n = recv(c.fd, into, kReadChunk, 0);
    } while (n < 0 && errno == EINTR);
    const bool open = c.state == kOpen;
    if (n > 0) {
      // A rejected client's bytes are read and dropped.
      if (open) {
        Push(kEvData, slot, static_cast<int32_t>(data_size), static_cast<int32_t>(n));
        data_size += static_cast<size_t>(n);
      }
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN) Close(slot, open, errno);
      return;
    }
    c.flags |= kReadEof;
    if (c.flags & kWriteShut) {
      Close(slot, open, 0);
      return;
    }
    if (open) Push(kEvEnd, slot, 0, 0);
    if (!open) {
      Close(slot, false, 0);
      return;
    }
    UpdateInterest(slot);
  }

  // --- writing --------------------------------------------------------------

  void Enqueue(Conn& c, const struct iovec* iov, int iovcnt, size_t skip) {
    if (!c.queue) c.queue.reset(new Queue());
    Queue& q = *c.queue;
    if (q.start > 0 && q.start >= q.bytes.size() / 2) {
      q.bytes.erase(q.bytes.begin(), q.bytes.begin() + static_cast<std::ptrdiff_t>(q.start));
      q.start = 0;
    }
    for (int i = 0; i < iovcnt; i++) {
      const uint8_t* base = static_cast<const uint8_t*>(iov[i].iov_base);
      size_t len = iov[i].iov_len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      q.bytes.insert(q.bytes.end(), base + skip, base + len);
      skip = 0;
    }
  }

  // Sends now what the kernel takes and queues the rest. Returns the bytes
  // queued afterwards, or -1 when the connection failed (CLOSE follows).
  double Send(uint32_t slot, const struct iovec* iov, int iovcnt) {
    Conn& c = conns[slot];
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
    if (c.queue && c.queue->size() > 0) {
      Enqueue(c, iov, iovcnt, 0);
      return static_cast<double>(c.queue->size());
    }
    if (total == 0) return 0;
    struct msghdr msg = {};
    msg.msg_iov = const_cast<struct iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t sent;
    do {
      sent = sendmsg(c.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      if (errno != EAGAIN) {
        Close(slot, c.state == kOpen, errno);
        return -1;
      }
      sent = 0;
    }
    c.bytes_out += static_cast<double>(sent);
    if (static_cast<size_t>(sent) == total) return 0;
    Enqueue(c, iov, iovcnt, static_cast<size_t>(sent));
    UpdateInterest(slot);
    return static_cast<double>(c.queue->size());
  }

  void FlushQueue(uint32_t slot) {
    Conn& c = conns[slot];
    if (!c.queue || c.queue->size() == 0) return;
    Queue& q = *c.queue;
    ssize_t sent;
    do {
      sent = send(c.fd, q.bytes.data() + q.start, q.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) {
      if (errno != EAGAIN) Close(slot, c.state == kOpen, errno);
      return;
    }
    q.start += static_cast<size_t>(sent);
    c.bytes_out += static_cast<double>(sent);
    if (q.size() > 0) return;
    c.queue.reset();
    if (c.state == kOpen) Push(kEvDrain, slot, 0, 0);
    if (c.flags & kCloseAfterFlush) {
      Close(slot, c.state == kOpen, 0);
      return;
    }
    if (c.flags & kShutAfterFlush) {
      Shutdown(slot);
      return;
    }
    UpdateInterest(slot);
  }

  // Our FIN, after everything queued. The descriptor closes once the peer's
  // FIN has been read too.
  void Shutdown(uint32_t slot) {
    Conn& c = conns[slot];
    if (c.queue && c.queue->size() > 0) {
      c.flags |= kShutAfterFlush;
      return;
    }
    shutdown(c.fd, SHUT_WR);
    c.flags |= kWriteShut;
    if (c.flags & kReadEof) {
      Close(slot, c.state == kOpen, 0);
      return;
    }
    UpdateInterest(slot);
  }

  // Closes the descriptor. `report`: JS knows the slot, so it gets one CLOSE
  // event (a = errno or 0) and the slot waits as a zombie until then.
  void Close(uint32_t slot, bool report, int error) {
    Conn& c = conns[slot];
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.queue.reset();
    if (!report) {
      FreeSlot(slot);
      return;
    }
    c.state = kZombie;
    Raise(kEvClose, slot, error, 0);
  }

  // --- listening ------------------------------------------------------------

  void CloseListener() {
    if (listen_fd < 0) return;
    close(listen_fd);
    listen_fd = -1;
  }

  static void OnHandleClosed(uv_handle_t* handle) {
    Transport* t = static_cast<Transport*>(handle->data);
    if (--t->open_handles == 0 && !t->js_alive) delete t;
  }

  void Dispose() {
    if (disposed) return;
    disposed = true;
    CloseListener();
    for (Conn& c : conns) {
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
      c.queue.reset();
    }
    if (reserve_fd >= 0) close(reserve_fd);
    reserve_fd = -1;
    if (open_handles > 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&poll), OnHandleClosed);
      uv_close(reinterpret_cast<uv_handle_t*>(&idle), OnHandleClosed);
    }
    if (epfd >= 0) close(epfd);
    epfd = -1;
    if (callback != nullptr) napi_delete_reference(env, callback);
    if (events_ref != nullptr) napi_delete_reference(env, events_ref);
    if (async_context != nullptr) napi_async_destroy(env, async_context);
    callback = events_ref = nullptr;
    async_context = nullptr;
  }
};

// --- the JS face ---------------------------------------------------------------

Transport* This(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  void* data = nullptr;
  napi_get_cb_info(env, info, argc, argv, nullptr, &data);
  Transport* t = static_cast<Transport*>(data);
  return t->disposed ? nullptr : t;
}

napi_value Number(napi_env env, double value) {
  napi_value result;
  napi_create_double(env, value, &result);
  return result;
}

int64_t Int(napi_env env, napi_value value) {
  int64_t out = -1;
  if (napi_get_value_int64(env, value, &out) != napi_ok) return -1;
  return out;
}

// The transport and a one-argument call's integer argument (a slot, or
// sweep's age; -1 when not an integer); the transport is null once closed.
Transport* IntArgCall(napi_env env, napi_callback_info info, int64_t* arg) {
  size_t argc = 1;
  napi_value argv[1];
  Transport* t = This(env, info, &argc, argv);
  *arg = argc < 1 ? -1 : Int(env, argv[0]);
  return t;
}

napi_value Throw(napi_env env, const char* message) {
  napi_throw_type_error(env, nullptr, message);
  return nullptr;
}

// An Error like Node's for a failed system call: message, code, errno, syscall.
napi_value ThrowErrno(napi_env env, int error, const char* syscall) {
  const char* name = error == EADDRINUSE      ? "EADDRINUSE"
                     : error == EACCES        ? "EACCES"
                     : error == EADDRNOTAVAIL ? "EADDRNOTAVAIL"
                     : error == EAFNOSUPPORT  ? "EAFNOSUPPORT"
                     : error == EINVAL        ? "EINVAL"
                                              : "ERR_SOCKET";
  char text[256];
  snprintf(text, sizeof text, "%s %s: %s", syscall, name, strerror(error));
  napi_value code;
  napi_value message;
  napi_value err;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &err);
  napi_value value;
  napi_create_int32(env, -error, &value);
  napi_set_named_property(env, err, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, err, "syscall", value);
  napi_throw(env, err);
  return nullptr;
}

bool GetBytes(napi_env env, napi_value value, struct iovec* out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type == napi_undefined || type == napi_null) {
    *out = {nullptr, 0};
    return true;
  }
  napi_typedarray_type kind;
  size_t length;
  void* data;
  if (napi_get_typedarray_info(env, value, &kind, &length, &data, nullptr, nullptr) != napi_ok ||
      kind != napi_uint8_array) {
    return false;
  }
  *out = {data, length};
  return true;
}

// listen(host, port, backlog, ipv6Only): the port bound.
napi_value Listen(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  Transport* t = This(env, info, &argc, argv);
  if (t == nullptr) return Throw(env, "the transport is closed");
  if (t->listen_fd >= 0) return Throw(env, "the transport is already listening");
  char host[64];
  size_t host_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok) {
    return Throw(env, "host must be a numeric IPv4 or IPv6 address");
  }
  const int64_t port = Int(env, argv[1]);
  const int64_t backlog = Int(env, argv[2]);
  bool v6only = false;
  napi_get_value_bool(env, argv[3], &v6only);
  if (port < 0 || port > 65535) return Throw(env, "port must be an integer from 0 to 65535");
  sockaddr_storage addr = {};
  socklen_t addr_len;
  int family;
  sockaddr_in* in4 = reinterpret_cast<sockaddr_in*>(&addr);
  sockaddr_in6* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    family = AF_INET;
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    addr_len = sizeof *in4;
  } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    family = AF_INET6;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    addr_len = sizeof *in6;
  } else {
    return Throw(env, "host must be a numeric IPv4 or IPv6 address");
  }
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ThrowErrno(env, errno, "socket");
  const int one = 1;
  const int v6 = v6only ? 1 : 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    const int error = errno;
    close(fd);
    return ThrowErrno(env, error, "bind");
  }
  if (listen(fd, backlog > 0 ? static_cast<int>(backlog) : 511) != 0) {
    const int error = errno;
    close(fd);
    return ThrowErrno(env, error, "listen");
  }
  epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev);
  t->listen_fd = fd;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) return Number(env, 0);
  return Number(env, ntohs(family == AF_INET ? in4->sin_port : in6->sin6_port));
}

// closeListener(): stops accepting; connections stay.
napi_value CloseListener(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  Transport* t = This(env, info, &argc, nullptr);
  if (t != nullptr) t->CloseListener();
  return nullptr;
}

// write(slot, head, body?): bytes queued afterwards, or -1 (not open / failed).
napi_value Write(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  Transport* t = This(env, info, &argc, argv);
  if (t == nullptr) return Number(env, -1);
  const int64_t slot = Int(env, argv[0]);
  struct iovec iov[2];
  if (!GetBytes(env, argv[1], &iov[0]) || !GetBytes(env, argv[2], &iov[1])) {
    return Throw(env, "head and body must be Uint8Arrays (body may be null)");
  }
  if (!t->Writable(slot)) return Number(env, -1);
  return Number(env, t->Send(static_cast<uint32_t>(slot), iov, iov[1].iov_len > 0 ? 2 : 1));
}

// writev(slot, buffers): write() of several buffers in one system call (up
// to IOV_MAX at a time): a connection's frames of one turn.
napi_value Writev(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  Transport* t = This(env, info, &argc, argv);
  bool is_array = false;
  napi_is_array(env, argv[1], &is_array);
  if (!is_array) return Throw(env, "buffers must be an array of Uint8Arrays");
  uint32_t count = 0;
  napi_get_array_length(env, argv[1], &count);
  const int64_t slot = Int(env, argv[0]);
  std::vector<struct iovec> iov(count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value item;
    napi_get_element(env, argv[1], i, &item);
    if (!GetBytes(env, item, &iov[i])) return Throw(env, "buffers must be an array of Uint8Arrays");
  }
  if (t == nullptr || !t->Writable(slot)) return Number(env, -1);
  double queued = 0;
  for (size_t at = 0; at < iov.size(); at += IOV_MAX) {
    const size_t n = iov.size() - at < IOV_MAX ? iov.size() - at : IOV_MAX;
    queued = t->Send(static_cast<uint32_t>(slot), iov.data() + at, static_cast<int>(n));
    if (queued < 0) break;
  }
  return Number(env, queued);
}

// writeBatch(slots, count, head, results, body?): write() to each of
// slots[0, count); results[i] = bytes queued for slots[i] or -1.
napi_value WriteBatch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  Transport* t = This(env, info, &argc, argv);
  napi_typedarray_type kind;
  size_t slots_len;
  size_t results_len;
  void* slots_data;
  void* results_data;
  if (napi_get_typedarray_info(env, argv[0], &kind, &slots_len, &slots_data, nullptr, nullptr) != napi_ok ||
      kind != napi_int32_array ||
      napi_get_typedarray_info(env, argv[3], &kind, &results_len, &results_data, nullptr, nullptr) != napi_ok ||
      kind != napi_int32_array) {
    return Throw(env, "slots and results must be Int32Arrays");
  }
  const int64_t count = Int(env, argv[1]);
  if (count < 0 || static_cast<size_t>(count) > slots_len || static_cast<size_t>(count) > results_len) {
    return Throw(env, "count must be an integer in [0, min(slots.length, results.length)]");
  }
  struct iovec iov[2];
  if (!GetBytes(env, argv[2], &iov[0]) || !GetBytes(env, argv[4], &iov[1])) {
    return Throw(env, "head and body must be Uint8Arrays (body may be null)");
  }
  const int iovcnt = iov[1].iov_len > 0 ? 2 : 1;
  const int32_t* slots = static_cast<const int32_t*>(slots_data);
  int32_t* results = static_cast<int32_t*>(results_data);
  for (int64_t i = 0; i < count; i++) {
    const int32_t slot = slots[i];
    if (t == nullptr || !t->Writable(slot)) {
      results[i] = -1;
      continue;
    }
    const double queued = t->Send(static_cast<uint32_t>(slot), iov, iovcnt);
    results[i] = queued > INT32_MAX ? INT32_MAX : static_cast<int32_t>(queued);
  }
  return nullptr;
}

// accept(slot, headLength, response): consumes the head, answers, opens.
// reject(slot, headLength, response): consumes the head, answers, closes
// after the client's FIN. Both return false when the client is gone.
napi_value Answer(napi_env env, napi_callback_info info, bool accept) {
  size_t argc = 3;
  napi_value argv[3];
  Transport* t = This(env, info, &argc, argv);
  napi_value result;
  napi_get_boolean(env, false, &result);
  const int64_t slot = Int(env, argv[0]);
  const int64_t head = Int(env, argv[1]);
  struct iovec iov[1];
  if (!GetBytes(env, argv[2], &iov[0])) return Throw(env, "response must be a Uint8Array");
  if (t == nullptr || !t->Valid(slot, true) || t->conns[slot].state != kPending || head <= 0) return result;
  const uint32_t s = static_cast<uint32_t>(slot);
  if (!t->Consume(t->conns[s].fd, static_cast<size_t>(head))) {
    t->Close(s, true, 0);
    return result;
  }
  t->conns[s].state = accept ? kOpen : kRejected;
  if (t->Send(s, iov, 1) < 0) return result;
  if (accept) {
    t->UpdateInterest(s);
  } else {
    // JS forgets the slot now: it closes without a CLOSE event.
    t->Shutdown(s);
    if (t->conns[s].state == kRejected) t->UpdateInterest(s);
  }
  napi_get_boolean(env, true, &result);
  return result;
}

napi_value Accept(napi_env env, napi_callback_info info) { return Answer(env, info, true); }
napi_value Reject(napi_env env, napi_callback_info info) { return Answer(env, info, false); }

// release(slot): a pending connection's descriptor, handed to Node (-1 if gone).
napi_value Release(napi_env env, napi_callback_info info) {
  int64_t slot;
  Transport* t = IntArgCall(env, info, &slot);
  if (t == nullptr || !t->Valid(slot, true) || t->conns[slot].state != kPending) return Number(env, -1);
  const int fd = t->conns[slot].fd;
  epoll_ctl(t->epfd, EPOLL_CTL_DEL, fd, nullptr);
  t->FreeSlot(static_cast<uint32_t>(slot));
  return Number(env, fd);
}

// end(slot): FIN after what is queued. destroySoon(slot): close after what
// is queued. destroy(slot): close now. Each closes at most once and reports
// it with a CLOSE event.
enum class Ending { kEnd, kSoon, kNow };

napi_value End(napi_env env, napi_callback_info info, Ending how) {
  int64_t slot;
  Transport* t = IntArgCall(env, info, &slot);
  if (t == nullptr || !t->Valid(slot, how == Ending::kNow)) return nullptr;
  const uint32_t s = static_cast<uint32_t>(slot);
  Conn& c = t->conns[s];
  const bool queued = c.queue && c.queue->size() > 0;
  if (how == Ending::kNow || (how == Ending::kSoon && !queued)) {
    t->Close(s, true, 0);
  } else if (how == Ending::kSoon) {
    c.flags |= kCloseAfterFlush;
  } else if (!(c.flags & kWriteShut)) {
    t->Shutdown(s);
  }
  return nullptr;
}

napi_value EndSlot(napi_env env, napi_callback_info info) { return End(env, info, Ending::kEnd); }
napi_value DestroySoon(napi_env env, napi_callback_info info) { return End(env, info, Ending::kSoon); }
napi_value Destroy(napi_env env, napi_callback_info info) { return End(env, info, Ending::kNow); }

// pause(slot) / resume(slot): stop and restart reading.
napi_value SetPaused(napi_env env, napi_callback_info info, bool paused) {
  int64_t slot;
  Transport* t = IntArgCall(env, info, &slot);
  if (t == nullptr || !t->Valid(slot, false)) return nullptr;
  Conn& c = t->conns[slot];
  c.flags = paused ? (c.flags | kPaused) : (c.flags & ~kPaused);
  t->UpdateInterest(static_cast<uint32_t>(slot));
  return nullptr;
}

napi_value Pause(napi_env env, napi_callback_info info) { return SetPaused(env, info, true); }
napi_value Resume(napi_env env, napi_callback_info info) { return SetPaused(env, info, false); }

// bytesOut(slot): bytes the kernel took for the slot (also while its CLOSE
// event is being delivered).
napi_value BytesOut(napi_env env, napi_callback_info info) {
  int64_t slot;
  Transport* t = IntArgCall(env, info, &slot);
  if (t == nullptr || slot < 0 || static_cast<uint64_t>(slot) >= t->conns.size()) return Number(env, 0);
  return Number(env, t->conns[slot].bytes_out);
}

// peer(slot): [address, port] of the client, or undefined.
napi_value Peer(napi_env env, napi_callback_info info) {
  int64_t slot;
  Transport* t = IntArgCall(env, info, &slot);
  if (t == nullptr || !t->Valid(slot, true)) return nullptr;
  sockaddr_storage addr = {};
  socklen_t len = sizeof addr;
  if (getpeername(t->conns[slot].fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return nullptr;
  char text[INET6_ADDRSTRLEN] = "";
  int port;
  if (addr.ss_family == AF_INET) {
    const sockaddr_in* in4 = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof text);
    port = ntohs(in4->sin_port);
  } else {
    const sockaddr_in6* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
  }
  napi_value result;
  napi_value value;
  napi_create_array_with_length(env, 2, &result);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &value);
  napi_set_element(env, result, 0, value);
  napi_create_int32(env, port, &value);
  napi_set_element(env, result, 1, value);
  return result;
}

// sweep(age): closes connections still in their handshake after `age` ms.
// Returns how many.
napi_value Sweep(napi_env env, napi_callback_info info) {
  int64_t age;
  Transport* t = IntArgCall(env, info, &age);
  if (t == nullptr || age < 0) return Number(env, 0);
  const uint32_t now = t->Now();
  double closed = 0;
  for (uint32_t slot = 0; slot < t->conns.size(); slot++) {
    const Conn& c = t->conns[slot];
    if ((c.state == kHttp || c.state == kPending || c.state == kRejected) && now - c.born >= age) {
      t->Close(slot, c.state == kPending, ETIMEDOUT);
      closed++;
    }
  }
  return Number(env, closed);
}

// close(): closes the listener and every connection without events; the
// transport is unusable afterwards.
napi_value Dispose(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  Transport* t = This(env, info, &argc, nullptr);
  if (t != nullptr) t->Dispose();
  return nullptr;
}

void Cleanup(void* data) { static_cast<Transport*>(data)->Dispose(); }

void Finalize(napi_env, void* data, void*) {
  Transport* t = static_cast<Transport*>(data);
  t->js_alive = false;
  napi_remove_env_cleanup_hook(t->env, Cleanup, t);
  t->Dispose();
  if (t->open_handles == 0) delete t;
}

// createTransport(callback): the transport object. callback(count, data) gets
// `count` events in transport.events (4 int32 each: type, slot, a, b) and the
// batch's bytes.
napi_value CreateTransport(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  napi_valuetype type;
  napi_typeof(env, argv[0], &type);
  if (argc < 1 || type != napi_function) return Throw(env, "callback must be a function");
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return Throw(env, "no event loop");
  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return ThrowErrno(env, errno, "epoll_create1");
  Transport* t = new Transport(env);
  t->loop = loop;
  t->epfd = epfd;
  t->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  uv_poll_init(loop, &t->poll, epfd);
  uv_idle_init(loop, &t->idle);
  t->poll.data = t;
  t->idle.data = t;
  t->open_handles = 2;
  uv_poll_start(&t->poll, UV_READABLE, Transport::OnPoll);
  napi_create_reference(env, argv[0], 1, &t->callback);
  napi_value name;
  napi_create_string_utf8(env, "wavecast.transport", NAPI_AUTO_LENGTH, &name);
  napi_value object;
  napi_create_object(env, &object);
  napi_async_init(env, object, name, &t->async_context);

  void* events_data;
  napi_value buffer;
  napi_value events;
  napi_create_arraybuffer(env, kMaxEvents * kEventInts * sizeof(int32_t), &events_data, &buffer);
  napi_create_typedarray(env, napi_int32_array, kMaxEvents * kEventInts, buffer, 0, &events);
  napi_create_reference(env, buffer, 1, &t->events_ref);
  t->events = static_cast<int32_t*>(events_data);
  napi_set_named_property(env, object, "events", events);

  struct Method {
    const char* name;
    napi_callback fn;
  };
  const Method methods[] = {
      {"listen", Listen},   {"closeListener", CloseListener}, {"write", Write}, {"writev", Writev},
      {"writeBatch", WriteBatch}, {"accept", Accept},       {"reject", Reject},
      {"release", Release}, {"end", EndSlot},                {"destroySoon", DestroySoon},
      {"destroy", Destroy}, {"pause", Pause},                {"resume", Resume},
      {"bytesOut", BytesOut}, {"peer", Peer},                {"sweep", Sweep},
      {"close", Dispose},
  };
  for (const Method& m : methods) {
    napi_value fn;
    napi_create_function(env, m.name, NAPI_AUTO_LENGTH, m.fn, t, &fn);
    napi_set_named_property(env, object, m.name, fn);
  }
  napi_add_finalizer(env, object, t, Finalize, nullptr, nullptr);
  napi_add_env_cleanup_hook(env, Cleanup, t);
  return object;
}

}  // namespace

napi_status InitTransport(napi_env env, napi_value exports) {
  napi_value fn;
  napi_status status = napi_create_function(env, "createTransport", NAPI_AUTO_LENGTH, CreateTransport, nullptr, &fn);
  if (status != napi_ok) return status;
  return napi_set_named_property(env, exports, "createTransport", fn);
}

}  // namespace wavecast

#endif  // WAVECAST_HAVE_TRANSPORT
