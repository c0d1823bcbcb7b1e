// The C ABI as a binding sees it: status codes, messages, ownership, bad
// input that changes nothing, FlatBuffers in and out, and the export list.
#include "capi/berth.h"

#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
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

struct BadCall {
  const char* what;
  berth_status want;
  const char* message_part;
  std::function<berth_status(berth_engine*)> call;
};

TEST(CApi, BadInputGetsStatusAndMessageAndChangesNothing) {
  const std::string long_pool(BERTH_MAX_POOL_LEN + 1, 'p');
  const std::string long_ns(BERTH_MAX_NAMESPACE_LEN + 1, 'n');
  const std::string long_name(BERTH_MAX_NAME_LEN + 1, 'x');
  const std::string long_node(BERTH_MAX_NODE_LEN + 1, 'd');
  const std::string nul("a\0b", 3);
  const std::string bad_utf8("\xc3\x28");
  auto good = Batch({{"ns", "ok", "n", true}});
  auto bad_key_batch = Batch({{"ns", "ok2", "n", true}, {"ns", "", "n", true}});
  auto wrong_id = Batch({{"ns", "ok", "n", true}}, "XXXX");
  std::vector<uint8_t> truncated(good.begin(), good.begin() + static_cast<long>(good.size() / 2));
  std::vector<uint8_t> garbage(64, 0xAB);
  std::memcpy(garbage.data() + 4, BERTH_FB_POOL_KEY_BATCH_ID, 4);
  berth_pool_key k;
  berth_pool_stats st;
  berth_buffer* buf;
  const uint8_t* data;
  size_t len;

  const std::vector<BadCall> table = {
      {"add: NULL engine", BERTH_ERR_INVALID_ARGUMENT, "engine is NULL",
       [&](berth_engine*) { return berth_pool_add(nullptr, nullptr, "p", 1, "ns", 2, "a", 1, "", 0, 1); }},
      {"add: NULL pool with length", BERTH_ERR_INVALID_ARGUMENT, "pool is NULL",
       [&](berth_engine* e) { return berth_pool_add(nullptr, e, nullptr, 3, "ns", 2, "a", 1, "", 0, 1); }},
      {"add: NULL name with length", BERTH_ERR_INVALID_ARGUMENT, "name is NULL",
       [&](berth_engine* e) { return berth_pool_add(nullptr, e, "p", 1, "ns", 2, nullptr, 1, "", 0, 1); }},
      {"add: NULL node with length", BERTH_ERR_INVALID_ARGUMENT, "node is NULL",
       [&](berth_engine* e) { return berth_pool_add(nullptr, e, "p", 1, "ns", 2, "a", 1, nullptr, 4, 1); }},
      {"add: ready out of range", BERTH_ERR_INVALID_ARGUMENT, "ready must be 0 or 1",
       [&](berth_engine* e) { return berth_pool_add(nullptr, e, "p", 1, "ns", 2, "a", 1, "", 0, 2); }},
      {"add: empty pool name", BERTH_ERR_INVALID_NAME, "pool name is empty",
       [&](berth_engine* e) { return Add(e, "", "ns", "a", "", 1); }},
      {"add: NULL empty name", BERTH_ERR_INVALID_NAME, "key name is empty",
       [&](berth_engine* e) { return berth_pool_add(nullptr, e, "p", 1, "ns", 2, nullptr, 0, "", 0, 1); }},
      {"add: pool too long", BERTH_ERR_INVALID_NAME, "limit is 512",
       [&](berth_engine* e) { return Add(e, long_pool, "ns", "a", "", 1); }},
      {"add: namespace too long", BERTH_ERR_INVALID_NAME, "limit is 63",
       [&](berth_engine* e) { return Add(e, "p", long_ns, "a", "", 1); }},
      {"add: name too long", BERTH_ERR_INVALID_NAME, "limit is 253",
       [&](berth_engine* e) { return Add(e, "p", "ns", long_name, "", 1); }},
      {"add: node too long", BERTH_ERR_INVALID_NAME, "node name",
       [&](berth_engine* e) { return Add(e, "p", "ns", "a", long_node, 1); }},
      {"add: NUL in name", BERTH_ERR_INVALID_NAME, "NUL",
       [&](berth_engine* e) { return Add(e, "p", "ns", nul, "", 1); }},
      {"add: invalid UTF-8 node", BERTH_ERR_INVALID_NAME, "UTF-8",
       [&](berth_engine* e) { return Add(e, "p", "ns", "a", bad_utf8, 1); }},
      {"add_batch: NULL engine", BERTH_ERR_INVALID_ARGUMENT, "engine is NULL",
       [&](berth_engine*) { return berth_pool_add_batch(nullptr, nullptr, "p", 1, good.data(), good.size()); }},
      {"add_batch: NULL buffer with length", BERTH_ERR_INVALID_ARGUMENT, "buf is NULL",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, nullptr, 10); }},
      {"add_batch: empty buffer", BERTH_ERR_BAD_BUFFER, "identifier",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, nullptr, 0); }},
      {"add_batch: wrong identifier", BERTH_ERR_BAD_BUFFER, "identifier",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, wrong_id.data(), wrong_id.size()); }},
      {"add_batch: truncated", BERTH_ERR_BAD_BUFFER, "",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, truncated.data(), truncated.size()); }},
      {"add_batch: garbage with identifier", BERTH_ERR_BAD_BUFFER, "verification",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, garbage.data(), garbage.size()); }},
      {"add_batch: one bad key", BERTH_ERR_INVALID_NAME, "key 1: key name is empty",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, bad_key_batch.data(), bad_key_batch.size()); }},
      {"add_batch: oversized length", BERTH_ERR_BAD_BUFFER, "BERTH_MAX_BUFFER_LEN",
       [&](berth_engine* e) { return berth_pool_add_batch(nullptr, e, "p", 1, good.data(), size_t{BERTH_MAX_BUFFER_LEN} + 1); }},
      {"update: name too long", BERTH_ERR_INVALID_NAME, "limit is 253",
       [&](berth_engine* e) { return berth_pool_update(nullptr, e, "p", 1, "ns", 2, long_name.data(), long_name.size(), "", 0, 1); }},
      {"update: NULL engine", BERTH_ERR_INVALID_ARGUMENT, "engine is NULL",
       [&](berth_engine*) { return berth_pool_update(nullptr, nullptr, "p", 1, "ns", 2, "a", 1, "", 0, 1); }},
      {"remove: NULL engine", BERTH_ERR_INVALID_ARGUMENT, "engine is NULL",
       [&](berth_engine*) { return berth_pool_remove(nullptr, nullptr, "p", 1, "ns", 2, "a", 1); }},
      {"remove: empty name", BERTH_ERR_INVALID_NAME, "key name is empty",
       [&](berth_engine* e) { return berth_pool_remove(nullptr, e, "p", 1, "ns", 2, "", 0); }},
      {"remove_pool: empty name", BERTH_ERR_INVALID_NAME, "pool name is empty",
       [&](berth_engine* e) { return berth_pool_remove_pool(nullptr, e, "", 0); }},
      {"pop_spread: NULL out", BERTH_ERR_INVALID_ARGUMENT, "out_key is NULL",
       [&](berth_engine* e) { return berth_pool_pop_spread(nullptr, e, "p", 1); }},
      {"pop_spread: NULL engine", BERTH_ERR_INVALID_ARGUMENT, "engine is NULL",
       [&](berth_engine*) { return berth_pool_pop_spread(&k, nullptr, "p", 1); }},
      {"pop_spread: unknown pool", BERTH_ERR_NOT_FOUND, "unknown pool 'nope'",
       [&](berth_engine* e) { return berth_pool_pop_spread(&k, e, "nope", 4); }},
      {"pop_fifo: unknown pool", BERTH_ERR_NOT_FOUND, "unknown pool",
       [&](berth_engine* e) { return berth_pool_pop_fifo(&k, e, "nope", 4); }},
      {"pop_fifo: invalid UTF-8 pool", BERTH_ERR_INVALID_NAME, "UTF-8",
       [&](berth_engine* e) { return berth_pool_pop_fifo(&k, e, bad_utf8.data(), bad_utf8.size()); }},
      {"put_back: unknown pool", BERTH_ERR_NOT_FOUND, "unknown pool",
       [&](berth_engine* e) { return berth_pool_put_back(nullptr, e, "nope", 4, "ns", 2, "a", 1, 1); }},
      {"put_back: name too long", BERTH_ERR_INVALID_NAME, "limit is 253",
       [&](berth_engine* e) { return berth_pool_put_back(nullptr, e, "p", 1, "ns", 2, long_name.data(), long_name.size(), 1); }},
      {"get_stats: NULL out", BERTH_ERR_INVALID_ARGUMENT, "out_stats is NULL",
       [&](berth_engine* e) { return berth_pool_get_stats(nullptr, e, "p", 1); }},
      {"get_stats: unknown pool", BERTH_ERR_NOT_FOUND, "unknown pool",
       [&](berth_engine* e) { return berth_pool_get_stats(&st, e, "nope", 4); }},
      {"snapshot: NULL out", BERTH_ERR_INVALID_ARGUMENT, "out_buffer is NULL",
       [&](berth_engine* e) { return berth_pool_snapshot(nullptr, e, "p", 1); }},
      {"snapshot: unknown pool", BERTH_ERR_NOT_FOUND, "unknown pool",
       [&](berth_engine* e) { return berth_pool_snapshot(&buf, e, "nope", 4); }},
      {"node_stats: unknown pool", BERTH_ERR_NOT_FOUND, "unknown pool",
       [&](berth_engine* e) { return berth_pool_node_stats(&buf, e, "nope", 4); }},
      {"buffer_data: NULL buffer", BERTH_ERR_INVALID_ARGUMENT, "buffer is NULL",
       [&](berth_engine*) { return berth_buffer_data(&data, &len, nullptr); }},
      {"buffer_data: NULL out", BERTH_ERR_INVALID_ARGUMENT, "out_data is NULL",
       [&](berth_engine*) { return berth_buffer_data(nullptr, &len, nullptr); }},
      {"engine_new: NULL out", BERTH_ERR_INVALID_ARGUMENT, "out_engine is NULL",
       [&](berth_engine*) { return berth_engine_new(nullptr); }},
  };

  Engine eng;
  ASSERT_EQ(Add(eng.e, "p", "ns", "keep", "n", 1), BERTH_OK);
  auto fingerprint = [&] {
    berth_buffer* b = nullptr;
    EXPECT_EQ(berth_pool_snapshot(&b, eng.e, "p", 1), BERTH_OK);
    const uint8_t* d;
    size_t n;
    berth_buffer_data(&d, &n, b);
    std::string bytes(reinterpret_cast<const char*>(d), n);
    berth_buffer_free(b);
    berth_pool_stats s = Stats(eng.e, "p");
    return bytes + "/" + std::to_string(s.keys) + "/" + std::to_string(s.put_back_records);
  };
  const std::string before = fingerprint();
  for (const BadCall& row : table) {
    SCOPED_TRACE(row.what);
    EXPECT_EQ(row.call(eng.e), row.want);
    const std::string msg = LastError();
    EXPECT_FALSE(msg.empty());
    EXPECT_NE(msg.find(row.message_part), std::string::npos) << msg;
    EXPECT_EQ(fingerprint(), before);
    berth_pool_stats s;
    EXPECT_EQ(berth_pool_get_stats(&s, eng.e, "nope", 4), BERTH_ERR_NOT_FOUND);  // never created
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
