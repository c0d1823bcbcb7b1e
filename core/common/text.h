// Validation of the names that cross Berth's API: length limits, no NUL, valid
// UTF-8. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/common/status.h"

namespace berth {

// True if `s` is well-formed UTF-8 (no overlongs, surrogates or code points
// above U+10FFFF) and contains no NUL byte.
bool IsValidText(std::string_view s);

// Checks one name. `what` names it in the message ("pool name", "key name").
// Returns kInvalidName if it is empty while `allow_empty` is false, longer
// than `max_len` bytes, contains NUL, or is not UTF-8.
Status CheckName(std::string_view what, std::string_view s, size_t max_len, bool allow_empty);

}  // namespace berth
