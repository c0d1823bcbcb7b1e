// ObjectCache: the version guard, tombstones, relists and indexed lists,
// case by case and against the naive model on random histories.
#include "core/cache/cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/naive_cache.h"

namespace berth {
namespace {

using testing::NaiveCache;
using testing::NaiveObject;

using Pairs = std::vector<std::pair<std::string, std::string>>;

ObjectRef Make(const std::string& ns, const std::string& name, uint64_t rv, const Pairs& labels = {},
               const std::string& payload = "") {
  std::vector<LabelPair> ls;
  for (const auto& [k, v] : labels) ls.push_back({k, v});
  return Object::Make(ns, name, rv, ls, payload);
}

NaiveObject ToNaive(const ObjectRef& o) {
  Pairs ls;
  for (size_t i = 0; i < o->label_count(); ++i) ls.emplace_back(o->label(i).key, o->label(i).value);
  return {std::string(o->ns()), std::string(o->name()), o->rv(), Labels(ls), std::string(o->payload())};
}

Selector Sel(const std::string& text) {
  Selector s;
  EXPECT_TRUE(Selector::Parse(text, &s).ok()) << text;
  return s;
}

std::vector<std::string> Names(const ObjectCache& c, const std::string& ns, const std::string& sel) {
  Selector s = Sel(sel);
  std::vector<ObjectRef> out;
  uint64_t rv = 0;
  EXPECT_TRUE(c.List(ns, &s, &out, &rv).ok());
  std::vector<std::string> names;
  for (const auto& o : out) names.emplace_back(o->name());
  return names;
}

TEST(Object, LabelsAreSortedAndTheLastOfARepeatedKeyWins) {
  ObjectRef o = Make("ns", "a", 7, {{"b", "2"}, {"a", "1"}, {"b", "3"}}, "payload");
  EXPECT_EQ(o->ns(), "ns");
  EXPECT_EQ(o->name(), "a");
  EXPECT_EQ(o->rv(), 7u);
  EXPECT_EQ(o->payload(), "payload");
  ASSERT_EQ(o->label_count(), 2u);
  EXPECT_EQ(o->label(0).key, "a");
  EXPECT_EQ(o->Get("b"), "3");
  EXPECT_FALSE(o->Get("c").has_value());
}

TEST(ObjectCache, ListAndGetBeforeTheFirstSyncAreNotSynced) {
  ObjectCache c;
  EXPECT_TRUE(c.Upsert(Make("ns", "a", 1)));
  std::vector<ObjectRef> out;
  uint64_t rv;
  EXPECT_EQ(c.List("", nullptr, &out, &rv).code(), Code::kNotSynced);
  ObjectRef o;
  EXPECT_EQ(c.Get("ns", "a", &o).code(), Code::kNotSynced);
  c.Replace(std::vector<ObjectRef>{}, 0);
  EXPECT_TRUE(c.Get("ns", "a", &o).ok());
  EXPECT_TRUE(o);  // the event applied before the sync is kept (newer than the list)
}

TEST(ObjectCache, OlderOrEqualUpsertsAreIgnored) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{}, 0);
  EXPECT_TRUE(c.Upsert(Make("ns", "a", 5, {{"v", "new"}})));
  EXPECT_FALSE(c.Upsert(Make("ns", "a", 4, {{"v", "old"}})));
  EXPECT_FALSE(c.Upsert(Make("ns", "a", 5, {{"v", "dup"}})));
  ObjectRef o;
  ASSERT_TRUE(c.Get("ns", "a", &o).ok());
  EXPECT_EQ(o->Get("v"), "new");
  CacheStats s = c.Stats();
  EXPECT_EQ(s.applied, 1u);
  EXPECT_EQ(s.ignored, 2u);
  EXPECT_EQ(s.resource_version, 5u);
}

TEST(ObjectCache, DeleteLeavesATombstoneThatStopsAnOlderAdd) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{}, 0);
  c.Upsert(Make("ns", "a", 5));
  EXPECT_TRUE(c.Delete("ns", "a", 8));
  EXPECT_FALSE(c.Upsert(Make("ns", "a", 6)));  // late watch event: stays deleted
  EXPECT_FALSE(c.Upsert(Make("ns", "a", 8)));
  ObjectRef o;
  ASSERT_TRUE(c.Get("ns", "a", &o).ok());
  EXPECT_FALSE(o);
  EXPECT_TRUE(c.Upsert(Make("ns", "a", 9)));  // re-created later: back
  EXPECT_EQ(c.Stats().tombstones, 0u);
}

TEST(ObjectCache, DeleteOlderThanTheCachedObjectIsIgnored) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{}, 0);
  c.Upsert(Make("ns", "a", 10));
  EXPECT_FALSE(c.Delete("ns", "a", 9));
  EXPECT_EQ(c.Stats().objects, 1u);
}

TEST(ObjectCache, DeleteWithVersionZeroDeletesWhateverIsCached) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{}, 0);
  c.Upsert(Make("ns", "a", 10));
  EXPECT_TRUE(c.Delete("ns", "a", 0));
  EXPECT_FALSE(c.Upsert(Make("ns", "a", 10)));  // the tombstone holds rv 10
  EXPECT_TRUE(c.Upsert(Make("ns", "a", 11)));
  EXPECT_FALSE(c.Delete("ns", "zz", 0));  // nothing cached, no version to record
}

TEST(ObjectCache, DeleteOfAnAbsentObjectStillBlocksOlderAdds) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{}, 0);
  EXPECT_TRUE(c.Delete("ns", "a", 7));  // the delete event overtook the add
  EXPECT_FALSE(c.Upsert(Make("ns", "a", 6)));
  EXPECT_EQ(c.Stats().objects, 0u);
}

TEST(ObjectCache, TombstonesAreBoundedOldestFirst) {
  ObjectCache c(2);
  c.Replace(std::vector<ObjectRef>{}, 0);
  c.Delete("ns", "a", 5);
  c.Delete("ns", "b", 5);
  c.Delete("ns", "c", 5);
  EXPECT_EQ(c.Stats().tombstones, 2u);
  EXPECT_TRUE(c.Upsert(Make("ns", "a", 4)));   // a's tombstone was forgotten
  EXPECT_FALSE(c.Upsert(Make("ns", "b", 4)));
}

TEST(ObjectCache, ReplaceKeepsWhatIsNewerThanTheList) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{Make("ns", "old", 1), Make("ns", "gone", 2)}, 2);
  c.Upsert(Make("ns", "written", 12));  // write-through after the list below was taken
  c.Delete("ns", "deleted", 11);         // deleted after the list below was taken
  c.Upsert(Make("ns", "stale", 3));      // older than the list: the list decides
  c.Replace(std::vector<ObjectRef>{Make("ns", "old", 1), Make("ns", "deleted", 9), Make("ns", "listed", 10)}, 10);
  EXPECT_EQ(Names(c, "", ""), (std::vector<std::string>{"listed", "old", "written"}));
  EXPECT_EQ(c.Stats().tombstones, 1u);
  EXPECT_FALSE(c.Upsert(Make("ns", "deleted", 10)));
}

TEST(ObjectCache, ListFiltersByNamespaceAndSelectorSortedByName) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{Make("a", "z", 1, {{"app", "web"}, {"tier", "fe"}}),
             Make("a", "y", 2, {{"app", "web"}, {"tier", "be"}}),
             Make("b", "x", 3, {{"app", "web"}}),
             Make("b", "w", 4, {{"app", "db"}, {"v", "3"}})},
            4);
  EXPECT_EQ(Names(c, "", "app=web"), (std::vector<std::string>{"y", "z", "x"}));
  EXPECT_EQ(Names(c, "a", "app=web,tier in (fe)"), (std::vector<std::string>{"z"}));
  EXPECT_EQ(Names(c, "b", "!tier"), (std::vector<std::string>{"w", "x"}));
  EXPECT_EQ(Names(c, "", "v>2"), (std::vector<std::string>{"w"}));
  EXPECT_EQ(Names(c, "", "app notin (web)"), (std::vector<std::string>{"w"}));
  EXPECT_EQ(Names(c, "c", ""), (std::vector<std::string>{}));
  EXPECT_EQ(Names(c, "", "nope=x"), (std::vector<std::string>{}));
}

TEST(ObjectCache, UpdatedLabelsMoveBetweenPostings) {
  ObjectCache c;
  c.Replace(std::vector<ObjectRef>{}, 0);
  c.Upsert(Make("ns", "a", 1, {{"app", "web"}, {"old", "1"}}));
  c.Upsert(Make("ns", "a", 2, {{"app", "db"}, {"new", "1"}}));
  EXPECT_EQ(Names(c, "", "app=web"), (std::vector<std::string>{}));
  EXPECT_EQ(Names(c, "", "app=db"), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Names(c, "", "old"), (std::vector<std::string>{}));
  EXPECT_EQ(Names(c, "", "new"), (std::vector<std::string>{"a"}));
}

TEST(ObjectCache, ListsStayRightAcrossPostingCompaction) {
  // Deletes leave dead members in the postings until they outnumber the live
  // ones; then every posting is compacted and positions are rewritten. Label
  // changes after that must still move the right members.
  ObjectCache c;
  NaiveCache model(kDefaultTombstoneLimit);
  c.Replace(std::vector<ObjectRef>{}, 0);
  model.Replace({}, 0);
  uint64_t rv = 1;
  auto ns = [](int i) { return std::string("ns").append(std::to_string(i % 3)); };
  auto name = [](int i) { return std::string("o").append(std::to_string(i)); };
  auto upsert = [&](int i, const char* app, const char* tier) {
    ObjectRef o = Make(ns(i), name(i), rv++, {{"app", app}, {"tier", tier}});
    ASSERT_EQ(c.Upsert(o), model.Upsert(ToNaive(o)));
  };
  auto remove = [&](int i) {
    ASSERT_TRUE(c.Delete(ns(i), name(i), rv));
    model.Delete(ns(i), name(i), rv++);
  };
  for (int i = 0; i < 3000; ++i) upsert(i, i % 2 ? "web" : "db", i % 3 ? "a" : "b");
  for (int i = 0; i < 3000; ++i) {
    if (i % 4 != 2) remove(i);  // dead members outnumber live ones: compacts
  }
  for (int i = 2; i < 3000; i += 8) upsert(i, "cache", i % 5 ? "a" : "c");  // labels change
  for (int i = 0; i < 3000; i += 16) upsert(i, "web", "b");                  // re-created
  for (const char* text : {"", "app=web", "app in (web,cache),tier=a", "tier", "!tier", "app!=db"}) {
    Selector sel = Sel(text);
    for (const char* n : {"", "ns1"}) {
      std::vector<ObjectRef> got;
      uint64_t v;
      ASSERT_TRUE(c.List(n, &sel, &got, &v).ok());
      std::vector<NaiveObject> have;
      for (const auto& o : got) have.push_back(ToNaive(o));
      EXPECT_EQ(have, model.List(n, &sel)) << "selector '" << text << "' ns '" << n << "'";
    }
  }
}

// ---- key order ------------------------------------------------------------------
//
// Lists come out in key order three ways: by the key rank of each object
// (kept lazily: new keys wait unranked until a list wants the order), by
// sorting keys when the order is incomplete and the list is small, and by a
// walk of the whole order for lists without a narrowing posting. These
// tests interleave many adds, deletes, re-creates and label changes with
// lists of every selectivity, against the naive model.

// Objects whose labels make selectors of known selectivity: rare=y (0.5%),
// p=0..9 (10%), half=a|b (50%), all=x (100%).
Pairs OrderLabels(uint64_t i) {
  Pairs ls = {{"p", std::to_string(i % 10)}, {"half", i % 2 ? "a" : "b"}, {"all", "x"}};
  if (i % 200 == 7) ls.emplace_back("rare", "y");
  return ls;
}

const char* const kOrderSelectors[] = {
    "p=zz",             // 0%, no posting at all
    "rare=y",           // 0.5%
    "rare=y,half=a",    // 0.5%
    "p=3,half=b",       // 0%: p=3 objects are all half=a
    "!all",             // 0%, a walk of the whole order
    "p=3",              // 10%
    "p in (1,2),half",  // 10%, one requirement given by the posting, one checked
    "half=a",           // 50%
    "half notin (b)",   // 50%, a walk of the whole order
    "all",              // 100%
    "",                 // 100%, no requirement
    "p>4",              // 50%, the key's posting and a numeric check
};

void ExpectListsMatch(const ObjectCache& c, const NaiveCache& model, std::mt19937_64& rng,
                      const std::vector<std::string>& namespaces) {
  // A random order, so small lists run both before a broad list completed
  // the order (sorted by key) and after (sorted by rank).
  std::vector<std::string> sels(std::begin(kOrderSelectors), std::end(kOrderSelectors));
  std::shuffle(sels.begin(), sels.end(), rng);
  for (const std::string& text : sels) {
    Selector sel = Sel(text);
    for (const std::string& ns : {std::string(), namespaces[rng() % namespaces.size()]}) {
      std::vector<ObjectRef> got;
      uint64_t v;
      ASSERT_TRUE(c.List(ns, &sel, &got, &v).ok());
      std::vector<NaiveObject> have;
      for (const auto& o : got) have.push_back(ToNaive(o));
      ASSERT_EQ(have, model.List(ns, &sel)) << "selector '" << text << "' ns '" << ns << "'";
    }
  }
}

// Single-threaded and long: named Differential, so the TSan suite skips it.
TEST(ObjectCacheKeyOrderDifferential, ListsStaySortedAcrossManyAddsDeletesAndReplacesBetweenLists) {
  std::mt19937_64 rng(7);
  const std::vector<std::string> namespaces = {"a", "b", "kube-system", "z"};
  ObjectCache c(1000);
  NaiveCache model(1000);
  uint64_t rv = 1;
  // Keys: random names, so key order has nothing to do with insertion order.
  auto key = [&](uint64_t i) {
    return std::pair{namespaces[(i * 2654435761u) % namespaces.size()],
                     std::string("o-").append(std::to_string((i * 40503u) % 100003))};
  };
  auto upsert = [&](uint64_t i, uint64_t labels_of) {
    auto [ns, name] = key(i);
    ObjectRef o = Make(ns, name, rv++, OrderLabels(labels_of));
    ASSERT_EQ(c.Upsert(o), model.Upsert(ToNaive(o)));
  };
  std::vector<ObjectRef> initial;
  std::vector<NaiveObject> naive_initial;
  for (uint64_t i = 0; i < 2000; ++i) {
    auto [ns, name] = key(i);
    initial.push_back(Make(ns, name, rv++, OrderLabels(i)));
    naive_initial.push_back(ToNaive(initial.back()));
  }
  c.Replace(initial, rv);
  model.Replace(naive_initial, rv);
  ExpectListsMatch(c, model, rng, namespaces);
  uint64_t next_key = 2000;
  for (int round = 0; round < 60; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // From a few to many changes between lists: a few new keys merge by
    // binary search, many by one linear merge.
    const int changes = round % 3 == 0 ? 1 + static_cast<int>(rng() % 5) : static_cast<int>(rng() % 600);
    for (int k = 0; k < changes; ++k) {
      const int op = static_cast<int>(rng() % 10);
      if (op < 4) {
        upsert(next_key, next_key);  // a new key
        ++next_key;
      } else if (op < 7) {  // a delete (its slot is reused by the next new key)
        auto [ns, name] = key(rng() % next_key);
        const bool deleted = c.Delete(ns, name, rv);
        ASSERT_EQ(deleted, model.Delete(ns, name, rv++));
      } else if (op < 9) {  // a new version of a key, maybe re-created, other labels
        upsert(rng() % next_key, rng());
      } else {  // a new version with the same labels
        const uint64_t i = rng() % next_key;
        upsert(i, i);
      }
    }
    if (round % 20 == 19) {  // a relist that keeps what is newer than it
      std::vector<ObjectRef> list;
      std::vector<NaiveObject> naive_list;
      const uint64_t list_rv = rv - 50;
      for (uint64_t i = 0; i < 1500; ++i) {
        auto [ns, name] = key(rng() % next_key);
        list.push_back(Make(ns, name, 1 + rng() % list_rv, OrderLabels(i)));
        naive_list.push_back(ToNaive(list.back()));
      }
      c.Replace(list, list_rv);
      model.Replace(naive_list, list_rv);
    }
    ExpectListsMatch(c, model, rng, namespaces);
  }
}

TEST(ObjectCacheKeyOrder, KeysAddedAndDeletedWithoutListsInBetweenListRight) {
  // Thousands of keys come and go with no list to order them, reusing the
  // same few slots; the first list after must see exactly the survivors.
  ObjectCache c(100);
  NaiveCache model(100);
  c.Replace(std::vector<ObjectRef>{}, 0);
  model.Replace({}, 0);
  std::mt19937_64 rng(3);
  const std::vector<std::string> namespaces = {"x", "y"};
  uint64_t rv = 1;
  for (int i = 0; i < 6000; ++i) {
    const std::string ns = namespaces[i % 2], name = std::string("k").append(std::to_string(i));
    ObjectRef o = Make(ns, name, rv++, OrderLabels(i));
    ASSERT_TRUE(c.Upsert(o));
    model.Upsert(ToNaive(o));
    if (i % 100 != 0) {
      ASSERT_TRUE(c.Delete(ns, name, rv));
      model.Delete(ns, name, rv++);
    }
  }
  ExpectListsMatch(c, model, rng, namespaces);
  EXPECT_EQ(Names(c, "x", "p=0").size(), 60u);  // every 100th key survived: p=0, ns x
}

TEST(ObjectCacheKeyOrder, ReadersCompletingTheOrderTogetherSeeSortedCompleteLists) {
  // Several readers list broadly while a writer keeps adding keys, so the
  // order is incomplete at most lists and readers race to complete it.
  ObjectCache c;
  std::vector<ObjectRef> initial;
  for (uint64_t i = 0; i < 3000; ++i) initial.push_back(Make("ns", std::string("o").append(std::to_string(i)), i + 1, OrderLabels(i)));
  c.Replace(initial, 3000);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      Selector sel = Sel(t == 0 ? "half=a" : t == 1 ? "" : "p in (1,2)");
      size_t last = 0;
      while (!stop.load()) {
        std::vector<ObjectRef> out;
        uint64_t rv;
        ASSERT_TRUE(c.List("", &sel, &out, &rv).ok());
        for (size_t i = 1; i < out.size(); ++i) ASSERT_LT(out[i - 1]->key(), out[i]->key());
        for (const auto& o : out) ASSERT_TRUE(sel.Matches(*o));
        ASSERT_GE(out.size(), last);  // keys are only added
        last = out.size();
      }
    });
  }
  for (uint64_t i = 3000; i < 20000; ++i) {
    c.Upsert(Make("ns", std::string("o").append(std::to_string(i)), i + 1, OrderLabels(i)));
  }
  stop = true;
  for (auto& r : readers) r.join();
  EXPECT_EQ(Names(c, "", "half=a").size(), 10000u);
}

// ---- differential -------------------------------------------------------------

struct Gen {
  std::mt19937_64 rng;
  uint64_t clock = 1;  // the "API server's" resourceVersion
  int pick(int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); }
  // (Appending avoids GCC 12's false -Wrestrict on "literal" + std::string.)
  std::string ns() { return std::string("ns").append(std::to_string(pick(3))); }
  std::string name() { return std::string("obj-").append(std::to_string(pick(40))); }
  Pairs labels() {
    static const char* keys[] = {"app", "tier", "env", "example.com/team", "v"};
    static const char* values[] = {"web", "db", "a", "b", "", "1", "2", "10"};
    Pairs out;
    for (int i = 0, n = pick(4); i < n; ++i) out.emplace_back(keys[pick(5)], values[pick(8)]);
    return out;
  }
  // Mostly fresh versions, sometimes late (stale) ones.
  uint64_t rv() {
    ++clock;
    const uint64_t back = pick(5) == 0 ? static_cast<uint64_t>(pick(8)) : 0;
    return back < clock ? clock - back : 1;
  }
  std::string selector() {
    static const char* parts[] = {"app=web", "app!=db", "tier in (a,b)", "tier notin (a)", "env",
                                  "!env", "v>1", "v<10", "example.com/team=a", "app in (web,db)"};
    std::string s;
    for (int i = 0, n = pick(3); i < n; ++i) {
      if (i > 0) s += ',';
      s += parts[pick(10)];
    }
    return s;
  }
};



void RunCacheDifferential(uint64_t seed, int ops) {
  Gen g{std::mt19937_64(seed)};
  ObjectCache cache(6);
  NaiveCache model(6);
  for (int step = 0; step < ops; ++step) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " step " + std::to_string(step));
    const int op = g.pick(100);
    if (op < 45) {
      ObjectRef o = Make(g.ns(), g.name(), g.rv(), g.labels(), std::string("p").append(std::to_string(step)));
      ASSERT_EQ(cache.Upsert(o), model.Upsert(ToNaive(o)));
    } else if (op < 65) {
      std::string a = g.ns(), b = g.name();
      uint64_t rv = g.pick(6) == 0 ? 0 : g.rv();
      ASSERT_EQ(cache.Delete(a, b, rv), model.Delete(a, b, rv));
    } else if (op < 68) {
      std::vector<ObjectRef> list;
      std::vector<NaiveObject> naive;
      const uint64_t back = std::min<uint64_t>(g.clock - 1, static_cast<uint64_t>(g.pick(6)));
      const uint64_t list_rv = g.clock - back;
      for (int i = 0, n = g.pick(30); i < n; ++i) {
        ObjectRef o = Make(g.ns(), g.name(), 1 + g.rng() % list_rv, g.labels());
        list.push_back(o);
        naive.push_back(ToNaive(o));
      }
      cache.Replace(list, list_rv);
      model.Replace(naive, list_rv);
    } else if (op < 95) {
      const std::string ns = g.pick(3) == 0 ? std::string() : g.ns();
      Selector sel = Sel(g.selector());
      std::vector<ObjectRef> got;
      uint64_t rv = 0;
      Status s = cache.List(ns, &sel, &got, &rv);
      if (!model.synced()) {
        ASSERT_EQ(s.code(), Code::kNotSynced);
        continue;
      }
      ASSERT_TRUE(s.ok());
      std::vector<NaiveObject> want = model.List(ns, &sel), have;
      for (const auto& o : got) have.push_back(ToNaive(o));
      ASSERT_EQ(have, want) << "list ns='" << ns << "' selector '" << sel.String() << "'";
    } else if (model.synced()) {
      std::string a = g.ns(), b = g.name();
      ObjectRef o;
      ASSERT_TRUE(cache.Get(a, b, &o).ok());
      const NaiveObject* want = model.Get(a, b);
      ASSERT_EQ(static_cast<bool>(o), want != nullptr);
      if (o) {
        ASSERT_EQ(ToNaive(o), *want);
      }
    }
    CacheStats st = cache.Stats();
    ASSERT_EQ(st.objects, model.size());
    ASSERT_EQ(st.tombstones, model.tombstones());
  }
}

TEST(ObjectCacheDifferential, MatchesTheNaiveModelOnRandomHistories) {
  for (uint64_t seed = 1; seed <= 12; ++seed) RunCacheDifferential(seed, 20000);
}

TEST(ObjectCacheStress, ReadersSeeConsistentListsWhileAWriterApplies) {
  ObjectCache cache;
  cache.Replace(std::vector<ObjectRef>{}, 0);
  std::atomic<bool> stop{false};
  std::atomic<long> lists{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      Selector sel = Sel("app=web,tier in (a,b)");
      while (!stop.load()) {
        std::vector<ObjectRef> out;
        uint64_t rv;
        ASSERT_TRUE(cache.List("", &sel, &out, &rv).ok());
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_TRUE(sel.Matches(*out[i]));
          if (i > 0) {
            ASSERT_LT(out[i - 1]->key(), out[i]->key());
          }
        }
        lists.fetch_add(1);
      }
    });
  }
  Gen g{std::mt19937_64(99)};
  NaiveCache model(kDefaultTombstoneLimit);
  model.Replace({}, 0);
  for (int i = 0; i < 30000; ++i) {
    if (g.pick(4) == 0) {
      std::string a = g.ns(), b = g.name();
      uint64_t rv = g.rv();
      cache.Delete(a, b, rv);
      model.Delete(a, b, rv);
    } else {
      ObjectRef o = Make(g.ns(), g.name(), g.rv(), g.labels());
      cache.Upsert(o);
      model.Upsert(ToNaive(o));
    }
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(lists.load(), 0);
  std::vector<ObjectRef> all;
  uint64_t rv;
  ASSERT_TRUE(cache.List("", nullptr, &all, &rv).ok());
  std::vector<NaiveObject> have;
  for (const auto& o : all) have.push_back(ToNaive(o));
  EXPECT_EQ(have, model.List("", nullptr));
}

}  // namespace
}  // namespace berth
