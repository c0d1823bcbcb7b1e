// The arithmetic follows golang.org/x/time/rate (Limiter.advance, reserveN,
// Reservation.CancelAt, SetLimitAt, SetBurstAt), with time as int64 ns.
#include "core/limit/bucket.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace berth {

namespace {

constexpr double kTwoTo63 = 9223372036854775808.0;  // INT64_MAX + 1, exact as a double

}  // namespace

TokenBucket::TokenBucket(double rate, int64_t burst)
    : rate_(rate), burst_(burst), tokens_(static_cast<double>(burst)) {}

Status TokenBucket::CheckRate(double rate) {
  if (!(rate > 0)) return {Code::kInvalidArgument, "rate must be > 0 (or INFINITY)"};
  int64_t ns;
  if (!NanosFor(rate, 1, &ns)) {
    char text[160];
    std::snprintf(text, sizeof text,
                  "rate (%g) is too slow: one token would take more than INT64_MAX ns (~292 years)",
                  rate);
    return {Code::kInvalidArgument, text};
  }
  return {};
}

bool TokenBucket::NanosFor(double rate, double tokens, int64_t* ns) {
  if (!(tokens > 0)) {
    *ns = 0;
    return true;
  }
  const double d = tokens / rate * 1e9;
  if (!(d < kTwoTo63)) return false;
  *ns = static_cast<int64_t>(d);  // truncated, as x/time/rate's durationFromTokens
  return true;
}

double TokenBucket::TokensBetween(double rate, int64_t from, int64_t to) {
  if (to <= from) return 0;  // also keeps 0 * inf (no time at an infinite rate) out
  // The span as unsigned: exact for any two int64 times.
  const uint64_t ns = static_cast<uint64_t>(to) - static_cast<uint64_t>(from);
  return static_cast<double>(ns) * 1e-9 * rate;
}

double TokenBucket::TokensAt(int64_t now, int64_t* effective_now) const {
  *effective_now = now;
  if (!started_) return static_cast<double>(burst_);  // full until first used
  // Time never runs backwards here: an earlier `now` accrues nothing.
  const double tokens = tokens_ + TokensBetween(rate_, last_, now);
  return std::min(tokens, static_cast<double>(burst_));
}

Reservation TokenBucket::Reserve(int64_t n, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  Reservation r;
  r.rate = rate_;
  if (n > burst_) {  // could never be satisfied
    r.refusal = ReserveRefusal::kOverBurst;
    return r;
  }
  if (std::isinf(rate_)) {
    r.ok = true;
    r.tokens = n;
    r.time_to_act = now;
    return r;
  }
  int64_t t;
  double tokens = TokensAt(now, &t) - static_cast<double>(n);
  int64_t wait;
  if (!NanosFor(rate_, -tokens, &wait) || __builtin_add_overflow(t, wait, &r.time_to_act)) {
    // Due after INT64_MAX ns: wrapping it would hand out a time in the past
    // that no cancel matches. Nothing is taken.
    r.time_to_act = 0;
    r.refusal = ReserveRefusal::kTooLate;
    return r;
  }
  r.ok = true;
  r.tokens = n;
  started_ = true;
  last_ = t;
  tokens_ = tokens;
  last_event_ = r.time_to_act;
  return r;
}

bool TokenBucket::Allow(int64_t n, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n > burst_) return false;
  if (std::isinf(rate_)) return true;
  int64_t t;
  const double tokens = TokensAt(now, &t) - static_cast<double>(n);
  if (tokens < 0) return false;  // allow never goes into debt
  started_ = true;
  last_ = t;
  tokens_ = tokens;
  last_event_ = t;
  return true;
}

void TokenBucket::Cancel(const Reservation& r, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  // A reservation made at an infinite rate took no tokens: none come back.
  if (!r.ok || std::isinf(rate_) || std::isinf(r.rate) || r.tokens == 0 || r.time_to_act < now) {
    return;
  }
  // Tokens reserved after this reservation (between its time to act and the
  // latest one) stay taken; the rest come back, and never more than it took.
  // x/time/rate has no such clamp, and its latest time can fall behind a
  // pending reservation (cancelling the latest rolls it back; a reserve after
  // a partial give-back sets an earlier one): then a cancel gave back more
  // than its reservation took, and more than burst tokens passed at one
  // instant (found by tests/stress_test.cc).
  const double restore =
      static_cast<double>(r.tokens) - TokensBetween(r.rate, r.time_to_act, last_event_);
  if (restore <= 0) return;
  int64_t t;
  double tokens = TokensAt(now, &t) + restore;
  tokens = std::min(tokens, static_cast<double>(burst_));
  started_ = true;
  last_ = t;
  tokens_ = tokens;
  if (r.time_to_act == last_event_) {
    // Roll the latest time back by this reservation's span unless that
    // passes `now` (a span or a result outside int64 surely would).
    int64_t span, prev;
    if (NanosFor(r.rate, static_cast<double>(r.tokens), &span) &&
        !__builtin_sub_overflow(r.time_to_act, span, &prev) && prev >= t) {
      last_event_ = prev;
    }
  }
}

void TokenBucket::SetRate(double rate, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t t;
  const double tokens = TokensAt(now, &t);
  started_ = true;
  last_ = t;
  tokens_ = tokens;
  rate_ = rate;
}

void TokenBucket::SetBurst(int64_t burst, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t t;
  const double tokens = TokensAt(now, &t);
  started_ = true;
  last_ = t;
  tokens_ = std::min(tokens, static_cast<double>(burst));
  burst_ = burst;
}

BucketStats TokenBucket::Stats(int64_t now) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t t;
  return {rate_, burst_, TokensAt(now, &t)};
}

}  // namespace berth
