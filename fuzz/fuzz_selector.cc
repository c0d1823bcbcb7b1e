// Selector parser and matcher: every input either parses or gives an error
// naming a byte offset; a parsed selector printed back parses to the same
// selector and matches the same labels.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/selector/selector.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  __builtin_trap();  // libFuzzer reports it with the input
  (void)what;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  berth::Selector sel;
  const berth::Status s = berth::Selector::Parse(text, &sel);
  if (!s.ok()) {
    if (s.code() != berth::Code::kBadSelector || s.message().find("at byte ") != 0) Fail("bad error");
    return 0;
  }
  const std::string printed = sel.String();
  berth::Selector again;
  if (!berth::Selector::Parse(printed, &again).ok()) Fail("printed form does not parse");
  if (!(again == sel)) Fail("printed form parses to another selector");
  if (again.String() != printed) Fail("printing is not stable");
  // Labels drawn from the selector's own words, so matches are exercised.
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const berth::Requirement& r : sel.requirements()) {
    pairs.emplace_back(r.key, r.values.empty() ? std::string() : r.values.front());
  }
  for (size_t drop = 0; drop <= pairs.size(); ++drop) {
    std::vector<std::pair<std::string, std::string>> some = pairs;
    if (drop < some.size()) some.erase(some.begin() + static_cast<long>(drop));
    const berth::Labels labels(some);
    if (sel.Matches(labels) != again.Matches(labels)) Fail("reparsed selector matches differently");
  }
  return 0;
}
