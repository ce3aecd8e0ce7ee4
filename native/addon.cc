// The JS face of the addon: argument checks, then a call into one of the hot
// operations (mask.cc, utf8.cc, write-batch.cc). Every function checks its
// arguments and throws TypeError / RangeError instead of touching memory it
// was not given; none allocates a JS object per byte or per socket.
#include <napi.h>

#include <climits>
#include <cmath>
#include <cstring>

#include "mask.h"
#include "utf8.h"
#include "write-batch.h"

namespace {

using wavecast::kUtf8Invalid;

// A Uint8Array (Buffer included) as a pointer and a length.
struct Bytes {
  uint8_t* data;
  size_t length;
};

void ThrowType(Napi::Env env, const char* message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

void ThrowRange(Napi::Env env, const char* message) {
  Napi::RangeError::New(env, message).ThrowAsJavaScriptException();
}

bool GetTyped(Napi::Env env, Napi::Value value, napi_typedarray_type want, const char* message,
              void** data, size_t* length) {
  bool is_typed = false;
  napi_typedarray_type type;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, value, &type, length, data, nullptr, nullptr) != napi_ok ||
      type != want) {
    ThrowType(env, message);
    return false;
  }
  return true;
}

bool GetBytes(Napi::Env env, Napi::Value value, const char* message, Bytes* out) {
  void* data = nullptr;
  if (!GetTyped(env, value, napi_uint8_array, message, &data, &out->length)) return false;
  out->data = static_cast<uint8_t*>(data);
  return true;
}

// A non-negative integer no greater than `max`.
bool GetIndex(Napi::Env env, Napi::Value value, size_t max, const char* type_message,
              const char* range_message, size_t* out) {
  if (!value.IsNumber()) {
    ThrowType(env, type_message);
    return false;
  }
  const double d = value.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > static_cast<double>(max) || std::floor(d) != d) {
    ThrowRange(env, range_message);
    return false;
  }
  *out = static_cast<size_t>(d);
  return true;
}

// The mask as JS computes it, `mask >>> 0`: any number, modulo 2^32.
bool GetMask(Napi::Env env, Napi::Value value, uint32_t* out) {
  if (!value.IsNumber()) {
    ThrowType(env, "mask must be a number (the masking key as a big-endian uint32)");
    return false;
  }
  *out = value.As<Napi::Number>().Uint32Value();
  return true;
}

// unmask(buf, start, end, mask): XORs buf[start, end) in place.
Napi::Value Unmask(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes buf;
  size_t start;
  size_t end;
  uint32_t mask;
  if (!GetBytes(env, info[0], "buf must be a Uint8Array", &buf) ||
      !GetIndex(env, info[1], buf.length, "start must be a number",
                "start must be an integer in [0, buf.length]", &start) ||
      !GetIndex(env, info[2], buf.length, "end must be a number",
                "end must be an integer in [start, buf.length]", &end) ||
      !GetMask(env, info[3], &mask)) {
    return env.Undefined();
  }
  if (end < start) {
    ThrowRange(env, "end must be an integer in [start, buf.length]");
    return env.Undefined();
  }
  if (end > start) wavecast::MaskBytes(buf.data + start, buf.data + start, end - start, mask);
  return env.Undefined();
}

// maskInto(source, sourceStart, sourceEnd, target, targetStart, mask).
Napi::Value MaskInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes source;
  Bytes target;
  size_t source_start;
  size_t source_end;
  size_t target_start;
  uint32_t mask;
  if (!GetBytes(env, info[0], "source must be a Uint8Array", &source) ||
      !GetIndex(env, info[1], source.length, "sourceStart must be a number",
                "sourceStart must be an integer in [0, source.length]", &source_start) ||
      !GetIndex(env, info[2], source.length, "sourceEnd must be a number",
                "sourceEnd must be an integer in [sourceStart, source.length]", &source_end) ||
      !GetBytes(env, info[3], "target must be a Uint8Array", &target) ||
      !GetIndex(env, info[4], target.length, "targetStart must be a number",
                "targetStart must be an integer in [0, target.length]", &target_start) ||
      !GetMask(env, info[5], &mask)) {
    return env.Undefined();
  }
  if (source_end < source_start) {
    ThrowRange(env, "sourceEnd must be an integer in [sourceStart, source.length]");
    return env.Undefined();
  }
  const size_t n = source_end - source_start;
  if (n > target.length - target_start) {
    ThrowRange(env, "target is too short for sourceEnd - sourceStart bytes at targetStart");
    return env.Undefined();
  }
  if (n == 0) return env.Undefined();
  const uint8_t* src = source.data + source_start;
  uint8_t* dst = target.data + target_start;
  // The vector loops read a block before writing it, which is right when dst
  // is at or before src; a dst inside (src, src + n) would read bytes it had
  // already written.
  const uintptr_t s = reinterpret_cast<uintptr_t>(src);
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  if (d > s && d < s + n) {
    ThrowRange(env, "target range starts inside the source range");
    return env.Undefined();
  }
  wavecast::MaskBytes(src, dst, n, mask);
  return env.Undefined();
}

bool GetRange(const Napi::CallbackInfo& info, size_t first, Bytes* buf, size_t* start,
              size_t* end) {
  Napi::Env env = info.Env();
  if (!GetBytes(env, info[first], "buf must be a Uint8Array", buf) ||
      !GetIndex(env, info[first + 1], buf->length, "start must be a number",
                "start must be an integer in [0, buf.length]", start) ||
      !GetIndex(env, info[first + 2], buf->length, "end must be a number",
                "end must be an integer in [start, buf.length]", end)) {
    return false;
  }
  if (*end < *start) {
    ThrowRange(env, "end must be an integer in [start, buf.length]");
    return false;
  }
  return true;
}

// isValidUtf8(buf, start, end): boolean.
Napi::Value IsValidUtf8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes buf;
  size_t start;
  size_t end;
  if (!GetRange(info, 0, &buf, &start, &end)) return env.Undefined();
  if (end == start) return Napi::Boolean::New(env, true);
  return Napi::Boolean::New(env, wavecast::Utf8Valid(buf.data + start, end - start));
}

// utf8Continue(state, buf, start, end): the next state.
Napi::Value Utf8Continue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) {
    ThrowType(env, "state must be a number");
    return env.Undefined();
  }
  const double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= INT32_MIN && d <= INT32_MAX) || std::floor(d) != d ||
      !wavecast::Utf8StateValid(static_cast<int32_t>(d))) {
    ThrowRange(env, "state must be 0, UTF8_INVALID or a state utf8Continue returned");
    return env.Undefined();
  }
  const int32_t state = static_cast<int32_t>(d);
  Bytes buf;
  size_t start;
  size_t end;
  if (!GetRange(info, 1, &buf, &start, &end)) return env.Undefined();
  if (state == kUtf8Invalid || end == start) return Napi::Number::New(env, state);
  return Napi::Number::New(env, wavecast::Utf8Continue(state, buf.data + start, end - start));
}

#if defined(WAVECAST_HAVE_WRITE_BATCH)

// writeBatch(fds, count, head, results, body?): see write-batch.h.
Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* fds_data = nullptr;
  size_t fds_length = 0;
  void* results_data = nullptr;
  size_t results_length = 0;
  size_t count;
  Bytes head;
  Bytes body = {nullptr, 0};
  if (!GetTyped(env, info[0], napi_int32_array, "fds must be an Int32Array", &fds_data,
                &fds_length) ||
      !GetIndex(env, info[1], fds_length, "count must be a number",
                "count must be an integer in [0, fds.length]", &count) ||
      !GetBytes(env, info[2], "head must be a Uint8Array", &head) ||
      !GetTyped(env, info[3], napi_int32_array, "results must be an Int32Array", &results_data,
                &results_length)) {
    return env.Undefined();
  }
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull() &&
      !GetBytes(env, info[4], "body must be a Uint8Array, null or undefined", &body)) {
    return env.Undefined();
  }
  if (results_length < count) {
    ThrowRange(env, "results must hold at least count entries");
    return env.Undefined();
  }
  // A result is an int32 byte count.
  if (head.length > static_cast<size_t>(INT32_MAX) ||
      body.length > static_cast<size_t>(INT32_MAX) - head.length) {
    ThrowRange(env, "head and body together must be at most 2^31 - 1 bytes");
    return env.Undefined();
  }
  struct iovec iov[2];
  int iovcnt = 0;
  if (head.length > 0) iov[iovcnt++] = {head.data, head.length};
  if (body.length > 0) iov[iovcnt++] = {body.data, body.length};
  wavecast::WriteBatch(static_cast<const int32_t*>(fds_data), count, iov, iovcnt,
                       static_cast<int32_t*>(results_data));
  return env.Undefined();
}

#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("unmask", Napi::Function::New(env, Unmask, "unmask"));
  exports.Set("maskInto", Napi::Function::New(env, MaskInto, "maskInto"));
  exports.Set("isValidUtf8", Napi::Function::New(env, IsValidUtf8, "isValidUtf8"));
  exports.Set("utf8Continue", Napi::Function::New(env, Utf8Continue, "utf8Continue"));
#if defined(WAVECAST_HAVE_WRITE_BATCH)
  exports.Set("writeBatch", Napi::Function::New(env, WriteBatch, "writeBatch"));
#endif
  Napi::Object simd = Napi::Object::New(env);
  simd.Set("mask", wavecast::MaskImplementation());
  simd.Set("utf8", wavecast::Utf8Implementation());
  exports.Set("simd", simd);
  return exports;
}

}  // namespace

NODE_API_MODULE(wavecast, Init)
