// A fast 64-bit hash for short strings (names, keys): 8 bytes per step with a
// multiply-xorshift mix. Not cryptographic; for hash tables only.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace berth {

inline uint64_t HashBytes(std::string_view s) noexcept {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = 0xCBF29CE484222325ull ^ (n * kMul);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * kMul;
  }
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

}  // namespace berth
