// fork while other threads are inside Berth calls (berth.h, "fork"): the
// child never hangs, never sees a lock held by a thread that does not exist
// in it, and gets BERTH_ERR_FORKED from the handles whose state is the
// parent's; selectors, buffers and shared limiters work in it; handles it
// makes itself work normally.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "capi/berth.h"

namespace {

using Clock = std::chrono::steady_clock;

// Every handle type, with 4 threads per type hammering it in the parent.
struct World {
  berth_engine* engine = nullptr;
  berth_cache* cache = nullptr;
  berth_selector* selector = nullptr;
  berth_limiter* limiter = nullptr;
  berth_notifier* notifier = nullptr;
  berth_bucket* bucket = nullptr;
  berth_shared_limiter* shared = nullptr;
  berth_buffer* buffer = nullptr;  // a selector's string, made before the forks
  std::string shared_name = "capi-fork-" + std::to_string(getpid());
};

// What a child does with the handles it inherited, then with its own.
// Returns 0 or the number of the step that went wrong.
int Child(World& w) {
  int step = 0;
  auto expect = [&](berth_status got, berth_status want) {
    ++step;
    return got == want;
  };
  int flag = 0;
  berth_pool_key key{};
  // The parent's state: refused, at once.
  if (!expect(berth_pool_add(&flag, w.engine, "p", 1, "ns", 2, "k", 1, "n", 1, 1), BERTH_ERR_FORKED)) return step;
  if (!expect(berth_pool_pop_spread(&key, w.engine, "p", 1), BERTH_ERR_FORKED)) return step;
  if (!expect(berth_cache_upsert(&flag, w.cache, "ns", 2, "o", 1, 1, nullptr, 0, nullptr, 0), BERTH_ERR_FORKED)) return step;
  if (!expect(berth_limiter_try_acquire(&flag, w.limiter, 1), BERTH_ERR_FORKED)) return step;
  if (!expect(berth_bucket_allow(&flag, w.bucket, 1, BERTH_NOW), BERTH_ERR_FORKED)) return step;
  int fd = -1;
  if (!expect(berth_notifier_fd(&fd, w.notifier), BERTH_ERR_FORKED)) return step;
  // Immutable: usable.
  berth_label label{"app", 3, "web", 3};
  if (!expect(berth_selector_matches(&flag, w.selector, &label, 1), BERTH_OK) || flag != 1) return step;
  const uint8_t* data = nullptr;
  size_t size = 0;
  if (!expect(berth_buffer_data(&data, &size, w.buffer), BERTH_OK) || size == 0) return step;
  // The shared limiter: this process holds nothing of the parent's.
  if (!expect(berth_shared_limiter_release(w.shared, 1), BERTH_ERR_INVALID_ARGUMENT)) return step;
  int refusal = -1;
  if (!expect(berth_shared_limiter_try_acquire(&refusal, w.shared, 1), BERTH_OK)) return step;
  if (refusal == BERTH_LIMIT_GRANTED && !expect(berth_shared_limiter_release(w.shared, 1), BERTH_OK)) return step;
  // Handles of its own work.
  berth_engine* mine = nullptr;
  berth_limiter* lim = nullptr;
  berth_notifier* ntf = nullptr;
  if (!expect(berth_engine_new(&mine), BERTH_OK)) return step;
  if (!expect(berth_pool_add(&flag, mine, "p", 1, "ns", 2, "k", 1, "n", 1, 1), BERTH_OK)) return step;
  if (!expect(berth_pool_pop_spread(&key, mine, "p", 1), BERTH_OK)) return step;
  if (!expect(berth_limiter_new(&lim, 1), BERTH_OK)) return step;
  if (!expect(berth_notifier_new(&ntf), BERTH_OK)) return step;
  int now = 0;
  uint64_t ticket = 0;
  if (!expect(berth_limiter_acquire_async(&now, &ticket, lim, 1, ntf, 7), BERTH_OK) || now != 1) return step;
  if (!expect(berth_limiter_release(lim, 1), BERTH_OK)) return step;
  // Closing: the parent's objects are ended here without being touched.
  if (!expect(berth_engine_free(mine), BERTH_OK)) return step;
  if (!expect(berth_limiter_free(lim), BERTH_OK)) return step;
  if (!expect(berth_notifier_free(ntf), BERTH_OK)) return step;
  if (!expect(berth_engine_free(w.engine), BERTH_OK)) return step;
  if (!expect(berth_engine_free(w.engine), BERTH_ERR_BAD_HANDLE)) return step;  // ended once
  if (!expect(berth_cache_free(w.cache), BERTH_OK)) return step;
  if (!expect(berth_limiter_free(w.limiter), BERTH_OK)) return step;
  if (!expect(berth_notifier_free(w.notifier), BERTH_OK)) return step;
  if (!expect(berth_bucket_free(w.bucket), BERTH_OK)) return step;
  if (!expect(berth_selector_free(w.selector), BERTH_OK)) return step;
  if (!expect(berth_buffer_free(w.buffer), BERTH_OK)) return step;
  if (!expect(berth_shared_limiter_close(w.shared), BERTH_OK)) return step;
  return 0;
}

TEST(CApiFork, TwoHundredForksWhileFourThreadsPerHandleTypeAreInsideCalls) {
  World w;
  ASSERT_EQ(berth_engine_new(&w.engine), BERTH_OK);
  ASSERT_EQ(berth_cache_new(&w.cache, nullptr), BERTH_OK);
  ASSERT_EQ(berth_selector_parse(&w.selector, "app in (web,api)", 16), BERTH_OK);
  ASSERT_EQ(berth_selector_string(&w.buffer, w.selector), BERTH_OK);
  ASSERT_EQ(berth_limiter_new(&w.limiter, 2), BERTH_OK);
  ASSERT_EQ(berth_notifier_new(&w.notifier), BERTH_OK);
  ASSERT_EQ(berth_bucket_new(&w.bucket, 1e9, 1000), BERTH_OK);
  ASSERT_EQ(berth_shared_limiter_open(&w.shared, w.shared_name.data(), w.shared_name.size(), 2, 1), BERTH_OK);
  int flag = 0;
  for (int i = 0; i < 64; ++i) {
    const std::string k = "k" + std::to_string(i);
    ASSERT_EQ(berth_pool_add(&flag, w.engine, "p", 1, "ns", 2, k.data(), k.size(), "n", 1, 1), BERTH_OK);
  }

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  std::vector<std::thread> threads;
  auto hammer = [&](auto body) {
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, body, t] {
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          body(t, n++);
        }
        calls.fetch_add(n);
      });
    }
  };
  hammer([&](int, uint64_t) {  // pools: pop and re-add (the pool's mutex, the registry)
    berth_pool_key key{};
    int f = 0;
    if (berth_pool_pop_spread(&key, w.engine, "p", 1) == BERTH_OK) {
      berth_pool_add(&f, w.engine, "p", 1, key.namespace_, key.namespace_len, key.name, key.name_len,
                     key.node, key.node_len, 1);
    }
  });
  hammer([&](int t, uint64_t n) {  // cache: writers under its lock
    const std::string name = "o" + std::to_string(t) + "-" + std::to_string(n % 32);
    berth_label l{"app", 3, "web", 3};
    int f = 0;
    if (n % 3 == 2) {
      berth_cache_delete(&f, w.cache, "ns", 2, name.data(), name.size(), 0);
    } else {
      berth_cache_upsert(&f, w.cache, "ns", 2, name.data(), name.size(), n + 1, &l, 1, nullptr, 0);
    }
  });
  hammer([&](int, uint64_t) {  // selectors and buffers
    berth_label l{"app", 3, "api", 3};
    int m = 0;
    berth_selector_matches(&m, w.selector, &l, 1);
    berth_buffer* b = nullptr;
    if (berth_selector_string(&b, w.selector) == BERTH_OK) berth_buffer_free(b);
  });
  hammer([&](int t, uint64_t) {  // limiter: blocking and asynchronous waits, a notifier
    if (t < 2) {
      if (berth_limiter_acquire(w.limiter, 1, 1'000'000) == BERTH_OK) berth_limiter_release(w.limiter, 1);
    } else {
      int now = 0;
      uint64_t ticket = 0;
      if (berth_limiter_acquire_async(&now, &ticket, w.limiter, 1, w.notifier, 1) != BERTH_OK) return;
      if (now == 1) {
        berth_limiter_release(w.limiter, 1);
      } else {
        int outcome = 0;
        berth_limiter_cancel(&outcome, w.limiter, ticket);
      }
      uint64_t tokens[8];
      size_t got = 0;
      berth_notifier_drain(&got, w.notifier, tokens, 8);
    }
  });
  hammer([&](int, uint64_t) {  // bucket
    int ok = 0;
    berth_bucket_allow(&ok, w.bucket, 1, BERTH_NOW);
  });
  hammer([&](int t, uint64_t) {  // shared limiter: in the region's lock, and waiting in it
    if (t < 2) {
      int r = 0;
      if (berth_shared_limiter_try_acquire(&r, w.shared, 1) == BERTH_OK && r == BERTH_LIMIT_GRANTED) {
        berth_shared_limiter_release(w.shared, 1);
      }
    } else if (berth_shared_limiter_acquire(w.shared, 1, 1'000'000) == BERTH_OK) {
      berth_shared_limiter_release(w.shared, 1);
    }
  });

  constexpr int kForks = 200;
  Clock::duration slowest{};
  int hung = 0, failed = 0;
  for (int i = 0; i < kForks; ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(500 + (i % 7) * 300));
    const auto start = Clock::now();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) _exit(Child(w));
    // A hang is what this test is for; 10 s tells one from a slow machine.
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && Clock::now() - start < std::chrono::seconds(10)) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (done == 0) {
      // Where it hangs, if gdb is here to say.
      const std::string bt = "gdb -p " + std::to_string(pid) +
                             " -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^#' | head -40";
      if (std::system(bt.c_str()) != 0) std::printf("(no gdb to show where child %d hangs)\n", pid);
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++hung;
      continue;
    }
    slowest = std::max(slowest, Clock::now() - start);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
      ADD_FAILURE() << "fork " << i << ": child "
                    << (WIFEXITED(status) ? "failed at step " + std::to_string(WEXITSTATUS(status))
                                          : "died of signal " + std::to_string(WTERMSIG(status)));
    }
  }
  stop.store(true);
  berth_limiter_set_capacity(w.limiter, 1000);  // nobody stays blocked
  for (auto& t : threads) t.join();
  EXPECT_EQ(hung, 0);
  EXPECT_EQ(failed, 0);
  std::printf("[ fork ] %d forks while 24 threads made %llu calls; slowest child %.1f ms\n", kForks,
              static_cast<unsigned long long>(calls.load()),
              std::chrono::duration<double, std::milli>(slowest).count());
  // The parent's handles are untouched by the children's frees.
  berth_pool_key key{};
  EXPECT_EQ(berth_pool_pop_spread(&key, w.engine, "p", 1), BERTH_OK);
  berth_shared_limiter_stats st{};
  ASSERT_EQ(berth_shared_limiter_get_stats(&st, w.shared), BERTH_OK);
  EXPECT_EQ(st.in_use, 0);
  EXPECT_EQ(berth_engine_free(w.engine), BERTH_OK);
  EXPECT_EQ(berth_cache_free(w.cache), BERTH_OK);
  EXPECT_EQ(berth_limiter_free(w.limiter), BERTH_OK);
  EXPECT_EQ(berth_notifier_free(w.notifier), BERTH_OK);
  EXPECT_EQ(berth_bucket_free(w.bucket), BERTH_OK);
  EXPECT_EQ(berth_selector_free(w.selector), BERTH_OK);
  EXPECT_EQ(berth_buffer_free(w.buffer), BERTH_OK);
  EXPECT_EQ(berth_shared_limiter_close(w.shared), BERTH_OK);
  berth_shared_limiter_unlink(w.shared_name.data(), w.shared_name.size());
}

}  // namespace
