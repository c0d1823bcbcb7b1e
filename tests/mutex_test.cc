// berth::Mutex: mutual exclusion under oversubscription, and no lost wake-up
// for a waiter that went to sleep, whatever mix of sleepers and spinners.
#include "core/common/mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace berth {
namespace {

TEST(Mutex, ExcludesUnderOversubscription) {
  Mutex mu;
  long counter = 0;  // deliberately not atomic: the lock must protect it
  constexpr int kThreads = 16, kIters = 50000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < kIters; ++i) {
        std::lock_guard<Mutex> l(mu);
        ++counter;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, static_cast<long>(kThreads) * kIters);
}

TEST(Mutex, SleepingWaitersAreWokenOnUnlock) {
  // Holding the lock far longer than the spin phase forces the waiters to
  // sleep; every one of them must get the lock after the release.
  Mutex mu;
  std::atomic<int> acquired{0};
  mu.lock();
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      std::lock_guard<Mutex> l(mu);
      acquired.fetch_add(1);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(acquired.load(), 0);
  mu.unlock();
  for (auto& t : ts) t.join();
  EXPECT_EQ(acquired.load(), 4);
  EXPECT_TRUE(mu.try_lock());
  EXPECT_FALSE(mu.try_lock());
  mu.unlock();
}

TEST(Mutex, NoWaiterIsStrandedWhenLongAndShortHoldsMix) {
  // Long holds (longer than the spin phase) send waiters to sleep while short
  // ones keep others spinning, so unlocks see every mix of sleepers, spinners
  // and woken waiters; a lost wake-up would hang a thread here forever.
  Mutex mu;
  long counter = 0;
  constexpr int kThreads = 8, kIters = 2000;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        std::lock_guard<Mutex> l(mu);
        ++counter;
        if ((i + t) % 97 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, static_cast<long>(kThreads) * kIters);
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
}

}  // namespace
}  // namespace berth
