// TokenBucket: a token-bucket rate limiter with the semantics of
// golang.org/x/time/rate: tokens refill continuously at `rate` per second up
// to `burst`; allow(n) takes n tokens now or refuses; reserve(n) takes them
// now even if that leaves the bucket in debt and says how long the caller
// must wait before acting (Berth never sleeps); cancelling a reservation
// before its time gives back the tokens nobody reserved after it. Rate and
// burst change at run time, keeping the tokens accrued so far.
//
// Time is passed in (monotonic nanoseconds), so behaviour is exact and
// testable; the C ABI fills in the current time when asked to. Any int64
// time is accepted and no arithmetic on times overflows: spans between two
// times are taken as unsigned, and a reservation due after INT64_MAX ns is
// refused rather than wrapped.
// Thread-safe; every operation is O(1) under one lock.
#pragma once

#include <cstdint>
#include <limits>
#include <mutex>

#include "core/common/status.h"

namespace berth {

inline constexpr double kInfiniteRate = std::numeric_limits<double>::infinity();

enum class ReserveRefusal {
  kNone,
  kOverBurst,  // n > burst: could never be satisfied
  kTooLate,    // the wait or the time to act would not fit in int64 ns
};

struct Reservation {
  bool ok = false;         // false: nothing was taken; `refusal` says why
  ReserveRefusal refusal = ReserveRefusal::kNone;
  int64_t tokens = 0;      // tokens taken
  int64_t time_to_act = 0; // ns: when the caller may act, >= the time reserved
  double rate = 0;         // the rate when reserved
};

struct BucketStats {
  double rate = 0;
  int64_t burst = 0;
  double tokens = 0;  // at the time asked; negative while reservations owe
};

class TokenBucket {
 public:
  // rate passes CheckRate, burst >= 1; validated by the caller (any rate > 0
  // is safe here, but a slower one refuses every reservation in debt).
  TokenBucket(double rate, int64_t burst);

  // kInvalidArgument unless rate > 0 (kInfiniteRate: no limit) and one
  // token accrues within INT64_MAX ns (~292 years: rate > ~1.08e-10/s).
  static Status CheckRate(double rate);

  bool Allow(int64_t n, int64_t now);
  Reservation Reserve(int64_t n, int64_t now);
  void Cancel(const Reservation& r, int64_t now);
  void SetRate(double rate, int64_t now);
  void SetBurst(int64_t burst, int64_t now);
  BucketStats Stats(int64_t now) const;

 private:
  // Tokens at `now` (not stored); x/time/rate's advance().
  double TokensAt(int64_t now, int64_t* effective_now) const;
  // Tokens accrued at `rate` from `from` to `to` (0 unless to > from).
  static double TokensBetween(double rate, int64_t from, int64_t to);
  // The ns `tokens` take to accrue at `rate`, truncated as x/time/rate's
  // durationFromTokens; false if that does not fit in int64.
  static bool NanosFor(double rate, double tokens, int64_t* ns);

  mutable std::mutex mu_;
  double rate_;
  int64_t burst_;
  double tokens_;
  int64_t last_ = 0;        // when tokens_ was last brought up to date
  bool started_ = false;    // before the first use the bucket is full
  int64_t last_event_ = 0;  // the latest time_to_act handed out
};

}  // namespace berth
