// The request head of a new connection, read (not peeked) as it arrives:
// a plainly valid upgrade is answered here (fast open), any other complete
// GET head goes to JS's decision, and everything else is handed to Node's
// http.Server together with the bytes read so far, which JS puts back in
// front of the socket's stream (src/transport.ts `socketFor`), so Node parses
// the request as if it had read it itself.
#include "transport.h"

#if defined(WAVECAST_HAVE_TRANSPORT)

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "handshake-fast.h"
#include "transport-loop.h"

namespace wavecast {
namespace transport {

void Loop::ReadHead(uint32_t slot, uint32_t ready) {
  Conn& c = conns_[slot];
  // A head that came in pieces: what was read of it so far goes first.
  size_t have = 0;
  if (c.scanned > 0) {
    auto held = partial_heads_.find(slot);
    WAVECAST_CHECK(held != partial_heads_.end() && held->second.size() == c.scanned);
    have = held->second.size();
    std::memcpy(scratch_, held->second.data(), have);
    partial_heads_.erase(held);
  }
  const ssize_t n = RecvNow(c.fd, scratch_ + have, kHeadMax - have);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    if (have > 0) KeepPartial(slot, have);
    return;
  }
  if (n < 0 || (n == 0 && have == 0)) {
    // Reset, or closed before a request: nobody knew of it.
    Close(slot, 0);
    return;
  }
  // n == 0 here: the client sent part of a head and stopped (Node answers 400).
  if (n == 0) {
    HandOff(slot, have);
    return;
  }
  static const char kGet[] = "GET ";
  const size_t got = have + static_cast<size_t>(n);
  if (std::memcmp(scratch_, kGet, got < 4 ? got : 4) != 0) {
    HandOff(slot, got);
    return;
  }
  // Only what earlier reads did not search is searched now, so a head sent
  // a byte at a time costs one pass over it, not one per segment.
  size_t head = 0;
  for (size_t at = have; at < got;) {
    const void* lf = std::memchr(scratch_ + at, '\n', got - at);
    if (lf == nullptr) break;
    const size_t i = static_cast<const uint8_t*>(lf) - scratch_;
    if (i == 0 || scratch_[i - 1] != '\r') {
      // A line ended by a bare LF: Node's parser answers 400 at once.
      HandOff(slot, got);
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
      HandOff(slot, got);
      return;
    }
    KeepPartial(slot, got);
    return;
  }
  uint8_t response[kFastResponseLength];
  if (fast_budget_ > 0 && FastUpgrade(scratch_, head, fast_rules_, response)) {
    FastOpen(slot, head, got - head, response);
    return;
  }
  if (got > head) {
    // Bytes after a head JS must decide on (the client did not wait for
    // the 101): the Node road decides it, with them as the upgrade's
    // `head` (rare; the transport keeps no bytes while JS decides).
    HandOff(slot, got);
    return;
  }
  WAVECAST_REQUIRE(kHeadsCapacity - heads_size_ >= head);
  std::memcpy(heads_.get() + heads_size_, scratch_, head);
  Push(kEvHead, slot, static_cast<int32_t>(heads_size_), static_cast<int32_t>(head));
  heads_size_ += head;
  SetState(slot, State::kPending);
  // While JS decides, bytes that arrive wait in the kernel (a level-
  // triggered EPOLLIN would wake us for them again and again); only the
  // client's FIN or an error is heard. accept() reads them from then on.
  SetInterest(slot, EPOLLRDHUP);
}

// The first `len` bytes of scratch_, an incomplete head: kept until more come.
void Loop::KeepPartial(uint32_t slot, size_t len) {
  partial_heads_[slot].assign(scratch_, scratch_ + len);
  conns_[slot].scanned = static_cast<uint16_t>(len);
}

// A plainly valid upgrade while JS allows fast opens (no `handshake` hook,
// room under maxConnections): the 101 goes out, and JS hears OPEN with a
// copy of the head, never HEAD; bytes the client sent after the head (it
// did not wait for the 101) follow as DATA. If the 101 cannot be written
// the client is gone: the CLOSE raised then names a slot JS never saw,
// which it ignores, as the JS decision opens nothing for a client gone
// before its 101. The interest stays as accept4 set it (level-triggered
// reading), so a fast open costs accept4, epoll_ctl, recv and sendmsg.
void Loop::FastOpen(uint32_t slot, size_t head, size_t extra, const uint8_t* response) {
  fast_budget_--;
  SetState(slot, State::kOpen);
  const struct iovec iov = {const_cast<uint8_t*>(response), kFastResponseLength};
  if (Send(slot, &iov, 1) < 0) return;
  WAVECAST_REQUIRE(kHeadsCapacity - heads_size_ >= head);
  std::memcpy(heads_.get() + heads_size_, scratch_, head);
  Push(kEvOpen, slot, static_cast<int32_t>(heads_size_), static_cast<int32_t>(head));
  heads_size_ += head;
  if (extra > 0) {
    // The boundary reserved a read chunk; extra < kHeadMax <= kReadChunk.
    WAVECAST_REQUIRE(kDataCapacity - data_size_ >= extra);
    std::memcpy(data_.get() + data_size_, scratch_ + head, extra);
    Push(kEvData, slot, static_cast<int32_t>(data_size_), static_cast<int32_t>(extra));
    data_size_ += extra;
  }
  // The 101 may have been queued (EPOLLOUT) or not.
  UpdateInterest(slot);
}

void Loop::SetFastOpen(int32_t budget, const char* path, size_t path_length, size_t max_head) {
  fast_budget_ = budget > 0 ? budget : 0;
  fast_path_.assign(path, path_length);
  fast_rules_.path = fast_path_.data();
  fast_rules_.path_length = fast_path_.size();
  fast_rules_.max_head = max_head;
}

// The descriptor leaves the transport for Node's http.Server, with the
// first `len` bytes of scratch_ it sent (the event: HTTP, its slot, the
// bytes' offset in the heads in place of a generation, fd, length).
void Loop::HandOff(uint32_t slot, size_t len) {
  Conn& c = conns_[slot];
  const int fd = c.fd;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  c.fd = -1;
  SetState(slot, State::kFree);
  WAVECAST_REQUIRE(kHeadsCapacity - heads_size_ >= len);
  std::memcpy(heads_.get() + heads_size_, scratch_, len);
  Push(kEvHttp, slot, fd, static_cast<int32_t>(len));
  events_[(event_count_ - 1) * kEventInts + 2] = static_cast<int32_t>(heads_size_);
  heads_size_ += len;
}

}  // namespace transport
}  // namespace wavecast

#endif  // WAVECAST_HAVE_TRANSPORT
