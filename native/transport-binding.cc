// The native transport's face to JS: createTransport(callback) and the
// methods of the object it returns. Every method takes a handle (slot and
// generation, see transport-conn.h) and does nothing (or returns -1 / false)
// for one that no longer names a connection in the right state. The loop
// calls JS only through Deliver(), at a boundary between epoll events.
#include "transport.h"

#if defined(WAVECAST_HAVE_TRANSPORT)

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdint>
#include <cstring>

#include "transport-loop.h"

namespace wavecast {
namespace {

using transport::Loop;

// A batch's data reaches JS in a Buffer. A small batch is copied into one of
// its exact size; a large one is handed over as it is, in its block, and the
// block comes back when V8 frees the Buffer. Reusing blocks keeps the hot
// path off fresh memory: allocating (and first touching) a new 64 KiB and
// more per batch cost a page fault per 4 KiB, which was most of the server's
// time when echoing 16 KiB messages.
constexpr size_t kCopyMax = 16 * 1024;
// writev's array: more than this many buffers is a caller's mistake.
constexpr uint32_t kMaxBuffers = 1u << 20;
// The events array has one more int32 after its kMaxEvents events: the keep
// flag of a lent batch (see Deliver).
constexpr size_t kEventsInts = transport::kMaxEvents * transport::kEventInts;
constexpr size_t kKeepFlag = kEventsInts;

void OnBlockFreed(napi_env, void* block, void*) { transport::GiveBlock(static_cast<uint8_t*>(block)); }

class JsTransport final : public Loop {
 public:
  explicit JsTransport(napi_env env) : env_(env) {}

  napi_env env_;
  napi_ref callback_ = nullptr;
  napi_ref events_ref_ = nullptr;
  napi_async_context async_context_ = nullptr;
  // lendBatches(true): a lent batch nobody kept is taken back after the call.
  bool lend_ = false;

  using Loop::set_events;

 protected:
  void Deliver(size_t count) override {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env_, &scope) != napi_ok) return;
    napi_value fn;
    napi_value recv;
    napi_value argv[3];
    if (napi_get_reference_value(env_, callback_, &fn) != napi_ok || fn == nullptr ||
        napi_get_global(env_, &recv) != napi_ok ||  // make_callback needs an object as `this`
        napi_create_uint32(env_, static_cast<uint32_t>(count), &argv[0]) != napi_ok) {
      napi_close_handle_scope(env_, scope);
      return;
    }
    bool lent = false;
    argv[1] = Bytes(data(), data_size(), true, &lent);
    argv[2] = Bytes(heads(), heads_size(), false, nullptr);
    // The keep flag: 0 offers the lent batch back. JS sets it to 1 when
    // anything may hold a view of the batch past this call (src/lease.ts);
    // it reads 1 from the start when the block is not lent or not offered.
    int32_t* const flags = events();
    if (flags != nullptr) flags[kKeepFlag] = lend_ && lent ? 0 : 1;
    napi_value result;
    const napi_status status = napi_make_callback(env_, async_context_, recv, fn, 3, argv, &result);
    if (status == napi_pending_exception) {
      napi_value error;
      napi_get_and_clear_last_exception(env_, &error);
      napi_fatal_exception(env_, error);
    }
    // The call is over, its microtasks and nextTicks too (make_callback runs
    // them), and nothing kept the batch: detach its ArrayBuffer. Every view
    // of it now reads as empty, never as later bytes, and V8 drops the
    // block at once, which hands it back (OnBlockFreed) to be read into
    // again while it is still in the CPU's cache. Not after an exception:
    // one thrown by a nextTick stops the queue, and the ticks after it (a
    // batcher's flush, which holds views) run later.
    if (status == napi_ok && lent && flags != nullptr && flags[kKeepFlag] == 0) {
      napi_value arraybuffer = nullptr;
      if (napi_get_typedarray_info(env_, argv[1], nullptr, nullptr, nullptr, &arraybuffer, nullptr) == napi_ok) {
        napi_detach_arraybuffer(env_, arraybuffer);
      }
    }
    napi_close_handle_scope(env_, scope);
  }

  void ReleaseJs() override {
    if (callback_ != nullptr) napi_delete_reference(env_, callback_);
    if (events_ref_ != nullptr) napi_delete_reference(env_, events_ref_);
    if (async_context_ != nullptr) napi_async_destroy(env_, async_context_);
    callback_ = events_ref_ = nullptr;
    async_context_ = nullptr;
    set_events(nullptr);
  }

 private:
  // V8 frees young ArrayBuffers' memory with a scavenge, which it starts for
  // that reason only when it allocates a backing store itself and finds the
  // young ones holding more than twice the new space; an external buffer never
  // starts one. With nothing else allocating (an echo whose large payloads go
  // out uncopied), lent blocks then piled up to V8's external-memory limit and
  // were freed by full mark-compacts: 87 in 4 s where there had been 205
  // scavenges, 1.2 us more server CPU per 16 KiB round trip. One byte
  // allocated by V8 per lent batch lets it check.
  void NudgeScavenger() {
    napi_value nudge;
    void* data;
    napi_create_arraybuffer(env_, 1, &data, &nudge);
  }

  // The batch's bytes as a Buffer (undefined when there are none). `lend`:
  // a large batch may go in its block, without a copy (`*lent` then says so).
  napi_value Bytes(const uint8_t* bytes, size_t size, bool lend, bool* lent) {
    napi_value value = nullptr;
    if (size == 0) {
      napi_get_undefined(env_, &value);
      return value;
    }
    if (lend && size > kCopyMax) {
      uint8_t* block = ReleaseData();
      if (napi_create_external_buffer(env_, size, block, OnBlockFreed, nullptr, &value) == napi_ok) {
        *lent = true;
        NudgeScavenger();
        return value;
      }
      // A runtime that forbids external buffers (napi_no_external_buffers_allowed): copy.
      const napi_status status = napi_create_buffer_copy(env_, size, block, nullptr, &value);
      transport::GiveBlock(block);
      if (status == napi_ok) return value;
    } else if (napi_create_buffer_copy(env_, size, bytes, nullptr, &value) == napi_ok) {
      return value;
    }
    napi_get_undefined(env_, &value);
    return value;
  }
};

// --- arguments -------------------------------------------------------------------

JsTransport* This(napi_env env, napi_callback_info info, size_t* argc, napi_value* argv) {
  void* data = nullptr;
  if (napi_get_cb_info(env, info, argc, argv, nullptr, &data) != napi_ok) return nullptr;
  JsTransport* t = static_cast<JsTransport*>(data);
  return t == nullptr || t->disposed() ? nullptr : t;
}

napi_value Number(napi_env env, double value) {
  napi_value result = nullptr;
  napi_create_double(env, value, &result);
  return result;
}

napi_value Boolean(napi_env env, bool value) {
  napi_value result = nullptr;
  napi_get_boolean(env, value, &result);
  return result;
}

// An integer argument (a handle, a length, an age); -1 when it is not a number.
int64_t Int(napi_env env, napi_value value) {
  int64_t out = -1;
  if (value == nullptr || napi_get_value_int64(env, value, &out) != napi_ok) return -1;
  return out;
}

// The transport and a one-argument call's integer argument; null once closed.
JsTransport* IntArgCall(napi_env env, napi_callback_info info, int64_t* arg) {
  size_t argc = 1;
  napi_value argv[1] = {nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  *arg = Int(env, argv[0]);
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
  napi_value value;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &err);
  napi_create_int32(env, -error, &value);
  napi_set_named_property(env, err, "errno", value);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, err, "syscall", value);
  napi_throw(env, err);
  return nullptr;
}

bool GetBytes(napi_env env, napi_value value, struct iovec* out) {
  napi_valuetype type = napi_undefined;
  if (value != nullptr && napi_typeof(env, value, &type) != napi_ok) return false;
  if (value == nullptr || type == napi_undefined || type == napi_null) {
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

// --- methods ---------------------------------------------------------------------

// Where to listen: listen()'s and listenSocket()'s arguments (host, port,
// backlog, ipv6Only); false after throwing.
struct ListenArgs {
  sockaddr_storage addr = {};
  unsigned addr_len = 0;
  int backlog = 511;
  bool v6only = false;
};

bool GetListenArgs(napi_env env, napi_value* argv, ListenArgs* out) {
  char host[64];
  size_t host_len = 0;
  if (argv[0] == nullptr || napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok) {
    Throw(env, "host must be a numeric IPv4 or IPv6 address");
    return false;
  }
  const int64_t port = Int(env, argv[1]);
  const int64_t backlog = Int(env, argv[2]);
  if (argv[3] != nullptr) napi_get_value_bool(env, argv[3], &out->v6only);
  if (port < 0 || port > 65535) {
    Throw(env, "port must be an integer from 0 to 65535");
    return false;
  }
  sockaddr_in* in4 = reinterpret_cast<sockaddr_in*>(&out->addr);
  sockaddr_in6* in6 = reinterpret_cast<sockaddr_in6*>(&out->addr);
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    out->addr_len = sizeof *in4;
  } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    out->addr_len = sizeof *in6;
  } else {
    Throw(env, "host must be a numeric IPv4 or IPv6 address");
    return false;
  }
  out->backlog = backlog > 0 && backlog < INT_MAX ? static_cast<int>(backlog) : 511;
  return true;
}

// listen(host, port, backlog, ipv6Only): the port bound.
napi_value Listen(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {nullptr, nullptr, nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  if (t == nullptr) return Throw(env, "the transport is closed");
  if (t->listening()) return Throw(env, "the transport is already listening");
  ListenArgs args;
  if (!GetListenArgs(env, argv, &args)) return nullptr;
  int bound = 0;
  const int error = t->Listen(args.addr.ss_family, &args.addr, args.addr_len, args.backlog, args.v6only, &bound);
  if (error != 0) return ThrowErrno(env, error, "listen");
  return Number(env, bound);
}

// listenFd(fd): listens on an inherited listening socket shared with other
// processes (a worker's, from its primary); the port it is bound to.
napi_value ListenFd(napi_env env, napi_callback_info info) {
  int64_t fd;
  JsTransport* t = IntArgCall(env, info, &fd);
  if (t == nullptr) return Throw(env, "the transport is closed");
  if (t->listening()) return Throw(env, "the transport is already listening");
  if (fd < 0 || fd > INT_MAX) return Throw(env, "fd must be a descriptor number");
  int bound = 0;
  const int error = t->ListenFd(static_cast<int>(fd), &bound);
  if (error != 0) return ThrowErrno(env, error, "listen");
  return Number(env, bound);
}

// deferAccept(seconds): TCP_DEFER_ACCEPT on the listener (see Loop::DeferAccept).
napi_value DeferAccept(napi_env env, napi_callback_info info) {
  int64_t seconds;
  JsTransport* t = IntArgCall(env, info, &seconds);
  if (t == nullptr) return Throw(env, "the transport is closed");
  if (seconds < 0 || seconds > INT_MAX) return Throw(env, "seconds must be an integer from 0");
  const int error = t->DeferAccept(static_cast<int>(seconds));
  if (error != 0) return ThrowErrno(env, error, "setsockopt");
  return nullptr;
}

// listenSocket(host, port, backlog, ipv6Only): [fd, port] of a new listening
// socket no transport polls, for worker processes to inherit. The caller
// closes the descriptor.
napi_value ListenSocket(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4] = {nullptr, nullptr, nullptr, nullptr};
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  ListenArgs args;
  if (!GetListenArgs(env, argv, &args)) return nullptr;
  int fd = -1;
  const int error = transport::OpenListener(args.addr.ss_family, &args.addr, args.addr_len, args.backlog, args.v6only, &fd);
  if (error != 0) return ThrowErrno(env, error, "listen");
  napi_value result;
  if (napi_create_array_with_length(env, 2, &result) != napi_ok ||
      napi_set_element(env, result, 0, Number(env, fd)) != napi_ok ||
      napi_set_element(env, result, 1, Number(env, transport::BoundPort(fd))) != napi_ok) {
    close(fd);
    return nullptr;
  }
  return result;
}

napi_value CloseListener(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  JsTransport* t = This(env, info, &argc, nullptr);
  if (t != nullptr) t->CloseListener();
  return nullptr;
}

// write(handle, head, body?): bytes queued afterwards, or -1 (not open / failed).
napi_value Write(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {nullptr, nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  struct iovec iov[2];
  if (!GetBytes(env, argv[1], &iov[0]) || !GetBytes(env, argv[2], &iov[1])) {
    return Throw(env, "head and body must be Uint8Arrays (body may be null)");
  }
  if (t == nullptr) return Number(env, -1);
  return Number(env, t->Write(Int(env, argv[0]), iov, iov[1].iov_len > 0 ? 2 : 1));
}

// writev(handle, buffers): write() of several buffers, IOV_MAX per system
// call: a connection's large frames of one turn.
napi_value Writev(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  bool is_array = false;
  if (argv[1] != nullptr) napi_is_array(env, argv[1], &is_array);
  uint32_t count = 0;
  if (!is_array || napi_get_array_length(env, argv[1], &count) != napi_ok) {
    return Throw(env, "buffers must be an array of Uint8Arrays");
  }
  if (count > kMaxBuffers) {
    napi_throw_range_error(env, nullptr, "buffers must hold at most 1048576 Uint8Arrays");
    return nullptr;
  }
  const int64_t handle = Int(env, argv[0]);
  struct iovec iov[IOV_MAX];
  double queued = 0;
  for (uint32_t at = 0; at < count; at += IOV_MAX) {
    const uint32_t n = count - at < IOV_MAX ? count - at : IOV_MAX;
    for (uint32_t i = 0; i < n; i++) {
      napi_value item = nullptr;
      if (napi_get_element(env, argv[1], at + i, &item) != napi_ok || !GetBytes(env, item, &iov[i])) {
        return Throw(env, "buffers must be an array of Uint8Arrays");
      }
    }
    if (t == nullptr) return Number(env, -1);
    queued = t->Write(handle, iov, static_cast<int>(n));
    if (queued < 0) break;
  }
  return Number(env, queued);
}

// A typed array argument of kind `want`: its data and length, or false.
template <typename T>
bool TypedArray(napi_env env, napi_value value, napi_typedarray_type want, T** data, size_t* length) {
  napi_typedarray_type kind;
  void* raw = nullptr;
  if (value == nullptr || napi_get_typedarray_info(env, value, &kind, length, &raw, nullptr, nullptr) != napi_ok ||
      kind != want) {
    return false;
  }
  *data = static_cast<T*>(raw);
  return true;
}

// One entry of a batched write: Write()'s bytes queued (capped to int32), or
// -1 for what is not a handle (or a transport that is gone).
int32_t WriteEntry(JsTransport* t, double handle, const struct iovec* iov, int iovcnt) {
  const double queued = t == nullptr || !(handle >= 0 && handle < 9007199254740992.0)
                            ? -1
                            : t->Write(static_cast<int64_t>(handle), iov, iovcnt);
  return queued > INT32_MAX ? INT32_MAX : static_cast<int32_t>(queued);
}

// writeBatch(handles, count, head, results, body?): write() to each of
// handles[0, count) (a Float64Array); results[i] = bytes queued or -1.
napi_value WriteBatch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  const double* handles = nullptr;
  int32_t* results = nullptr;
  size_t handles_len = 0;
  size_t results_len = 0;
  if (!TypedArray(env, argv[0], napi_float64_array, &handles, &handles_len) ||
      !TypedArray(env, argv[3], napi_int32_array, &results, &results_len)) {
    return Throw(env, "handles must be a Float64Array and results an Int32Array");
  }
  const int64_t count = Int(env, argv[1]);
  if (count < 0 || static_cast<size_t>(count) > handles_len || static_cast<size_t>(count) > results_len) {
    return Throw(env, "count must be an integer in [0, min(handles.length, results.length)]");
  }
  struct iovec iov[2];
  if (!GetBytes(env, argv[2], &iov[0]) || !GetBytes(env, argv[4], &iov[1])) {
    return Throw(env, "head and body must be Uint8Arrays (body may be null)");
  }
  const int iovcnt = iov[1].iov_len > 0 ? 2 : 1;
  for (int64_t i = 0; i < count; i++) results[i] = WriteEntry(t, handles[i], iov, iovcnt);
  return nullptr;
}

// writeEach(handles, ends, count, bytes, results, batch?, splices?,
// spliceCount?): connection i gets bytes[ends[i-1], ends[i]) (from 0 for
// the first), each as Write would: the many connections of one turn that
// each have bytes of their own, in one call instead of one call each.
// results as writeBatch's. A splice (run, at, start, end; four uint32s) puts
// batch[start, end) into run `run`'s write at `at` of bytes, so a large
// payload of the batch being delivered goes out without a copy (one writev
// per connection still); splices come in order of run, then of at.
constexpr uint32_t kMaxRunSplices = 32;

napi_value WriteEach(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  const double* handles = nullptr;
  const uint32_t* ends = nullptr;
  int32_t* results = nullptr;
  size_t handles_len = 0;
  size_t ends_len = 0;
  size_t results_len = 0;
  struct iovec bytes;
  struct iovec batch = {nullptr, 0};
  if (!TypedArray(env, argv[0], napi_float64_array, &handles, &handles_len) ||
      !TypedArray(env, argv[1], napi_uint32_array, &ends, &ends_len) ||
      !TypedArray(env, argv[4], napi_int32_array, &results, &results_len) || argv[3] == nullptr ||
      !GetBytes(env, argv[3], &bytes)) {
    return Throw(env, "handles must be a Float64Array, ends a Uint32Array, bytes a Uint8Array and results an Int32Array");
  }
  const int64_t count = Int(env, argv[2]);
  if (count < 0 || static_cast<size_t>(count) > handles_len || static_cast<size_t>(count) > ends_len ||
      static_cast<size_t>(count) > results_len) {
    return Throw(env, "count must be an integer in [0, min(handles.length, ends.length, results.length)]");
  }
  uint32_t* splices = nullptr;
  size_t splices_len = 0;
  int64_t splice_count = 0;
  if (argc > 6 && argv[6] != nullptr) {
    napi_valuetype type = napi_undefined;
    if (napi_typeof(env, argv[6], &type) != napi_ok) return nullptr;
    if (type != napi_undefined && type != napi_null) {
      if (!GetBytes(env, argv[5], &batch) ||
          !TypedArray(env, argv[6], napi_uint32_array, &splices, &splices_len)) {
        return Throw(env, "batch must be a Uint8Array and splices a Uint32Array");
      }
      splice_count = Int(env, argv[7]);
      if (splice_count < 0 || static_cast<size_t>(splice_count) > splices_len / 4) {
        return Throw(env, "spliceCount must be an integer in [0, splices.length / 4]");
      }
    }
  }
  // Every range inside bytes, in order, and every splice inside its run and
  // the batch, in order: checked before anything is written.
  uint32_t start = 0;
  for (int64_t i = 0; i < count; i++) {
    if (ends[i] < start || ends[i] > bytes.iov_len) {
      napi_throw_range_error(env, nullptr, "ends must not decrease and must not pass bytes.length");
      return nullptr;
    }
    start = ends[i];
  }
  uint32_t run = 0;
  uint32_t at = 0;
  uint32_t in_run = 0;
  for (int64_t k = 0; k < splice_count; k++) {
    const uint32_t* s = splices + 4 * k;
    const bool same = k > 0 && s[0] == run;
    in_run = same ? in_run + 1 : 1;
    if ((k > 0 && s[0] < run) || static_cast<int64_t>(s[0]) >= count || (same && s[1] < at) || s[1] < (s[0] == 0 ? 0 : ends[s[0] - 1]) ||
        s[1] > ends[s[0]] || s[2] > s[3] || s[3] > batch.iov_len || in_run > kMaxRunSplices) {
      napi_throw_range_error(env, nullptr, "splices must be in order, inside their runs and inside batch");
      return nullptr;
    }
    run = s[0];
    at = s[1];
  }
  start = 0;
  int64_t k = 0;
  uint8_t* const base = static_cast<uint8_t*>(bytes.iov_base);
  uint8_t* const from = static_cast<uint8_t*>(batch.iov_base);
  struct iovec iov[2 * kMaxRunSplices + 1];
  for (int64_t i = 0; i < count; i++) {
    int iovcnt = 0;
    uint32_t pos = start;
    for (; k < splice_count && splices[4 * k] == static_cast<uint32_t>(i); k++) {
      const uint32_t* s = splices + 4 * k;
      if (s[1] > pos) iov[iovcnt++] = {base + pos, s[1] - pos};
      if (s[3] > s[2]) iov[iovcnt++] = {from + s[2], s[3] - s[2]};
      pos = s[1];
    }
    if (ends[i] > pos || iovcnt == 0) iov[iovcnt++] = {base + pos, ends[i] - pos};
    start = ends[i];
    results[i] = WriteEntry(t, handles[i], iov, iovcnt);
  }
  return nullptr;
}

// accept(handle, response) / reject(handle, response): see Loop::Answer.
napi_value Answer(napi_env env, napi_callback_info info, bool accept) {
  size_t argc = 2;
  napi_value argv[2] = {nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  struct iovec response;
  if (!GetBytes(env, argv[1], &response)) return Throw(env, "response must be a Uint8Array");
  if (t == nullptr) return Boolean(env, false);
  return Boolean(env, t->Answer(Int(env, argv[0]), response, accept));
}

// A path for the fast-open rules: a string of at most 1 KiB, or false.
bool GetPath(napi_env env, napi_value value, char* path, size_t* length) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) return false;
  return napi_get_value_string_utf8(env, value, path, 1024, length) == napi_ok && *length < 1023;
}

// setFastOpen(budget, path, maxHead): see Loop::SetFastOpen; path '' for any.
napi_value SetFastOpen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {nullptr, nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  char path[1024];
  size_t path_length = 0;
  if (argv[1] == nullptr || !GetPath(env, argv[1], path, &path_length)) return Throw(env, "path must be a string under 1 KiB");
  const int64_t budget = Int(env, argv[0]);
  const int64_t max_head = Int(env, argv[2]);
  if (t != nullptr) {
    t->SetFastOpen(budget > 0 ? static_cast<int32_t>(budget < INT32_MAX ? budget : INT32_MAX) : 0, path, path_length,
                   max_head > 0 ? static_cast<size_t>(max_head) : 0);
  }
  return nullptr;
}

// fastUpgrade(head, path, maxHead): the 101 the transport would write for
// this complete head, or null where the JS decision answers (for tests).
napi_value FastUpgradeCheck(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3] = {nullptr, nullptr, nullptr};
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  struct iovec head;
  char path[1024];
  size_t path_length = 0;
  if (argv[0] == nullptr || !GetBytes(env, argv[0], &head)) return Throw(env, "head must be a Uint8Array");
  if (argv[1] == nullptr || !GetPath(env, argv[1], path, &path_length)) return Throw(env, "path must be a string under 1 KiB");
  FastRules rules;
  rules.path = path;
  rules.path_length = path_length;
  const int64_t max_head = Int(env, argv[2]);
  rules.max_head = max_head > 0 ? static_cast<size_t>(max_head) : 0;
  uint8_t response[kFastResponseLength];
  napi_value result;
  if (!FastUpgrade(static_cast<const uint8_t*>(head.iov_base), head.iov_len, rules, response)) {
    napi_get_null(env, &result);
    return result;
  }
  napi_create_string_latin1(env, reinterpret_cast<const char*>(response), kFastResponseLength, &result);
  return result;
}

// transportBlocks(): [made, live, spare] data blocks of this process (see
// transport::Blocks), for tests.
napi_value TransportBlocks(napi_env env, napi_callback_info) {
  const transport::BlockStats stats = transport::Blocks();
  napi_value result;
  if (napi_create_array_with_length(env, 3, &result) != napi_ok) return nullptr;
  const double values[3] = {stats.made, static_cast<double>(stats.live), static_cast<double>(stats.spare)};
  for (uint32_t i = 0; i < 3; i++) napi_set_element(env, result, i, Number(env, values[i]));
  return result;
}

// lendBatches(on): whether a large batch nobody kept is taken back as soon
// as its call returns (the server's borrowFrames; see Deliver).
napi_value LendBatches(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  bool on = false;
  if (t != nullptr && argc >= 1 && napi_get_value_bool(env, argv[0], &on) == napi_ok) t->lend_ = on;
  return nullptr;
}

// setReadSize(bytes): see Loop::SetReadSize.
napi_value SetReadSize(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  const int64_t bytes = Int(env, argv[0]);
  if (t != nullptr) t->SetReadSize(bytes > 0 ? static_cast<size_t>(bytes) : 0);
  return nullptr;
}

napi_value Accept(napi_env env, napi_callback_info info) { return Answer(env, info, true); }
napi_value Reject(napi_env env, napi_callback_info info) { return Answer(env, info, false); }

// release(handle): a pending connection's descriptor, handed to Node (-1 if gone).
napi_value Release(napi_env env, napi_callback_info info) {
  int64_t handle;
  JsTransport* t = IntArgCall(env, info, &handle);
  return Number(env, t == nullptr ? -1 : t->Release(handle));
}

// A method that takes a handle and answers nothing: end(handle) (FIN after
// what is queued), destroySoon(handle) (close after what is queued),
// destroy(handle) (close now; a close is reported once, with a CLOSE event),
// pause(handle) and resume(handle) (stop and restart reading).
template <void (Loop::*Method)(int64_t)>
napi_value HandleCall(napi_env env, napi_callback_info info) {
  int64_t handle;
  JsTransport* t = IntArgCall(env, info, &handle);
  if (t != nullptr) (t->*Method)(handle);
  return nullptr;
}

// bytesOut(handle): bytes the kernel took (also while its CLOSE is delivered).
napi_value BytesOut(napi_env env, napi_callback_info info) {
  int64_t handle;
  JsTransport* t = IntArgCall(env, info, &handle);
  return Number(env, t == nullptr ? 0 : t->BytesOut(handle));
}

// peer(handle): [address, port] of the client, or undefined.
napi_value Peer(napi_env env, napi_callback_info info) {
  int64_t handle;
  JsTransport* t = IntArgCall(env, info, &handle);
  sockaddr_storage addr = {};
  if (t == nullptr || !t->Peer(handle, &addr)) return nullptr;
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
  if (napi_create_array_with_length(env, 2, &result) != napi_ok) return nullptr;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &value);
  napi_set_element(env, result, 0, value);
  napi_create_int32(env, port, &value);
  napi_set_element(env, result, 1, value);
  return result;
}

// sweep(age, headCap): closes connections in their handshake after `age` ms
// (0: no limit), and heads still incomplete after `headCap` ms whatever the
// age. Returns how many.
napi_value Sweep(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2] = {nullptr, nullptr};
  JsTransport* t = This(env, info, &argc, argv);
  const int64_t age = Int(env, argv[0]);
  const int64_t cap = Int(env, argv[1]);
  if (t == nullptr || age < 0 || cap <= 0) return Number(env, 0);
  // The same timer gives back spare data blocks a busy spell left behind.
  transport::TrimBlocks();
  const auto ms = [](int64_t v) { return v > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(v); };
  return Number(env, t->Sweep(ms(age), ms(cap)));
}

// handshaking(): connections accepted and not yet upgraded or refused.
napi_value Handshaking(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  JsTransport* t = This(env, info, &argc, nullptr);
  return Number(env, t == nullptr ? 0 : t->Handshaking());
}

// close(): closes the listener and every connection without events; the
// transport is unusable afterwards.
napi_value Dispose(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  JsTransport* t = This(env, info, &argc, nullptr);
  if (t != nullptr) t->Dispose();
  return nullptr;
}

void Cleanup(void* data) { static_cast<JsTransport*>(data)->Dispose(); }

void Finalize(napi_env env, void* data, void*) {
  JsTransport* t = static_cast<JsTransport*>(data);
  napi_remove_env_cleanup_hook(env, Cleanup, t);
  t->DeleteWhenClosed();
}

// createTransport(callback): the transport object. callback(count, data,
// heads) gets `count` events in transport.events (5 int32 each: type, slot,
// generation, a, b), the batch's data and its request heads.
napi_value CreateTransport(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1] = {nullptr};
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  napi_valuetype type = napi_undefined;
  if (argv[0] != nullptr) napi_typeof(env, argv[0], &type);
  if (type != napi_function) return Throw(env, "callback must be a function");
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return Throw(env, "no event loop");

  napi_value object;
  napi_value buffer;
  napi_value events;
  napi_value name;
  void* events_data = nullptr;
  constexpr size_t kInts = kEventsInts + 1;  // the events, then the keep flag
  if (napi_create_object(env, &object) != napi_ok ||
      napi_create_arraybuffer(env, kInts * sizeof(int32_t), &events_data, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_int32_array, kInts, buffer, 0, &events) != napi_ok ||
      napi_set_named_property(env, object, "events", events) != napi_ok ||
      napi_create_string_utf8(env, "wavecast.transport", NAPI_AUTO_LENGTH, &name) != napi_ok) {
    return nullptr;  // an exception is pending
  }
  JsTransport* t = new JsTransport(env);
  if (!t->Init(loop)) {
    const int error = errno;
    delete t;
    return ThrowErrno(env, error, "epoll_create1");
  }
  t->set_events(static_cast<int32_t*>(events_data));
  if (napi_create_reference(env, argv[0], 1, &t->callback_) != napi_ok ||
      napi_create_reference(env, buffer, 1, &t->events_ref_) != napi_ok ||
      napi_async_init(env, object, name, &t->async_context_) != napi_ok) {
    t->DeleteWhenClosed();
    return Throw(env, "could not set up the transport");
  }

  struct Method {
    const char* name;
    napi_callback fn;
  };
  const Method methods[] = {
      {"listen", Listen},         {"closeListener", CloseListener}, {"write", Write},
      {"listenFd", ListenFd},     {"handshaking", Handshaking},     {"deferAccept", DeferAccept},
      {"writev", Writev},         {"writeBatch", WriteBatch},       {"writeEach", WriteEach},
      {"accept", Accept},         {"setFastOpen", SetFastOpen},     {"setReadSize", SetReadSize},
      {"reject", Reject},         {"release", Release},             {"end", HandleCall<&Loop::End>},
      {"destroySoon", HandleCall<&Loop::DestroySoon>},              {"destroy", HandleCall<&Loop::Destroy>},
      {"pause", HandleCall<&Loop::Pause>},                          {"resume", HandleCall<&Loop::Resume>},
      {"bytesOut", BytesOut},     {"peer", Peer},                   {"lendBatches", LendBatches},
      {"sweep", Sweep},           {"close", Dispose},
  };
  for (const Method& m : methods) {
    napi_value fn;
    if (napi_create_function(env, m.name, NAPI_AUTO_LENGTH, m.fn, t, &fn) != napi_ok ||
        napi_set_named_property(env, object, m.name, fn) != napi_ok) {
      t->DeleteWhenClosed();
      return nullptr;
    }
  }
  if (napi_add_finalizer(env, object, t, Finalize, nullptr, nullptr) != napi_ok) {
    t->DeleteWhenClosed();
    return Throw(env, "could not set up the transport");
  }
  napi_add_env_cleanup_hook(env, Cleanup, t);
  return object;
}

}  // namespace

napi_status InitTransport(napi_env env, napi_value exports) {
  napi_value fn;
  napi_status status = napi_create_function(env, "createTransport", NAPI_AUTO_LENGTH, CreateTransport, nullptr, &fn);
  if (status == napi_ok) status = napi_set_named_property(env, exports, "createTransport", fn);
  if (status == napi_ok) status = napi_create_function(env, "listenSocket", NAPI_AUTO_LENGTH, ListenSocket, nullptr, &fn);
  if (status == napi_ok) status = napi_set_named_property(env, exports, "listenSocket", fn);
  if (status == napi_ok) status = napi_create_function(env, "fastUpgrade", NAPI_AUTO_LENGTH, FastUpgradeCheck, nullptr, &fn);
  if (status == napi_ok) status = napi_set_named_property(env, exports, "fastUpgrade", fn);
  if (status == napi_ok) status = napi_create_function(env, "transportBlocks", NAPI_AUTO_LENGTH, TransportBlocks, nullptr, &fn);
  if (status != napi_ok) return status;
  return napi_set_named_property(env, exports, "transportBlocks", fn);
}

}  // namespace wavecast

#endif  // WAVECAST_HAVE_TRANSPORT
