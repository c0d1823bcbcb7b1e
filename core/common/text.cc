#include "core/common/text.h"

#include <cstdint>
#include <cstring>
#include <string>

namespace berth {

bool IsValidText(std::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const auto* end = p + s.size();
  // Names are nearly always ASCII: check 8 bytes at a time for a NUL or a
  // byte with the high bit set, and only fall to the decoder when one shows.
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
  while (end - p >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    if (((v - kOnes) & ~v & kHighs) != 0 || (v & kHighs) != 0) break;
    p += 8;
  }
  while (p < end) {
    uint8_t c = *p;
    if (c < 0x80) {  // ASCII fast path
      if (c == 0) return false;
      ++p;
      continue;
    }
    size_t need;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      need = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      need = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      need = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= need) return false;
    for (size_t i = 1; i <= need; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += need + 1;
  }
  return true;
}

Status CheckName(std::string_view what, std::string_view s, size_t max_len, bool allow_empty) {
  if (s.empty() && !allow_empty) return {Code::kInvalidName, std::string(what) + " is empty"};
  if (s.size() > max_len) {
    return {Code::kInvalidName, std::string(what) + " is " + std::to_string(s.size()) +
                                    " bytes long; the limit is " + std::to_string(max_len)};
  }
  if (!IsValidText(s)) {
    return {Code::kInvalidName, std::string(what) + " contains a NUL byte or is not valid UTF-8"};
  }
  return {};
}

}  // namespace berth
