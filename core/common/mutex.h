// Mutex: a small lock for critical sections of a few hundred nanoseconds.
//
// It spins briefly before sleeping (futex via std::atomic::wait), so a
// short-held lock changes hands without a syscall, and a waiter never burns a
// core for long. Sleepers are counted, so unlock makes a wake-up syscall only
// when a thread really sleeps, and a woken thread spins again before it
// sleeps again (glibc's and Drepper's three-state mutexes instead assume
// sleepers after every contended acquire, and pay a futex wake per unlock
// while two threads hammer one lock). Not FIFO: with more threads than cores,
// handing the lock to a descheduled waiter (a ticket lock) stalls everyone.
// Thread-safe; not recursive.
#pragma once

#include <atomic>
#include <cstdint>

namespace berth {

class Mutex {
 public:
  void lock() noexcept {
    if (TryAcquire()) return;
    for (;;) {
      for (int i = 0; i < kSpins; ++i) {
        Pause();
        if (state_.load(std::memory_order_relaxed) == 0 && TryAcquire()) return;
      }
      // Announce before the last try, so an unlock after this point sees us
      // (seq_cst on both sides: either it sees the count or we see it free).
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if (TryAcquire()) {
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        return;
      }
      state_.wait(1, std::memory_order_seq_cst);  // sleeps only while held
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  bool try_lock() noexcept { return TryAcquire(); }
  void unlock() noexcept {
    state_.store(0, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) state_.notify_one();
  }

 private:
  static constexpr int kSpins = 300;  // about a microsecond
  bool TryAcquire() noexcept {
    uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_seq_cst);
  }
  static void Pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  std::atomic<uint32_t> state_{0};  // 0 free, 1 held
  std::atomic<uint32_t> sleepers_{0};
};

}  // namespace berth
