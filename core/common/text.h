// Validation of the names that cross Berth's API: length limits, no NUL, valid
// UTF-8. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/common/status.h"

namespace berth {

// True if `s` is well-formed UTF-8 (no overlongs, surrogates or code points
// above U+10FFFF) and contains no NUL byte.
bool IsValidText(std::string_view s);

// `s` made safe to show in a message: valid UTF-8 passes through; control
// bytes (NUL included) and bytes that are not part of well-formed UTF-8
// become "\xNN". The result is valid UTF-8 without NUL.
std::string Printable(std::string_view s);

// Checks one name. `what` names it in the message ("pool name", "key name").
// Returns kInvalidName if it is empty while `allow_empty` is false, longer
// than `max_len` bytes, contains NUL, or is not UTF-8.
Status CheckName(std::string_view what, std::string_view s, size_t max_len, bool allow_empty);

// Two validated strings joined by a NUL in a stack buffer of N bytes: the
// composite keys of Berth's maps ("ns\0name", "key\0value"), unambiguous
// because validated text holds no NUL. The caller guarantees the lengths fit.
template <size_t N>
class Joined {
 public:
  Joined(std::string_view first, std::string_view second)
      : len_(first.size() + 1 + second.size()), first_len_(static_cast<uint32_t>(first.size())) {
    // Empty views may carry a null pointer, which memcpy must never see.
    if (!first.empty()) std::memcpy(buf_, first.data(), first.size());
    buf_[first.size()] = '\0';
    if (!second.empty()) std::memcpy(buf_ + first.size() + 1, second.data(), second.size());
  }
  std::string_view view() const { return {buf_, len_}; }
  uint32_t first_len() const { return first_len_; }

 private:
  char buf_[N];
  size_t len_;
  uint32_t first_len_;
};

}  // namespace berth
