// TokenBucket: a token-bucket rate limiter with the semantics of
// golang.org/x/time/rate: tokens refill continuously at `rate` per second up
// to `burst`; allow(n) takes n tokens now or refuses; reserve(n) takes them
// now even if that leaves the bucket in debt and says how long the caller
// must wait before acting (Berth never sleeps); cancelling a reservation
// before its time gives back the tokens nobody reserved after it. Rate and
// burst change at run time, keeping the tokens accrued so far.
//
// Time is passed in (monotonic nanoseconds), so behaviour is exact and
// testable; the C ABI fills in the current time when asked to.
// Thread-safe; every operation is O(1) under one lock.
#pragma once

#include <cstdint>
#include <limits>
#include <mutex>

namespace berth {

inline constexpr double kInfiniteRate = std::numeric_limits<double>::infinity();

struct Reservation {
  bool ok = false;         // false: n > burst, nothing was taken
  int64_t tokens = 0;      // tokens taken
  int64_t time_to_act = 0; // ns: when the caller may act
  double rate = 0;         // the rate when reserved
};

struct BucketStats {
  double rate = 0;
  int64_t burst = 0;
  double tokens = 0;  // at the time asked; negative while reservations owe
};

class TokenBucket {
 public:
  // rate > 0 (kInfiniteRate: no limit), burst >= 1; validated by the caller.
  TokenBucket(double rate, int64_t burst);

  bool Allow(int64_t n, int64_t now);
  Reservation Reserve(int64_t n, int64_t now);
  void Cancel(const Reservation& r, int64_t now);
  void SetRate(double rate, int64_t now);
  void SetBurst(int64_t burst, int64_t now);
  BucketStats Stats(int64_t now) const;

 private:
  // Tokens at `now` (not stored); x/time/rate's advance().
  double TokensAt(int64_t now, int64_t* effective_now) const;
  // No time, no tokens, even at an infinite rate (0 * inf is NaN, and a NaN
  // level would allow everything from then on).
  static double TokensFor(double rate, int64_t ns) {
    return ns <= 0 ? 0.0 : static_cast<double>(ns) * 1e-9 * rate;
  }
  static int64_t NanosFor(double rate, double tokens);

  mutable std::mutex mu_;
  double rate_;
  int64_t burst_;
  double tokens_;
  int64_t last_ = 0;        // when tokens_ was last brought up to date
  bool started_ = false;    // before the first use the bucket is full
  int64_t last_event_ = 0;  // the latest time_to_act handed out
};

}  // namespace berth
