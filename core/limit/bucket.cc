// The arithmetic follows golang.org/x/time/rate (Limiter.advance, reserveN,
// Reservation.CancelAt, SetLimitAt, SetBurstAt), with time as int64 ns.
#include "core/limit/bucket.h"

#include <algorithm>
#include <cmath>

namespace berth {

TokenBucket::TokenBucket(double rate, int64_t burst)
    : rate_(rate), burst_(burst), tokens_(static_cast<double>(burst)) {}

int64_t TokenBucket::NanosFor(double rate, double tokens) {
  if (tokens <= 0) return 0;
  const double ns = tokens / rate * 1e9;
  if (ns >= static_cast<double>(INT64_MAX)) return INT64_MAX;
  return static_cast<int64_t>(ns);  // truncated, as x/time/rate's durationFromTokens
}

double TokenBucket::TokensAt(int64_t now, int64_t* effective_now) const {
  if (!started_) {  // full until first used
    *effective_now = now;
    return static_cast<double>(burst_);
  }
  const int64_t last = std::min(last_, now);  // time never runs backwards here
  const double tokens = tokens_ + TokensFor(rate_, now - last);
  *effective_now = now;
  return std::min(tokens, static_cast<double>(burst_));
}

Reservation TokenBucket::Reserve(int64_t n, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  Reservation r;
  r.rate = rate_;
  if (n > burst_) return r;  // could never be satisfied
  if (std::isinf(rate_)) {
    r.ok = true;
    r.tokens = n;
    r.time_to_act = now;
    return r;
  }
  int64_t t;
  double tokens = TokensAt(now, &t) - static_cast<double>(n);
  const int64_t wait = tokens < 0 ? NanosFor(rate_, -tokens) : 0;
  r.ok = true;
  r.tokens = n;
  // A wait past the end of the clock (a tiny rate) is "never", not an overflow.
  if (__builtin_add_overflow(t, wait, &r.time_to_act)) r.time_to_act = INT64_MAX;
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
  // A reservation made at an infinite rate took nothing (x/time/rate checks
  // the reservation's rate too).
  if (!r.ok || std::isinf(rate_) || std::isinf(r.rate) || r.tokens == 0 || r.time_to_act < now) return;
  // Tokens reserved after this reservation (between its time to act and the
  // latest one) stay taken; the rest come back, and never more than it took.
  // x/time/rate has no such clamp, and its latest time can fall behind a
  // pending reservation (cancelling the latest rolls it back; a reserve after
  // a partial give-back sets an earlier one): then a cancel gave back more
  // than its reservation took, and more than burst tokens passed at one
  // instant (found by tests/stress_test.cc).
  const double restore =
      static_cast<double>(r.tokens) -
      TokensFor(r.rate, std::max<int64_t>(0, last_event_ - r.time_to_act));
  if (restore <= 0) return;
  int64_t t;
  double tokens = TokensAt(now, &t) + restore;
  tokens = std::min(tokens, static_cast<double>(burst_));
  started_ = true;
  last_ = t;
  tokens_ = tokens;
  if (r.time_to_act == last_event_) {
    const int64_t prev = r.time_to_act - NanosFor(r.rate, static_cast<double>(r.tokens));
    if (prev >= t) last_event_ = prev;
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
