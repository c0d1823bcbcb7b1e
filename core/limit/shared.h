// SharedLimiter: a concurrency limiter that lives in a named POSIX
// shared-memory region, so every worker process of a host that opens the
// same name obeys one capacity, whichever worker takes the request.
//
// Crash safety is the point, and liveness comes from the kernel, not from
// pids. Every process that opens the region takes one of its slots by
// holding a POSIX record lock on the slot's byte of the region file; the
// kernel drops that lock when the process dies (SIGKILL included) or closes
// its last handle. A slot whose lock nobody holds belongs to a dead process:
// its permits are reclaimed and its waiters dropped. Pids are never used,
// not even to tell a forked child from its parent, so this is right across pid namespaces (containers of one pod sharing
// /dev/shm), after pid reuse (pid 1 after every container restart) and
// without /proc. Each new occupant of a slot bumps the slot's epoch, so a
// record left by the slot's previous process is never mistaken for the new
// one's. The region's lock names its owner by slot and epoch, so a process
// that dies holding it wedges nobody: a waiter finds the owner's slot
// unlocked, takes the lock over and recounts.
//
// Permits belong to processes: a process releases what it acquired through
// any of its handles; closing its last handle on the region gives back what
// it still holds. A forked child is a new process with no permits and no
// waits: it takes a slot of its own on first use of an inherited handle.
//
// Trust: a region that another user owns or that group or others may write
// is refused (BAD_REGION), as is one whose header, layout or checksums do
// not match. The counters that decide grants (capacity, in-use, each slot's
// permits, each waiter) carry check words verified on every call, so a
// region overwritten with other bytes is refused, never read as "unlimited".
// No wait on the region's lock is unbounded (kLockPatience).
//
// Waiters queue FIFO in the region (dead waiters are skipped) and sleep on a
// process-shared futex; they wake at least every 50 ms to look for dead
// holders.
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

inline constexpr int kSharedProcesses = 256;  // processes with the region open at once
inline constexpr int kSharedWaiters = 256;    // threads waiting at once, all processes
inline constexpr size_t kMaxSharedNameLen = 200;
// How long a call waits for the region's lock while its owner is alive
// before failing with kBadRegion (the owner is stopped, or the region was
// written by someone else).
inline constexpr std::chrono::milliseconds kLockPatience{2000};

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
  // this layout, belongs to another user or is writable by group or others;
  // kInvalidName for a name outside [A-Za-z0-9._-]{1,200}; kInternal if
  // kSharedProcesses processes have it open already.
  static Status Open(std::string_view name, int64_t capacity, bool create,
                     MiUnique<SharedLimiter>* out);
  static Status Unlink(std::string_view name);
  // Unmaps. The process's last handle on the region also gives back the
  // permits the process still holds and leaves its slot.
  ~SharedLimiter();
  SharedLimiter(const SharedLimiter&) = delete;
  SharedLimiter& operator=(const SharedLimiter&) = delete;

  // As ConcurrencyLimiter, permits counted per process. Every call can fail
  // with kBadRegion (damaged region, or its lock held too long).
  Status TryAcquire(int64_t n, Refusal* refusal);
  Status Acquire(int64_t n, std::optional<Clock::time_point> deadline, bool* acquired);
  // Asynchronous acquire for event loops, as ConcurrencyLimiter::Enqueue:
  // grants at once when it can, else queues a ticket. A background thread
  // of this handle (started on first need) waits in the region for the
  // tickets in order and posts each grant's token to its notifier; the
  // caller then claims or cancels it. Cancelling the ticket being waited
  // for interrupts that wait; whatever was granted to a cancelled ticket
  // goes back. Tickets belong to the process that made them: a forked
  // child starts with none (its Claim/Cancel of the parent's tickets answer
  // false / kUnknown) and its own thread when it needs one.
  Status Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token, bool* granted_now,
                 uint64_t* ticket);
  bool Claim(uint64_t ticket);
  CancelOutcome Cancel(uint64_t ticket);

  // kInvalidArgument if this process holds fewer than n.
  Status Release(int64_t n);
  Status SetCapacity(int64_t capacity);
  // Reclaims dead processes' permits first, and checks the whole region.
  Status Stats(SharedLimiterStats* out);

  // Where things are in the region, for tests and the region fuzzer that
  // damage it on purpose.
  struct Layout {
    size_t size;        // bytes of the region
    size_t lock_owner;  // offset of the lock's owner word (uint64)
    size_t capacity;    // offset of the capacity (int64)
    size_t in_use;      // offset of in-use (int64)
    size_t slots;       // offset of the first slot
    size_t slot_size;   // bytes per slot; a slot starts with its epoch (uint32)
    size_t ready;       // offset of the ready flag (uint32): the header ends here
    size_t waiters;     // offset of the first waiter
    size_t waiter_size; // bytes per waiter; a waiter starts with its ticket (uint64)
  };
  static Layout LayoutForTesting();

  struct Region;      // the shared layout (shared.cc)
  struct Attachment;  // this process's slot in one region (shared.cc)
  struct Private {};
  SharedLimiter(Private, Region* region, size_t size, Attachment* att, std::string path);

 private:
  class Session;  // identity + the region's lock + checks, for one call
  Status AcquireUntil(int64_t n, std::optional<Clock::time_point> deadline,
                      const std::atomic<bool>* cancel, bool* acquired);
  void WakeWaiters();  // wakes every waiter of the region (to see a cancel)

  struct AsyncWaiter {
    uint64_t ticket;
    int64_t n;
    std::shared_ptr<Notifier> notifier;
    uint64_t token;
  };
  // The handle's asynchronous tickets in one process; the thread serves them
  // in order. A forked child replaces it with its own (see Local()).
  struct Async {
    explicit Async(uint32_t owner) : process(owner) {}
    const uint32_t process;  // see SelfProcess() in shared.cc
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
  // This process's Async. In a forked child the parent's is left untouched
  // (its lock may be held by a thread that does not exist here, its thread
  // does not exist here) and a new one takes its place.
  Async& Local();
  void AsyncLoop(Async& a);

  Region* region_;
  size_t size_;
  Attachment* att_;
  std::string path_;  // "/berth.<name>", for messages
  std::atomic<Async*> async_;
};

}  // namespace berth
