// What the C ABI fuzz targets share: reading the input, failing, and the
// checks every call gets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>

#include "capi/berth.h"

namespace berth_fuzz {

// libFuzzer reports the trap with the input that caused it; the line says
// which check failed.
[[noreturn]] inline void Fail(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  std::fprintf(stderr, "check failed at %s:%d\n", file, line);
  __builtin_trap();
}

inline void Expect(bool ok, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  if (!ok) Fail(file, line);
}

// The input, read front to back; past its end every read is 0.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool more() const { return p_ < end_; }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  uint8_t byte() { return p_ < end_ ? *p_++ : 0; }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = v << 8 | byte();
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  double f64() {
    const uint64_t bits = u64();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

// The status of a call, once berth_last_error agrees with it: a failure
// explains itself, a success (or BERTH_EMPTY) leaves "".
inline berth_status Checked(berth_status s) {
  size_t len = 1;
  const char* msg = berth_last_error(&len);
  Expect(msg != nullptr && std::strlen(msg) == len && berth_last_error(nullptr) == msg);
  Expect((s == BERTH_OK || s == BERTH_EMPTY) == (len == 0));
  return s;
}

// Checked, and one of the statuses the call documents.
inline berth_status OneOf(berth_status s, std::initializer_list<berth_status> allowed,
                          const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  Checked(s);
  for (berth_status a : allowed) {
    if (s == a) return s;
  }
  Fail(file, line);
}

}  // namespace berth_fuzz
