// Mutex: a small lock for critical sections of a few hundred nanoseconds.
//
// The protocol is Go's sync.Mutex in normal mode: one word holds the locked
// bit, a "woken" bit and the count of sleeping waiters, and sleepers wait on
// a semaphore (a futex word of wake tokens). A waiter spins briefly before
// sleeping, so a short-held lock changes hands without a syscall. Unlock
// wakes a sleeper only when there is one, the lock was not taken again, and
// no waiter is already awake (spinning, or woken and not yet running): the
// woken bit says so. Waking one sleeper per unlock instead (glibc's and
// Drepper's three-state mutexes, or a plain sleeper count) costs a futex
// syscall of a microsecond or more on every release of a lock held for a few
// hundred nanoseconds once more threads than cores contend, and the woken
// thread mostly finds the lock taken again: a convoy that collapsed 8 threads
// to a quarter of one thread's throughput on 2 cores. Not FIFO, on purpose:
// a running thread that takes the lock again keeps its caches warm, while
// handing it to a descheduled waiter (a ticket lock) stalls everyone; a
// waiter can in principle lose many times in a row.
// Thread-safe; not recursive.
#pragma once

#include <atomic>
#include <cstdint>

namespace berth {

class Mutex {
 public:
  void lock() noexcept {
    uint32_t expected = 0;
    if (!state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
      LockSlow();
    }
  }
  bool try_lock() noexcept {
    uint32_t old = state_.load(std::memory_order_relaxed);
    while ((old & kLocked) == 0) {
      if (state_.compare_exchange_weak(old, old | kLocked, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  void unlock() noexcept {
    const uint32_t now = state_.fetch_sub(kLocked, std::memory_order_release) - kLocked;
    if (now != 0) UnlockSlow(now);
  }

 private:
  static constexpr uint32_t kLocked = 1;
  static constexpr uint32_t kWoken = 2;  // a waiter is awake: unlock need not wake one
  static constexpr int kWaiterShift = 2;  // sleepers counted from this bit up
  static constexpr uint32_t kWaiter = uint32_t{1} << kWaiterShift;
  // Spinning: up to kSpinRounds rounds of kPausesPerRound PAUSEs, checking
  // the lock between rounds. A PAUSE is 10-150 cycles on bare metal and
  // ~45 ns on the 2-core VM the benchmarks ran on, so a waiter spins a few
  // to ~15 us before it sleeps.
  static constexpr int kSpinRounds = 10;
  static constexpr int kPausesPerRound = 30;

  void LockSlow() noexcept {
    bool awoke = false;  // this thread was woken (and so owns kWoken)
    int rounds = 0;
    uint32_t old = state_.load(std::memory_order_relaxed);
    for (;;) {
      if ((old & kLocked) != 0 && rounds < kSpinRounds) {
        // Spinning: claim kWoken so the holder's unlock wakes nobody.
        if (!awoke && (old & kWoken) == 0 && (old >> kWaiterShift) != 0 &&
            state_.compare_exchange_weak(old, old | kWoken, std::memory_order_relaxed)) {
          awoke = true;
        }
        for (int i = 0; i < kPausesPerRound; ++i) Pause();
        ++rounds;
        old = state_.load(std::memory_order_relaxed);
        continue;
      }
      uint32_t next = old | kLocked;
      if ((old & kLocked) != 0) next += kWaiter;  // will sleep
      if (awoke) next &= ~kWoken;  // acquiring or sleeping: no longer awake
      if (state_.compare_exchange_weak(old, next, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        if ((old & kLocked) == 0) return;
        SemAcquire();  // the unlock that wakes us moved us out of the count
        awoke = true;
        rounds = 0;
        old = state_.load(std::memory_order_relaxed);
      }
      // On failure the CAS reloaded `old`.
    }
  }

  void UnlockSlow(uint32_t old) noexcept {
    for (;;) {
      // Nobody sleeps, or the lock was taken again (its holder's unlock will
      // see to the sleepers), or a waiter is awake already.
      if ((old >> kWaiterShift) == 0 || (old & (kLocked | kWoken)) != 0) return;
      if (state_.compare_exchange_weak(old, (old - kWaiter) | kWoken, std::memory_order_relaxed)) {
        SemRelease();
        return;
      }
    }
  }

  // A counting semaphore on a futex word: a release is a token that the next
  // acquire consumes, so a wake-up can be neither lost nor spurious.
  void SemAcquire() noexcept {
    for (;;) {
      uint32_t v = sema_.load(std::memory_order_relaxed);
      while (v != 0) {
        if (sema_.compare_exchange_weak(v, v - 1, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
          return;
        }
      }
      sema_.wait(0, std::memory_order_relaxed);
    }
  }
  void SemRelease() noexcept {
    sema_.fetch_add(1, std::memory_order_release);
    sema_.notify_one();
  }

  static void Pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  std::atomic<uint32_t> state_{0};  // kLocked | kWoken | sleepers << kWaiterShift
  std::atomic<uint32_t> sema_{0};   // wake tokens not yet taken
};

}  // namespace berth
