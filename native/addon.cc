// The JS face of the addon: argument checks, then a call into one of the hot
// operations (mask.cc, utf8.cc, write-batch.cc). Every function checks its
// arguments and throws TypeError / RangeError instead of touching memory it
// was not given; none allocates a JS object per byte or per socket.
//
// The hot entry points use the C N-API directly with one N-API call per
// argument: at 16 bytes to 1 KiB the call costs more than the work, and each
// extra N-API call (a separate type check, node-addon-api's CallbackInfo)
// shows in the micro-benchmarks. node-addon-api builds the module object.
#include <napi.h>

#include <climits>
#include <cmath>

#include "mask.h"
#include "transport.h"
#include "utf8.h"
#include "write-batch.h"

namespace {

using wavecast::kUtf8Invalid;

// A Uint8Array (Buffer included) as a pointer and a length.
struct Bytes {
  uint8_t* data;
  size_t length;
};

// Each Get* returns false after throwing; the caller then returns nullptr
// (undefined) and the pending exception reaches JS.
bool Fail(napi_env env, bool range, const char* message) {
  if (range) {
    napi_throw_range_error(env, nullptr, message);
  } else {
    napi_throw_type_error(env, nullptr, message);
  }
  return false;
}

bool GetTyped(napi_env env, napi_value value, napi_typedarray_type want, const char* message,
              void** data, size_t* length) {
  napi_typedarray_type type;
  // Fails with napi_invalid_arg for anything that is not a typed array.
  if (napi_get_typedarray_info(env, value, &type, length, data, nullptr, nullptr) != napi_ok ||
      type != want) {
    return Fail(env, false, message);
  }
  return true;
}

bool GetBytes(napi_env env, napi_value value, const char* message, Bytes* out) {
  void* data = nullptr;
  if (!GetTyped(env, value, napi_uint8_array, message, &data, &out->length)) return false;
  out->data = static_cast<uint8_t*>(data);
  return true;
}

// An integer in [min, max].
bool GetIndex(napi_env env, napi_value value, size_t min, size_t max, const char* type_message,
              const char* range_message, size_t* out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return Fail(env, false, type_message);
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || std::floor(d) != d) {
    return Fail(env, true, range_message);
  }
  *out = static_cast<size_t>(d);
  return true;
}

// The mask as JS computes it, `mask >>> 0`: any number, modulo 2^32.
bool GetMask(napi_env env, napi_value value, uint32_t* out) {
  if (napi_get_value_uint32(env, value, out) != napi_ok) {
    return Fail(env, false, "mask must be a number (the masking key as a big-endian uint32)");
  }
  return true;
}

// Fills argv (missing arguments read as undefined).
template <size_t N>
void Args(napi_env env, napi_callback_info info, napi_value (&argv)[N], size_t* argc = nullptr) {
  size_t n = N;
  napi_get_cb_info(env, info, &n, argv, nullptr, nullptr);
  if (argc != nullptr) *argc = n;
}

bool GetRange(napi_env env, napi_value* argv, Bytes* buf, size_t* start, size_t* end) {
  return GetBytes(env, argv[0], "buf must be a Uint8Array", buf) &&
         GetIndex(env, argv[1], 0, buf->length, "start must be a number",
                  "start must be an integer in [0, buf.length]", start) &&
         GetIndex(env, argv[2], *start, buf->length, "end must be a number",
                  "end must be an integer in [start, buf.length]", end);
}

// unmask(buf, start, end, mask): XORs buf[start, end) in place.
napi_value Unmask(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Args(env, info, argv);
  Bytes buf;
  size_t start;
  size_t end;
  uint32_t mask;
  if (GetRange(env, argv, &buf, &start, &end) && GetMask(env, argv[3], &mask) && end > start) {
    wavecast::MaskBytes(buf.data + start, buf.data + start, end - start, mask);
  }
  return nullptr;
}

// maskInto(source, sourceStart, sourceEnd, target, targetStart, mask).
napi_value MaskInto(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  Args(env, info, argv);
  Bytes source;
  Bytes target;
  size_t source_start;
  size_t source_end;
  size_t target_start;
  uint32_t mask;
  if (!GetBytes(env, argv[0], "source must be a Uint8Array", &source) ||
      !GetIndex(env, argv[1], 0, source.length, "sourceStart must be a number",
                "sourceStart must be an integer in [0, source.length]", &source_start) ||
      !GetIndex(env, argv[2], source_start, source.length, "sourceEnd must be a number",
                "sourceEnd must be an integer in [sourceStart, source.length]", &source_end) ||
      !GetBytes(env, argv[3], "target must be a Uint8Array", &target) ||
      !GetIndex(env, argv[4], 0, target.length, "targetStart must be a number",
                "targetStart must be an integer in [0, target.length]", &target_start) ||
      !GetMask(env, argv[5], &mask)) {
    return nullptr;
  }
  const size_t n = source_end - source_start;
  if (n > target.length - target_start) {
    Fail(env, true, "target is too short for sourceEnd - sourceStart bytes at targetStart");
    return nullptr;
  }
  if (n == 0) return nullptr;
  const uint8_t* src = source.data + source_start;
  uint8_t* dst = target.data + target_start;
  // The vector loops read a block before writing it, which is right when dst
  // is at or before src; a dst inside (src, src + n) would read bytes it had
  // already written.
  const uintptr_t s = reinterpret_cast<uintptr_t>(src);
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  if (d > s && d < s + n) {
    Fail(env, true, "target range starts inside the source range");
    return nullptr;
  }
  wavecast::MaskBytes(src, dst, n, mask);
  return nullptr;
}

// isValidUtf8(buf, start, end): boolean.
napi_value IsValidUtf8(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  Args(env, info, argv);
  Bytes buf;
  size_t start;
  size_t end;
  if (!GetRange(env, argv, &buf, &start, &end)) return nullptr;
  napi_value result;
  napi_get_boolean(env, end == start || wavecast::Utf8Valid(buf.data + start, end - start),
                   &result);
  return result;
}

// A UTF-8 stream state argument: one utf8Continue can return (UTF8_INVALID
// only where `allow_invalid`), else a TypeError / RangeError.
bool GetState(napi_env env, napi_value value, bool allow_invalid, int32_t* out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return Fail(env, false, "state must be a number");
  if (!(d >= INT32_MIN && d <= INT32_MAX) || std::floor(d) != d ||
      !wavecast::Utf8StateValid(static_cast<int32_t>(d)) || (!allow_invalid && d == kUtf8Invalid)) {
    return Fail(env, true, allow_invalid ? "state must be 0, UTF8_INVALID or a state utf8Continue returned"
                                         : "state must be 0 or a state utf8Continue returned before the failure");
  }
  *out = static_cast<int32_t>(d);
  return true;
}

// utf8Continue(state, buf, start, end): the next state.
napi_value Utf8Continue(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Args(env, info, argv);
  int32_t state;
  if (!GetState(env, argv[0], true, &state)) return nullptr;
  Bytes buf;
  size_t start;
  size_t end;
  if (!GetRange(env, argv + 1, &buf, &start, &end)) return nullptr;
  if (state != kUtf8Invalid && end > start) {
    state = wavecast::Utf8Continue(state, buf.data + start, end - start);
  }
  napi_value result;
  napi_create_int32(env, state, &result);
  return result;
}

// utf8InvalidAt(state, buf, start, end): offset from start of the first
// invalid byte, or -1.
napi_value Utf8InvalidAt(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  Args(env, info, argv);
  int32_t state;
  if (!GetState(env, argv[0], false, &state)) return nullptr;
  Bytes buf;
  size_t start;
  size_t end;
  if (!GetRange(env, argv + 1, &buf, &start, &end)) return nullptr;
  const int64_t at = wavecast::Utf8InvalidAt(state, buf.data + start, end - start);
  napi_value result;
  napi_create_double(env, static_cast<double>(at), &result);
  return result;
}

#if defined(WAVECAST_HAVE_WRITE_BATCH)

// writeBatch(fds, count, head, results, body?): see write-batch.h.
napi_value WriteBatch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  size_t argc;
  Args(env, info, argv, &argc);
  void* fds_data = nullptr;
  size_t fds_length = 0;
  void* results_data = nullptr;
  size_t results_length = 0;
  size_t count;
  Bytes head;
  Bytes body = {nullptr, 0};
  if (!GetTyped(env, argv[0], napi_int32_array, "fds must be an Int32Array", &fds_data,
                &fds_length) ||
      !GetIndex(env, argv[1], 0, fds_length, "count must be a number",
                "count must be an integer in [0, fds.length]", &count) ||
      !GetBytes(env, argv[2], "head must be a Uint8Array", &head) ||
      !GetTyped(env, argv[3], napi_int32_array, "results must be an Int32Array", &results_data,
                &results_length)) {
    return nullptr;
  }
  if (argc > 4) {
    napi_valuetype type;
    napi_typeof(env, argv[4], &type);
    if (type != napi_undefined && type != napi_null &&
        !GetBytes(env, argv[4], "body must be a Uint8Array, null or undefined", &body)) {
      return nullptr;
    }
  }
  if (results_length < count) {
    Fail(env, true, "results must hold at least count entries");
    return nullptr;
  }
  // A result is an int32 byte count.
  if (head.length > static_cast<size_t>(INT32_MAX) ||
      body.length > static_cast<size_t>(INT32_MAX) - head.length) {
    Fail(env, true, "head and body together must be at most 2^31 - 1 bytes");
    return nullptr;
  }
  struct iovec iov[2];
  int iovcnt = 0;
  if (head.length > 0) iov[iovcnt++] = {head.data, head.length};
  if (body.length > 0) iov[iovcnt++] = {body.data, body.length};
  wavecast::WriteBatch(static_cast<const int32_t*>(fds_data), count, iov, iovcnt,
                       static_cast<int32_t*>(results_data));
  return nullptr;
}

#endif

void Export(Napi::Env env, Napi::Object exports, const char* name, napi_callback callback) {
  napi_value fn;
  NAPI_THROW_IF_FAILED_VOID(
      env, napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, nullptr, &fn));
  exports.Set(name, Napi::Value(env, fn));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "unmask", Unmask);
  Export(env, exports, "maskInto", MaskInto);
  Export(env, exports, "isValidUtf8", IsValidUtf8);
  Export(env, exports, "utf8Continue", Utf8Continue);
  Export(env, exports, "utf8InvalidAt", Utf8InvalidAt);
#if defined(WAVECAST_HAVE_WRITE_BATCH)
  Export(env, exports, "writeBatch", WriteBatch);
#endif
#if defined(WAVECAST_HAVE_TRANSPORT)
  NAPI_THROW_IF_FAILED(env, wavecast::InitTransport(env, exports), exports);
#endif
  Napi::Object simd = Napi::Object::New(env);
  simd.Set("mask", wavecast::MaskImplementation());
  simd.Set("utf8", wavecast::Utf8Implementation());
  exports.Set("simd", simd);
  return exports;
}

}  // namespace

NODE_API_MODULE(wavecast, Init)
