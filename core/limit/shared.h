// SharedLimiter: a concurrency limiter that lives in a named POSIX
// shared-memory region, so every worker process of a host that opens the
// same name obeys one capacity, whichever worker takes the request.
//
// Crash safety is the point. The region's lock is robust (a process that
// dies holding it does not wedge the others), and permits are recorded per
// holder process (pid + start time, so a reused pid is not mistaken for the
// dead one): in-use is the sum of the holders' permits, and a holder found
// dead (gone, a zombie, or a different process under its pid) has its
// permits reclaimed. Every update is a single store to a holder or waiter
// slot, so whatever a dying process leaves behind is consistent.
//
// Waiters queue FIFO in the region (dead waiters are skipped) and sleep on
// a process-shared futex; they wake at least every 50 ms to look for dead
// holders. A region whose magic, layout version or size does not match is
// refused, never reinterpreted.
//
// Thread-safe and process-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include "core/common/alloc.h"
#include "core/common/status.h"
#include "core/limit/limiter.h"
#include "core/limit/notifier.h"

namespace berth {

inline constexpr int kSharedHolders = 128;  // processes holding permits at once
inline constexpr int kSharedWaiters = 256;  // threads waiting at once, all processes
inline constexpr size_t kMaxSharedNameLen = 200;

struct SharedLimiterStats {
  int64_t capacity = 0;
  int64_t in_use = 0;
  int64_t waiting = 0;
  int64_t holders = 0;      // processes holding permits now
  uint64_t granted = 0;
  uint64_t rejected = 0;
  uint64_t timed_out = 0;
  uint64_t reclaimed = 0;   // permits taken back from dead processes
};

class SharedLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Opens (or, with `create`, creates with `capacity`) the region
  // "/berth.<name>". An existing region keeps its capacity. kNotFound if it
  // does not exist and !create; kBadRegion if it is not a Berth limiter of
  // this layout; kInvalidName for a name outside [A-Za-z0-9._-]{1,200}.
  static Status Open(std::string_view name, int64_t capacity, bool create,
                     MiUnique<SharedLimiter>* out);
  static Status Unlink(std::string_view name);
  ~SharedLimiter();  // unmaps; permits this process holds stay held until
                     // released or until the process exits (then reclaimed)
  SharedLimiter(const SharedLimiter&) = delete;
  SharedLimiter& operator=(const SharedLimiter&) = delete;

  // As ConcurrencyLimiter, permits counted per process.
  Status TryAcquire(int64_t n, Refusal* refusal);
  Status Acquire(int64_t n, std::optional<Clock::time_point> deadline, bool* acquired);
  // Asynchronous acquire for event loops, as ConcurrencyLimiter::Enqueue:
  // grants at once when it can, else queues a ticket. A background thread
  // of this handle (started on first need) waits in the region for the
  // tickets in order and posts each grant's token to its notifier; the
  // caller then claims or cancels it. Cancelling the ticket being waited
  // for interrupts that wait; whatever was granted to a cancelled ticket
  // goes back.
  Status Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token, bool* granted_now,
                 uint64_t* ticket);
  bool Claim(uint64_t ticket);
  CancelOutcome Cancel(uint64_t ticket);

  // kInvalidArgument if this process holds fewer than n.
  Status Release(int64_t n);
  Status SetCapacity(int64_t capacity);
  SharedLimiterStats Stats();

  struct Region;  // the shared layout (shared.cc)
  struct Private {};
  SharedLimiter(Private, Region* region, size_t size) : region_(region), size_(size) {}  // use Open

 private:
  Status AcquireUntil(int64_t n, std::optional<Clock::time_point> deadline,
                      const std::atomic<bool>* cancel, bool* acquired);
  void WakeWaiters();  // wakes every waiter of the region (to see a cancel)
  int64_t Capacity();  // without Stats()'s reclaim scan (a /proc read per holder)
  void AsyncLoop();

  struct AsyncWaiter {
    uint64_t ticket;
    int64_t n;
    std::shared_ptr<Notifier> notifier;
    uint64_t token;
  };
  // The handle's asynchronous tickets; the thread serves them in order.
  struct Async {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<AsyncWaiter, Alloc<AsyncWaiter>> queue;
    std::unordered_map<uint64_t, int64_t, std::hash<uint64_t>, std::equal_to<>,
                       Alloc<std::pair<const uint64_t, int64_t>>>
        unclaimed;
    uint64_t current = 0;                // the ticket the thread waits for
    std::atomic<bool> cancel_current{false};
    bool stop = false;
    uint64_t next_ticket = 1;
    std::thread thread;
  };

  Region* region_;
  size_t size_;
  std::atomic<int> slot_hint_{-1};  // where this process's holder slot was last seen
  Async async_;
};

}  // namespace berth
