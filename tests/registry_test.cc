// PoolRegistry under concurrency: independent pools, removal racing with use,
// and many threads adding/popping one pool with nothing lost or duplicated.
#include "core/pool/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace berth {
namespace {

TEST(PoolRegistry, WithCreatesOnlyWhenAsked) {
  PoolRegistry r;
  bool called = false;
  EXPECT_FALSE(r.With("p", false, [&](WarmPool&) { called = true; }));
  EXPECT_FALSE(called);
  EXPECT_TRUE(r.With("p", true, [&](WarmPool& p) { p.Add({"ns", "a", "n", true}); }));
  uint64_t keys = 0;
  EXPECT_TRUE(r.With("p", false, [&](WarmPool& p) { keys = p.Stats().keys; }));
  EXPECT_EQ(keys, 1u);
  EXPECT_TRUE(r.Remove("p"));
  EXPECT_FALSE(r.Remove("p"));
  EXPECT_FALSE(r.With("p", false, [&](WarmPool&) {}));
}

// Threads add unique keys, pop, and sometimes put back; at the end the pool is
// drained. Every key must come out exactly once.
TEST(PoolRegistryStress, ConcurrentAddPopPutBackLosesAndDuplicatesNothing) {
  PoolRegistry r;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 40000;
  std::vector<std::vector<std::string>> popped(kThreads);
  std::atomic<uint64_t> last_token{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::string node = "node-" + std::to_string(i % 37);
        r.With("pool", true, [&](WarmPool& p) { p.Add({"ns", name, node, i % 3 != 0}); });
        if (i % 2 == 1) {
          HandOut h;
          bool got = false;
          r.With("pool", true, [&](WarmPool& p) {
            got = (i % 4 == 1) ? p.PopSpread(&h) : p.PopFifo(&h);
            if (got) last_token = h.token;  // under the pool lock: exact
          });
          if (!got) continue;
          bool restored = false;
          if (i % 10 == 3) {  // the claim failed: return it
            r.With("pool", true, [&](WarmPool& p) {
              restored = p.PutBack(h.ns.view(), h.name.view(), h.token);
              // Only a hand-out that fell out of the window may be refused
              // (a preempted thread can see thousands of hand-outs pass).
              if (!restored) EXPECT_GE(last_token.load(), h.token + kPutBackWindow);
            });
          }
          if (!restored) popped[t].emplace_back(h.name.view());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  std::multiset<std::string> all;
  for (auto& v : popped) all.insert(v.begin(), v.end());
  r.With("pool", false, [&](WarmPool& p) {
    HandOut h;
    while (p.PopSpread(&h)) all.emplace(h.name.view());
    EXPECT_EQ(p.Stats().keys, 0u);
    EXPECT_EQ(p.Stats().nodes, 0u);
  });
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<std::string> unique(all.begin(), all.end());
  EXPECT_EQ(unique.size(), all.size()) << "a key was handed out twice";
}

TEST(PoolRegistryStress, AddRacingWithRemovePoolIsNeverLostSilently) {
  // An add that returns must be visible until a RemovePool completes after
  // it: an add must never land in a pool that was already removed.
  PoolRegistry r;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> started{0}, completed{0};
  std::thread remover([&] {
    while (!stop.load()) {
      started.fetch_add(1);
      r.Remove("p");
      completed.fetch_add(1);
      // Pauses leave windows with no removal in flight, so some adds are
      // checked however the threads get scheduled.
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  });
  int checked = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string name = "k" + std::to_string(i);
    const uint64_t done_before = completed.load();
    r.With("p", true, [&](WarmPool& p) { p.Add({"ns", name, "n", true}); });
    bool present = false;
    r.With("p", false, [&](WarmPool& p) {
      p.ForEachKey([&](const KeyInfo& k) { present |= k.name == name; });
    });
    if (started.load() == done_before) {  // no removal overlapped the add or the check
      ++checked;
      ASSERT_TRUE(present) << "add of " << name << " was lost";
    }
  }
  stop = true;
  remover.join();
  EXPECT_GT(checked, 0);
}

TEST(PoolRegistryStress, PoolsAreIndependent) {
  PoolRegistry r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string pool = "pool-" + std::to_string(t);
      for (int i = 0; i < 20000; ++i) {
        r.With(pool, true, [&](WarmPool& p) { p.Add({"ns", std::to_string(i), "n" + std::to_string(i % 5), true}); });
      }
      for (int i = 0; i < 10000; ++i) {
        HandOut h;
        r.With(pool, false, [&](WarmPool& p) { ASSERT_TRUE(p.PopSpread(&h)); });
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    uint64_t keys = 0;
    r.With("pool-" + std::to_string(t), false, [&](WarmPool& p) { keys = p.Stats().keys; });
    EXPECT_EQ(keys, 10000u);
  }
}

}  // namespace
}  // namespace berth
