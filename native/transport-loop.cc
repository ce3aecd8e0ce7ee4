// The loop and the slots of the native transport (see transport-loop.h for
// the rule that keeps JS out of the middle of an epoll event).
#include "transport.h"

#if defined(WAVECAST_HAVE_TRANSPORT)

#include "transport-loop.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace wavecast {
namespace transport {

namespace {

// Spare blocks. A lent block comes back only when V8 frees its Buffer, in
// a scavenge, so a busy server has all the blocks of one GC cycle out at
// once (measured: about 500 of 320 KiB while echoing 16 KiB messages to 100
// clients at depth 10, when batches went to JS at 64 KiB) and gets them
// back together. Keeping only a few then sent most back to malloc (chunks
// of this size: brk trims and mmaps, a page fault per 4 KiB when taken
// again); the spares now keep up to kMaxSpareBlocks, and the sweep gives
// back those a whole second did not need, down to kKeptBlocks.
// A spare holds in memory only the pages some batch wrote: a server whose
// batches are small keeps little of each.
constexpr size_t kKeptBlocks = 32;
// At most 160 MiB of spares (320 blocks of 512 KiB).
constexpr size_t kMaxSpareBlocks = (size_t{160} << 20) / kDataCapacity;
constexpr uint64_t kTrimEveryMs = 1000;
std::mutex block_mutex;  // finalizers may run where the transport does not
std::vector<uint8_t*> spare_blocks;
// The fewest spares since the last trim: that many sat unused all along.
size_t spare_low = 0;
uint64_t last_trim_ms = 0;
BlockStats block_stats;

int SocketError(int fd) {
  int error = 0;
  socklen_t len = sizeof error;
  if (fd >= 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
  return error;
}

}  // namespace

uint8_t* TakeBlock() {
  {
    std::lock_guard<std::mutex> lock(block_mutex);
    if (!spare_blocks.empty()) {
      uint8_t* block = spare_blocks.back();
      spare_blocks.pop_back();
      if (spare_blocks.size() < spare_low) spare_low = spare_blocks.size();
      return block;
    }
    spare_low = 0;
    block_stats.made++;
    block_stats.live++;
  }
  uint8_t* block = static_cast<uint8_t*>(std::malloc(kDataCapacity));
  WAVECAST_REQUIRE(block != nullptr);
  return block;
}

void GiveBlock(uint8_t* block) {
  {
    std::lock_guard<std::mutex> lock(block_mutex);
    if (spare_blocks.size() < kMaxSpareBlocks) {
      spare_blocks.push_back(block);
      return;
    }
    block_stats.live--;
  }
  std::free(block);
}

void TrimBlocks() {
  std::vector<uint8_t*> unused;
  {
    std::lock_guard<std::mutex> lock(block_mutex);
    const uint64_t now = uv_hrtime() / 1000000;
    if (now - last_trim_ms < kTrimEveryMs) return;
    last_trim_ms = now;
    const size_t excess = spare_low > kKeptBlocks ? spare_low - kKeptBlocks : 0;
    // The oldest spares (the front) were touched longest ago: they go.
    unused.assign(spare_blocks.begin(), spare_blocks.begin() + static_cast<std::ptrdiff_t>(excess));
    spare_blocks.erase(spare_blocks.begin(), spare_blocks.begin() + static_cast<std::ptrdiff_t>(excess));
    spare_low = spare_blocks.size();
    block_stats.live -= excess;
  }
  for (uint8_t* block : unused) std::free(block);
}

BlockStats Blocks() {
  std::lock_guard<std::mutex> lock(block_mutex);
  BlockStats stats = block_stats;
  stats.spare = spare_blocks.size();
  return stats;
}

Loop::Loop() : data_(TakeBlock(), GiveBlock), heads_(new uint8_t[kHeadsCapacity]) {}

Loop::~Loop() = default;

bool Loop::Init(uv_loop_t* uv) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return false;
  uv_ = uv;
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (uv_poll_init(uv, &poll_, epfd_) != 0) {
    close(epfd_);
    epfd_ = -1;
    errno = EINVAL;
    return false;
  }
  uv_idle_init(uv, &idle_);
  uv_timer_init(uv, &accept_retry_);
  uv_unref(reinterpret_cast<uv_handle_t*>(&accept_retry_));
  poll_.data = idle_.data = accept_retry_.data = this;
  open_handles_ = 3;
  uv_poll_start(&poll_, UV_READABLE, OnPoll);
  return true;
}

uint32_t Loop::Now() const { return static_cast<uint32_t>(uv_now(uv_)); }

// --- slots ------------------------------------------------------------------

uint32_t Loop::AllocSlot() {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(conns_.size());
    conns_.emplace_back();
  }
  Conn& c = conns_[slot];
  WAVECAST_CHECK(c.state == State::kFree && c.fd < 0 && !c.queue);
  c.gen = (c.gen + 1) & kGenMask;
  return slot;
}

void Loop::SetState(uint32_t slot, State to) {
  Conn& c = conns_[slot];
  WAVECAST_CHECK(Allowed(c.state, to));
  c.state = to;
  if (to == State::kFree) FreeSlot(slot);
}

void Loop::FreeSlot(uint32_t slot) {
  Conn& c = conns_[slot];
  WAVECAST_CHECK(c.fd < 0);
  c.interest = 0;
  if (c.scanned > 0) partial_heads_.erase(slot);
  c.scanned = 0;
  c.paused = false;
  c.read_eof = false;
  c.bytes_out = 0;
  c.queue.reset();
  free_slots_.push_back(slot);
}

int64_t Loop::Resolve(int64_t handle, uint32_t states) const {
  if (handle < 0) return -1;
  const uint32_t slot = SlotOf(handle);
  if (slot >= conns_.size()) return -1;
  const Conn& c = conns_[slot];
  if (c.gen != GenOf(handle) || !(states & Bit(c.state))) return -1;
  return slot;
}

void Loop::SetInterest(uint32_t slot, uint32_t mask) {
  Conn& c = conns_[slot];
  if (c.fd < 0 || mask == c.interest) return;
  epoll_event ev = {};
  ev.events = mask;
  ev.data.u64 = (uint64_t{c.gen} << 32) | slot;
  if (epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev) == 0) c.interest = mask;
}

// Level-triggered reading unless paused or at EOF; EPOLLOUT while bytes wait.
void Loop::UpdateInterest(uint32_t slot) {
  const Conn& c = conns_[slot];
  uint32_t mask = 0;
  if (!c.paused && !c.read_eof) mask |= EPOLLIN | EPOLLRDHUP;
  if (c.HasQueued()) mask |= EPOLLOUT;
  SetInterest(slot, mask);
}

// Closes the descriptor. A slot JS knows gets one CLOSE event (a = errno or
// 0) and waits in kClosed until JS has it; any other is free at once. A slot
// already closed is left alone: its one CLOSE is on its way.
void Loop::Close(uint32_t slot, int error) {
  Conn& c = conns_[slot];
  if (c.state == State::kClosed || c.state == State::kFree) return;
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;
  c.queue.reset();
  if (Known(c.state)) {
    SetState(slot, State::kClosed);
    Raise(kEvClose, slot, error, 0);
  } else {
    SetState(slot, State::kFree);
  }
  if (accept_paused_) ResumeAccepting();
}

// --- the batch ----------------------------------------------------------------

void Loop::Push(int32_t type, uint32_t slot, int32_t a, int32_t b) {
  // Room was reserved at the boundary; going on would write past the array.
  WAVECAST_REQUIRE(event_count_ < kMaxEvents);
  int32_t* e = events_ + event_count_ * kEventInts;
  e[0] = type;
  e[1] = static_cast<int32_t>(slot);
  e[2] = static_cast<int32_t>(slot < conns_.size() ? conns_[slot].gen : 0);
  e[3] = a;
  e[4] = b;
  event_count_++;
}

// An event while JS runs, or from a timer: it joins the batch at the next
// boundary, which the idle handle brings about on this loop turn.
void Loop::Raise(int32_t type, uint32_t slot, int32_t a, int32_t b) {
  if (pumping_ && !in_js_) {
    Push(type, slot, a, b);
    return;
  }
  deferred_.insert(deferred_.end(), {type, static_cast<int32_t>(slot), a, b});
  if (!disposed_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(&idle_))) uv_idle_start(&idle_, OnIdle);
}

// Room in the batch for all one epoll event can add (AcceptAll asks it too).
bool Loop::HasRoom() const {
  return event_count_ + kEventRoom <= kMaxEvents && data_size_ < kBatchBytes &&
         kDataCapacity - data_size_ >= kReadChunk && kHeadsCapacity - heads_size_ >= kHeadMax;
}

// Between two epoll events: takes in the deferred events, then makes room
// for what the next epoll event can add, calling JS if there is not.
void Loop::Boundary() {
  size_t taken = 0;
  while (!disposed_) {
    while (taken < deferred_.size() && event_count_ + kEventRoom < kMaxEvents) {
      const int32_t* d = deferred_.data() + taken;
      Push(d[0], static_cast<uint32_t>(d[1]), d[2], d[3]);
      taken += 4;
    }
    if (HasRoom() && taken == deferred_.size()) break;
    // JS may raise more deferred events (they are appended: `taken` holds).
    Flush();
  }
  if (disposed_) return;  // Dispose() dropped what was deferred
  if (taken == deferred_.size()) {
    deferred_.clear();
  } else {
    deferred_.erase(deferred_.begin(), deferred_.begin() + static_cast<std::ptrdiff_t>(taken));
  }
}

// Calls JS with the batch, then frees the slots whose CLOSE it was handed.
void Loop::Flush() {
  const size_t count = event_count_;
  if (count > 0) {
    if (disposed_) {
      CloseHandOffs(0);
    } else {
      in_js_ = true;
      Deliver(count);
      in_js_ = false;
    }
    for (size_t i = 0; i < count; i++) {
      const int32_t* e = events_ + i * kEventInts;
      if (e[0] != kEvClose) continue;
      const uint32_t slot = static_cast<uint32_t>(e[1]);
      if (slot < conns_.size() && conns_[slot].state == State::kClosed &&
          conns_[slot].gen == static_cast<uint32_t>(e[2])) {
        SetState(slot, State::kFree);
      }
    }
    if (disposed_) ReleaseJs();
  }
  event_count_ = 0;
  data_size_ = 0;
  heads_size_ = 0;
}

// Descriptors handed off in events JS will never be given.
void Loop::CloseHandOffs(size_t from) {
  for (size_t i = from; i < event_count_; i++) {
    const int32_t* e = events_ + i * kEventInts;
    if (e[0] == kEvHttp) close(e[3]);
  }
}

uint8_t* Loop::ReleaseData() {
  uint8_t* block = data_.release();
  data_.reset(TakeBlock());
  return block;
}

// --- the pump -----------------------------------------------------------------

void Loop::OnPoll(uv_poll_t* handle, int status, int) {
  if (status < 0) return;
  static_cast<Loop*>(handle->data)->Pump();
}

void Loop::OnIdle(uv_idle_t* handle) {
  uv_idle_stop(handle);
  static_cast<Loop*>(handle->data)->Pump();
}

void Loop::Pump() {
  if (pumping_ || disposed_) return;
  pumping_ = true;
  epoll_event evs[kEpollBatch];
  Boundary();
  for (int round = 0; round < 8 && !disposed_; round++) {
    const int n = epoll_wait(epfd_, evs, kEpollBatch, 0);
    if (n <= 0) break;
    for (int i = 0; i < n && !disposed_; i++) {
      Boundary();
      // JS may have run: Dispatch checks the slot's generation and state
      // again; nothing read before the boundary is trusted after it.
      if (!disposed_) Dispatch(evs[i]);
    }
    if (n < kEpollBatch) break;
  }
  if (!disposed_) Flush();
  pumping_ = false;
}

void Loop::Dispatch(const epoll_event& ev) {
  if (ev.data.u64 == kListenTag) {
    AcceptAll();
    return;
  }
  const uint32_t slot = static_cast<uint32_t>(ev.data.u64);
  if (slot >= conns_.size() || conns_[slot].gen != static_cast<uint32_t>(ev.data.u64 >> 32)) return;
  switch (conns_[slot].state) {
    case State::kPeeking:
      ReadHead(slot, ev.events);
      break;
    case State::kPending:
      // Gone (or done sending: FIN) before JS decided: the upgrade is
      // abandoned, as ws does with a socket no longer readable.
      if (ev.events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) Close(slot, SocketError(conns_[slot].fd));
      break;
    case State::kOpen:
    case State::kEndQueued:
    case State::kCloseQueued:
    case State::kWriteShut:
    case State::kRefusing: {
      if (ev.events & EPOLLOUT) FlushQueue(slot);
      const State s = conns_[slot].state;  // flushing may have closed it
      if ((Upgraded(s) || s == State::kRefusing) && (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
        Read(slot, ev.events);
      }
      break;
    }
    default:
      break;
  }
}

// --- accepting ------------------------------------------------------------------

void Loop::AcceptAll() {
  const int batch = listen_shared_ ? kSharedAcceptBatch : kAcceptBatch;
  for (int i = 0; i < batch && listen_fd_ >= 0 && !accept_paused_; i++) {
    // The client's address comes with the accept: no getpeername later.
    sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        if (reserve_fd_ < 0) {
          PauseAccepting();
          return;
        }
        // Out of descriptors: refuse one connection rather than spin on a
        // level-triggered listener (libuv's trick), then take the reserve
        // back. If it cannot be had, stop accepting until a descriptor frees.
        close(reserve_fd_);
        const int dropped = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (dropped >= 0) close(dropped);
        reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (reserve_fd_ < 0) {
          PauseAccepting();
          return;
        }
        continue;
      }
      return;  // EAGAIN, or an error the next readiness retries
    }
    if (free_slots_.empty() && conns_.size() >= kMaxSlots) {
      close(fd);
      continue;
    }
    const uint32_t slot = AllocSlot();
    Conn& c = conns_[slot];
    c.fd = fd;
    c.born = Now();
    c.SetPeer(peer);
    SetState(slot, State::kPeeking);
    epoll_event ev = {};
    // Level-triggered reading from the start: the head is read, not peeked,
    // so nothing is left in the kernel to wake us again, and a fast open
    // needs no epoll_ctl to read what comes after its head.
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = (uint64_t{c.gen} << 32) | slot;
    if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      c.fd = -1;
      SetState(slot, State::kFree);
      continue;
    }
    c.interest = ev.events;
    // With DeferAccept the head is (almost always) there already: read it
    // now rather than after another epoll round. Each accept is a boundary
    // of its own here: with no room left, epoll reports the head later.
    if (read_after_accept_ && HasRoom()) ReadHead(slot, 0);
  }
}

void Loop::PauseAccepting() {
  if (accept_paused_ || listen_fd_ < 0) return;
  WatchListener(false);
  accept_paused_ = true;
  // Descriptors may be freed elsewhere in the process: look again now and then.
  uv_timer_start(&accept_retry_, OnAcceptRetry, 100, 100);
}

void Loop::ResumeAccepting() {
  if (!accept_paused_ || disposed_) return;
  if (reserve_fd_ < 0) reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) return;
  accept_paused_ = false;
  uv_timer_stop(&accept_retry_);
  if (listen_fd_ >= 0) WatchListener(true);
}

bool Loop::WatchListener(bool on) {
  if (!on) return epoll_ctl(epfd_, EPOLL_CTL_DEL, listen_fd_, nullptr) == 0;
  epoll_event ev = {};
  ev.events = EPOLLIN | (listen_shared_ ? uint32_t{EPOLLEXCLUSIVE} : 0u);
  ev.data.u64 = kListenTag;
  return epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev) == 0;
}

void Loop::OnAcceptRetry(uv_timer_t* handle) { static_cast<Loop*>(handle->data)->ResumeAccepting(); }

// --- reading ----------------------------------------------------------------------

void Loop::Read(uint32_t slot, uint32_t ready) {
  Conn& c = conns_[slot];
  if (c.paused || c.read_eof) {
    // Not reading, but the peer is gone both ways (or the socket failed):
    // level-triggered HUP/ERR would wake us forever.
    if (ready & (EPOLLHUP | EPOLLERR)) Close(slot, SocketError(c.fd));
    return;
  }
  WAVECAST_REQUIRE(kDataCapacity - data_size_ >= kReadChunk);
  uint8_t* into = data_.get() + data_size_;
  const ssize_t n = RecvNow(c.fd, into, read_size_);
  if (n > 0) {
    // A refused client's bytes are read and dropped.
    if (Upgraded(c.state)) {
      Push(kEvData, slot, static_cast<int32_t>(data_size_), static_cast<int32_t>(n));
      data_size_ += static_cast<size_t>(n);
    }
    return;
  }
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) Close(slot, errno);
    return;
  }
  c.read_eof = true;
  if (c.state == State::kWriteShut || c.state == State::kRefusing) {
    Close(slot, 0);
    return;
  }
  Push(kEvEnd, slot, 0, 0);
  UpdateInterest(slot);
}

// --- what JS asks ----------------------------------------------------------------

void Loop::SetReadSize(size_t bytes) {
  read_size_ = bytes < kMinReadChunk ? kMinReadChunk : bytes > kReadChunk ? kReadChunk : bytes;
}

int OpenListener(int family, const void* addr, unsigned addr_len, int backlog, bool v6only, int* out) {
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  const int one = 1;
  const int v6 = v6only ? 1 : 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Accepted sockets inherit TCP_NODELAY from the listener on Linux: no
  // setsockopt per connection.
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6);
  if (bind(fd, static_cast<const sockaddr*>(addr), addr_len) != 0 || listen(fd, backlog > 0 ? backlog : 511) != 0) {
    const int error = errno;
    close(fd);
    return error;
  }
  *out = fd;
  return 0;
}

int BoundPort(int fd) {
  sockaddr_storage bound = {};
  socklen_t len = sizeof bound;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) return 0;
  if (bound.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (bound.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  return 0;
}

int Loop::Listen(int family, const void* addr, unsigned addr_len, int backlog, bool v6only, int* port) {
  int fd = -1;
  const int error = OpenListener(family, addr, addr_len, backlog, v6only, &fd);
  if (error != 0) return error;
  listen_fd_ = fd;
  listen_shared_ = false;
  if (!WatchListener(true)) {
    const int watch_error = errno;
    close(fd);
    listen_fd_ = -1;
    return watch_error;
  }
  *port = BoundPort(fd);
  return 0;
}

int Loop::ListenFd(int fd, int* port) {
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0) return errno;
  if (!accepting) return EINVAL;
  // Our copy only: a process this worker spawns must not hold the port open.
  // O_NONBLOCK is the shared file's, set by the primary; set again in case.
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return errno;
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return errno;
  // Set by the primary as by Listen; again in case, since accepted sockets inherit it.
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  listen_fd_ = fd;
  listen_shared_ = true;
  if (!WatchListener(true)) {
    const int error = errno;
    listen_fd_ = -1;
    return error;
  }
  *port = BoundPort(fd);
  return 0;
}

int Loop::DeferAccept(int seconds) {
  if (listen_fd_ < 0) return EBADF;
  if (setsockopt(listen_fd_, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds) != 0) return errno;
  read_after_accept_ = seconds > 0;
  return 0;
}

void Loop::CloseListener() {
  if (listen_fd_ < 0) return;
  // An epoll set drops a descriptor only once every copy of its file is
  // closed; other processes keep a shared listener's open, so take it out.
  if (!accept_paused_) WatchListener(false);
  close(listen_fd_);
  listen_fd_ = -1;
  accept_paused_ = false;
  if (!disposed_) uv_timer_stop(&accept_retry_);
}

int Loop::Release(int64_t handle) {
  const int64_t slot = Resolve(handle, Bit(State::kPending));
  if (slot < 0) return -1;
  Conn& c = conns_[slot];
  const int fd = c.fd;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  c.fd = -1;
  SetState(static_cast<uint32_t>(slot), State::kFree);
  return fd;
}

void Loop::Destroy(int64_t handle) {
  const int64_t slot = Resolve(handle, Bit(State::kPending) | Bit(State::kOpen) | Bit(State::kEndQueued) |
                                           Bit(State::kCloseQueued) | Bit(State::kWriteShut));
  if (slot >= 0) Close(static_cast<uint32_t>(slot), 0);
}

void Loop::SetPaused(int64_t handle, bool paused) {
  const int64_t slot = Resolve(handle, Bit(State::kOpen) | Bit(State::kEndQueued) | Bit(State::kCloseQueued) |
                                           Bit(State::kWriteShut));
  if (slot < 0) return;
  conns_[slot].paused = paused;
  UpdateInterest(static_cast<uint32_t>(slot));
}

double Loop::BytesOut(int64_t handle) const {
  const int64_t slot = Resolve(handle, Bit(State::kPending) | Bit(State::kOpen) | Bit(State::kEndQueued) |
                                           Bit(State::kCloseQueued) | Bit(State::kWriteShut) | Bit(State::kClosed));
  return slot < 0 ? 0 : conns_[slot].bytes_out;
}

// Also while its CLOSE is delivered: a close listener may still ask who it was.
bool Loop::Peer(int64_t handle, sockaddr_storage* addr) const {
  const int64_t slot = Resolve(handle, Bit(State::kPending) | Bit(State::kOpen) | Bit(State::kEndQueued) |
                                           Bit(State::kCloseQueued) | Bit(State::kWriteShut) | Bit(State::kClosed));
  return slot >= 0 && conns_[slot].GetPeer(addr);
}

// Closes connections still in their handshake after `age` ms (0: no limit),
// and heads (and refusals) still lingering after `head_cap` ms whatever the
// age: a head that never completes is cut even with no handshake timeout.
int Loop::Sweep(uint32_t age, uint32_t head_cap) {
  const uint32_t now = Now();
  const uint32_t head_limit = age > 0 && age < head_cap ? age : head_cap;
  int closed = 0;
  for (uint32_t slot = 0; slot < conns_.size(); slot++) {
    const Conn& c = conns_[slot];
    uint32_t limit;
    if (c.state == State::kPeeking || c.state == State::kRefusing) {
      limit = head_limit;
    } else if (c.state == State::kPending && age > 0) {
      limit = age;
    } else {
      continue;
    }
    if (now - c.born >= limit) {
      Close(slot, ETIMEDOUT);
      closed++;
    }
  }
  return closed;
}

int Loop::Handshaking() const {
  int count = 0;
  for (const Conn& c : conns_) count += c.state == State::kPeeking || c.state == State::kPending;
  return count;
}

// --- the end ------------------------------------------------------------------------

void Loop::OnHandleClosed(uv_handle_t* handle) {
  Loop* loop = static_cast<Loop*>(handle->data);
  if (--loop->open_handles_ == 0 && !loop->js_alive) delete loop;
}

void Loop::DeleteWhenClosed() {
  js_alive = false;
  Dispose();
  if (open_handles_ == 0) delete this;
}

void Loop::Dispose() {
  if (disposed_) return;
  disposed_ = true;
  CloseListener();
  // A batch JS is not reading now would never reach it: its handed-off
  // descriptors are closed here (one JS is reading, JS deals with).
  if (!in_js_) {
    CloseHandOffs(0);
    event_count_ = 0;
  }
  deferred_.clear();
  for (Conn& c : conns_) {
    if (c.fd >= 0) close(c.fd);
    c.fd = -1;
    c.queue.reset();
  }
  if (reserve_fd_ >= 0) close(reserve_fd_);
  reserve_fd_ = -1;
  if (open_handles_ > 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&idle_), OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&accept_retry_), OnHandleClosed);
  }
  if (epfd_ >= 0) close(epfd_);
  epfd_ = -1;
  if (!in_js_) ReleaseJs();
}

}  // namespace transport
}  // namespace wavecast

#endif  // WAVECAST_HAVE_TRANSPORT
