// Kubernetes label selectors: the grammar of k8s.io/apimachinery's
// labels.Parse, with keys and values validated as Kubernetes validates them.
//
//   selector    ::= "" | requirement ("," requirement)*
//   requirement ::= ["!"] KEY
//                 | KEY ("=" | "==" | "!=") VALUE
//                 | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")"
//                 | KEY (">" | "<") INTEGER
//
// A selector Kubernetes rejects is an error naming the byte offset and what
// was expected; there is no fallback. A parsed Selector is immutable and
// reusable (parse once, match many): thread-safe for concurrent Matches.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/common/status.h"

namespace berth {

inline constexpr size_t kMaxLabelNameLen = 63;     // the part after an optional "prefix/"
inline constexpr size_t kMaxLabelPrefixLen = 253;  // a DNS subdomain
inline constexpr size_t kMaxLabelValueLen = 63;

// Kubernetes' IsQualifiedName for label keys and IsValidLabelValue for values.
// The error message says what is wrong; kInvalidName on failure.
Status ValidateLabelKey(std::string_view key);
Status ValidateLabelValue(std::string_view value);

// A set of labels to match against: sorted by key, keys unique.
// External synchronization needed.
class Labels {
 public:
  Labels() = default;
  // Takes pairs in any order; a key given twice keeps its last value.
  explicit Labels(std::vector<std::pair<std::string, std::string>> pairs);
  std::optional<std::string_view> Get(std::string_view key) const;
  const std::vector<std::pair<std::string, std::string>>& pairs() const { return pairs_; }
  bool operator==(const Labels&) const = default;

 private:
  std::vector<std::pair<std::string, std::string>> pairs_;
};

enum class SelectorOp : uint8_t {
  kEquals,        // =
  kDoubleEquals,  // ==
  kNotEquals,     // !=
  kIn,            // in (...)
  kNotIn,         // notin (...)
  kExists,        // key
  kDoesNotExist,  // !key
  kGreaterThan,   // >
  kLessThan,      // <
};

struct Requirement {
  std::string key;
  SelectorOp op;
  std::vector<std::string> values;  // sorted, unique
  int64_t number = 0;               // the value of > and <

  // Kubernetes' Requirement.Matches. L is any label source with
  // std::optional<std::string_view> Get(std::string_view key) const.
  template <class L>
  bool Matches(const L& labels) const {
    return MatchesValue(labels.Get(key));
  }
  // The same, given the label's value (nullopt: the key is absent).
  bool MatchesValue(std::optional<std::string_view> value) const;
  bool operator==(const Requirement&) const = default;
};

class Selector {
 public:
  // Parses `text`. On failure returns kBadSelector with a message such as
  // "at byte 7: found ')', expected: identifier" and leaves *out unchanged.
  static Status Parse(std::string_view text, Selector* out);

  // True for the empty selector, which matches everything.
  bool Empty() const { return requirements_.empty(); }
  // All requirements hold (AND).
  template <class L>
  bool Matches(const L& labels) const {
    for (const Requirement& r : requirements_) {
      if (!r.Matches(labels)) return false;
    }
    return true;
  }
  // The canonical form Kubernetes prints: requirements sorted by key, values
  // sorted; parsing it gives an equal Selector.
  std::string String() const;
  const std::vector<Requirement>& requirements() const { return requirements_; }
  bool operator==(const Selector&) const = default;

 private:
  std::vector<Requirement> requirements_;  // sorted by key (stable)
};

}  // namespace berth
