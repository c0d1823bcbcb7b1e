// A port of k8s.io/apimachinery/pkg/labels/selector.go's lexer and parser:
// the same tokens, the same contexts ("in"/"notin" are identifiers where a
// value is expected), the same acceptance of empty values ("a=", "a in (,)"),
// and the same validation; messages add the byte offset.
#include "core/selector/selector.h"

#include <algorithm>
#include <charconv>

namespace berth {

namespace {

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], or empty when allowed.
bool IsQualifiedPart(std::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

// DNS-1123 subdomain: [a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*
bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > kMaxLabelPrefixLen) return false;
  size_t start = 0;
  for (;;) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || !IsLowerAlnum(label.front()) || !IsLowerAlnum(label.back())) return false;
    for (char c : label) {
      if (!IsLowerAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

Status ValidateLabelKey(std::string_view key) {
  std::string_view name = key;
  const size_t slash = key.find('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (name.find('/') != std::string_view::npos) {
      return {Code::kInvalidName, "invalid label key " + Quote(key) +
                                      ": a qualified name has at most one '/'"};
    }
    if (prefix.empty()) {
      return {Code::kInvalidName, "invalid label key " + Quote(key) + ": prefix part must be non-empty"};
    }
    if (!IsDnsSubdomain(prefix)) {
      return {Code::kInvalidName,
              "invalid label key " + Quote(key) +
                  ": prefix part must be a DNS subdomain (at most 253 characters of lowercase "
                  "alphanumerics, '-' and '.', starting and ending with an alphanumeric)"};
    }
  }
  if (name.empty()) {
    return {Code::kInvalidName, "invalid label key " + Quote(key) + ": name part must be non-empty"};
  }
  if (name.size() > kMaxLabelNameLen) {
    return {Code::kInvalidName, "invalid label key " + Quote(key) +
                                    ": name part must be no more than 63 characters"};
  }
  if (!IsQualifiedPart(name)) {
    return {Code::kInvalidName,
            "invalid label key " + Quote(key) +
                ": name part must consist of alphanumerics, '-', '_' or '.', and must start and "
                "end with an alphanumeric"};
  }
  return {};
}

Status ValidateLabelValue(std::string_view value) {
  if (value.size() > kMaxLabelValueLen) {
    return {Code::kInvalidName,
            "invalid label value " + Quote(value) + ": must be no more than 63 characters"};
  }
  if (!value.empty() && !IsQualifiedPart(value)) {
    return {Code::kInvalidName,
            "invalid label value " + Quote(value) +
                ": must be empty or consist of alphanumerics, '-', '_' or '.', and must start and "
                "end with an alphanumeric"};
  }
  return {};
}

// ---- Labels ------------------------------------------------------------------

Labels::Labels(std::vector<std::pair<std::string, std::string>> pairs) : pairs_(std::move(pairs)) {
  std::stable_sort(pairs_.begin(), pairs_.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  // Keep the last value of a repeated key.
  std::vector<std::pair<std::string, std::string>> unique;
  unique.reserve(pairs_.size());
  for (auto& p : pairs_) {
    if (!unique.empty() && unique.back().first == p.first) {
      unique.back().second = std::move(p.second);
    } else {
      unique.push_back(std::move(p));
    }
  }
  pairs_ = std::move(unique);
}

std::optional<std::string_view> Labels::Get(std::string_view key) const {
  auto it = std::lower_bound(pairs_.begin(), pairs_.end(), key,
                             [](const auto& p, std::string_view k) { return p.first < k; });
  if (it == pairs_.end() || it->first != key) return std::nullopt;
  return std::string_view(it->second);
}

// ---- matching ----------------------------------------------------------------

namespace {

std::optional<int64_t> ParseInt(std::string_view s) {
  // strconv.ParseInt(s, 10, 64): optional sign, decimal digits, no spaces.
  if (s.empty()) return std::nullopt;
  std::string_view digits = s;
  bool negative = false;
  if (digits.front() == '+' || digits.front() == '-') {
    negative = digits.front() == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return std::nullopt;
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  const uint64_t limit = negative ? uint64_t{1} << 63 : (uint64_t{1} << 63) - 1;
  if (magnitude > limit) return std::nullopt;
  return negative ? static_cast<int64_t>(0 - magnitude) : static_cast<int64_t>(magnitude);
}

bool HasValue(const std::vector<std::string>& values, std::string_view v) {
  return std::binary_search(values.begin(), values.end(), v,
                            [](std::string_view a, std::string_view b) { return a < b; });
}

}  // namespace

bool Requirement::MatchesValue(std::optional<std::string_view> v) const {
  switch (op) {
    case SelectorOp::kIn:
    case SelectorOp::kEquals:
    case SelectorOp::kDoubleEquals:
      return v && HasValue(values, *v);
    case SelectorOp::kNotIn:
    case SelectorOp::kNotEquals:
      return !v || !HasValue(values, *v);
    case SelectorOp::kExists:
      return v.has_value();
    case SelectorOp::kDoesNotExist:
      return !v.has_value();
    case SelectorOp::kGreaterThan:
    case SelectorOp::kLessThan: {
      if (!v) return false;
      std::optional<int64_t> n = ParseInt(*v);
      if (!n) return false;
      return op == SelectorOp::kGreaterThan ? *n > number : *n < number;
    }
  }
  return false;
}

// ---- printing -----------------------------------------------------------------

std::string Selector::String() const {
  std::string out;
  for (const Requirement& r : requirements_) {
    if (!out.empty()) out += ',';
    if (r.op == SelectorOp::kDoesNotExist) out += '!';
    out += r.key;
    switch (r.op) {
      case SelectorOp::kExists:
      case SelectorOp::kDoesNotExist:
        continue;
      case SelectorOp::kEquals: out += '='; break;
      case SelectorOp::kDoubleEquals: out += "=="; break;
      case SelectorOp::kNotEquals: out += "!="; break;
      case SelectorOp::kIn: out += " in ("; break;
      case SelectorOp::kNotIn: out += " notin ("; break;
      case SelectorOp::kGreaterThan: out += '>'; break;
      case SelectorOp::kLessThan: out += '<'; break;
    }
    for (size_t i = 0; i < r.values.size(); ++i) {
      if (i > 0) out += ',';
      out += r.values[i];
    }
    if (r.op == SelectorOp::kIn || r.op == SelectorOp::kNotIn) out += ')';
  }
  return out;
}

// ---- lexer and parser ---------------------------------------------------------

namespace {

enum class Tok {
  kError,
  kEnd,
  kIdentifier,
  kNot,          // !
  kNotEquals,    // !=
  kOpenPar,      // (
  kClosedPar,    // )
  kComma,        // ,
  kEquals,       // =
  kDoubleEquals, // ==
  kGreater,      // >
  kLess,         // <
  kIn,           // in
  kNotIn,        // notin
};

struct Token {
  Tok tok;
  std::string_view text;
  size_t pos;  // byte offset of the token (of the end, for kEnd)
};

bool IsWhitespace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool IsSpecial(char c) {
  return c == '=' || c == '!' || c == '(' || c == ')' || c == ',' || c == '>' || c == '<';
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}
  Token Next() {
    while (pos_ < s_.size() && IsWhitespace(s_[pos_])) ++pos_;
    const size_t start = pos_;
    if (pos_ == s_.size()) return {Tok::kEnd, {}, start};
    const char c = s_[pos_];
    if (IsSpecial(c)) {
      // The longest symbol wins: "!=" over "!", "==" over "=".
      const char n = pos_ + 1 < s_.size() ? s_[pos_ + 1] : '\0';
      if ((c == '!' || c == '=') && n == '=') {
        pos_ += 2;
        return {c == '!' ? Tok::kNotEquals : Tok::kDoubleEquals, s_.substr(start, 2), start};
      }
      ++pos_;
      Tok t = Tok::kError;
      switch (c) {
        case '!': t = Tok::kNot; break;
        case '(': t = Tok::kOpenPar; break;
        case ')': t = Tok::kClosedPar; break;
        case ',': t = Tok::kComma; break;
        case '=': t = Tok::kEquals; break;
        case '>': t = Tok::kGreater; break;
        case '<': t = Tok::kLess; break;
      }
      return {t, s_.substr(start, 1), start};
    }
    while (pos_ < s_.size() && !IsWhitespace(s_[pos_]) && !IsSpecial(s_[pos_])) ++pos_;
    std::string_view word = s_.substr(start, pos_ - start);
    if (word == "in") return {Tok::kIn, word, start};
    if (word == "notin") return {Tok::kNotIn, word, start};
    return {Tok::kIdentifier, word, start};
  }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

enum class Context { kKeyAndOperator, kValues };

class Parser {
 public:
  explicit Parser(std::string_view s) {
    Lexer lexer(s);
    for (;;) {
      tokens_.push_back(lexer.Next());
      if (tokens_.back().tok == Tok::kEnd) break;
    }
  }

  Status Parse(std::vector<Requirement>* out) {
    for (;;) {
      Token t = Lookahead(Context::kValues);
      if (t.tok == Tok::kEnd) return {};
      if (t.tok != Tok::kIdentifier && t.tok != Tok::kNot) {
        return Error(t, "!, identifier, or 'end of string'");
      }
      Requirement r;
      if (Status s = ParseRequirement(&r); !s.ok()) return s;
      out->push_back(std::move(r));
      t = Consume(Context::kValues);
      if (t.tok == Tok::kEnd) return {};
      if (t.tok != Tok::kComma) return Error(t, "',' or 'end of string'");
      Token after = Lookahead(Context::kValues);
      if (after.tok != Tok::kIdentifier && after.tok != Tok::kNot) {
        return Error(after, "identifier after ','");
      }
    }
  }

 private:
  Token Lookahead(Context ctx) const { return InContext(tokens_[next_], ctx); }
  Token Consume(Context ctx) {
    Token t = tokens_[next_];
    if (t.tok != Tok::kEnd) ++next_;
    return InContext(t, ctx);
  }
  // Where a value is expected, "in" and "notin" are plain identifiers.
  static Token InContext(Token t, Context ctx) {
    if (ctx == Context::kValues && (t.tok == Tok::kIn || t.tok == Tok::kNotIn)) t.tok = Tok::kIdentifier;
    return t;
  }
  static Status Error(const Token& t, std::string_view expected) {
    std::string found = t.tok == Tok::kEnd ? "end of string" : Quote(t.text);
    return {Code::kBadSelector, "at byte " + std::to_string(t.pos) + ": found " + found +
                                    ", expected: " + std::string(expected)};
  }
  static Status At(const Token& t, const Status& s) {
    return {Code::kBadSelector, "at byte " + std::to_string(t.pos) + ": " + s.message()};
  }

  Status ParseRequirement(Requirement* r) {
    // Key, and the operator it implies ("!key", or "key" before ',' / end).
    Token t = Consume(Context::kValues);
    bool negated = false;
    if (t.tok == Tok::kNot) {
      negated = true;
      t = Consume(Context::kValues);
    }
    if (t.tok != Tok::kIdentifier) return Error(t, "identifier");
    if (Status s = ValidateLabelKey(t.text); !s.ok()) return At(t, s);
    r->key = std::string(t.text);
    const Tok next = Lookahead(Context::kValues).tok;
    if (negated) {
      r->op = SelectorOp::kDoesNotExist;
      return {};
    }
    if (next == Tok::kEnd || next == Tok::kComma) {
      r->op = SelectorOp::kExists;
      return {};
    }
    // Operator.
    t = Consume(Context::kKeyAndOperator);
    switch (t.tok) {
      case Tok::kIn: r->op = SelectorOp::kIn; break;
      case Tok::kNotIn: r->op = SelectorOp::kNotIn; break;
      case Tok::kEquals: r->op = SelectorOp::kEquals; break;
      case Tok::kDoubleEquals: r->op = SelectorOp::kDoubleEquals; break;
      case Tok::kNotEquals: r->op = SelectorOp::kNotEquals; break;
      case Tok::kGreater: r->op = SelectorOp::kGreaterThan; break;
      case Tok::kLess: r->op = SelectorOp::kLessThan; break;
      default:
        return Error(t, "in, notin, =, ==, !=, >, <");
    }
    // Values.
    std::vector<Token> values;
    if (r->op == SelectorOp::kIn || r->op == SelectorOp::kNotIn) {
      if (Status s = ParseValues(&values); !s.ok()) return s;
    } else if (Status s = ParseExactValue(&values); !s.ok()) {
      return s;
    }
    if (r->op == SelectorOp::kGreaterThan || r->op == SelectorOp::kLessThan) {
      std::optional<int64_t> n = ParseInt(values.front().text);
      if (!n) {
        return At(values.front(), {Code::kBadSelector,
                                   "for '>' and '<' the value must be an integer, not " +
                                       Quote(values.front().text)});
      }
      r->number = *n;
    }
    for (const Token& v : values) {
      if (Status s = ValidateLabelValue(v.text); !s.ok()) return At(v, s);
      r->values.emplace_back(v.text);
    }
    std::sort(r->values.begin(), r->values.end());
    r->values.erase(std::unique(r->values.begin(), r->values.end()), r->values.end());
    return {};
  }

  // "(" values ")". Empty entries are empty values, as in Kubernetes: "()",
  // "(,a)", "(a,)" and "(a,,b)" all hold "".
  Status ParseValues(std::vector<Token>* out) {
    Token t = Consume(Context::kValues);
    if (t.tok != Tok::kOpenPar) return Error(t, "'('");
    t = Lookahead(Context::kValues);
    if (t.tok == Tok::kClosedPar) {
      Consume(Context::kValues);
      out->push_back(Empty(t));
      return {};
    }
    if (t.tok != Tok::kIdentifier && t.tok != Tok::kComma) {
      return Error(t, "',', ')' or identifier");
    }
    if (Status s = ParseIdentifiersList(out); !s.ok()) return s;
    t = Consume(Context::kValues);
    if (t.tok != Tok::kClosedPar) return Error(t, "')'");
    return {};
  }

  // Stops with ')' as the next token.
  Status ParseIdentifiersList(std::vector<Token>* out) {
    for (;;) {
      Token t = Consume(Context::kValues);
      if (t.tok == Tok::kIdentifier) {
        out->push_back(t);
        Token n = Lookahead(Context::kValues);
        if (n.tok == Tok::kComma) continue;
        if (n.tok == Tok::kClosedPar) return {};
        return Error(n, "',' or ')'");
      }
      if (t.tok != Tok::kComma) return Error(t, "',', or identifier");
      if (out->empty()) out->push_back(Empty(t));  // "(,"
      Token n = Lookahead(Context::kValues);
      if (n.tok == Tok::kClosedPar) {  // ",)"
        out->push_back(Empty(n));
        return {};
      }
      if (n.tok == Tok::kComma) out->push_back(Empty(n));  // ",,"
    }
  }

  static Token Empty(const Token& at) { return {Tok::kIdentifier, {}, at.pos}; }

  // A single value; nothing before ',' or the end is the empty value.
  Status ParseExactValue(std::vector<Token>* out) {
    Token t = Lookahead(Context::kValues);
    if (t.tok == Tok::kEnd || t.tok == Tok::kComma) {
      out->push_back(Empty(t));
      return {};
    }
    t = Consume(Context::kValues);
    if (t.tok != Tok::kIdentifier) return Error(t, "identifier");
    out->push_back(t);
    return {};
  }

  std::vector<Token> tokens_;
  size_t next_ = 0;
};

}  // namespace

Status Selector::Parse(std::string_view text, Selector* out) {
  std::vector<Requirement> requirements;
  if (Status s = Parser(text).Parse(&requirements); !s.ok()) return s;
  // Kubernetes sorts requirements by key (stable for equal keys).
  std::stable_sort(requirements.begin(), requirements.end(),
                   [](const Requirement& a, const Requirement& b) { return a.key < b.key; });
  out->requirements_ = std::move(requirements);
  return {};
}

}  // namespace berth
