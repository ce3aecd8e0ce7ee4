// Broadcast fan-out: one encoded frame offered to many sockets with one
// write each (see SendNow), from one call into the addon instead of one
// socket.write() per recipient. Linux only: elsewhere the addon does not export writeBatch
// and the JS path writes each socket.
#include "write-batch.h"

#if defined(WAVECAST_HAVE_WRITE_BATCH)

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace wavecast {

ssize_t SendNow(int fd, const struct iovec* iov, int iovcnt) {
  // MSG_DONTWAIT: never block the event loop, even on a descriptor that
  // someone set to blocking. MSG_NOSIGNAL: a reset peer is an EPIPE
  // result here, not a process-killing SIGPIPE.
  //
  // syscall(), not send() / sendmsg(): glibc makes those cancellation
  // points, each wrapped in two calls that turn asynchronous thread
  // cancellation on and off (0.5% of a broadcasting server's CPU, 1,000
  // sends per turn); nothing cancels the thread that writes here. Under
  // AddressSanitizer they are used: their interceptors check the buffers.
  constexpr int kFlags = MSG_DONTWAIT | MSG_NOSIGNAL;
  long sent;
  if (iovcnt == 1) {
    do {
#if defined(__SANITIZE_ADDRESS__)
      sent = send(fd, iov[0].iov_base, iov[0].iov_len, kFlags);
#else
      sent = syscall(SYS_sendto, fd, iov[0].iov_base, iov[0].iov_len, kFlags, nullptr, 0);
#endif
    } while (sent < 0 && errno == EINTR);
    return static_cast<ssize_t>(sent);
  }
  struct msghdr msg = {};
  msg.msg_iov = const_cast<struct iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  do {
#if defined(__SANITIZE_ADDRESS__)
    sent = sendmsg(fd, &msg, kFlags);
#else
    sent = syscall(SYS_sendmsg, fd, &msg, kFlags);
#endif
  } while (sent < 0 && errno == EINTR);
  return static_cast<ssize_t>(sent);
}

void WriteBatch(const int32_t* fds, size_t count, const struct iovec* iov, int iovcnt,
                int32_t* results) {
  for (size_t i = 0; i < count; i++) {
    if (fds[i] < 0) {
      results[i] = -EBADF;
      continue;
    }
    const ssize_t sent = SendNow(fds[i], iov, iovcnt);
    // EWOULDBLOCK equals EAGAIN on Linux, so callers test one code.
    results[i] = sent < 0 ? -errno : static_cast<int32_t>(sent);
  }
}

}  // namespace wavecast

#endif  // WAVECAST_HAVE_WRITE_BATCH
