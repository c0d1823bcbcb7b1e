// The label-selector parser and matcher, checked against vectors that
// Kubernetes' own implementation produced (tests/k8sref), plus the byte
// offsets and messages Berth adds.
#include "core/selector/selector.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace berth {
namespace {

using LabelSet = std::vector<std::pair<std::string, std::string>>;

struct SelectorVector {
  const char* input;
  bool parses;
  const char* canonical;
  const char* matches;  // one '1'/'0' per label set
};

#include "tests/data/selector_vectors.inc"

const std::vector<LabelSet> kLabelSets = {BERTH_K8S_LABEL_SETS};
const std::vector<SelectorVector> kVectors = {BERTH_K8S_SELECTOR_VECTORS};

TEST(SelectorK8s, AcceptsExactlyWhatKubernetesAccepts) {
  int valid = 0;
  for (const SelectorVector& v : kVectors) {
    Selector sel;
    Status s = Selector::Parse(v.input, &sel);
    EXPECT_EQ(s.ok(), v.parses) << "input '" << v.input << "': " << s.message();
    if (s.ok()) {
      ++valid;
    } else {
      EXPECT_EQ(s.code(), Code::kBadSelector);
      EXPECT_NE(s.message().find("at byte "), std::string::npos) << s.message();
    }
  }
  EXPECT_GT(valid, 500);
}

TEST(SelectorK8s, PrintsTheCanonicalFormKubernetesPrints) {
  for (const SelectorVector& v : kVectors) {
    if (!v.parses) continue;
    Selector sel;
    ASSERT_TRUE(Selector::Parse(v.input, &sel).ok()) << v.input;
    EXPECT_EQ(sel.String(), v.canonical) << "input '" << v.input << "'";
    // Printed back, it parses to the same selector.
    Selector again;
    ASSERT_TRUE(Selector::Parse(sel.String(), &again).ok()) << sel.String();
    EXPECT_EQ(again, sel) << sel.String();
  }
}

TEST(SelectorK8s, MatchesWhatKubernetesMatches) {
  std::vector<Labels> sets;
  for (const LabelSet& ls : kLabelSets) sets.emplace_back(ls);
  for (const SelectorVector& v : kVectors) {
    if (!v.parses) continue;
    Selector sel;
    ASSERT_TRUE(Selector::Parse(v.input, &sel).ok());
    ASSERT_EQ(std::string(v.matches).size(), sets.size());
    for (size_t i = 0; i < sets.size(); ++i) {
      EXPECT_EQ(sel.Matches(sets[i]), v.matches[i] == '1')
          << "selector '" << v.input << "' on label set " << i;
    }
  }
}

TEST(Selector, EmptySelectorMatchesEverything) {
  Selector sel;
  ASSERT_TRUE(Selector::Parse("  ", &sel).ok());
  EXPECT_TRUE(sel.Empty());
  EXPECT_TRUE(sel.Matches(Labels()));
  EXPECT_TRUE(sel.Matches(Labels(LabelSet{{"a", "b"}})));
}

TEST(Selector, MissingKeyMatchesNotInAndNotEqualsAndDoesNotExist) {
  Selector sel;
  ASSERT_TRUE(Selector::Parse("a notin (x),b!=y,!c", &sel).ok());
  EXPECT_TRUE(sel.Matches(Labels()));
  EXPECT_FALSE(sel.Matches(Labels(LabelSet{{"c", ""}})));
}

struct ErrorCase {
  const char* input;
  const char* message;
};

TEST(Selector, ErrorsNameTheByteOffsetAndWhatWasExpected) {
  const ErrorCase cases[] = {
      {"a=b,", "at byte 4: found end of string, expected: identifier after ','"},
      {",a", "at byte 0: found ',', expected: !, identifier, or 'end of string'"},
      {"a in (x y)", "at byte 8: found 'y', expected: ',' or ')'"},
      {"x nott in (y)", "at byte 2: found 'nott', expected: in, notin, =, ==, !=, >, <"},
      {"!x=a", "at byte 2: found '=', expected: ',' or 'end of string'"},
      {"a notin(", "at byte 8: found end of string, expected: ',', ')' or identifier"},
      {"x<a", "at byte 2: for '>' and '<' the value must be an integer, not 'a'"},
      {"a/b/c=d", "at byte 0: invalid label key 'a/b/c': a qualified name has at most one '/'"},
      {"a=b c", "at byte 4: found 'c', expected: ',' or 'end of string'"},
      {"x=-a", "at byte 2: invalid label value '-a'"},
  };
  for (const ErrorCase& c : cases) {
    Selector sel;
    Status s = Selector::Parse(c.input, &sel);
    ASSERT_FALSE(s.ok()) << c.input;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.input << " -> " << s.message();
  }
}

TEST(Selector, FailedParseLeavesTheSelectorUnchanged) {
  Selector sel;
  ASSERT_TRUE(Selector::Parse("a=b", &sel).ok());
  EXPECT_FALSE(Selector::Parse("a=b,", &sel).ok());
  EXPECT_EQ(sel.String(), "a=b");
}

TEST(LabelValidation, KeysAndValuesAsKubernetesValidates) {
  EXPECT_TRUE(ValidateLabelKey("app").ok());
  EXPECT_TRUE(ValidateLabelKey("example.com/app").ok());
  EXPECT_TRUE(ValidateLabelKey(std::string(253, 'p') + "/k").ok());
  EXPECT_FALSE(ValidateLabelKey(std::string(254, 'p') + "/k").ok());
  EXPECT_FALSE(ValidateLabelKey("Example.com/app").ok());  // prefix is lowercase
  EXPECT_FALSE(ValidateLabelKey(std::string(64, 'k')).ok());
  EXPECT_FALSE(ValidateLabelKey("").ok());
  EXPECT_FALSE(ValidateLabelKey("a/").ok());
  EXPECT_FALSE(ValidateLabelKey("/a").ok());
  EXPECT_TRUE(ValidateLabelValue("").ok());
  EXPECT_TRUE(ValidateLabelValue("My_value-1.2").ok());
  EXPECT_FALSE(ValidateLabelValue("a b").ok());
  EXPECT_FALSE(ValidateLabelValue(std::string(64, 'v')).ok());
}

}  // namespace
}  // namespace berth
