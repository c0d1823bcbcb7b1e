// ConcurrencyLimiter: weighted permits with a capacity that can change at
// run time, FIFO among waiters (a large request at the head is not starved
// by small ones behind it: nobody barges past a waiter), and three ways to
// wait: blocking with a deadline, or asynchronously with completion posted
// to a Notifier (for event loops). Lowering the capacity never revokes held
// permits; new grants wait until in-use drops below it.
//
// An asynchronous wait is a ticket: waiting -> granted (token posted) ->
// claimed by the caller (who then holds the permits), or cancelled at any
// point before the claim: a waiting ticket leaves the queue, a granted one
// gives its permits back. So a cancelled waiter never leaks or double-frees
// a permit, whichever way the race with the grant goes.
//
// Two regimes. While nobody waits (and the capacity fits in 31 bits),
// in-use and free permits live packed in one atomic word: try_acquire,
// release and an acquire that fits are one CAS each, no lock. The first
// waiter freezes the word (it then reads kSlow) and the mutex owns the
// counts until the queue empties again, so a fast-path taker can never
// slip past a waiter. A grant is a direct hand-off: the releaser adds the
// permits to the waiter's account under the lock and flips the waiter's
// own futex word; the woken thread returns without retaking the lock, and
// the wake-up syscall (and the notifier post) happen after the lock is
// dropped, and only for a waiter that really sleeps.
//
// Order::kBarging drops FIFO for throughput: an acquirer takes permits that
// fit even while others wait (try_acquire never refuses with
// kWaitersQueued), a release wakes sleepers that could fit and they try
// again, keeping their place ahead of later waiters, and may lose to a
// barger and sleep again. Asynchronous tickets are still granted from the
// queue by the release (a ticket needs a grant to post). No starvation
// guarantee: a large request can wait while small ones keep the permits
// busy. It exists because strict FIFO with more threads than cores pays for
// a descheduled head waiter: its grant waits for it to be scheduled, and
// everyone queued behind waits with it, where a barging semaphore lets the
// threads that are running carry on (see bench/limit_bench.cc). kFifo is the
// default and what capi/berth.h documents.
//
// Thread-safe; the fast path is O(1) lock-free, every other operation holds
// one short lock (O(1) plus the grants it makes).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <unordered_map>

#include "core/common/alloc.h"
#include "core/common/mutex.h"
#include "core/common/status.h"
#include "core/limit/notifier.h"

namespace berth {

struct LimiterStats {
  int64_t capacity = 0;
  int64_t in_use = 0;
  int64_t waiting = 0;          // waiters queued
  int64_t waiting_permits = 0;  // permits they ask for
  uint64_t granted = 0;         // acquisitions that succeeded
  uint64_t rejected = 0;        // try_acquire refusals
  uint64_t timed_out = 0;       // blocking waits that hit their deadline
  uint64_t cancelled = 0;       // asynchronous waits cancelled
};

enum class Refusal { kNone, kAtCapacity, kWaitersQueued };

// How waiters are served; see ConcurrencyLimiter.
enum class Order { kFifo, kBarging };

enum class CancelOutcome {
  kWasWaiting,   // left the queue; nothing was held
  kWasGranted,   // granted but not claimed: its permits went back
  kUnknown,      // no such ticket (claimed, cancelled, or never issued)
};

class ConcurrencyLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ConcurrencyLimiter(int64_t capacity, Order order = Order::kFifo);
  ~ConcurrencyLimiter();

  // Arguments are validated by the caller: n >= 1, capacity >= 1.

  // Immediate answer; refuses while waiters are queued (kFifo).
  Refusal TryAcquire(int64_t n);
  // The same, with n > capacity (read under the same lock) an error.
  Status TryAcquireChecked(int64_t n, Refusal* refusal);
  // Blocks until granted (true) or the deadline passes (false, nothing held).
  // n > capacity is kInvalidArgument (it could never be granted).
  Status Acquire(int64_t n, std::optional<Clock::time_point> deadline, bool* acquired);
  // Asynchronous: grants at once (*granted_now, no ticket) when it can,
  // else queues a ticket whose grant posts `token` to `notifier`.
  // The limiter keeps the notifier alive while a ticket may post to it.
  Status Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token, bool* granted_now,
                 uint64_t* ticket);
  // The caller takes over a granted ticket's permits. False if the ticket
  // is not granted (still waiting, unknown).
  bool Claim(uint64_t ticket);
  CancelOutcome Cancel(uint64_t ticket);
  // kInvalidArgument if n exceeds the permits in use.
  Status Release(int64_t n);
  void SetCapacity(int64_t capacity);
  LimiterStats Stats() const;

 private:
  struct Waiter {
    uint64_t ticket;                     // async waiters; 0 for blocking ones
    int64_t n;
    std::shared_ptr<Notifier> notifier;  // async waiters
    uint64_t token;
    std::atomic<uint32_t>* word;         // blocking waiters: their futex word
  };
  using Queue = std::list<Waiter, Alloc<Waiter>>;
  class Wakeups;  // grants to signal once the lock is dropped

  // What the lock-free path found.
  enum class Fast { kGranted, kFull, kSlow };
  // Takes n permits from the packed word if it is live and they fit; on
  // kFull *capacity is the capacity the word implied.
  Fast FastAcquire(int64_t n, int64_t* capacity);

  // Under mu_: take the counts over from the packed word (Freeze), and hand
  // them back to it when nobody waits and they fit in it (Thaw).
  void FreezeLocked();
  void ThawLocked();
  // kFifo: grants from the head while permits allow. kBarging: grants
  // asynchronous tickets and wakes sleepers, from the head, as far as the
  // free permits reach.
  void GrantLocked(Wakeups* wake);
  // kBarging: takes n permits now if they fit (whichever regime holds the
  // counts). Under mu_.
  bool TakeLocked(int64_t n);
  Status AcquireBarging(int64_t n, const std::optional<Clock::time_point>& deadline,
                        bool* acquired);
  Refusal TryAcquireLocked(int64_t n);
  Status TooLarge(int64_t n, int64_t capacity) const;
  // Written so it cannot overflow: capacity_ - in_use_ is negative after a
  // lowering, never out of range.
  bool FitsLocked(int64_t n) const { return n <= capacity_ - in_use_; }

  // The packed word: in-use in the high 32 bits, free permits in the low
  // 32 (both < 2^31, so their sum, the capacity, is too), or kSlow while
  // the mutex owns the counts. The counters the fast path bumps sit next to
  // it (the line is already exclusive after the CAS). No alignas: handles
  // live on mimalloc, which aligns to 16.
  std::atomic<uint64_t> fast_;
  std::atomic<uint64_t> fast_granted_{0}, fast_rejected_{0};

  // kBarging: waiters queued, read without the lock by releases on the
  // lock-free path (which must wake them).
  std::atomic<int64_t> queued_{0};

  const Order order_;
  mutable Mutex mu_;
  bool frozen_ = false;    // fast_ == kSlow; in_use_ is authoritative
  int64_t capacity_;       // always authoritative (changed under mu_, frozen)
  int64_t in_use_ = 0;     // valid while frozen_
  int64_t waiting_permits_ = 0;
  Queue queue_;
  std::unordered_map<uint64_t, Queue::iterator, std::hash<uint64_t>, std::equal_to<>,
                     Alloc<std::pair<const uint64_t, Queue::iterator>>>
      by_ticket_;  // queued async waiters
  std::unordered_map<uint64_t, int64_t, std::hash<uint64_t>, std::equal_to<>,
                     Alloc<std::pair<const uint64_t, int64_t>>>
      unclaimed_;  // granted async tickets -> permits
  uint64_t next_ticket_ = 1;
  uint64_t granted_ = 0, rejected_ = 0, timed_out_ = 0, cancelled_ = 0;
};

}  // namespace berth
