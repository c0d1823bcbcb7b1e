// The C ABI of label selectors (berth_selector_*).
#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "capi/internal.h"

namespace {

using namespace berth::capi;
using berth::Status;

// A label source for Selector::Matches over caller labels: sorted by key,
// the last of a repeated key wins.
class LabelLookup {
 public:
  explicit LabelLookup(LabelVec labels) : labels_(std::move(labels)) {
    std::stable_sort(labels_.begin(), labels_.end(),
                     [](const auto& a, const auto& b) { return a.key < b.key; });
  }
  std::optional<std::string_view> Get(std::string_view key) const {
    auto it = std::upper_bound(labels_.begin(), labels_.end(), key,
                               [](std::string_view k, const auto& l) { return k < l.key; });
    if (it == labels_.begin() || (it - 1)->key != key) return std::nullopt;
    return (it - 1)->value;  // the last one given
  }

 private:
  LabelVec labels_;
};

}  // namespace

extern "C" {

berth_status berth_selector_parse(berth_selector** out_selector, const char* text,
                                  size_t text_len) {
  static const char* fn = "berth_selector_parse";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_selector != nullptr, fn, "out_selector is NULL");
    BERTH_VIEW(t, text, text_len, fn, "text");
    auto obj = berth::MakeMiUnique<SelectorObject>();
    BERTH_CHECK(berth::Selector::Parse(t, &obj->selector), fn);
    return Publish(fn, out_selector, std::move(obj));
  });
}

berth_status berth_selector_free(berth_selector* selector) { return Destroy("berth_selector_free", "selector", selector); }

berth_status berth_selector_string(berth_buffer** out_buffer, const berth_selector* selector) {
  static const char* fn = "berth_selector_string";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    BERTH_HANDLE(sel, selector, fn);
    auto buf = berth::MakeMiUnique<BufferObject>();
    const std::string text = sel->selector.String();
    buf->text.assign(text.data(), text.size());
    return Publish(fn, out_buffer, std::move(buf));
  });
}

berth_status berth_selector_matches(int* out_matches, const berth_selector* selector,
                                    const berth_label* labels, size_t n_labels) {
  static const char* fn = "berth_selector_matches";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_matches != nullptr, fn, "out_matches is NULL");
    BERTH_HANDLE(sel, selector, fn);
    LabelVec ls;
    BERTH_REQUIRE(ReadLabels(labels, n_labels, &ls), fn,
                  "labels is NULL with n_labels > 0, or a key/value is NULL with a length");
    *out_matches = sel->selector.Matches(LabelLookup(std::move(ls))) ? 1 : 0;
    return BERTH_OK;
  });
}

}  // extern "C"
