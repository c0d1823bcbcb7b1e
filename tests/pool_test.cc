// WarmPool semantics, case by case and against the naive reference model.
#include "core/pool/pool.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/support/naive_pool.h"

namespace berth {
namespace {

using testing::NaiveKey;
using testing::NaivePool;

static_assert(kPutBackWindow == 4096, "NaivePool's default window must match");

std::optional<NaiveKey> ToKey(bool got, const HandOut& h) {
  if (!got) return std::nullopt;
  return NaiveKey{std::string(h.ns.view()), std::string(h.name.view()),
                  std::string(h.node.view()), h.ready, h.seq, h.token};
}

std::optional<NaiveKey> PopSpread(WarmPool& p) {
  HandOut h;
  bool got = p.PopSpread(&h);
  return ToKey(got, h);
}

std::optional<NaiveKey> PopFifo(WarmPool& p) {
  HandOut h;
  bool got = p.PopFifo(&h);
  return ToKey(got, h);
}

std::string PopName(WarmPool& p) {
  auto k = PopSpread(p);
  return k ? k->name : "<empty>";
}

void Add(WarmPool& p, const std::string& name, const std::string& node, bool ready = true) {
  p.Add(KeyView{"ns", name, node, ready});
}

std::vector<std::string> Names(const WarmPool& p) {
  std::vector<std::string> out;
  p.ForEachKey([&](const KeyInfo& k) { out.emplace_back(k.name); });
  return out;
}

TEST(WarmPool, AddInsertsYoungestAndReAddUpdatesInPlace) {
  WarmPool p;
  EXPECT_TRUE(p.Add({"ns", "a", "n1", true}));
  EXPECT_TRUE(p.Add({"ns", "b", "n2", false}));
  EXPECT_FALSE(p.Add({"ns", "a", "n3", false}));  // update keeps age
  EXPECT_EQ(Names(p), (std::vector<std::string>{"a", "b"}));
  PoolStats s = p.Stats();
  EXPECT_EQ(s.keys, 2u);
  EXPECT_EQ(s.ready_keys, 0u);
  EXPECT_EQ(s.nodes, 2u);  // n1 dropped when a moved to n3
  auto k = PopFifo(p);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->name, "a");
  EXPECT_EQ(k->node, "n3");
  EXPECT_FALSE(k->ready);
}

TEST(WarmPool, UpdateChangesPresentKeysOnlyAndKeepsAge) {
  WarmPool p;
  Add(p, "a", "n1", false);
  Add(p, "b", "n1", false);
  EXPECT_TRUE(p.Update({"ns", "a", "n2", true}));
  EXPECT_FALSE(p.Update({"ns", "zz", "n2", true}));  // absent: not inserted
  EXPECT_EQ(Names(p), (std::vector<std::string>{"a", "b"}));
  auto k = PopFifo(p);
  EXPECT_EQ(k->node, "n2");
  EXPECT_TRUE(k->ready);
  EXPECT_FALSE(p.Update({"ns", "a", "n3", true}));  // handed out: stays out
  EXPECT_EQ(p.Stats().keys, 1u);
  EXPECT_TRUE(p.PutBack("ns", "a", k->token));      // update did not consume it
}

TEST(WarmPool, SameNameInOtherNamespaceIsAnotherKey) {
  WarmPool p;
  EXPECT_TRUE(p.Add({"a", "x", "", true}));
  EXPECT_TRUE(p.Add({"b", "x", "", true}));
  EXPECT_TRUE(p.Add({"", "x", "", true}));
  EXPECT_EQ(p.Stats().keys, 3u);
  EXPECT_TRUE(p.Remove("b", "x"));
  EXPECT_FALSE(p.Remove("b", "x"));
  EXPECT_EQ(PopFifo(p)->ns, "a");
  EXPECT_EQ(PopFifo(p)->ns, "");
}

TEST(WarmPool, PopFifoHandsOutOldestRegardlessOfReadiness) {
  WarmPool p;
  Add(p, "old", "n1", false);
  Add(p, "young", "n2", true);
  EXPECT_EQ(PopFifo(p)->name, "old");
  EXPECT_EQ(PopFifo(p)->name, "young");
  EXPECT_FALSE(PopFifo(p));
}

TEST(WarmPool, PopSpread_NodeWithMostKeysWins) {
  WarmPool p;
  Add(p, "a1", "a");
  Add(p, "b1", "b");
  Add(p, "b2", "b");
  EXPECT_EQ(PopName(p), "b1");  // b holds 2
  EXPECT_EQ(PopName(p), "a1");  // tie 1:1, a's oldest is older
  EXPECT_EQ(PopName(p), "b2");
  EXPECT_EQ(PopName(p), "<empty>");
}

TEST(WarmPool, PopSpread_TieGoesToOldestNode) {
  WarmPool p;
  Add(p, "b1", "b");
  Add(p, "a1", "a");
  Add(p, "a2", "a");
  Add(p, "b2", "b");
  EXPECT_EQ(PopName(p), "b1");
  EXPECT_EQ(PopName(p), "a1");
}

TEST(WarmPool, PopSpread_ReadyBeatsUnreadyButCountsIncludeUnready) {
  WarmPool p;
  Add(p, "a-ready", "a", true);
  Add(p, "b-unready1", "b", false);
  Add(p, "b-unready2", "b", false);
  Add(p, "b-ready", "b", true);
  Add(p, "c-ready", "c", true);
  // b holds 3 keys (2 unready): its ready key goes first.
  EXPECT_EQ(PopName(p), "b-ready");
  // a and c tie at 1 key; a's ready key is older. b's unready keys wait.
  EXPECT_EQ(PopName(p), "a-ready");
  EXPECT_EQ(PopName(p), "c-ready");
  EXPECT_EQ(PopName(p), "b-unready1");
}

TEST(WarmPool, PopSpread_UnscheduledOnlyWhenNoCandidateIsScheduled) {
  WarmPool p;
  Add(p, "u1", "", true);
  Add(p, "s1", "n", true);
  Add(p, "s-unready", "n", false);
  EXPECT_EQ(PopName(p), "s1");
  EXPECT_EQ(PopName(p), "u1");  // ready unscheduled beats unready scheduled
  EXPECT_EQ(PopName(p), "s-unready");
  Add(p, "u2", "", false);
  Add(p, "u3", "", false);
  EXPECT_EQ(PopName(p), "u2");
}

TEST(WarmPool, PopSpread_FlippingReadyMovesKeyBetweenClasses) {
  WarmPool p;
  Add(p, "a", "n1", false);
  Add(p, "b", "n2", false);
  Add(p, "a", "n1", true);  // a warms up
  EXPECT_EQ(PopName(p), "a");
  EXPECT_EQ(p.Stats().ready_keys, 0u);
}

TEST(WarmPool, PutBackRestoresAgeAndNodeAndReadiness) {
  WarmPool p;
  Add(p, "a", "n1", true);
  Add(p, "b", "n2", false);
  auto k = PopFifo(p);
  ASSERT_EQ(k->name, "a");
  EXPECT_EQ(p.Stats().put_back_records, 1u);
  EXPECT_TRUE(p.PutBack("ns", "a", k->token));
  EXPECT_EQ(p.Stats().put_back_records, 0u);
  EXPECT_EQ(Names(p), (std::vector<std::string>{"a", "b"}));
  auto again = PopFifo(p);
  EXPECT_EQ(again->name, "a");
  EXPECT_EQ(again->seq, k->seq);
  EXPECT_EQ(again->node, "n1");
  EXPECT_TRUE(again->ready);
  EXPECT_NE(again->token, k->token);
}

TEST(WarmPool, PutBackIsStaleAfterReAddOrSecondPutBackOrWrongToken) {
  WarmPool p;
  Add(p, "a", "n1");
  auto k = PopFifo(p);
  EXPECT_FALSE(p.PutBack("ns", "a", k->token + 1));
  EXPECT_FALSE(p.PutBack("ns", "b", k->token));
  Add(p, "a", "n2");  // added again: the newer add wins
  EXPECT_FALSE(p.PutBack("ns", "a", k->token));
  EXPECT_EQ(PopFifo(p)->node, "n2");
  auto k2 = PopFifo(p);
  EXPECT_FALSE(k2);
  Add(p, "c", "");
  auto kc = PopFifo(p);
  EXPECT_TRUE(p.PutBack("ns", "c", kc->token));
  EXPECT_FALSE(p.PutBack("ns", "c", kc->token));
  EXPECT_EQ(p.Stats().keys, 1u);
}

TEST(WarmPool, PutBackOfEarlierHandOutIsStaleAfterPopAddPop) {
  WarmPool p;
  Add(p, "a", "n1");
  auto first = PopFifo(p);
  Add(p, "a", "n1");
  auto second = PopFifo(p);
  EXPECT_FALSE(p.PutBack("ns", "a", first->token));
  EXPECT_TRUE(p.PutBack("ns", "a", second->token));
}

TEST(WarmPool, PutBackWindowForgetsOldHandOuts) {
  WarmPool p;
  Add(p, "victim", "n");
  auto k = PopFifo(p);
  for (uint64_t i = 0; i < kPutBackWindow - 1; ++i) {
    Add(p, "churn", "n");
    PopFifo(p);
  }
  // kPutBackWindow - 1 later hand-outs: the victim's record is still live,
  // beside the last churn hand-out.
  EXPECT_EQ(p.Stats().put_back_records, 2u);
  Add(p, "churn", "n");  // consumes the churn record
  EXPECT_EQ(p.Stats().put_back_records, 1u);
  auto last = PopFifo(p);  // the kPutBackWindow-th later hand-out
  EXPECT_EQ(last->token, k->token + kPutBackWindow);
  EXPECT_EQ(p.Stats().put_back_records, 1u);  // victim forgotten, churn recorded
  EXPECT_FALSE(p.PutBack("ns", "victim", k->token));
  EXPECT_TRUE(p.PutBack("ns", "churn", last->token));
}

TEST(WarmPool, NodeStatsSortedByName) {
  WarmPool p;
  Add(p, "1", "zeta", true);
  Add(p, "2", "alpha", false);
  Add(p, "3", "alpha", true);
  Add(p, "4", "", true);
  std::vector<std::tuple<std::string, uint64_t, uint64_t>> got;
  p.ForEachNode([&](const NodeInfo& n) { got.emplace_back(std::string(n.node), n.keys, n.ready_keys); });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], std::make_tuple(std::string("alpha"), 2u, 1u));
  EXPECT_EQ(got[1], std::make_tuple(std::string("zeta"), 1u, 1u));
  EXPECT_EQ(p.Stats().scheduled_keys, 3u);
}

TEST(CheckKey, RejectsBadNames) {
  EXPECT_TRUE(CheckKey({"", "a", "", true}).ok());
  EXPECT_EQ(CheckKey({"", "", "", true}).code(), Code::kInvalidName);
  EXPECT_EQ(CheckKey({std::string(64, 'n'), "a", "", true}).code(), Code::kInvalidName);
  EXPECT_EQ(CheckKey({"", std::string(254, 'n'), "", true}).code(), Code::kInvalidName);
  EXPECT_EQ(CheckKey({"", "a", std::string(254, 'n'), true}).code(), Code::kInvalidName);
  EXPECT_EQ(CheckKey({"", std::string("a\0b", 3), "", true}).code(), Code::kInvalidName);
  EXPECT_EQ(CheckKey({"", "\xff", "", true}).code(), Code::kInvalidName);
  EXPECT_EQ(CheckKey({"", "\xed\xa0\x80", "", true}).code(), Code::kInvalidName);  // surrogate
  EXPECT_EQ(CheckKey({"", "\xc0\xaf", "", true}).code(), Code::kInvalidName);      // overlong
  EXPECT_EQ(CheckKey({"", "\xe2\x82", "", true}).code(), Code::kInvalidName);      // truncated
  EXPECT_TRUE(CheckKey({"", "caf\xc3\xa9-\xf0\x9f\x9a\xa2", "", true}).ok());
  EXPECT_EQ(CheckPoolName("").code(), Code::kInvalidName);
  EXPECT_TRUE(CheckPoolName(std::string(512, 'p')).ok());
  EXPECT_EQ(CheckPoolName(std::string(513, 'p')).code(), Code::kInvalidName);
}

// ---- differential: WarmPool vs NaivePool on random operation sequences -----

struct Shape {
  int names;      // distinct key names
  int nodes;      // distinct nodes (plus the unscheduled "")
  double ready;   // probability a key is ready
};

void ExpectSameState(const WarmPool& p, const NaivePool& m, uint64_t seed, int step) {
  SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step));
  std::vector<NaiveKey> keys;
  p.ForEachKey([&](const KeyInfo& k) {
    keys.push_back(NaiveKey{std::string(k.ns), std::string(k.name), std::string(k.node), k.ready,
                            k.seq, 0});
  });
  ASSERT_EQ(keys, m.keys());
  PoolStats s = p.Stats();
  EXPECT_EQ(s.keys, m.size());
  EXPECT_EQ(s.ready_keys, m.ready_keys());
  EXPECT_EQ(s.scheduled_keys, m.scheduled_keys());
  auto counts = m.NodeCounts();
  EXPECT_EQ(s.nodes, counts.size());
  p.ForEachNode([&](const NodeInfo& n) {
    auto it = counts.find(std::string(n.node));
    ASSERT_NE(it, counts.end());
    EXPECT_EQ(n.keys, it->second.first);
    EXPECT_EQ(n.ready_keys, it->second.second);
  });
  EXPECT_EQ(s.put_back_records, m.put_back_records());
}

void RunDifferential(uint64_t seed, int ops, Shape shape) {
  std::mt19937_64 rng(seed);
  WarmPool pool;
  NaivePool model;
  std::vector<NaiveKey> handed;  // recent hand-outs, for put_back
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  auto coin = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto name = [&] { return "sb-" + std::to_string(pick(shape.names)); };
  auto ns = [&] { return pick(8) == 0 ? std::string("other") : std::string("default"); };
  auto node = [&] { int n = pick(shape.nodes + 1); return n == 0 ? std::string() : "node-" + std::to_string(n); };
  for (int step = 0; step < ops; ++step) {
    const int op = pick(100);
    if (op < 40) {
      std::string a = ns(), b = name(), c = node();
      bool r = coin(shape.ready);
      ASSERT_EQ(pool.Add({a, b, c, r}), model.Add(a, b, c, r)) << "add seed " << seed << " step " << step;
    } else if (op < 44) {
      std::string a = ns(), b = name(), c = node();
      bool r = coin(shape.ready);
      ASSERT_EQ(pool.Update({a, b, c, r}), model.Update(a, b, c, r)) << "update seed " << seed << " step " << step;
    } else if (op < 49) {
      std::string a = ns(), b = name();
      ASSERT_EQ(pool.Remove(a, b), model.Remove(a, b)) << "remove seed " << seed << " step " << step;
    } else if (op < 82) {
      auto got = PopSpread(pool);
      auto want = model.PopSpread();
      ASSERT_EQ(got, want) << "pop_spread seed " << seed << " step " << step;
      if (got) handed.push_back(*got);
    } else if (op < 90) {
      auto got = PopFifo(pool);
      auto want = model.PopFifo();
      ASSERT_EQ(got, want) << "pop_fifo seed " << seed << " step " << step;
      if (got) handed.push_back(*got);
    } else if (!handed.empty()) {
      const NaiveKey& k = handed[static_cast<size_t>(pick(static_cast<int>(handed.size())))];
      uint64_t token = coin(0.1) ? k.token + 1 : k.token;
      ASSERT_EQ(pool.PutBack(k.ns, k.name, token), model.PutBack(k.ns, k.name, token))
          << "put_back seed " << seed << " step " << step;
    }
    if (handed.size() > 64) handed.erase(handed.begin(), handed.begin() + 32);
    if (step % 997 == 0) ExpectSameState(pool, model, seed, step);
  }
  ExpectSameState(pool, model, seed, ops);
}

// Several shapes so both the large-pool and the churny-small-pool paths are
// exercised; 2.4M operations in total.
TEST(WarmPoolDifferential, AllReadyMatchesReferenceExactly) {
  for (uint64_t seed = 1; seed <= 4; ++seed) RunDifferential(seed, 150000, {300, 20, 1.0});
}

TEST(WarmPoolDifferential, MixedReadinessMatchesModel) {
  for (uint64_t seed = 11; seed <= 14; ++seed) RunDifferential(seed, 150000, {300, 20, 0.6});
}

TEST(WarmPoolDifferential, FewNodesManyTies) {
  for (uint64_t seed = 21; seed <= 24; ++seed) RunDifferential(seed, 150000, {120, 3, 0.8});
}

TEST(WarmPoolDifferential, ManyNodesSmallCounts) {
  for (uint64_t seed = 31; seed <= 34; ++seed) RunDifferential(seed, 150000, {600, 200, 0.5});
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

// pool.h's promise, counted by Berth's allocator (every block it hands this
// thread): once warm, hand-outs followed by re-adds, put_backs and node or
// readiness moves of the keys allocate nothing.
TEST(PoolTest, PopThenReAddAllocatesNothing) {
#ifdef BERTH_SYSTEM_ALLOCATOR
  GTEST_SKIP() << "allocations are counted by Berth's mimalloc paths only";
#else
  WarmPool pool;
  char name[32];
  for (int i = 0; i < 1000; ++i) {
    std::snprintf(name, sizeof name, "sb-%d", i);
    pool.Add(KeyView{"ns", name, i % 3 == 0 ? "node-a" : (i % 3 == 1 ? "node-b" : "node-c"),
                     i % 4 != 0});
  }
  auto cycle = [&](int rounds) {
    for (int i = 0; i < rounds; ++i) {
      HandOut h;
      ASSERT_TRUE(i % 2 == 0 ? pool.PopSpread(&h) : pool.PopFifo(&h));
      if (i % 3 == 0) {
        ASSERT_TRUE(pool.PutBack(h.ns.view(), h.name.view(), h.token));
        ASSERT_TRUE(pool.PopSpread(&h));
      }
      // Re-added, alternately on its node with its readiness flipped, and
      // then moved to another node while linked.
      ASSERT_TRUE(pool.Add(KeyView{h.ns.view(), h.name.view(), h.node.view(), !h.ready}));
      ASSERT_FALSE(pool.Add(KeyView{h.ns.view(), h.name.view(),
                                    h.node.view() == "node-a" ? "node-b" : "node-a", h.ready}));
    }
  };
  cycle(kPutBackWindow * 2);  // warm: the departure ring reaches its full size
  const uint64_t before = AllocationsOnThisThread();
  cycle(20000);
  EXPECT_EQ(AllocationsOnThisThread() - before, 0u);
  EXPECT_EQ(pool.Stats().keys, 1000u);
  // The counter counts: a key never seen before allocates its entry.
  pool.Add(KeyView{"ns", "fresh", "node-a", true});
  EXPECT_GT(AllocationsOnThisThread() - before, 0u);
#endif
}

}  // namespace
}  // namespace berth
