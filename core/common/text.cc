#include "core/common/text.h"

#include <cstdint>
#include <cstring>
#include <string>

namespace berth {

namespace {

// Length of the well-formed UTF-8 sequence starting at p (2..4 bytes; no
// overlongs, surrogates or code points above U+10FFFF), or 0. *p >= 0x80.
size_t MultiByteLen(const uint8_t* p, const uint8_t* end) {
  const uint8_t c = *p;
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
    return 0;
  }
  if (static_cast<size_t>(end - p) <= need) return 0;
  for (size_t i = 1; i <= need; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return need + 1;
}

}  // namespace

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
    if (*p < 0x80) {  // ASCII fast path
      if (*p == 0) return false;
      ++p;
      continue;
    }
    const size_t n = MultiByteLen(p, end);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

std::string Printable(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const size_t n = *p < 0x80 ? (*p < 0x20 || *p == 0x7f ? 0 : 1) : MultiByteLen(p, end);
    if (n == 0) {
      out += "\\x";
      out += kHex[*p >> 4];
      out += kHex[*p & 0xf];
      ++p;
    } else {
      out.append(reinterpret_cast<const char*>(p), n);
      p += n;
    }
  }
  return out;
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
