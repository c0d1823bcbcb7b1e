// Naive models of the limits, the oracles of fuzz/fuzz_capi.
//
// NaiveLimiter: the concurrency limiter as a plain FIFO list, for one caller
// thread (nothing is granted while a blocking acquire waits, so a wait that
// does not fit at once times out). Tickets are numbered as the limiter
// numbers them: one counter for queued asynchronous and blocking waits.
//
// BucketBound: what a token bucket of (rate, burst) may let act, whatever
// its arithmetic: tokens acted on at nondecreasing times never overdraw a
// reference bucket that starts full, holds at most `burst` and refills at
// `rate` (no debt, no reservations). Rate and burst may only be raised here:
// give it the largest the real bucket ever had, which bounds it from above.
//
// External synchronization needed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <utility>
#include <vector>

namespace berth::testing {

class NaiveLimiter {
 public:
  // The values of BERTH_LIMIT_* and BERTH_CANCEL_*.
  enum Refusal { kGranted = 0, kAtCapacity = 1, kWaitersQueued = 2 };
  enum Cancelled { kUnknown = 0, kWasWaiting = 1, kWasGranted = 2 };
  struct Post {
    uint64_t token;
    int notifier;  // the caller's name for the notifier the ticket posts to
  };

  explicit NaiveLimiter(int64_t capacity) : capacity_(capacity) {}

  Refusal TryAcquire(int64_t n) {
    if (!queue_.empty()) return ++rejected_, kWaitersQueued;
    if (n > capacity_ - in_use_) return ++rejected_, kAtCapacity;
    Take(n);
    return kGranted;
  }

  // A blocking acquire while no other thread can release: granted at once,
  // or queued until it times out. A blocked waiter takes no ticket (so no
  // guessed cancel can dequeue it).
  bool AcquireAlone(int64_t n) {
    if (queue_.empty() && n <= capacity_ - in_use_) return Take(n), true;
    ++timed_out_;
    GrantFromHead();
    return false;
  }

  // 0: granted at once; else the queued ticket.
  uint64_t Enqueue(int64_t n, uint64_t token, int notifier) {
    if (queue_.empty() && n <= capacity_ - in_use_) return Take(n), 0;
    const uint64_t t = next_ticket_++;
    queue_.push_back(Waiter{t, n, token, notifier});
    return t;
  }

  bool Claim(uint64_t ticket) { return unclaimed_.erase(ticket) != 0; }

  Cancelled Cancel(uint64_t ticket) {
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->ticket != ticket) continue;
      queue_.erase(it);
      ++cancelled_;
      GrantFromHead();
      return kWasWaiting;
    }
    if (auto it = unclaimed_.find(ticket); it != unclaimed_.end()) {
      in_use_ -= it->second;
      unclaimed_.erase(it);
      ++cancelled_;
      GrantFromHead();
      return kWasGranted;
    }
    return kUnknown;
  }

  bool Release(int64_t n) {
    if (n > in_use_) return false;
    in_use_ -= n;
    GrantFromHead();
    return true;
  }

  void SetCapacity(int64_t capacity) {
    capacity_ = capacity;
    GrantFromHead();
  }

  // The grants' posts since the last call, in order.
  std::vector<Post> TakePosts() { return std::exchange(posts_, {}); }
  bool Queued(uint64_t ticket) const {
    return std::any_of(queue_.begin(), queue_.end(), [&](const Waiter& w) { return w.ticket == ticket; });
  }

  int64_t capacity() const { return capacity_; }
  int64_t in_use() const { return in_use_; }
  int64_t waiting() const { return static_cast<int64_t>(queue_.size()); }
  int64_t waiting_permits() const {
    int64_t n = 0;
    for (const Waiter& w : queue_) n += w.n;
    return n;
  }
  uint64_t granted() const { return granted_; }
  uint64_t rejected() const { return rejected_; }
  uint64_t timed_out() const { return timed_out_; }
  uint64_t cancelled() const { return cancelled_; }

 private:
  struct Waiter {
    uint64_t ticket;
    int64_t n;
    uint64_t token;
    int notifier;
  };

  void Take(int64_t n) {
    in_use_ += n;
    ++granted_;
  }

  void GrantFromHead() {
    while (!queue_.empty() && queue_.front().n <= capacity_ - in_use_) {
      const Waiter w = queue_.front();
      queue_.pop_front();
      Take(w.n);
      unclaimed_.emplace(w.ticket, w.n);
      posts_.push_back(Post{w.token, w.notifier});
    }
  }

  int64_t capacity_;
  int64_t in_use_ = 0;
  std::list<Waiter> queue_;
  std::unordered_map<uint64_t, int64_t> unclaimed_;
  std::vector<Post> posts_;
  uint64_t next_ticket_ = 1;
  uint64_t granted_ = 0, rejected_ = 0, timed_out_ = 0, cancelled_ = 0;
};

class BucketBound {
 public:
  BucketBound(double rate, int64_t burst, int64_t start)
      : rate_(rate), burst_(static_cast<double>(burst)), level_(static_cast<double>(burst)), at_(start) {}

  // From t on the real bucket may have a higher rate or burst.
  void Raise(int64_t t, double rate, int64_t burst) {
    Refill(t);
    rate_ = std::max(rate_, rate);
    burst_ = std::max(burst_, static_cast<double>(burst));
  }

  // k tokens act at t (>= every earlier t). False if that overdraws the
  // reference bucket: more than burst + rate * window over some window. The
  // slack absorbs rounding: times to act are truncated to the nanosecond,
  // and the real bucket's level is a double.
  bool Act(int64_t t, int64_t k) {
    Refill(t);
    level_ -= static_cast<double>(k);
    acted_ += k;
    const double slack = 1e-3 + rate_ * 2e-9 + 1e-9 * static_cast<double>(acted_);
    return level_ >= -slack;
  }

  int64_t acted() const { return acted_; }

 private:
  void Refill(int64_t t) {
    if (t > at_) level_ = std::min(burst_, level_ + rate_ * static_cast<double>(t - at_) * 1e-9);
    at_ = std::max(at_, t);
  }

  double rate_, burst_, level_;
  int64_t at_;
  int64_t acted_ = 0;
};

}  // namespace berth::testing
