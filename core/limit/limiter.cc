#include "core/limit/limiter.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <mutex>
#include <string>
#include <utility>

namespace berth {

namespace {

constexpr uint64_t kSlow = ~uint64_t{0};
constexpr int64_t kFastMax = (int64_t{1} << 31) - 1;

uint64_t Pack(int64_t in_use, int64_t free) {
  return (static_cast<uint64_t>(in_use) << 32) | static_cast<uint64_t>(free);
}
int64_t InUseOf(uint64_t v) { return static_cast<int64_t>(v >> 32); }
int64_t FreeOf(uint64_t v) { return static_cast<int64_t>(v & 0xffffffffu); }
// Moves n permits from free to in-use (n > 0) or back (n < 0).
uint64_t Take(uint64_t v, int64_t n) {
  return v + (static_cast<uint64_t>(n) << 32) - static_cast<uint64_t>(n);
}

// A blocking waiter's futex word.
constexpr uint32_t kWaiting = 0;  // queued, spinning
constexpr uint32_t kParked = 1;   // queued, asleep (or about to be): the grant must wake it
constexpr uint32_t kGranted = 2;  // kFifo: the permits are the waiter's; kBarging: woken, try again

// Spins before sleeping: a grant that comes within this long (the releaser
// running on another core) costs neither side a syscall. Short, because
// with more threads than cores the spinner delays the very holder it waits
// for.
// (Measured on 2 cores, 8 threads: 30 to 2000 spins, with or without
// sched_yield rounds, were all within the run-to-run noise; see
// bench/limit_bench.cc.)
constexpr int kSpins = 100;

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Sleeps while *word == val, until `deadline` (steady_clock, which is
// CLOCK_MONOTONIC: the clock FUTEX_WAIT_BITSET measures absolute time on).
// Returns false on timeout.
bool FutexWait(std::atomic<uint32_t>* word, uint32_t val,
               const std::optional<ConcurrencyLimiter::Clock::time_point>& deadline) {
  timespec ts{};
  if (deadline) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        deadline->time_since_epoch())
                        .count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  }
  const long r = syscall(SYS_futex, reinterpret_cast<uint32_t*>(word),
                         FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, val, deadline ? &ts : nullptr,
                         nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(r != 0 && errno == ETIMEDOUT);
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1,
          nullptr, nullptr, 0);
}

// Waits for a blocking waiter's grant: spins, then sleeps. False if the
// deadline passed first (the caller then settles under the lock, where a
// grant racing the deadline is seen).
bool Park(std::atomic<uint32_t>* word,
          const std::optional<ConcurrencyLimiter::Clock::time_point>& deadline) {
  for (int i = 0; i < kSpins; ++i) {
    if (word->load(std::memory_order_acquire) == kGranted) return true;
    Pause();
  }
  uint32_t expected = kWaiting;
  if (!word->compare_exchange_strong(expected, kParked, std::memory_order_acq_rel)) {
    return true;  // granted while we spun
  }
  for (;;) {
    const bool in_time = FutexWait(word, kParked, deadline);
    if (word->load(std::memory_order_acquire) == kGranted) return true;
    if (!in_time) return false;
    // Spurious wake-up or EINTR: sleep again.
  }
}

}  // namespace

// The wake-ups of the blocking waiters one locked section granted, made
// after the lock is dropped so the woken thread does not run into it.
// Declared before the lock in each function, so its destructor runs after
// the unlock. Past kInline sleepers (a release of many permits to many
// small waiters) the rest are woken at once, under the lock. Notifier posts
// are not deferred: a ticket's token is posted by the time anyone can see
// the ticket granted (claim or cancel under the lock), which callers rely on.
class ConcurrencyLimiter::Wakeups {
 public:
  Wakeups() = default;
  Wakeups(const Wakeups&) = delete;
  Wakeups& operator=(const Wakeups&) = delete;
  ~Wakeups() {
    for (int i = 0; i < words_; ++i) FutexWake(word_[i]);
  }
  // The waiter's word is written here, under the lock: from now on the
  // permits are its own. A waiter still spinning sees it and goes; only a
  // sleeping one costs a syscall. It may have returned (a spurious wake-up
  // saw the grant) before the wake below: waking a stale address is
  // harmless, every futex sleeper re-checks its word.
  void Grant(std::atomic<uint32_t>* word) {
    if (word->exchange(kGranted, std::memory_order_acq_rel) != kParked) return;
    if (words_ == kInline) {
      FutexWake(word);
    } else {
      word_[words_++] = word;
    }
  }

 private:
  static constexpr int kInline = 4;
  std::atomic<uint32_t>* word_[kInline];
  int words_ = 0;
};

ConcurrencyLimiter::ConcurrencyLimiter(int64_t capacity, Order order)
    : fast_(capacity <= kFastMax ? Pack(0, capacity) : kSlow),
      order_(order),
      frozen_(capacity > kFastMax),
      capacity_(capacity) {}
ConcurrencyLimiter::~ConcurrencyLimiter() = default;

ConcurrencyLimiter::Fast ConcurrencyLimiter::FastAcquire(int64_t n, int64_t* capacity) {
  uint64_t v = fast_.load(std::memory_order_relaxed);
  for (;;) {
    if (v == kSlow) return Fast::kSlow;
    if (n > FreeOf(v)) {
      *capacity = InUseOf(v) + FreeOf(v);
      return Fast::kFull;
    }
    if (fast_.compare_exchange_weak(v, Take(v, n), std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
      fast_granted_.fetch_add(1, std::memory_order_relaxed);
      return Fast::kGranted;
    }
  }
}

void ConcurrencyLimiter::FreezeLocked() {
  if (frozen_) return;
  in_use_ = InUseOf(fast_.exchange(kSlow, std::memory_order_acq_rel));
  frozen_ = true;
}

void ConcurrencyLimiter::ThawLocked() {
  if (!frozen_ || capacity_ > kFastMax || in_use_ > capacity_) return;
  if (order_ == Order::kFifo && !queue_.empty()) return;
  fast_.store(Pack(in_use_, capacity_ - in_use_), std::memory_order_release);
  frozen_ = false;
}

Status ConcurrencyLimiter::TooLarge(int64_t n, int64_t capacity) const {
  return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                      std::to_string(capacity) + ")"};
}

bool ConcurrencyLimiter::TakeLocked(int64_t n) {
  if (frozen_) {
    if (!FitsLocked(n)) return false;
    in_use_ += n;
    ++granted_;
    return true;
  }
  int64_t capacity;
  return FastAcquire(n, &capacity) == Fast::kGranted;  // never kSlow: only mu_ holders freeze
}

void ConcurrencyLimiter::GrantLocked(Wakeups* wake) {
  if (order_ == Order::kBarging) {
    // O(waiters looked at): from the head, skipping those too large for
    // what is free, until the free permits are spoken for. A sleeper is
    // woken to try again (and counted as served, so one release does not
    // wake everyone); a ticket is granted now.
    int64_t promised = 0;
    for (auto it = queue_.begin(); it != queue_.end();) {
      const int64_t free =
          (frozen_ ? capacity_ - in_use_ : FreeOf(fast_.load(std::memory_order_acquire))) - promised;
      if (free <= 0) break;
      Waiter& w = *it;
      if (w.n > free) {
        ++it;
        continue;
      }
      if (w.word != nullptr) {
        promised += w.n;
        wake->Grant(w.word);  // "try again"; it re-queues itself if it loses
      } else {
        if (!TakeLocked(w.n)) break;  // a lock-free taker beat us to it
        by_ticket_.erase(w.ticket);
        unclaimed_.emplace(w.ticket, w.n);
        w.notifier->Post(w.token);
      }
      waiting_permits_ -= w.n;
      queued_.fetch_sub(1, std::memory_order_relaxed);
      it = queue_.erase(it);
    }
    return;
  }
  while (!queue_.empty() && FitsLocked(queue_.front().n)) {
    Waiter& w = queue_.front();
    in_use_ += w.n;
    waiting_permits_ -= w.n;
    ++granted_;
    if (w.word != nullptr) {
      wake->Grant(w.word);  // the blocked thread removes nothing: it is gone from the queue
    } else {
      by_ticket_.erase(w.ticket);
      unclaimed_.emplace(w.ticket, w.n);
      w.notifier->Post(w.token);
    }
    queue_.pop_front();
  }
}

Status ConcurrencyLimiter::TryAcquireChecked(int64_t n, Refusal* refusal) {
  int64_t capacity = 0;
  switch (FastAcquire(n, &capacity)) {
    case Fast::kGranted:
      *refusal = Refusal::kNone;
      return {};
    case Fast::kFull:
      if (n > capacity) return TooLarge(n, capacity);
      fast_rejected_.fetch_add(1, std::memory_order_relaxed);
      *refusal = Refusal::kAtCapacity;
      return {};
    case Fast::kSlow:
      break;
  }
  std::lock_guard<Mutex> lock(mu_);
  if (n > capacity_) return TooLarge(n, capacity_);
  *refusal = TryAcquireLocked(n);
  return {};
}

Refusal ConcurrencyLimiter::TryAcquire(int64_t n) {
  int64_t capacity = 0;
  switch (FastAcquire(n, &capacity)) {
    case Fast::kGranted:
      return Refusal::kNone;
    case Fast::kFull:
      fast_rejected_.fetch_add(1, std::memory_order_relaxed);
      return Refusal::kAtCapacity;
    case Fast::kSlow:
      break;
  }
  std::lock_guard<Mutex> lock(mu_);
  return TryAcquireLocked(n);
}

Refusal ConcurrencyLimiter::TryAcquireLocked(int64_t n) {
  FreezeLocked();
  Refusal r = Refusal::kNone;
  if (order_ == Order::kFifo && !queue_.empty()) {
    r = Refusal::kWaitersQueued;
  } else if (!FitsLocked(n)) {
    r = Refusal::kAtCapacity;
  } else {
    in_use_ += n;
    ++granted_;
  }
  if (r != Refusal::kNone) ++rejected_;
  ThawLocked();
  return r;
}

Status ConcurrencyLimiter::Acquire(int64_t n, std::optional<Clock::time_point> deadline,
                                   bool* acquired) {
  int64_t capacity = 0;
  switch (FastAcquire(n, &capacity)) {
    case Fast::kGranted:
      *acquired = true;
      return {};
    case Fast::kFull:
      if (n > capacity) return TooLarge(n, capacity);
      break;
    case Fast::kSlow:
      break;
  }
  if (order_ == Order::kBarging) return AcquireBarging(n, deadline, acquired);
  // The futex word lives on this stack frame: a granter writes it under the
  // lock, while the waiter is still queued (so still here).
  std::atomic<uint32_t> word{kWaiting};
  Queue::iterator it;
  {
    std::lock_guard<Mutex> lock(mu_);
    if (n > capacity_) return TooLarge(n, capacity_);
    FreezeLocked();
    if (queue_.empty() && FitsLocked(n)) {
      in_use_ += n;
      ++granted_;
      ThawLocked();
      *acquired = true;
      return {};
    }
    it = queue_.insert(queue_.end(), Waiter{0, n, nullptr, 0, &word});
    waiting_permits_ += n;
  }
  if (Park(&word, deadline)) {
    *acquired = true;
    return {};
  }
  Wakeups wake;
  std::lock_guard<Mutex> lock(mu_);
  if (word.load(std::memory_order_acquire) == kGranted) {  // granted as the deadline passed
    *acquired = true;
    return {};
  }
  waiting_permits_ -= n;
  queue_.erase(it);
  ++timed_out_;
  GrantLocked(&wake);  // those behind it may fit now
  ThawLocked();
  *acquired = false;
  return {};
}

Status ConcurrencyLimiter::AcquireBarging(int64_t n,
                                          const std::optional<Clock::time_point>& deadline,
                                          bool* acquired) {
  std::atomic<uint32_t> word{kWaiting};
  bool first = true;
  for (;;) {
    Queue::iterator it;
    {
      std::lock_guard<Mutex> lock(mu_);
      if (first && n > capacity_) return TooLarge(n, capacity_);
      word.store(kWaiting, std::memory_order_relaxed);
      // Woken and beaten by a barger: back in at the head, ahead of later
      // waiters.
      it = queue_.insert(first ? queue_.end() : queue_.begin(), Waiter{0, n, nullptr, 0, &word});
      waiting_permits_ += n;
      // Announce, then look: a release either sees queued_ (and wakes us,
      // under this lock, so after we are in the queue) or freed its permits
      // before the look below finds them.
      queued_.fetch_add(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (TakeLocked(n)) {
        queue_.erase(it);
        waiting_permits_ -= n;
        queued_.fetch_sub(1, std::memory_order_relaxed);
        *acquired = true;
        return {};
      }
    }
    first = false;
    if (Park(&word, deadline)) {  // woken (and taken out of the queue): try again
      int64_t capacity;
      if (FastAcquire(n, &capacity) == Fast::kGranted) {
        *acquired = true;
        return {};
      }
      continue;
    }
    Wakeups wake;
    std::lock_guard<Mutex> lock(mu_);
    if (word.load(std::memory_order_acquire) == kGranted) {
      // Woken as the deadline passed (and out of the queue): a last try,
      // else the wake-up goes on to whoever else fits.
      if (TakeLocked(n)) {
        *acquired = true;
        return {};
      }
      GrantLocked(&wake);
    } else {
      queue_.erase(it);
      waiting_permits_ -= n;
      queued_.fetch_sub(1, std::memory_order_relaxed);
    }
    ++timed_out_;
    *acquired = false;
    return {};
  }
}

Status ConcurrencyLimiter::Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token,
                                   bool* granted_now, uint64_t* ticket) {
  int64_t capacity = 0;
  switch (FastAcquire(n, &capacity)) {
    case Fast::kGranted:
      *granted_now = true;
      *ticket = 0;
      return {};
    case Fast::kFull:
      if (n > capacity) return TooLarge(n, capacity);
      break;
    case Fast::kSlow:
      break;
  }
  std::lock_guard<Mutex> lock(mu_);
  if (n > capacity_) return TooLarge(n, capacity_);
  if (order_ == Order::kBarging) {
    const uint64_t t = next_ticket_++;
    auto it = queue_.insert(queue_.end(), Waiter{t, n, std::move(notifier), token, nullptr});
    waiting_permits_ += n;
    // Announce, then look again: a release that missed the announcement
    // freed its permits before this look (see AcquireBarging).
    queued_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (TakeLocked(n)) {
      queue_.erase(it);
      waiting_permits_ -= n;
      queued_.fetch_sub(1, std::memory_order_relaxed);
      *granted_now = true;
      *ticket = 0;
      return {};
    }
    by_ticket_.emplace(t, it);
    *granted_now = false;
    *ticket = t;
    return {};
  }
  FreezeLocked();
  if (queue_.empty() && FitsLocked(n)) {
    in_use_ += n;
    ++granted_;
    ThawLocked();
    *granted_now = true;
    *ticket = 0;
    return {};
  }
  const uint64_t t = next_ticket_++;
  auto it = queue_.insert(queue_.end(), Waiter{t, n, std::move(notifier), token, nullptr});
  by_ticket_.emplace(t, it);
  waiting_permits_ += n;
  *granted_now = false;
  *ticket = t;
  return {};
}

bool ConcurrencyLimiter::Claim(uint64_t ticket) {
  std::lock_guard<Mutex> lock(mu_);
  return unclaimed_.erase(ticket) != 0;
}

CancelOutcome ConcurrencyLimiter::Cancel(uint64_t ticket) {
  Wakeups wake;
  std::lock_guard<Mutex> lock(mu_);
  if (auto it = by_ticket_.find(ticket); it != by_ticket_.end()) {
    FreezeLocked();  // kFifo: a queued ticket means frozen already
    waiting_permits_ -= it->second->n;
    if (order_ == Order::kBarging) queued_.fetch_sub(1, std::memory_order_relaxed);
    queue_.erase(it->second);
    by_ticket_.erase(it);
    ++cancelled_;
    GrantLocked(&wake);  // a large waiter leaving the head can unblock smaller ones
    ThawLocked();
    return CancelOutcome::kWasWaiting;
  }
  if (auto it = unclaimed_.find(ticket); it != unclaimed_.end()) {
    FreezeLocked();
    in_use_ -= it->second;
    unclaimed_.erase(it);
    ++cancelled_;
    GrantLocked(&wake);
    ThawLocked();
    return CancelOutcome::kWasGranted;
  }
  return CancelOutcome::kUnknown;
}

Status ConcurrencyLimiter::Release(int64_t n) {
  uint64_t v = fast_.load(std::memory_order_relaxed);
  while (v != kSlow) {
    if (n > InUseOf(v)) {
      return {Code::kInvalidArgument, "releasing " + std::to_string(n) + " permits but only " +
                                          std::to_string(InUseOf(v)) + " are in use"};
    }
    // seq_cst: in kBarging, the load of queued_ below and a waiter's
    // announce-then-look must not both miss (Dekker).
    if (fast_.compare_exchange_weak(v, Take(v, -n), std::memory_order_seq_cst,
                                    std::memory_order_relaxed)) {
      if (order_ == Order::kBarging && queued_.load(std::memory_order_seq_cst) > 0) {
        Wakeups wake;
        std::lock_guard<Mutex> lock(mu_);
        GrantLocked(&wake);
      }
      return {};
    }
  }
  Wakeups wake;
  std::lock_guard<Mutex> lock(mu_);
  FreezeLocked();
  if (n > in_use_) {
    ThawLocked();
    return {Code::kInvalidArgument, "releasing " + std::to_string(n) + " permits but only " +
                                        std::to_string(in_use_) + " are in use"};
  }
  in_use_ -= n;
  GrantLocked(&wake);
  ThawLocked();
  return {};
}

void ConcurrencyLimiter::SetCapacity(int64_t capacity) {
  Wakeups wake;
  std::lock_guard<Mutex> lock(mu_);
  FreezeLocked();
  capacity_ = capacity;
  GrantLocked(&wake);
  ThawLocked();
}

LimiterStats ConcurrencyLimiter::Stats() const {
  std::lock_guard<Mutex> lock(mu_);
  LimiterStats s;
  s.capacity = capacity_;
  s.in_use = frozen_ ? in_use_ : InUseOf(fast_.load(std::memory_order_acquire));
  s.waiting = static_cast<int64_t>(queue_.size());
  s.waiting_permits = waiting_permits_;
  s.granted = granted_ + fast_granted_.load(std::memory_order_relaxed);
  s.rejected = rejected_ + fast_rejected_.load(std::memory_order_relaxed);
  s.timed_out = timed_out_;
  s.cancelled = cancelled_;
  return s;
}

}  // namespace berth
