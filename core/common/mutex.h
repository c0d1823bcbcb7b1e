// Mutex: a small lock for critical sections of a few hundred nanoseconds.
// It spins briefly before sleeping (futex via std::atomic::wait), so a
// short-held lock is handed over without a syscall, and a waiter never burns
// a core for long. Three states (Drepper, "Futexes Are Tricky"): 0 free,
// 1 locked, 2 locked with possible sleepers. Thread-safe; not recursive.
#pragma once

#include <atomic>

namespace berth {

class Mutex {
 public:
  void lock() noexcept {
    int c = 0;
    if (state_.compare_exchange_strong(c, 1, std::memory_order_acquire)) return;
    for (int i = 0; i < kSpins; ++i) {
      Pause();
      c = 0;
      if (state_.load(std::memory_order_relaxed) == 0 &&
          state_.compare_exchange_weak(c, 1, std::memory_order_acquire)) {
        return;
      }
    }
    c = state_.exchange(2, std::memory_order_acquire);
    while (c != 0) {
      state_.wait(2, std::memory_order_relaxed);
      c = state_.exchange(2, std::memory_order_acquire);
    }
  }
  bool try_lock() noexcept {
    int c = 0;
    return state_.compare_exchange_strong(c, 1, std::memory_order_acquire);
  }
  void unlock() noexcept {
    if (state_.exchange(0, std::memory_order_release) == 2) state_.notify_one();
  }

 private:
  static constexpr int kSpins = 100;  // ~ a few microseconds at most
  static void Pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  std::atomic<int> state_{0};
};

}  // namespace berth
