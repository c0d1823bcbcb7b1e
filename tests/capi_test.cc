// The C ABI as a binding sees it: status codes, messages, ownership, bad
// input that changes nothing, FlatBuffers in and out, and the export list.
#include "capi/berth.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "berth_generated.h"
#include "tests/support/capi_helpers.h"

namespace {

struct Engine {
  berth_engine* e = nullptr;
  Engine() { EXPECT_EQ(berth_engine_new(&e), BERTH_OK); }
  ~Engine() { EXPECT_EQ(berth_engine_free(e), BERTH_OK); }
};

using berth::testing::LastError;
using berth::testing::TakeBytes;

berth_status Add(berth_engine* e, const std::string& pool, const std::string& ns,
                 const std::string& name, const std::string& node, int ready, int* inserted = nullptr) {
  return berth_pool_add(inserted, e, pool.data(), pool.size(), ns.data(), ns.size(), name.data(),
                        name.size(), node.data(), node.size(), ready);
}

std::string Str(const char* p, uint32_t n) { return std::string(p, n); }

berth_pool_stats Stats(berth_engine* e, const std::string& pool) {
  berth_pool_stats s{};
  EXPECT_EQ(berth_pool_get_stats(&s, e, pool.data(), pool.size()), BERTH_OK) << LastError();
  return s;
}

std::vector<uint8_t> Batch(const std::vector<std::tuple<std::string, std::string, std::string, bool>>& keys,
                           const char* id = BERTH_FB_POOL_KEY_BATCH_ID) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::PoolKey>> offs;
  for (const auto& [ns, name, node, ready] : keys) {
    offs.push_back(berth::fb::CreatePoolKeyDirect(fbb, ns.c_str(), name.c_str(), node.c_str(), ready));
  }
  fbb.Finish(berth::fb::CreatePoolKeyBatchDirect(fbb, &offs), id);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

TEST(CApi, AbiVersionMatchesHeader) {
  EXPECT_EQ(berth_abi_version(), static_cast<uint32_t>(BERTH_ABI_VERSION));
  EXPECT_STREQ(berth_status_name(BERTH_ERR_NOT_FOUND), "BERTH_ERR_NOT_FOUND");
  EXPECT_STREQ(berth_status_name(12345), "BERTH_UNKNOWN_STATUS");
}

TEST(CApi, AddPopPutBackRoundTrip) {
  Engine eng;
  int inserted = -1;
  ASSERT_EQ(Add(eng.e, "default/wp", "default", "sb-1", "node-a", 1, &inserted), BERTH_OK);
  EXPECT_EQ(inserted, 1);
  ASSERT_EQ(Add(eng.e, "default/wp", "default", "sb-1", "node-b", 1, &inserted), BERTH_OK);
  EXPECT_EQ(inserted, 0);
  EXPECT_EQ(LastError(), "");
  berth_pool_key k{};
  ASSERT_EQ(berth_pool_pop_spread(&k, eng.e, "default/wp", 10), BERTH_OK);
  EXPECT_EQ(Str(k.namespace_, k.namespace_len), "default");
  EXPECT_EQ(Str(k.name, k.name_len), "sb-1");
  EXPECT_EQ(Str(k.node, k.node_len), "node-b");
  EXPECT_EQ(k.ready, 1);
  berth_pool_key none{};
  EXPECT_EQ(berth_pool_pop_spread(&none, eng.e, "default/wp", 10), BERTH_EMPTY);
  int restored = -1;
  ASSERT_EQ(berth_pool_put_back(&restored, eng.e, "default/wp", 10, k.namespace_, k.namespace_len,
                                k.name, k.name_len, k.token),
            BERTH_OK);
  EXPECT_EQ(restored, 1);
  ASSERT_EQ(berth_pool_pop_fifo(&none, eng.e, "default/wp", 10), BERTH_OK);
  EXPECT_EQ(none.seq, k.seq);
}

TEST(CApi, ListPoolsNamesEveryPoolSortedUntilItIsRemoved) {
  Engine eng;
  auto names = [&] {
    berth_buffer* buf = nullptr;
    EXPECT_EQ(berth_engine_list_pools(&buf, eng.e), BERTH_OK);
    return TakeBytes(buf);
  };
  EXPECT_EQ(names(), "");
  for (const char* pool : {"team-b/wp", "team-a/wp", "team-c/gpu"}) {
    ASSERT_EQ(Add(eng.e, pool, "ns", "sb-1", "node-a", 1, nullptr), BERTH_OK);
  }
  EXPECT_EQ(names(), std::string("team-a/wp\0team-b/wp\0team-c/gpu\0", 31));
  berth_pool_key k{};
  ASSERT_EQ(berth_pool_pop_fifo(&k, eng.e, "team-a/wp", 9), BERTH_OK);  // empty, still a pool
  int removed = 0;
  ASSERT_EQ(berth_pool_remove_pool(&removed, eng.e, "team-b/wp", 9), BERTH_OK);
  EXPECT_EQ(names(), std::string("team-a/wp\0team-c/gpu\0", 21));
}

TEST(CApi, UpdateNeverInserts) {
  Engine eng;
  int updated = -1;
  ASSERT_EQ(berth_pool_update(&updated, eng.e, "p", 1, "ns", 2, "a", 1, "n", 1, 1), BERTH_OK);
  EXPECT_EQ(updated, 0);
  berth_pool_stats s;
  EXPECT_EQ(berth_pool_get_stats(&s, eng.e, "p", 1), BERTH_ERR_NOT_FOUND);  // no pool created
  ASSERT_EQ(Add(eng.e, "p", "ns", "a", "", 0), BERTH_OK);
  ASSERT_EQ(berth_pool_update(&updated, eng.e, "p", 1, "ns", 2, "a", 1, "n", 1, 1), BERTH_OK);
  EXPECT_EQ(updated, 1);
  EXPECT_EQ(Stats(eng.e, "p").ready_keys, 1u);
  EXPECT_EQ(berth_pool_update(nullptr, eng.e, "p", 1, "ns", 2, "a", 1, "n", 1, 7),
            BERTH_ERR_INVALID_ARGUMENT);
}

TEST(CApi, MaxLengthNamesRoundTripThroughPop) {
  Engine eng;
  std::string ns(BERTH_MAX_NAMESPACE_LEN, 'n'), name(BERTH_MAX_NAME_LEN, 'x'),
      node(BERTH_MAX_NODE_LEN, 'd'), pool(BERTH_MAX_POOL_LEN, 'p');
  ASSERT_EQ(Add(eng.e, pool, ns, name, node, 0), BERTH_OK) << LastError();
  berth_pool_key k{};
  ASSERT_EQ(berth_pool_pop_fifo(&k, eng.e, pool.data(), pool.size()), BERTH_OK);
  EXPECT_EQ(Str(k.namespace_, k.namespace_len), ns);
  EXPECT_EQ(Str(k.name, k.name_len), name);
  EXPECT_EQ(Str(k.node, k.node_len), node);
}

TEST(CApi, AddBatchAppliesAllKeysInOrder) {
  Engine eng;
  auto buf = Batch({{"ns", "a", "n1", true}, {"ns", "b", "", false}, {"ns", "a", "n2", true}});
  size_t inserted = 0;
  ASSERT_EQ(berth_pool_add_batch(&inserted, eng.e, "p", 1, buf.data(), buf.size()), BERTH_OK)
      << LastError();
  EXPECT_EQ(inserted, 2u);
  berth_pool_stats s = Stats(eng.e, "p");
  EXPECT_EQ(s.keys, 2u);
  EXPECT_EQ(s.scheduled_keys, 1u);
  EXPECT_EQ(s.ready_keys, 1u);
}

TEST(CApi, EmptyBatchCreatesThePool) {
  Engine eng;
  auto empty = Batch({});
  size_t inserted = 7;
  ASSERT_EQ(berth_pool_add_batch(&inserted, eng.e, "p", 1, empty.data(), empty.size()), BERTH_OK)
      << LastError();
  EXPECT_EQ(inserted, 0u);
  berth_pool_key k;
  EXPECT_EQ(berth_pool_pop_spread(&k, eng.e, "p", 1), BERTH_EMPTY);
}

TEST(CApi, SnapshotListsKeysOldestFirst) {
  Engine eng;
  ASSERT_EQ(Add(eng.e, "p", "ns", "a", "n1", 1), BERTH_OK);
  ASSERT_EQ(Add(eng.e, "p", "", "b", "", 0), BERTH_OK);
  ASSERT_EQ(Add(eng.e, "p", "ns", "c", "n1", 0), BERTH_OK);
  berth_buffer* buf = nullptr;
  ASSERT_EQ(berth_pool_snapshot(&buf, eng.e, "p", 1), BERTH_OK);
  const uint8_t* data = nullptr;
  size_t len = 0;
  ASSERT_EQ(berth_buffer_data(&data, &len, buf), BERTH_OK);
  ASSERT_TRUE(flatbuffers::BufferHasIdentifier(data, BERTH_FB_POOL_SNAPSHOT_ID));
  flatbuffers::Verifier v(data, len);
  ASSERT_TRUE(v.VerifyBuffer<berth::fb::PoolSnapshot>(BERTH_FB_POOL_SNAPSHOT_ID));
  const auto* snap = flatbuffers::GetRoot<berth::fb::PoolSnapshot>(data);
  EXPECT_EQ(snap->pool()->str(), "p");
  ASSERT_EQ(snap->keys()->size(), 3u);
  EXPECT_EQ(snap->keys()->Get(0)->name()->str(), "a");
  EXPECT_EQ(snap->keys()->Get(1)->namespace_()->str(), "");
  EXPECT_EQ(snap->keys()->Get(1)->node()->str(), "");
  EXPECT_EQ(snap->keys()->Get(2)->name()->str(), "c");
  EXPECT_FALSE(snap->keys()->Get(2)->ready());
  EXPECT_LT(snap->keys()->Get(0)->seq(), snap->keys()->Get(2)->seq());
  ASSERT_EQ(berth_pool_remove_pool(nullptr, eng.e, "p", 1), BERTH_OK);
  // The buffer does not borrow from the pool or the engine.
  EXPECT_EQ(snap->keys()->Get(2)->name()->str(), "c");
  EXPECT_EQ(berth_buffer_free(buf), BERTH_OK);
}

TEST(CApi, NodeStatsCountsKeysPerNode) {
  Engine eng;
  ASSERT_EQ(Add(eng.e, "p", "ns", "a", "n2", 1), BERTH_OK);
  ASSERT_EQ(Add(eng.e, "p", "ns", "b", "n1", 0), BERTH_OK);
  ASSERT_EQ(Add(eng.e, "p", "ns", "c", "n2", 0), BERTH_OK);
  ASSERT_EQ(Add(eng.e, "p", "ns", "d", "", 1), BERTH_OK);
  berth_buffer* buf = nullptr;
  ASSERT_EQ(berth_pool_node_stats(&buf, eng.e, "p", 1), BERTH_OK);
  const uint8_t* data;
  size_t len;
  ASSERT_EQ(berth_buffer_data(&data, &len, buf), BERTH_OK);
  flatbuffers::Verifier v(data, len);
  ASSERT_TRUE(v.VerifyBuffer<berth::fb::PoolNodeStats>(BERTH_FB_POOL_NODE_STATS_ID));
  const auto* ns = flatbuffers::GetRoot<berth::fb::PoolNodeStats>(data);
  ASSERT_EQ(ns->nodes()->size(), 2u);
  EXPECT_EQ(ns->nodes()->Get(0)->node()->str(), "n1");
  EXPECT_EQ(ns->nodes()->Get(0)->keys(), 1u);
  EXPECT_EQ(ns->nodes()->Get(0)->ready_keys(), 0u);
  EXPECT_EQ(ns->nodes()->Get(1)->node()->str(), "n2");
  EXPECT_EQ(ns->nodes()->Get(1)->keys(), 2u);
  EXPECT_EQ(ns->nodes()->Get(1)->ready_keys(), 1u);
  berth_buffer_free(buf);
}

TEST(CApi, RemovalsOfAbsentThingsAreNotErrors) {
  Engine eng;
  int removed = -1;
  EXPECT_EQ(berth_pool_remove(&removed, eng.e, "p", 1, "ns", 2, "x", 1), BERTH_OK);
  EXPECT_EQ(removed, 0);
  EXPECT_EQ(berth_pool_remove_pool(&removed, eng.e, "p", 1), BERTH_OK);
  EXPECT_EQ(removed, 0);
  ASSERT_EQ(Add(eng.e, "p", "ns", "x", "", 1), BERTH_OK);
  EXPECT_EQ(berth_pool_remove(&removed, eng.e, "p", 1, "ns", 2, "x", 1), BERTH_OK);
  EXPECT_EQ(removed, 1);
  EXPECT_EQ(berth_pool_remove_pool(&removed, eng.e, "p", 1), BERTH_OK);
  EXPECT_EQ(removed, 1);
  berth_pool_key k;
  EXPECT_EQ(berth_pool_pop_spread(&k, eng.e, "p", 1), BERTH_ERR_NOT_FOUND);
}

TEST(CApi, FreeingNullIsANoOp) {
  EXPECT_EQ(berth_engine_free(nullptr), BERTH_OK);
  EXPECT_EQ(berth_buffer_free(nullptr), BERTH_OK);
}

// ---- bad input: every row must fail with its status and a message, and must
// leave the pool exactly as it was. ----------------------------------------

// ---- handle checks (the bad-input table covers each function; these cover
// the handle table itself: reuse, races, values Berth never made) --------------

TEST(CApiHandles, StaleHandlesStayDeadWhenTheirSlotsAreReused) {
  // Far more frees than the quarantine, so slots are reused; every handle
  // ever freed must still be refused, and a reused slot never gives back a
  // value an earlier handle had.
  std::vector<berth_selector*> dead;
  std::set<uintptr_t> values, slots;
  size_t reused = 0;
  for (int i = 0; i < 6000; ++i) {
    berth_selector* s = nullptr;
    ASSERT_EQ(berth_selector_parse(&s, "a=b", 3), BERTH_OK);
    const auto v = reinterpret_cast<uintptr_t>(s);
    EXPECT_TRUE(values.insert(v).second) << "a handle value came back";
    reused += slots.insert(v & ((uintptr_t{1} << 48) - 1)).second ? 0 : 1;
    ASSERT_EQ(berth_selector_free(s), BERTH_OK);
    dead.push_back(s);
  }
  EXPECT_GT(reused, 0u) << "slots were never reused: the quarantine is not bounded";
  berth_buffer* buf = nullptr;
  for (berth_selector* s : dead) {
    ASSERT_EQ(berth_selector_string(&buf, s), BERTH_ERR_BAD_HANDLE);
    ASSERT_EQ(berth_selector_free(s), BERTH_ERR_BAD_HANDLE);
  }
}

TEST(CApiHandles, ValuesBerthNeverMadeAreRefused) {
  Engine eng;
  int local = 0;
  berth_pool_stats st;
  const auto e = reinterpret_cast<uintptr_t>(eng.e);
  // An address of the caller's, a value inside a live handle's slot, the
  // slot's neighbour, a live handle with a wrong generation, and junk.
  for (uintptr_t v : {reinterpret_cast<uintptr_t>(&local), e + 1, e + 8, e + 16,
                      e ^ (uintptr_t{1} << 52), uintptr_t{0xdeadbeef}, ~uintptr_t{0}}) {
    SCOPED_TRACE(v);
    auto* bogus = reinterpret_cast<berth_engine*>(v);
    EXPECT_EQ(berth_pool_get_stats(&st, bogus, "p", 1), BERTH_ERR_BAD_HANDLE);
    EXPECT_NE(LastError().find("engine is not a live berth_engine"), std::string::npos);
    EXPECT_EQ(berth_engine_free(bogus), BERTH_ERR_BAD_HANDLE);
  }
  EXPECT_EQ(Add(eng.e, "p", "ns", "a", "", 1), BERTH_OK);  // the real one still works
}

TEST(CApiHandles, RacingFreesOfOneHandleEndItExactlyOnce) {
  for (int round = 0; round < 200; ++round) {
    berth_limiter* l = nullptr;
    ASSERT_EQ(berth_limiter_new(&l, 1), BERTH_OK);
    std::atomic<int> ok{0}, bad{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        const berth_status st = berth_limiter_free(l);
        (st == BERTH_OK ? ok : bad).fetch_add(1);
        EXPECT_TRUE(st == BERTH_OK || st == BERTH_ERR_BAD_HANDLE) << st;
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(ok.load(), 1);
    ASSERT_EQ(bad.load(), 3);
  }
}

TEST(CApi, LastErrorIsPerThreadAndClearedBySuccess) {
  Engine eng;
  berth_pool_key k;
  EXPECT_EQ(berth_pool_pop_spread(&k, eng.e, "nope", 4), BERTH_ERR_NOT_FOUND);
  std::thread([&] { EXPECT_EQ(LastError(), ""); }).join();
  EXPECT_NE(LastError(), "");
  EXPECT_EQ(Add(eng.e, "p", "ns", "a", "", 1), BERTH_OK);
  EXPECT_EQ(LastError(), "");
}

TEST(CApiStress, ConcurrentClaimsHandOutEveryKeyExactlyOnce) {
  Engine eng;
  constexpr int kKeys = 60000;
  constexpr int kThreads = 6;
  std::vector<std::set<std::string>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Producers and consumers at once: each thread adds its share, then
      // claims until the pool is empty.
      for (int i = t; i < kKeys; i += kThreads) {
        std::string name = "sb-" + std::to_string(i);
        std::string node = "node-" + std::to_string(i % 50);
        ASSERT_EQ(Add(eng.e, "p", "ns", name, node, i % 5 != 0), BERTH_OK);
      }
      berth_pool_key k;
      for (;;) {
        berth_status s = berth_pool_pop_spread(&k, eng.e, "p", 1);
        if (s == BERTH_EMPTY) break;
        ASSERT_EQ(s, BERTH_OK);
        got[t].insert(Str(k.name, k.name_len));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> all;
  size_t total = 0;
  for (auto& s : got) {
    total += s.size();
    all.insert(s.begin(), s.end());
  }
  EXPECT_EQ(Stats(eng.e, "p").keys, 0u);
  EXPECT_EQ(total, static_cast<size_t>(kKeys));
  EXPECT_EQ(all.size(), static_cast<size_t>(kKeys));
}

// ---- the exported surface ----------------------------------------------------

TEST(CApiExports, OnlyBerthSymbolsAreExported) {
  std::string cmd = std::string("nm -D --defined-only ") + BERTH_LIBRARY_PATH;
  FILE* f = popen(cmd.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char line[1024];
  int berth_symbols = 0;
  std::vector<std::string> foreign;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    char addr[64], type[8], name[512];
    if (std::sscanf(line, "%63s %7s %511s", addr, type, name) != 3) continue;
    if (std::strncmp(name, "berth_", 6) == 0) {
      ++berth_symbols;
    } else {
      foreign.emplace_back(name);
    }
  }
  ASSERT_EQ(pclose(f), 0);
  EXPECT_GE(berth_symbols, 65);
  EXPECT_TRUE(foreign.empty()) << "exported: " << foreign.front();
}

TEST(CApiExports, HostAllocatorIsNotReplaced) {
  // Berth uses mimalloc through its explicit API; the process's malloc must
  // still be libc's.
#ifdef BERTH_SYSTEM_ALLOCATOR
  GTEST_SKIP() << "sanitizer build: the sanitizer runtime owns malloc";
#endif
  Dl_info info{};
  void* sym = dlsym(RTLD_DEFAULT, "malloc");
  ASSERT_NE(sym, nullptr);
  ASSERT_NE(dladdr(sym, &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("libc.so"), std::string::npos) << info.dli_fname;
}

}  // namespace
