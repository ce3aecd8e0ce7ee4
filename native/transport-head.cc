// The request head of a new connection, read with MSG_PEEK so that the
// bytes stay in the kernel until JS has decided: a WebSocket handshake
// consumes them, anything else leaves them for Node's http.Server.
#include "transport.h"

#if defined(WAVECAST_HAVE_TRANSPORT)

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "handshake-fast.h"
#include "transport-loop.h"

namespace wavecast {
namespace transport {

void Loop::Peek(uint32_t slot, uint32_t ready) {
  Conn& c = conns_[slot];
  ssize_t n;
  do {
    n = recv(c.fd, scratch_, kHeadMax, MSG_PEEK);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    // Closed or reset before a request: nobody knew of it.
    Close(slot, 0);
    return;
  }
  static const char kGet[] = "GET ";
  const size_t got = static_cast<size_t>(n);
  if (std::memcmp(scratch_, kGet, got < 4 ? got : 4) != 0) {
    HandOff(slot);
    return;
  }
  // A peek always starts at the head's first byte; only what earlier peeks
  // did not search is searched now, so a head sent a byte at a time costs
  // one pass over it, not one per segment.
  size_t head = 0;
  for (size_t at = c.scanned; at < got;) {
    const void* lf = std::memchr(scratch_ + at, '\n', got - at);
    if (lf == nullptr) break;
    const size_t i = static_cast<const uint8_t*>(lf) - scratch_;
    if (i == 0 || scratch_[i - 1] != '\r') {
      // A line ended by a bare LF: Node's parser answers 400 at once.
      HandOff(slot);
      return;
    }
    if (i >= 3 && scratch_[i - 2] == '\n') {
      head = i + 1;
      break;
    }
    at = i + 1;
  }
  if (head == 0) {
    // Too long for a handshake, or the client stopped sending: Node's
    // parser answers (431, 400) or waits, as for any HTTP request.
    if (got == kHeadMax || (ready & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
      HandOff(slot);
      return;
    }
    c.scanned = static_cast<uint16_t>(got);
    return;
  }
  WAVECAST_REQUIRE(kHeadsCapacity - heads_size_ >= head);
  uint8_t response[kFastResponseLength];
  if (fast_budget_ > 0 && FastUpgrade(scratch_, head, fast_rules_, response)) {
    FastOpen(slot, head, response);
    return;
  }
  std::memcpy(heads_.get() + heads_size_, scratch_, head);
  Push(kEvHead, slot, static_cast<int32_t>(heads_size_), static_cast<int32_t>(head));
  heads_size_ += head;
  // Still edge-triggered: further bytes wait in the kernel without waking
  // us, and the interest stays as it is (one epoll_ctl less per handshake).
  SetState(slot, State::kPending);
}

// A plainly valid upgrade while JS allows fast opens (no `handshake` hook,
// room under maxConnections): the head leaves the kernel, the 101 goes out,
// and JS hears OPEN with a copy of the head, never HEAD. If the 101 cannot
// be written the client is gone: the CLOSE raised then names a slot JS
// never saw, which it ignores, as the JS decision opens nothing for a
// client gone before its 101.
void Loop::FastOpen(uint32_t slot, size_t head, const uint8_t* response) {
  Conn& c = conns_[slot];
  if (!Consume(c.fd, head)) {
    Close(slot, 0);  // still kPeeking: nobody knew of it
    return;
  }
  fast_budget_--;
  SetState(slot, State::kOpen);
  const struct iovec iov = {const_cast<uint8_t*>(response), kFastResponseLength};
  if (Send(slot, &iov, 1) < 0) return;
  // Level-triggered from now on, as after accept(): bytes after the head are read.
  UpdateInterest(slot);
  std::memcpy(heads_.get() + heads_size_, scratch_, head);
  Push(kEvOpen, slot, static_cast<int32_t>(heads_size_), static_cast<int32_t>(head));
  heads_size_ += head;
}

void Loop::SetFastOpen(int32_t budget, const char* path, size_t path_length, size_t max_head) {
  fast_budget_ = budget > 0 ? budget : 0;
  fast_path_.assign(path, path_length);
  fast_rules_.path = fast_path_.data();
  fast_rules_.path_length = fast_path_.size();
  fast_rules_.max_head = max_head;
}

// The descriptor leaves the transport for Node's http.Server.
void Loop::HandOff(uint32_t slot) {
  Conn& c = conns_[slot];
  const int fd = c.fd;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  c.fd = -1;
  SetState(slot, State::kFree);
  Push(kEvHttp, slot, fd, 0);
}

// Reads and drops the `len` head bytes that were peeked.
bool Loop::Consume(int fd, size_t len) {
  while (len > 0) {
    const ssize_t n = recv(fd, scratch_, len < kHeadMax ? len : kHeadMax, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    len -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace transport
}  // namespace wavecast

#endif  // WAVECAST_HAVE_TRANSPORT
