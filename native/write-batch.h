// One buffer written to many socket descriptors in one call (broadcast).
#ifndef WAVECAST_WRITE_BATCH_H_
#define WAVECAST_WRITE_BATCH_H_

#if defined(__linux__)
#define WAVECAST_HAVE_WRITE_BATCH 1

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

namespace wavecast {

// One non-blocking write of iov[0, iovcnt) to a socket, MSG_NOSIGNAL,
// retried on EINTR: the bytes the kernel took, or -1 with errno set. One
// buffer goes out as send() (sendto without an address; see write-batch.cc
// for why through syscall()): the kernel imports a single range for it,
// cheaper than sendmsg()'s iovec array (about 150 ns of some 3 us per small
// write on loopback, which a broadcast pays per receiver).
ssize_t SendNow(int fd, const struct iovec* iov, int iovcnt);

// For each fds[i], i < count: one SendNow() of iov[0, iovcnt)
// with MSG_NOSIGNAL, so a reset peer yields EPIPE / ECONNRESET, never
// SIGPIPE. results[i] is the number of bytes the kernel took (possibly fewer
// than offered, possibly 0 only for an empty buffer) or -errno (EAGAIN when
// the socket's send buffer is full, EBADF for a negative descriptor, ENOTSOCK
// for something that is not a socket). Never blocks, never retries a partial
// write: what did not go out is the caller's to queue, after the part that
// did.
void WriteBatch(const int32_t* fds, size_t count, const struct iovec* iov,
                int iovcnt, int32_t* results);

}  // namespace wavecast

#endif  // __linux__
#endif  // WAVECAST_WRITE_BATCH_H_
