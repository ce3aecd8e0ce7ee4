// Writing: straight to the kernel, and what it does not take waits in the
// connection's queue until EPOLLOUT. Ending (our FIN, or a close once the
// queue is out) is sequenced here too, since it waits for the queue.
#include "transport.h"

#if defined(WAVECAST_HAVE_TRANSPORT)

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "transport-loop.h"
#include "write-batch.h"

namespace wavecast {
namespace transport {

void Loop::Enqueue(Conn& c, const struct iovec* iov, int iovcnt, size_t skip) {
  if (!c.queue) c.queue.reset(new Queue());
  Queue& q = *c.queue;
  if (q.start > 0 && q.start >= q.bytes.size() / 2) {
    q.bytes.erase(q.bytes.begin(), q.bytes.begin() + static_cast<std::ptrdiff_t>(q.start));
    q.start = 0;
  }
  for (int i = 0; i < iovcnt; i++) {
    const uint8_t* base = static_cast<const uint8_t*>(iov[i].iov_base);
    const size_t len = iov[i].iov_len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    q.bytes.insert(q.bytes.end(), base + skip, base + len);
    skip = 0;
  }
}

// Sends now what the kernel takes and queues the rest. Returns the bytes
// queued afterwards, or -1 when the connection failed (it is closed: a CLOSE
// follows if JS knows it).
double Loop::Send(uint32_t slot, const struct iovec* iov, int iovcnt) {
  Conn& c = conns_[slot];
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++) total += iov[i].iov_len;
  if (c.HasQueued()) {
    Enqueue(c, iov, iovcnt, 0);
    return static_cast<double>(c.queue->size());
  }
  if (total == 0) return 0;
  ssize_t sent = SendNow(c.fd, iov, iovcnt);
  if (sent < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      Close(slot, errno);
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

double Loop::Write(int64_t handle, const struct iovec* iov, int iovcnt) {
  const int64_t slot = Resolve(handle, Bit(State::kOpen));
  return slot < 0 ? -1 : Send(static_cast<uint32_t>(slot), iov, iovcnt);
}

void Loop::FlushQueue(uint32_t slot) {
  Conn& c = conns_[slot];
  if (!c.HasQueued()) return;
  Queue& q = *c.queue;
  ssize_t sent;
  do {
    sent = send(c.fd, q.bytes.data() + q.start, q.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) Close(slot, errno);
    return;
  }
  q.start += static_cast<size_t>(sent);
  c.bytes_out += static_cast<double>(sent);
  if (q.size() == 0) Emptied(slot);
}

// The queue is out: DRAIN to JS, then whatever ending waited for it.
void Loop::Emptied(uint32_t slot) {
  Conn& c = conns_[slot];
  c.queue.reset();
  switch (c.state) {
    case State::kOpen:
      Push(kEvDrain, slot, 0, 0);
      UpdateInterest(slot);
      break;
    case State::kEndQueued:
      Push(kEvDrain, slot, 0, 0);
      Shutdown(slot);
      break;
    case State::kCloseQueued:
      Push(kEvDrain, slot, 0, 0);
      Close(slot, 0);
      break;
    case State::kRefusing:
      // The refusal is out: our FIN; the descriptor closes at the client's.
      shutdown(c.fd, SHUT_WR);
      UpdateInterest(slot);
      break;
    default:
      WAVECAST_CHECK(false);
      break;
  }
}

// Our FIN, with nothing queued. The descriptor closes once the peer's FIN
// has been read too.
void Loop::Shutdown(uint32_t slot) {
  Conn& c = conns_[slot];
  WAVECAST_CHECK(!c.HasQueued());
  shutdown(c.fd, SHUT_WR);
  SetState(slot, State::kWriteShut);
  if (c.read_eof) {
    Close(slot, 0);
    return;
  }
  UpdateInterest(slot);
}

// accept: consumes the head, answers 101, opens. reject: consumes the head,
// answers, and closes after the client's FIN without another event (JS
// forgets the slot). False when the client is gone.
bool Loop::Answer(int64_t handle, const struct iovec& response, bool accept) {
  const int64_t found = Resolve(handle, Bit(State::kPending));
  if (found < 0) return false;
  const uint32_t slot = static_cast<uint32_t>(found);
  SetState(slot, accept ? State::kOpen : State::kRefusing);
  if (Send(slot, &response, 1) < 0) return false;
  if (!accept && !conns_[slot].HasQueued()) shutdown(conns_[slot].fd, SHUT_WR);
  UpdateInterest(slot);
  return true;
}

void Loop::End(int64_t handle) {
  const int64_t slot = Resolve(handle, Bit(State::kOpen));
  if (slot < 0) return;
  if (conns_[slot].HasQueued()) {
    SetState(static_cast<uint32_t>(slot), State::kEndQueued);
  } else {
    Shutdown(static_cast<uint32_t>(slot));
  }
}

void Loop::DestroySoon(int64_t handle) {
  const int64_t slot = Resolve(handle, Bit(State::kOpen) | Bit(State::kEndQueued) | Bit(State::kWriteShut));
  if (slot < 0) return;
  if (conns_[slot].HasQueued()) {
    SetState(static_cast<uint32_t>(slot), State::kCloseQueued);
  } else {
    Close(static_cast<uint32_t>(slot), 0);
  }
}

}  // namespace transport
}  // namespace wavecast

#endif  // WAVECAST_HAVE_TRANSPORT
