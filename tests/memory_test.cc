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

// The figures, printed so a failure (or a run) shows where memory went.
struct Rss {
  double baseline = 0, filled = 0, after = 0;
  void Check(const char* what) const {
    std::printf("%s: baseline %.1f MiB, filled %.1f MiB, after %.1f MiB\n", what, baseline,
                filled, after);
    // The fill must have been big enough for the check to mean something.
    EXPECT_GT(filled, baseline + 100) << what;
    EXPECT_LE(after, baseline * 1.10) << what;
  }
};

TEST_F(MemoryReturn, RemovePool_Of1MKeys_ReturnsItsMemoryToTheOS) {
  berth_engine* e = nullptr;
  ASSERT_EQ(berth_engine_new(&e), BERTH_OK);
  FillPool(e, kWarmUp);
  ASSERT_EQ(berth_pool_remove_pool(nullptr, e, kPool.data(), kPool.size()), BERTH_OK);

  Rss rss;
  rss.baseline = RssMiB();
  FillPool(e, kKeys);
  rss.filled = RssMiB();
  int removed = 0;
  ASSERT_EQ(berth_pool_remove_pool(&removed, e, kPool.data(), kPool.size()), BERTH_OK);
  EXPECT_EQ(removed, 1);
  rss.after = RssMiB();
  rss.Check("remove_pool");
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
  auto any_call = [&] {
    int removed = -1;
    EXPECT_EQ(berth_pool_remove(&removed, e, kPool.data(), kPool.size(), "", 0, "absent", 6),
              BERTH_OK);
  };
  filler.Run([&] { FillPool(e, kWarmUp); });
  ASSERT_EQ(berth_pool_remove_pool(nullptr, e, kPool.data(), kPool.size()), BERTH_OK);
  filler.Run(any_call);

  Rss rss;
  rss.baseline = RssMiB();
  filler.Run([&] { FillPool(e, kKeys); });
  rss.filled = RssMiB();
  ASSERT_EQ(berth_pool_remove_pool(nullptr, e, kPool.data(), kPool.size()), BERTH_OK);
  filler.Run(any_call);
  rss.after = RssMiB();
  rss.Check("remove_pool from another thread");
  berth_engine_free(e);
}

TEST_F(MemoryReturn, CacheDeleteAll_Of1MObjects_ReturnsTheirMemoryToTheOS) {
  // Tombstones are state the cache keeps (about 170 bytes each): a small
  // limit keeps them out of the figure. The default 100000 would be ~17 MiB.
  berth_cache_options options{};
  options.tombstone_limit = 1000;
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, &options), BERTH_OK);
  FillCache(c, kWarmUp);
  DeleteFromCache(c, kWarmUp);

  Rss rss;
  rss.baseline = RssMiB();
  FillCache(c, kKeys);
  rss.filled = RssMiB();
  DeleteFromCache(c, kKeys);
  rss.after = RssMiB();
  berth_cache_stats stats{};
  ASSERT_EQ(berth_cache_get_stats(&stats, c), BERTH_OK);
  EXPECT_EQ(stats.objects, 0u);
  rss.Check("delete every object");
  berth_cache_free(c);
}

TEST_F(MemoryReturn, CacheDeleteAll_OfAFewLargeObjects_ReturnsTheirMemoryToTheOS) {
  // A small index, but 256 MiB of payloads (each a large block of its own
  // in mimalloc).
  constexpr size_t kObjects = 256;
  const std::string payload(size_t{1} << 20, 'p');
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
  FillCache(c, kObjects / 8, payload);
  DeleteFromCache(c, kObjects / 8);

  Rss rss;
  rss.baseline = RssMiB();
  FillCache(c, kObjects, payload);
  rss.filled = RssMiB();
  DeleteFromCache(c, kObjects);
  rss.after = RssMiB();
  rss.Check("delete every large object");
  berth_cache_free(c);
}

TEST_F(MemoryReturn, CacheReplaceWithNothing_Of1MObjects_ReturnsTheirMemoryToTheOS) {
  // A relist at a resourceVersion above every object's, listing nothing.
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Object>> none;
  fbb.Finish(berth::fb::CreateObjectListDirect(fbb, 2 * kKeys, &none), BERTH_FB_OBJECT_LIST_ID);
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
  FillCache(c, kWarmUp);
  ASSERT_EQ(berth_cache_replace(c, fbb.GetBufferPointer(), fbb.GetSize()), BERTH_OK) << LastError();

  Rss rss;
  rss.baseline = RssMiB();
  FillCache(c, kKeys);
  rss.filled = RssMiB();
  ASSERT_EQ(berth_cache_replace(c, fbb.GetBufferPointer(), fbb.GetSize()), BERTH_OK) << LastError();
  rss.after = RssMiB();
  berth_cache_stats stats{};
  ASSERT_EQ(berth_cache_get_stats(&stats, c), BERTH_OK);
  EXPECT_EQ(stats.objects, 0u);
  rss.Check("replace with an empty list");
  berth_cache_free(c);
}

TEST_F(MemoryReturn, CacheFree_Of1MObjectsAndTombstones_ReturnsItsMemoryToTheOS) {
  auto fill_and_free = [](size_t n) {
    berth_cache* c = nullptr;
    ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
    FillCache(c, n);
    DeleteFromCache(c, n / 10);  // tombstones too (the default limit keeps them all)
    ASSERT_EQ(berth_cache_free(c), BERTH_OK);
  };
  fill_and_free(kWarmUp);

  Rss rss;
  rss.baseline = RssMiB();
  berth_cache* c = nullptr;
  ASSERT_EQ(berth_cache_new(&c, nullptr), BERTH_OK);
  FillCache(c, kKeys);
  DeleteFromCache(c, kKeys / 10);
  rss.filled = RssMiB();
  ASSERT_EQ(berth_cache_free(c), BERTH_OK);
  rss.after = RssMiB();
  rss.Check("cache_free");
}

}  // namespace
