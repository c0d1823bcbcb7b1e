// Memory goes back to the OS when a pool is removed, a cache is emptied or
// a cache is freed: the process's resident set returns to within 10% of
// what it was before the pool or cache was filled, at 1M keys and objects.
// Through the C ABI only, as a binding sees it.
//
// Each test takes its baseline after one small round of the same work, so
// what Berth sets up once per process and thread (its arenas, the thread's
// heaps, the handle table) is in the baseline, and the check is about the
// memory of the 1M keys or objects. Nothing here waits for a timer: Berth
// returns the memory before the call returns, or (memory allocated by
// another thread) at that thread's next call, which the test makes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "berth_generated.h"
#include "capi/berth.h"
#include "tests/support/capi_helpers.h"

namespace {

using berth::testing::LastError;

constexpr size_t kKeys = 1'000'000;
constexpr size_t kWarmUp = 20'000;
const std::string kPool = "default/warm-pool";

// Resident set size in MiB, from /proc/self/statm.
double RssMiB() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long pages = 0, resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// Skips in builds where freed memory is not Berth's to return.
class MemoryReturn : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef BERTH_SYSTEM_ALLOCATOR
    // Sanitizer builds: the sanitizer's allocator keeps freed memory (ASan
    // in its quarantine), and Berth's release is a no-op there, since
    // trimming the system malloc would be trimming the host's allocator.
    GTEST_SKIP() << "system allocator (sanitizer build): freed memory is the sanitizer's to keep";
#endif
    if (RssMiB() < 0) GTEST_SKIP() << "no /proc/self/statm";
  }
};

void FillPool(berth_engine* e, size_t n) {
  char name[32], node[32];
  for (size_t i = 0; i < n; ++i) {
    const int name_len = std::snprintf(name, sizeof name, "sandbox-%08zu", i);
    const int node_len = std::snprintf(node, sizeof node, "gke-pool-node-%zu", i % 100);
    ASSERT_EQ(berth_pool_add(nullptr, e, kPool.data(), kPool.size(), "default", 7, name,
                             name_len, node, node_len, 1),
              BERTH_OK)
        << LastError();
  }
}

// n objects "obj-00000000".. with two labels and the payload (200 bytes
// unless given; the test's own buffer is made before its baseline: glibc
// keeps a freed 1 MiB block for itself once it has freed one).
void FillCache(berth_cache* c, size_t n, std::string_view payload = std::string(200, 'p')) {
  const berth_label labels[] = {{"app", 3, "web", 3}, {"tier", 4, "backend", 7}};
  char name[32];
  for (size_t i = 0; i < n; ++i) {
    const int name_len = std::snprintf(name, sizeof name, "obj-%08zu", i);
    ASSERT_EQ(berth_cache_upsert(nullptr, c, "default", 7, name, name_len, i + 1, labels, 2,
                                 reinterpret_cast<const uint8_t*>(payload.data()),
                                 payload.size()),
              BERTH_OK)
        << LastError();
  }
}

void DeleteFromCache(berth_cache* c, size_t n) {
  char name[32];
  for (size_t i = 0; i < n; ++i) {
    const int name_len = std::snprintf(name, sizeof name, "obj-%08zu", i);
    ASSERT_EQ(berth_cache_delete(nullptr, c, "default", 7, name, name_len, 0), BERTH_OK)
        << LastError();
  }
}

// Fills and drops `warm_up` once, so what Berth sets up once per process
// and thread is in the baseline; then fills `n`, drops it, and checks that
// the fill took 100+ MiB and that RSS came back to within 10% of the
// baseline. The figures are printed, so a run shows where memory went.
void CheckMemoryReturns(const char* what, size_t warm_up, size_t n,
                        const std::function<void(size_t)>& fill,
                        const std::function<void(size_t)>& drop) {
  fill(warm_up);
  drop(warm_up);
  const double baseline = RssMiB();
  fill(n);
  const double filled = RssMiB();
  drop(n);
  const double after = RssMiB();
  std::printf("%s: baseline %.1f MiB, filled %.1f MiB, after %.1f MiB\n", what, baseline, filled,
              after);
  EXPECT_GT(filled, baseline + 100) << what;
  EXPECT_LE(after, baseline * 1.10) << what;
}

TEST_F(MemoryReturn, RemovePool_Of1MKeys_ReturnsItsMemoryToTheOS) {
  berth_engine* e = nullptr;
  ASSERT_EQ(berth_engine_new(&e), BERTH_OK);
  CheckMemoryReturns("remove_pool", kWarmUp, kKeys, [&](size_t n) { FillPool(e, n); },
                     [&](size_t) {
                       int removed = 0;
                       ASSERT_EQ(berth_pool_remove_pool(&removed, e, kPool.data(), kPool.size()),
                                 BERTH_OK);
                       EXPECT_EQ(removed, 1);
                     });
  berth_engine_free(e);
}

// Runs jobs one at a time on a thread that lives as long as it does.
class Worker {
 public:
  Worker() : thread_([this] { Loop(); }) {}
  ~Worker() {
    Run(nullptr);
    thread_.join();
  }
  // Runs `job` on the worker and waits for it; null ends the worker.
  void Run(std::function<void()> job) {
    std::unique_lock lock(mu_);
    job_ = std::move(job);
    pending_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !pending_; });
  }

 private:
  void Loop() {
    for (;;) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return pending_; });
      const bool stop = !job_;
      if (!stop) job_();
      pending_ = false;
      cv_.notify_all();
      if (stop) return;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> job_;
  bool pending_ = false;
  std::thread thread_;
};

TEST_F(MemoryReturn, RemovePool_FilledByAnotherThread_ReturnsAtThatThreadsNextCall) {
  berth_engine* e = nullptr;
  ASSERT_EQ(berth_engine_new(&e), BERTH_OK);
  // The filler stays alive and idle, as a worker thread does: mimalloc gives
  // the blocks a thread allocated back to that thread's heap when another
  // thread frees them, and only that thread can collect them. Berth has it
  // do so at its next call into Berth.
  Worker filler;
  CheckMemoryReturns(
      "remove_pool from another thread", kWarmUp, kKeys,
      [&](size_t n) { filler.Run([&] { FillPool(e, n); }); },
      [&](size_t) {
        ASSERT_EQ(berth_pool_remove_pool(nullptr, e, kPool.data(), kPool.size()), BERTH_OK);
        filler.Run([&] {  // any call will do
          EXPECT_EQ(berth_pool_remove(nullptr, e, kPool.data(), kPool.size(), "", 0, "absent", 6),
                    BERTH_OK);
        });
      });
  berth_engine_free(e);
}

TEST_F(MemoryReturn, CacheDeleteAll_Of1MObjects_ReturnsTheirMemoryToTheOS) {
  // Tombstones are state the cache keeps (about 170 bytes each): a small
  // limit keeps them out of the figure. The default 100000 would be ~17 MiB.
  berth_cache_options options{};
  options.tombstone_limit = 1000;
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, &options), BERTH_OK);
  CheckMemoryReturns("delete every object", kWarmUp, kKeys, [&](size_t n) { FillCache(c, n); },
                     [&](size_t n) {
                       DeleteFromCache(c, n);
                       berth_cache_stats stats{};
                       ASSERT_EQ(berth_cache_get_stats(&stats, c), BERTH_OK);
                       EXPECT_EQ(stats.objects, 0u);
                     });
  berth_cache_free(c);
}

TEST_F(MemoryReturn, CacheDeleteAll_OfAFewLargeObjects_ReturnsTheirMemoryToTheOS) {
  // A small index, but 256 MiB of payloads (each a large block of its own
  // in mimalloc).
  const std::string payload(size_t{1} << 20, 'p');
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
  CheckMemoryReturns(
      "delete every large object", 32, 256, [&](size_t n) { FillCache(c, n, payload); },
      [&](size_t n) { DeleteFromCache(c, n); });
  berth_cache_free(c);
}

TEST_F(MemoryReturn, CacheReplaceWithNothing_Of1MObjects_ReturnsTheirMemoryToTheOS) {
  // A relist at a resourceVersion above every object's, listing nothing.
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Object>> none;
  fbb.Finish(berth::fb::CreateObjectListDirect(fbb, 2 * kKeys, &none), BERTH_FB_OBJECT_LIST_ID);
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
  CheckMemoryReturns("replace with an empty list", kWarmUp, kKeys,
                     [&](size_t n) { FillCache(c, n); },
                     [&](size_t) {
                       ASSERT_EQ(berth_cache_replace(c, fbb.GetBufferPointer(), fbb.GetSize()),
                                 BERTH_OK)
                           << LastError();
                     });
  berth_cache_free(c);
}

TEST_F(MemoryReturn, CacheFree_Of1MObjectsAndTombstones_ReturnsItsMemoryToTheOS) {
  berth_cache* c = nullptr;
  CheckMemoryReturns(
      "cache_free", kWarmUp, kKeys,
      [&](size_t n) {
        ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
        FillCache(c, n);
        DeleteFromCache(c, n / 10);  // tombstones too (the default limit keeps them all)
      },
      [&](size_t) { ASSERT_EQ(berth_cache_free(c), BERTH_OK); });
}

}  // namespace
