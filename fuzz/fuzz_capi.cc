// A differential target: the input is decoded as a sequence of C ABI calls
// on a warm pool, an object cache, a limiter and its notifier, two token
// buckets and a shared limiter (including bad names, NULL, freed, wrong-type
// and made-up handles, and out-of-range numbers), and every result is
// checked against the naive reference models (tests/support/). Invalid
// calls must fail with their status and leave the model's state unchanged.
// Every exported function is called; fuzz/exports checks that it stays so.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "berth_generated.h"
#include "fuzz/fuzz.h"
#include "tests/support/naive_cache.h"
#include "tests/support/naive_limit.h"
#include "tests/support/naive_pool.h"

namespace {

using berth::testing::BucketBound;
using berth::testing::NaiveCache;
using berth::testing::NaiveLimiter;
using berth::testing::NaivePool;
using berth_fuzz::Checked;
using berth_fuzz::Expect;
using berth_fuzz::Input;
using berth_fuzz::OneOf;

// A name: usually one of a few valid ones, sometimes invalid in one of the
// ways callers get them wrong. valid is false for the invalid ones.
std::string Name(uint8_t b, bool* valid) {
  *valid = true;
  switch (b % 10) {
    case 6: *valid = false; return "";
    case 7: *valid = false; return std::string("a\0b", 3);
    case 8: *valid = false; return std::string(300, 'a');
    case 9: *valid = false; return "\xff\xfe";
    default: return "k" + std::to_string(b % 10);
  }
}

std::string Node(uint8_t b, bool* valid) {
  *valid = true;
  switch (b % 7) {
    case 0: return "";
    case 5: *valid = false; return std::string(300, 'n');
    case 6: *valid = false; return "\xc0\x80";
    default: return "node" + std::to_string(b % 7);
  }
}

struct HandOut {
  std::string name;
  uint64_t token;
};

template <class Root>
const Root* Read(berth_buffer* buf, const char* id) {
  const uint8_t* bytes = nullptr;
  size_t len = 0;
  Expect(Checked(berth_buffer_data(&bytes, &len, buf)) == BERTH_OK);
  flatbuffers::Verifier v(bytes, len);
  Expect(v.VerifyBuffer<Root>(id));
  return flatbuffers::GetRoot<Root>(bytes);
}

std::string Str(const flatbuffers::String* s) { return s == nullptr ? "" : s->str(); }

// Tokens posted to the notifier: the shared limiter's have the top bit set.
constexpr uint64_t kSharedToken = uint64_t{1} << 63;
// Blocking waits per input (each may take up to 1 ms).
constexpr int kMaxWaits = 8;

// Times a bucket operation moves the fuzz clock by (ns).
constexpr int64_t kSteps[] = {0, 0, 1, 1'000, 1'000'000, 20'000'000, 1'000'000'000, 3'600'000'000'000};
constexpr double kRates[] = {1, 7.5, 1000, 250000, INFINITY};

struct Reserved {
  berth_reservation r;
  int epoch;  // the bound it counts against (see Bucket)
};

class Run {
 public:
  explicit Run(Input& in) : in_(in) {
    Expect(Checked(berth_engine_new(&engine_)) == BERTH_OK);
    berth_cache_options opts{};
    opts.tombstone_limit = 4;
    Expect(Checked(berth_cache_new(&cache_, &opts)) == BERTH_OK);
    Expect(Checked(berth_limiter_new(&limiter_, 4)) == BERTH_OK);
    Expect(Checked(berth_notifier_new(&notifier_)) == BERTH_OK);
  }

  void Step() {
    switch (in_.byte() % 44) {
      case 0: PoolAddOrUpdate(true); break;
      case 1: PoolAddOrUpdate(false); break;
      case 2: PoolRemove(); break;
      case 3: PoolPop(true); break;
      case 4: PoolPop(false); break;
      case 5: PoolPutBack(); break;
      case 6: CacheUpsert(); break;
      case 7: CacheDelete(); break;
      case 8: CacheList(); break;
      case 9: CacheRelist(); break;
      case 10: LimiterTryAcquire(); break;
      case 11: LimiterRelease(); break;
      case 12: NullHandles(); break;
      case 13: BadHandles(); break;
      case 14: PoolAddBatch(); break;
      case 15: PoolRemovePool(); break;
      case 16: PoolSnapshot(); break;
      case 17: PoolNodeStats(); break;
      case 18: CacheGet(); break;
      case 19: CacheApply(); break;
      case 20: LimiterAcquire(); break;
      case 21: LimiterAcquireAsync(); break;
      case 22: LimiterClaim(); break;
      case 23: LimiterCancel(); break;
      case 24: LimiterSetCapacity(); break;
      case 25: LimiterStats(); break;
      case 26: Drain(); break;
      case 27: NotifierReplace(); break;
      case 28: BucketAllow(); break;
      case 29: BucketReserve(); break;
      case 30: BucketCancel(); break;
      case 31: BucketSet(); break;
      case 32: BucketStats(); break;
      case 33: WildBucket(); break;
      case 34: SharedTryAcquire(); break;
      case 35: SharedAcquire(); break;
      case 36: SharedAcquireAsync(); break;
      case 37: SharedClaim(); break;
      case 38: SharedCancel(); break;
      case 39: SharedRelease(); break;
      case 40: SharedSetCapacity(); break;
      case 41: SharedStats(); break;
      case 42: SharedOpenClose(); break;
      case 43: Library(); break;
    }
  }

  // The final states agree with the models; everything is given back.
  void Finish() {
    if (pool_exists_) {
      berth_pool_stats st{};
      Expect(Checked(berth_pool_get_stats(&st, engine_, pool_, 1)) == BERTH_OK);
      Expect(st.keys == pool_model_.size() && st.put_back_records == pool_model_.put_back_records() &&
             st.ready_keys == pool_model_.ready_keys() && st.scheduled_keys == pool_model_.scheduled_keys() &&
             st.nodes == pool_model_.NodeCounts().size());
    }
    berth_cache_stats cs{};
    Expect(Checked(berth_cache_get_stats(&cs, cache_)) == BERTH_OK);
    Expect(cs.objects == cache_model_.size() && cs.tombstones == cache_model_.tombstones() &&
           (cs.synced == 1) == synced_);
    LimiterStats();
    Drain();
    if (bucket_ != nullptr) {
      Advance(kSteps[7]);  // every reservation acts
      Expect(Checked(berth_bucket_free(bucket_)) == BERTH_OK);
    }
    Expect(Checked(berth_bucket_free(wild_)) == BERTH_OK);
    SharedFinish();
    Expect(Checked(berth_limiter_free(limiter_)) == BERTH_OK);
    Expect(Checked(berth_notifier_free(notifier_)) == BERTH_OK);
    Expect(Checked(berth_cache_free(cache_)) == BERTH_OK);
    DropHeld();  // outlives its cache
    Expect(Checked(berth_engine_free(engine_)) == BERTH_OK);
  }

 private:
  // ---- pool ----------------------------------------------------------------

  void PoolAddOrUpdate(bool add) {
    bool ok_name = true, ok_node = true;
    const std::string name = Name(in_.byte(), &ok_name), node = Node(in_.byte(), &ok_node);
    const int ready = in_.byte() % 3;  // 2 is out of range
    int flag = -1;
    const berth_status s = Checked((add ? berth_pool_add : berth_pool_update)(
        &flag, engine_, pool_, 1, "ns", 2, name.data(), name.size(), node.data(), node.size(), ready));
    if (ready == 2) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    } else if (!ok_name || !ok_node) {
      Expect(s == BERTH_ERR_INVALID_NAME);
    } else {
      Expect(s == BERTH_OK);
      const bool want = add ? pool_model_.Add("ns", name, node, ready == 1)
                            : pool_model_.Update("ns", name, node, ready == 1);
      Expect((flag == 1) == want);
      pool_exists_ |= add;
    }
  }

  void PoolAddBatch() {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<berth::fb::PoolKey>> keys;
    struct Key {
      std::string name, node;
      bool ready;
    };
    std::vector<Key> want;
    berth_status expect = BERTH_OK;
    for (int i = in_.byte() % 4; i > 0; --i) {
      bool ok_name = true, ok_node = true;
      const uint8_t b = in_.byte();
      Key k{Name(b, &ok_name), Node(in_.byte(), &ok_node), (b & 0x80) != 0};
      if (!ok_name || !ok_node) expect = BERTH_ERR_INVALID_NAME;
      keys.push_back(berth::fb::CreatePoolKey(fbb, fbb.CreateString("ns"), fbb.CreateString(k.name),
                                              fbb.CreateString(k.node), k.ready, 12345));  // seq is ignored
      want.push_back(std::move(k));
    }
    fbb.Finish(berth::fb::CreatePoolKeyBatch(fbb, fbb.CreateVector(keys)), BERTH_FB_POOL_KEY_BATCH_ID);
    size_t inserted = 99;
    const berth_status s = Checked(
        berth_pool_add_batch(&inserted, engine_, pool_, 1, fbb.GetBufferPointer(), fbb.GetSize()));
    Expect(s == expect);
    if (s != BERTH_OK) return;
    size_t added = 0;
    for (const Key& k : want) added += pool_model_.Add("ns", k.name, k.node, k.ready) ? 1 : 0;
    Expect(inserted == added);
    pool_exists_ = true;  // even an empty batch makes the pool
  }

  void PoolRemove() {
    bool ok_name = true;
    const std::string name = Name(in_.byte(), &ok_name);
    int removed = -1;
    const berth_status s =
        Checked(berth_pool_remove(&removed, engine_, pool_, 1, "ns", 2, name.data(), name.size()));
    if (!ok_name) {
      Expect(s == BERTH_ERR_INVALID_NAME);
    } else {
      Expect(s == BERTH_OK && (removed == 1) == pool_model_.Remove("ns", name));
    }
  }

  void PoolRemovePool() {
    int removed = -1;
    if (in_.byte() % 4 == 0) {
      Expect(Checked(berth_pool_remove_pool(&removed, engine_, "", 0)) == BERTH_ERR_INVALID_NAME);
      return;
    }
    Expect(PoolNames() == (pool_exists_ ? std::string("p\0", 2) : std::string()));
    Expect(Checked(berth_pool_remove_pool(&removed, engine_, pool_, 1)) == BERTH_OK);
    Expect((removed == 1) == pool_exists_);
    pool_model_ = NaivePool();  // a pool made again starts afresh
    pool_exists_ = false;
    Expect(PoolNames().empty());
  }

  // berth_engine_list_pools, as its bytes.
  std::string PoolNames() {
    berth_buffer* buf = nullptr;
    Expect(Checked(berth_engine_list_pools(&buf, engine_)) == BERTH_OK);
    const uint8_t* data = nullptr;
    size_t len = 0;
    Expect(Checked(berth_buffer_data(&data, &len, buf)) == BERTH_OK);
    std::string names(reinterpret_cast<const char*>(data), len);
    Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
    return names;
  }

  void PoolPop(bool spread) {
    berth_pool_key k;
    const berth_status s = Checked((spread ? berth_pool_pop_spread : berth_pool_pop_fifo)(&k, engine_, pool_, 1));
    if (!pool_exists_) {
      Expect(s == BERTH_ERR_NOT_FOUND);
      return;
    }
    auto want = spread ? pool_model_.PopSpread() : pool_model_.PopFifo();
    if (!want) {
      Expect(s == BERTH_EMPTY);
      return;
    }
    Expect(s == BERTH_OK);
    Expect(std::string(k.name, k.name_len) == want->name && std::string(k.node, k.node_len) == want->node &&
           (k.ready == 1) == want->ready && k.seq == want->seq && k.token == want->token);
    handed_.push_back({want->name, k.token});
    if (handed_.size() > 8) handed_.erase(handed_.begin());
  }

  void PoolPutBack() {
    if (handed_.empty() || !pool_exists_) return;
    const HandOut& h = handed_[in_.byte() % handed_.size()];
    const uint64_t token = in_.byte() % 4 == 0 ? h.token + 1 : h.token;
    int restored = -1;
    Expect(Checked(berth_pool_put_back(&restored, engine_, pool_, 1, "ns", 2, h.name.data(), h.name.size(),
                                       token)) == BERTH_OK);
    Expect((restored == 1) == pool_model_.PutBack("ns", h.name, token));
  }

  // A pool call that returns a buffer: NOT_FOUND until the pool exists.
  berth_buffer* PoolBuffer(berth_status (*call)(berth_buffer**, berth_engine*, const char*, size_t)) {
    berth_buffer* buf = nullptr;
    Expect(Checked(call(&buf, engine_, pool_, 1)) == (pool_exists_ ? BERTH_OK : BERTH_ERR_NOT_FOUND));
    return buf;
  }

  void PoolSnapshot() {
    berth_buffer* buf = PoolBuffer(berth_pool_snapshot);
    if (buf == nullptr) return;
    const auto* snap = Read<berth::fb::PoolSnapshot>(buf, BERTH_FB_POOL_SNAPSHOT_ID);
    const auto& want = pool_model_.keys();  // oldest first
    Expect(Str(snap->pool()) == pool_ && snap->keys() != nullptr && snap->keys()->size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      const auto* k = snap->keys()->Get(static_cast<flatbuffers::uoffset_t>(i));
      Expect(Str(k->namespace_()) == want[i].ns && Str(k->name()) == want[i].name &&
             Str(k->node()) == want[i].node && k->ready() == want[i].ready && k->seq() == want[i].seq);
    }
    Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
  }

  void PoolNodeStats() {
    berth_buffer* buf = PoolBuffer(berth_pool_node_stats);
    if (buf == nullptr) return;
    const auto* stats = Read<berth::fb::PoolNodeStats>(buf, BERTH_FB_POOL_NODE_STATS_ID);
    const auto want = pool_model_.NodeCounts();
    Expect(stats->nodes() != nullptr && stats->nodes()->size() == want.size());
    std::string last;
    for (const auto* n : *stats->nodes()) {
      const auto it = want.find(Str(n->node()));
      Expect(it != want.end() && n->keys() == it->second.first && n->ready_keys() == it->second.second);
      Expect(last < Str(n->node()));  // sorted by node name, no empty node
      last = Str(n->node());
    }
    Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
  }

  // ---- cache ---------------------------------------------------------------

  void CacheUpsert() {
    bool ok_name = true;
    const std::string name = Name(in_.byte(), &ok_name);
    const uint8_t r = in_.byte();
    const uint64_t rv = r % 5 == 0 ? clock_ - (r % 4) : ++clock_;  // some late versions
    const uint8_t l = in_.byte();
    const std::string app = l % 2 ? "web" : "db", tier = l % 3 ? "a" : "b";
    const berth_label labels[] = {{"app", 3, app.data(), app.size()}, {"tier", 4, tier.data(), tier.size()}};
    int applied = -1;
    const berth_status s = Checked(berth_cache_upsert(&applied, cache_, "ns", 2, name.data(), name.size(), rv,
                                                      labels, l % 3, nullptr, 0));
    if (!ok_name) {
      Expect(s == BERTH_ERR_INVALID_NAME);
      return;
    }
    Expect(s == BERTH_OK);
    std::vector<std::pair<std::string, std::string>> pairs;
    if (l % 3 > 0) pairs.emplace_back("app", app);
    if (l % 3 > 1) pairs.emplace_back("tier", tier);
    Expect((applied == 1) == cache_model_.Upsert({"ns", name, rv, berth::Labels(pairs), ""}));
  }

  void CacheDelete() {
    bool ok_name = true;
    const std::string name = Name(in_.byte(), &ok_name);
    const uint64_t rv = in_.byte() % 4 == 0 ? 0 : ++clock_;
    int applied = -1;
    const berth_status s = Checked(berth_cache_delete(&applied, cache_, "ns", 2, name.data(), name.size(), rv));
    if (!ok_name) {
      Expect(s == BERTH_ERR_INVALID_NAME);
      return;
    }
    Expect(s == BERTH_OK && (applied == 1) == cache_model_.Delete("ns", name, rv));
  }

  // A batch of watch events, some of them bad (the whole batch then fails).
  void CacheApply() {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<berth::fb::Event>> events;
    struct Event {
      bool upsert;
      std::string name;
      uint64_t rv;
      bool labelled;
    };
    std::vector<Event> want;
    berth_status expect = BERTH_OK;
    for (int i = in_.byte() % 4; i > 0; --i) {
      const uint8_t t = in_.byte();
      bool ok_name = true;
      Event e{t % 4 < 2, Name(in_.byte(), &ok_name), 0, (t & 0x10) != 0};
      e.rv = t % 4 == 2 && (t & 0x20) ? 0 : (t & 0x40) ? clock_ - 2 : ++clock_;
      const auto type = t % 4 == 3 ? static_cast<berth::fb::EventType>(7) : static_cast<berth::fb::EventType>(t % 4);
      if (expect == BERTH_OK && t % 4 == 3) expect = BERTH_ERR_INVALID_ARGUMENT;  // unknown type
      if (expect == BERTH_OK && !ok_name) expect = BERTH_ERR_INVALID_NAME;
      std::vector<flatbuffers::Offset<berth::fb::Label>> labels;
      if (e.labelled) labels.push_back(berth::fb::CreateLabel(fbb, fbb.CreateString("app"), fbb.CreateString("web")));
      const auto object = berth::fb::CreateObject(fbb, fbb.CreateString("ns"), fbb.CreateString(e.name), e.rv,
                                                  fbb.CreateVector(labels));
      events.push_back(berth::fb::CreateEvent(fbb, type, object));
      want.push_back(std::move(e));
    }
    fbb.Finish(berth::fb::CreateEventBatch(fbb, fbb.CreateVector(events)), BERTH_FB_EVENT_BATCH_ID);
    size_t applied = 99;
    const berth_status s = Checked(berth_cache_apply(&applied, cache_, fbb.GetBufferPointer(), fbb.GetSize()));
    Expect(s == expect);
    if (s != BERTH_OK) return;
    size_t changed = 0;
    for (const Event& e : want) {
      std::vector<std::pair<std::string, std::string>> pairs;
      if (e.labelled) pairs.emplace_back("app", "web");
      changed += (e.upsert ? cache_model_.Upsert({"ns", e.name, e.rv, berth::Labels(pairs), ""})
                           : cache_model_.Delete("ns", e.name, e.rv))
                     ? 1
                     : 0;
    }
    Expect(applied == changed);
  }

  void CacheList() {
    static const char* selectors[] = {"", "app=web", "tier in (a)", "!tier", "app!=db,tier"};
    const char* text = selectors[in_.byte() % 5];
    berth_selector* sel = nullptr;
    Expect(Checked(berth_selector_parse(&sel, text, std::strlen(text))) == BERTH_OK);
    berth_buffer* buf = nullptr;
    const berth_status s = Checked(berth_cache_list(&buf, cache_, nullptr, 0, sel));
    if (!synced_) {
      Expect(s == BERTH_ERR_NOT_SYNCED);
    } else {
      Expect(s == BERTH_OK);
      berth::Selector parsed;
      (void)berth::Selector::Parse(text, &parsed);
      const auto want = cache_model_.List("", &parsed);
      const auto* list = Read<berth::fb::ObjectList>(buf, BERTH_FB_OBJECT_LIST_ID);
      Expect(list->objects()->size() == want.size());
      for (size_t i = 0; i < want.size(); ++i) {
        Expect(list->objects()->Get(static_cast<flatbuffers::uoffset_t>(i))->name()->str() == want[i].name);
      }
      const uint64_t list_rv = list->resource_version();
      Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
      // The same list by reference: same objects, same order.
      berth_object_list* refs = nullptr;
      uint64_t rv = 0;
      Expect(Checked(berth_cache_list_objects(&refs, &rv, cache_, nullptr, 0, sel)) == BERTH_OK);
      size_t n = 0;
      Expect(Checked(berth_object_list_size(&n, refs)) == BERTH_OK && n == want.size() &&
             rv == list_rv);
      for (size_t i = 0; i < n; ++i) {
        berth_object_fields f{};
        Expect(Checked(berth_object_list_get(nullptr, &f, refs, i)) == BERTH_OK);
        Expect(std::string(f.name, f.name_len) == want[i].name && f.resource_version == want[i].rv);
      }
      if (n > 0) Hold(refs, in_.byte() % n);
      Expect(Checked(berth_object_list_get(nullptr, nullptr, refs, 0)) == BERTH_ERR_INVALID_ARGUMENT);
      Expect(Checked(berth_object_list_free(refs)) == BERTH_OK);
    }
    Expect(Checked(berth_selector_free(sel)) == BERTH_OK);
  }

  // Keeps a reference to object `i` of `refs` (dropping the one held before,
  // after checking it still reads as it did when taken, whatever the cache
  // did since).
  void Hold(berth_object_list* refs, size_t i) {
    DropHeld();
    berth_object_fields f{};
    Expect(Checked(berth_object_list_get(&held_, &f, refs, i)) == BERTH_OK);
    size_t n = 0;
    Expect(Checked(berth_object_labels(nullptr, 0, &n, held_)) == BERTH_OK && n == f.n_labels);
    held_name_.assign(f.name, f.name_len);
    held_payload_.assign(reinterpret_cast<const char*>(f.payload), f.payload_len);
    held_rv_ = f.resource_version;
  }

  void DropHeld() {
    if (held_ == nullptr) return;
    berth_object_fields f{};
    Expect(Checked(berth_object_get_fields(&f, held_)) == BERTH_OK);
    Expect(std::string(f.name, f.name_len) == held_name_ && f.resource_version == held_rv_ &&
           std::string(reinterpret_cast<const char*>(f.payload), f.payload_len) == held_payload_);
    Expect(Checked(berth_object_free(held_)) == BERTH_OK);
    Expect(Checked(berth_object_free(held_)) == BERTH_ERR_BAD_HANDLE);
    held_ = nullptr;
  }

  void CacheGet() {
    bool ok_name = true;
    const std::string name = Name(in_.byte(), &ok_name);
    berth_buffer* buf = nullptr;
    const berth_status s = Checked(berth_cache_get(&buf, cache_, "ns", 2, name.data(), name.size()));
    if (!ok_name) {
      Expect(s == BERTH_ERR_INVALID_NAME);
    } else if (!synced_) {
      Expect(s == BERTH_ERR_NOT_SYNCED);
    } else if (const auto* want = cache_model_.Get("ns", name); want == nullptr) {
      Expect(s == BERTH_EMPTY && buf == nullptr);
    } else {
      Expect(s == BERTH_OK);
      const auto* list = Read<berth::fb::ObjectList>(buf, BERTH_FB_OBJECT_LIST_ID);
      Expect(list->objects()->size() == 1);
      const auto* o = list->objects()->Get(0);
      Expect(Str(o->name()) == name && o->resource_version() == want->rv);
      Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
    }
    // The same get by reference.
    berth_object* obj = nullptr;
    berth_object_fields f{};
    const berth_status r =
        Checked(berth_cache_get_object(&obj, &f, cache_, "ns", 2, name.data(), name.size()));
    Expect(r == s);
    if (r == BERTH_OK) {
      const auto* want = cache_model_.Get("ns", name);
      Expect(std::string(f.name, f.name_len) == name && f.resource_version == want->rv &&
             std::string(f.namespace_, f.namespace_len) == "ns" && f.n_labels == want->labels.pairs().size());
      berth_label ls[8];
      size_t n = 0;
      Expect(Checked(berth_object_labels(ls, 8, &n, obj)) == BERTH_OK && n == f.n_labels);
      for (size_t i = 0; i < n && i < 8; ++i) {
        auto v = want->labels.Get(std::string_view(ls[i].key, ls[i].key_len));
        Expect(v.has_value() && *v == std::string_view(ls[i].value, ls[i].value_len));
      }
      Expect(Checked(berth_object_free(obj)) == BERTH_OK);
    } else {
      Expect(obj == nullptr);
    }
  }

  void CacheRelist() {  // an empty list at the current clock
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(berth::fb::CreateObjectList(fbb, clock_), BERTH_FB_OBJECT_LIST_ID);
    Expect(Checked(berth_cache_replace(cache_, fbb.GetBufferPointer(), fbb.GetSize())) == BERTH_OK);
    cache_model_.Replace({}, clock_);
    synced_ = true;
  }

  // ---- limiter and notifier ------------------------------------------------

  // n in 0..6: 0 is out of range, and so is anything above the capacity.
  int64_t Permits() { return in_.byte() % 7; }
  bool PermitsOk(int64_t n) const { return n >= 1 && n <= lim_model_.capacity(); }

  // The model's grants post to the current notifier (or to a freed one,
  // whose tokens nobody can drain).
  void TakePosts() {
    for (const auto& p : lim_model_.TakePosts()) {
      if (p.notifier == notifier_gen_) lim_posted_.insert(p.token);
    }
  }

  uint64_t PickTicket(const std::vector<uint64_t>& issued) {
    const uint8_t b = in_.byte();
    if (issued.empty() || b % 8 == 0) return b % 16 == 0 ? 0 : 1000 + b;  // never issued
    return issued[b % issued.size()];
  }

  void LimiterTryAcquire() {
    const int64_t n = Permits();
    int why = -1;
    const berth_status s = Checked(berth_limiter_try_acquire(&why, limiter_, n));
    if (!PermitsOk(n)) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT && why == -1);
      return;
    }
    Expect(s == BERTH_OK && why == lim_model_.TryAcquire(n));
  }

  void LimiterAcquire() {
    const int64_t n = Permits();
    const uint8_t t = in_.byte();
    const bool fits = lim_model_.waiting() == 0 && n <= lim_model_.capacity() - lim_model_.in_use();
    // Without a deadline only when it is granted at once: nothing else runs.
    int64_t timeout = t % 4 == 0 ? 0 : t % 4 == 1 ? 1'000 : 1'000'000;
    if (t % 8 == 3 && fits) timeout = t % 16 == 3 ? -1 : INT64_MAX;
    if (!fits && waits_ >= kMaxWaits) timeout = 0;
    waits_ += fits ? 0 : 1;
    const berth_status s = Checked(berth_limiter_acquire(limiter_, n, timeout));
    if (!PermitsOk(n)) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      return;
    }
    Expect(s == (lim_model_.AcquireAlone(n) ? BERTH_OK : BERTH_ERR_TIMEOUT));
    TakePosts();
  }

  void LimiterAcquireAsync() {
    const int64_t n = Permits();
    const uint8_t b = in_.byte();
    int now = -1;
    uint64_t ticket = 99;
    const uint64_t token = ++next_token_;
    if (b % 16 == 0) {  // NULL out-parameters, a freed notifier
      Expect(Checked(berth_limiter_acquire_async(nullptr, &ticket, limiter_, 1, notifier_, token)) ==
             BERTH_ERR_INVALID_ARGUMENT);
      Expect(Checked(berth_limiter_acquire_async(&now, nullptr, limiter_, 1, notifier_, token)) ==
             BERTH_ERR_INVALID_ARGUMENT);
      if (stale_notifier_ != nullptr) {
        Expect(Checked(berth_limiter_acquire_async(&now, &ticket, limiter_, 1, stale_notifier_, token)) ==
               BERTH_ERR_BAD_HANDLE);
      }
      return;
    }
    const berth_status s = Checked(berth_limiter_acquire_async(&now, &ticket, limiter_, n, notifier_, token));
    if (!PermitsOk(n)) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      return;
    }
    Expect(s == BERTH_OK);
    const uint64_t want = lim_model_.Enqueue(n, token, notifier_gen_);
    Expect(ticket == want && now == (want == 0 ? 1 : 0));
    if (want != 0) lim_tickets_.push_back(want);
  }

  void LimiterClaim() {
    const uint64_t ticket = PickTicket(lim_tickets_);
    int claimed = -1;
    Expect(Checked(berth_limiter_claim(&claimed, limiter_, ticket)) == BERTH_OK);
    Expect((claimed == 1) == lim_model_.Claim(ticket));
  }

  void LimiterCancel() {
    const uint64_t ticket = PickTicket(lim_tickets_);
    int outcome = -1;
    const bool ask = in_.byte() % 4 != 0;  // the outcome is optional
    Expect(Checked(berth_limiter_cancel(ask ? &outcome : nullptr, limiter_, ticket)) == BERTH_OK);
    const int want = lim_model_.Cancel(ticket);
    Expect(outcome == (ask ? want : -1));
    TakePosts();
  }

  void LimiterRelease() {
    const int64_t n = Permits();
    const berth_status s = Checked(berth_limiter_release(limiter_, n));
    if (n < 1 || !lim_model_.Release(n)) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    } else {
      Expect(s == BERTH_OK);
    }
    TakePosts();
  }

  void LimiterSetCapacity() {
    const int64_t c = Permits();
    const berth_status s = Checked(berth_limiter_set_capacity(limiter_, c));
    if (c < 1) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      return;
    }
    Expect(s == BERTH_OK);
    lim_ceiling_ = std::max(c, lim_model_.in_use());
    lim_model_.SetCapacity(c);
    TakePosts();
  }

  void LimiterStats() {
    berth_limiter_stats st{};
    Expect(Checked(berth_limiter_get_stats(&st, limiter_)) == BERTH_OK);
    Expect(st.capacity == lim_model_.capacity() && st.in_use == lim_model_.in_use() &&
           st.waiting == lim_model_.waiting() && st.waiting_permits == lim_model_.waiting_permits() &&
           st.granted == lim_model_.granted() && st.rejected == lim_model_.rejected() &&
           st.timed_out == lim_model_.timed_out() && st.cancelled == lim_model_.cancelled());
    // Never more in use than the capacity, except what was held when it was
    // lowered (which only goes down until it fits again).
    Expect(st.in_use <= lim_ceiling_);
    if (st.in_use <= st.capacity) lim_ceiling_ = st.capacity;
  }

  // Everything the limiter posted to the current notifier is there, once;
  // the shared limiter's tokens are its tickets', each at most once.
  void Drain() {
    int fd = -1;
    Expect(Checked(berth_notifier_fd(&fd, notifier_)) == BERTH_OK && fd >= 0);
    size_t count = 99;
    Expect(Checked(berth_notifier_drain(&count, notifier_, nullptr, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_notifier_drain(&count, notifier_, nullptr, 0)) == BERTH_OK && count == 0);
    const size_t cap = 1 + in_.byte() % 4;
    uint64_t tokens[4];
    do {
      Expect(Checked(berth_notifier_drain(&count, notifier_, tokens, cap)) == BERTH_OK && count <= cap);
      for (size_t i = 0; i < count; ++i) {
        if (tokens[i] & kSharedToken) {
          Expect(sh_posted_.erase(tokens[i]) == 1);
        } else {
          const auto it = lim_posted_.find(tokens[i]);
          Expect(it != lim_posted_.end());
          lim_posted_.erase(it);
        }
      }
    } while (count == cap);
    Expect(lim_posted_.empty());
  }

  // The caller's reference goes; tickets queued with it keep it alive and
  // post to it, where nobody can drain them.
  void NotifierReplace() {
    Expect(Checked(berth_notifier_free(notifier_)) == BERTH_OK);
    Expect(Checked(berth_notifier_free(notifier_)) == BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_notifier_free(nullptr)) == BERTH_OK);
    int fd = -1;
    Expect(Checked(berth_notifier_fd(&fd, notifier_)) == BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_notifier_new(nullptr)) == BERTH_ERR_INVALID_ARGUMENT);
    stale_notifier_ = notifier_;
    Expect(Checked(berth_notifier_new(&notifier_)) == BERTH_OK);
    ++notifier_gen_;
    lim_posted_.clear();
  }

  // ---- token bucket --------------------------------------------------------
  //
  // Times are explicit and only move forward. BucketBound checks that the
  // tokens acted on (allowed, or reserved and not cancelled before their
  // time to act) never exceed burst + rate * window. While the rate is
  // infinite nothing is bounded; reservations made before that are not
  // counted after it (an infinite rate refills the bucket at once).

  void BucketReady() {
    if (bucket_ != nullptr) return;
    rate_ = kRates[in_.byte() % 4];
    burst_ = 1 + in_.byte() % 8;
    Expect(Checked(berth_bucket_new(&bucket_, rate_, burst_)) == BERTH_OK);
    bound_.emplace(rate_, burst_, now_);
  }

  // Moves the clock; reservations whose time to act is now past act (a
  // cancel from now on is a no-op for them).
  void Advance(int64_t step) {
    now_ += step;
    std::sort(open_.begin(), open_.end(),
              [](const Reserved& a, const Reserved& b) { return a.r.time_to_act_ns < b.r.time_to_act_ns; });
    while (!open_.empty() && open_.front().r.time_to_act_ns < now_) {
      const Reserved& o = open_.front();
      if (bound_ && o.epoch == epoch_) Expect(bound_->Act(o.r.time_to_act_ns, o.r.tokens));
      due_.push_back(o.r);
      if (due_.size() > 4) due_.erase(due_.begin());
      open_.erase(open_.begin());
    }
  }

  int64_t Tokens() { return in_.byte() % (burst_ + 2); }  // 0 and burst + 1 are out of range

  double BucketLevel() {
    berth_bucket_stats st{};
    Expect(Checked(berth_bucket_get_stats(&st, bucket_, now_)) == BERTH_OK);
    Expect(st.rate == rate_ && st.burst == burst_);
    Expect(!std::isnan(st.tokens) && st.tokens <= static_cast<double>(burst_) + 1e-9);
    return st.tokens;
  }

  void BucketAllow() {
    BucketReady();
    Advance(kSteps[in_.byte() % 8]);
    const int64_t n = Tokens();
    const double before = BucketLevel();
    int allowed = -1;
    const berth_status s = Checked(berth_bucket_allow(&allowed, bucket_, n, now_));
    if (n < 1 || n > burst_) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      return;
    }
    Expect(s == BERTH_OK && (allowed == 0 || allowed == 1));
    if (std::isinf(rate_)) return Expect(allowed == 1);
    if (std::fabs(before - static_cast<double>(n)) > 1e-6) Expect((allowed == 1) == (before >= static_cast<double>(n)));
    if (allowed == 1) {
      if (bound_) Expect(bound_->Act(now_, n));
      Expect(std::fabs(BucketLevel() - (before - static_cast<double>(n))) <= 1e-6);
    }
  }

  void BucketReserve() {
    BucketReady();
    Advance(kSteps[in_.byte() % 8]);
    const int64_t n = Tokens();
    const double before = BucketLevel();
    berth_reservation r{};
    const berth_status s = Checked(berth_bucket_reserve(&r, bucket_, n, now_));
    if (n < 1 || n > burst_) {
      Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      return;
    }
    if (s == BERTH_ERR_INVALID_ARGUMENT) {  // due after INT64_MAX ns: refused, nothing taken
      Expect(before < static_cast<double>(n) && std::fabs(BucketLevel() - before) <= 1e-6);
      return;
    }
    Expect(s == BERTH_OK && r.tokens == n && r.rate == rate_ && r.time_to_act_ns >= now_ &&
           r.delay_ns == r.time_to_act_ns - now_);
    if (!std::isinf(rate_)) Expect(std::fabs(BucketLevel() - (before - static_cast<double>(n))) <= 1e-6);
    open_.push_back(Reserved{r, epoch_});
  }

  // Cancelling gives back at most what the reservation took, never above
  // the burst; a second cancel, or one past the time to act, gives nothing.
  void BucketCancel() {
    BucketReady();
    Advance(kSteps[in_.byte() % 8]);
    const uint8_t b = in_.byte();
    if (b % 8 == 0) {
      Expect(Checked(berth_bucket_cancel(bucket_, nullptr, now_)) == BERTH_ERR_INVALID_ARGUMENT);
      return;
    }
    const bool pending = b % 8 >= 3 && !open_.empty();
    berth_reservation r{};
    if (pending) {
      r = open_[b % open_.size()].r;
    } else if (!due_.empty()) {
      r = due_[b % due_.size()];
    }
    const double before = BucketLevel();
    Expect(Checked(berth_bucket_cancel(bucket_, &r, now_)) == BERTH_OK && r.tokens == 0);
    const double after = BucketLevel();
    if (!pending) {
      Expect(after == before);
      return;
    }
    const berth_reservation was = open_[b % open_.size()].r;
    Expect(after >= before - 1e-9 && after <= before + static_cast<double>(was.tokens) + 1e-6);
    open_.erase(open_.begin() + static_cast<long>(b % open_.size()));  // it will not act
    berth_reservation again = was;  // the caller's copy, cancelled already
    again.tokens = 0;
    Expect(Checked(berth_bucket_cancel(bucket_, &again, now_)) == BERTH_OK && BucketLevel() == after);
  }

  void BucketSet() {
    BucketReady();
    Advance(kSteps[in_.byte() % 8]);
    const uint8_t b = in_.byte();
    if (b % 2 == 0) {
      const double rate = b % 16 == 14 ? (b & 0x80 ? NAN : -1.0) : b % 16 == 12 ? 0.0 : kRates[(b >> 1) % 5];
      const berth_status s = Checked(berth_bucket_set_rate(bucket_, rate, now_));
      if (!(rate > 0)) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      Expect(s == BERTH_OK);
      rate_ = rate;
    } else {
      const int64_t burst = (b >> 1) % 9;
      const berth_status s = Checked(berth_bucket_set_burst(bucket_, burst, now_));
      if (burst < 1) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
      Expect(s == BERTH_OK);
      burst_ = burst;
    }
    if (std::isinf(rate_)) {
      bound_.reset();
    } else if (!bound_) {  // a new bound from now on, full
      bound_.emplace(rate_, burst_, now_);
      ++epoch_;
    } else {
      bound_->Raise(now_, rate_, burst_);
    }
    BucketLevel();
  }

  void BucketStats() {
    BucketReady();
    Advance(kSteps[in_.byte() % 8]);
    Expect(Checked(berth_bucket_get_stats(nullptr, bucket_, now_)) == BERTH_ERR_INVALID_ARGUMENT);
    BucketLevel();
  }

  // A second bucket called with any numbers, BERTH_NOW and forged
  // reservations: only the statuses and the stats' sanity are checked.
  void WildBucket() {
    const uint8_t b = in_.byte();
    if (wild_ == nullptr) {
      const double rate = b % 4 == 0 ? in_.f64() : kRates[b % 5];
      const int64_t burst = b % 8 == 1 ? in_.i64() : 1 + b % 5;
      const berth_status s = Checked(berth_bucket_new(&wild_, rate, burst));
      // A rate too slow for one token in INT64_MAX ns (below ~1.08e-10/s) is
      // refused too; around that edge either answer is fine.
      if (!(rate > 0) || burst < 1 || rate < 1e-10) {
        Expect(s == BERTH_ERR_INVALID_ARGUMENT || (rate >= 1e-11 && s == BERTH_OK && burst >= 1));
      } else {
        Expect(s == (rate >= 1e-9 ? BERTH_OK : s));
      }
      if (s == BERTH_OK) wild_burst_ = burst;
      return;
    }
    const int64_t now = b & 0x80 ? in_.i64() : BERTH_NOW;
    switch (b % 6) {
      case 0: {
        int allowed = -1;
        const int64_t n = in_.byte() % 2 ? in_.i64() : in_.byte() % 4;
        const berth_status s = OneOf(berth_bucket_allow(&allowed, wild_, n, now), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT});
        Expect(s != BERTH_OK || allowed == 0 || allowed == 1);
        break;
      }
      case 1: {
        const int64_t n = in_.byte() % 2 ? in_.i64() : in_.byte() % 4;
        berth_reservation r{};
        const berth_status s = OneOf(berth_bucket_reserve(&r, wild_, n, now), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT});
        Expect(s != BERTH_OK || (r.tokens == n && r.delay_ns >= 0));
        if (s == BERTH_OK) wild_res_ = r;
        break;
      }
      case 2: {  // the last reservation, or a forged one
        berth_reservation r = wild_res_;
        if (in_.byte() % 2) r = berth_reservation{in_.i64(), 0, in_.i64(), in_.f64()};
        const berth_status s = OneOf(berth_bucket_cancel(wild_, &r, now), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT});
        Expect(s != BERTH_OK || r.tokens == 0);
        break;
      }
      case 3:
        OneOf(berth_bucket_set_rate(wild_, in_.byte() % 2 ? in_.f64() : kRates[in_.byte() % 5], now),
              {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT});
        break;
      case 4: {
        const int64_t burst = in_.byte() % 2 ? in_.i64() : in_.byte() % 6;
        if (OneOf(berth_bucket_set_burst(wild_, burst, now), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT}) == BERTH_OK) {
          wild_burst_ = burst;
        }
        break;
      }
      case 5: {
        berth_bucket_stats st{};
        Expect(Checked(berth_bucket_get_stats(&st, wild_, now)) == BERTH_OK);
        Expect(st.burst == wild_burst_ && st.rate > 0 && !std::isnan(st.tokens) &&
               st.tokens <= static_cast<double>(st.burst));
        break;
      }
    }
  }

  // ---- shared limiter ------------------------------------------------------
  //
  // One region per process, made on first use and removed at the end. The
  // handle's background thread grants asynchronous tickets whenever it gets
  // to them, so only what this thread did is exact: it holds sh_held_.

  void SharedReady() {
    if (shared_ != nullptr) return;
    sh_name_ = "fuzz_capi." + std::to_string(getpid());
    OneOf(berth_shared_limiter_unlink(sh_name_.data(), sh_name_.size()), {BERTH_OK, BERTH_ERR_NOT_FOUND});
    Expect(Checked(berth_shared_limiter_open(&shared_, sh_name_.data(), sh_name_.size(), 4, 1)) == BERTH_OK);
    sh_cap_ = sh_cap_max_ = 4;
  }

  int64_t SharedPermits() { return in_.byte() % (sh_cap_ + 2); }

  // Whether this thread's calls alone decide the region (no ticket was ever
  // queued, so the background thread holds nothing).
  bool SharedExact() const { return !sh_async_; }

  void SharedGranted(int64_t n) {
    sh_held_ += n;
    Expect(sh_held_ <= sh_cap_max_);
  }

  void SharedTryAcquire() {
    SharedReady();
    const int64_t n = SharedPermits();
    int why = -1;
    const berth_status s = Checked(berth_shared_limiter_try_acquire(&why, shared_, n));
    if (n < 1 || n > sh_cap_) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    Expect(s == BERTH_OK && why >= BERTH_LIMIT_GRANTED && why <= BERTH_LIMIT_WAITERS_QUEUED);
    if (SharedExact()) Expect((why == BERTH_LIMIT_GRANTED) == (sh_held_ + n <= sh_cap_));
    if (why == BERTH_LIMIT_GRANTED) SharedGranted(n);
  }

  void SharedAcquire() {
    SharedReady();
    const int64_t n = SharedPermits();
    const bool fits = SharedExact() && sh_held_ + n <= sh_cap_;
    const int64_t timeout = fits || waits_ >= kMaxWaits ? 0 : in_.byte() % 2 ? 1'000 : 1'000'000;
    waits_ += fits ? 0 : 1;
    const berth_status s = Checked(berth_shared_limiter_acquire(shared_, n, timeout));
    if (n < 1 || n > sh_cap_) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    if (SharedExact()) Expect(s == (fits ? BERTH_OK : BERTH_ERR_TIMEOUT));
    Expect(s == BERTH_OK || s == BERTH_ERR_TIMEOUT);
    if (s == BERTH_OK) SharedGranted(n);
  }

  void SharedAcquireAsync() {
    SharedReady();
    const int64_t n = SharedPermits();
    int now = -1;
    uint64_t ticket = 99;
    const uint64_t token = kSharedToken | ++next_token_;
    const bool fits = SharedExact() && sh_held_ + n <= sh_cap_;
    const berth_status s =
        Checked(berth_shared_limiter_acquire_async(&now, &ticket, shared_, n, notifier_, token));
    if (n < 1 || n > sh_cap_) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    Expect(s == BERTH_OK && (now == 1) == (ticket == 0));
    if (SharedExact()) Expect((now == 1) == fits);
    if (now == 1) return SharedGranted(n);
    sh_async_ = true;
    sh_tickets_.push_back({ticket, n});
    sh_posted_.insert(token);  // posted when granted, unless cancelled first
  }

  struct SharedTicket {
    uint64_t ticket;
    int64_t n;
  };

  // A ticket this thread still owns (its index), or -1 and a made-up one.
  long PickShared(uint64_t* ticket) {
    const uint8_t b = in_.byte();
    if (sh_tickets_.empty() || b % 8 == 0) {
      *ticket = b % 16 == 0 ? 0 : 5000 + b;
      return -1;
    }
    const long i = static_cast<long>(b % sh_tickets_.size());
    *ticket = sh_tickets_[static_cast<size_t>(i)].ticket;
    return i;
  }

  void SharedClaim() {
    SharedReady();
    uint64_t ticket = 0;
    const long i = PickShared(&ticket);
    int claimed = -1;
    Expect(Checked(berth_shared_limiter_claim(&claimed, shared_, ticket)) == BERTH_OK);
    if (i < 0) return Expect(claimed == 0);
    Expect(claimed == 0 || claimed == 1);
    if (claimed == 1) {
      SharedGranted(sh_tickets_[static_cast<size_t>(i)].n);
      sh_tickets_.erase(sh_tickets_.begin() + i);
    }
  }

  void SharedCancel() {
    SharedReady();
    uint64_t ticket = 0;
    const long i = PickShared(&ticket);
    int outcome = -1;
    Expect(Checked(berth_shared_limiter_cancel(&outcome, shared_, ticket)) == BERTH_OK);
    if (i < 0) return Expect(outcome == BERTH_CANCEL_UNKNOWN);
    Expect(outcome == BERTH_CANCEL_WAS_WAITING || outcome == BERTH_CANCEL_WAS_GRANTED);
    sh_tickets_.erase(sh_tickets_.begin() + i);
  }

  void SharedRelease() {
    SharedReady();
    const uint8_t b = in_.byte();
    int64_t n = b % (sh_held_ + 1);  // 0 is out of range
    if (b % 8 == 7) {  // more than the process holds, even counting every ticket
      n = sh_held_ + 1;
      for (const SharedTicket& t : sh_tickets_) n += t.n;
    }
    const berth_status s = Checked(berth_shared_limiter_release(shared_, n));
    if (n < 1 || n > sh_held_) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    Expect(s == BERTH_OK);
    sh_held_ -= n;
  }

  void SharedSetCapacity() {
    SharedReady();
    const int64_t c = in_.byte() % 7;
    const berth_status s = Checked(berth_shared_limiter_set_capacity(shared_, c));
    if (c < 1) return Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    Expect(s == BERTH_OK);
    sh_cap_ = c;
    sh_cap_max_ = std::max(sh_cap_max_, c);
  }

  void SharedStats() {
    SharedReady();
    berth_shared_limiter_stats st{};
    Expect(Checked(berth_shared_limiter_get_stats(&st, shared_)) == BERTH_OK);
    Expect(st.capacity == sh_cap_ && st.in_use >= sh_held_ && st.in_use <= sh_cap_max_ && st.waiting >= 0 &&
           (st.holders == 0 || st.holders == 1) && st.reclaimed == 0);
    if (SharedExact()) Expect(st.in_use == sh_held_ && st.waiting == 0 && st.holders == (sh_held_ > 0 ? 1 : 0));
  }

  // A second handle on the region (permits are the process's, whichever
  // handle took them), and the ways to open or unlink wrongly.
  void SharedOpenClose() {
    SharedReady();
    const uint8_t b = in_.byte();
    berth_shared_limiter* h = nullptr;
    const std::string absent = sh_name_ + ".absent";
    switch (b % 6) {
      case 0: {
        Expect(Checked(berth_shared_limiter_open(&h, sh_name_.data(), sh_name_.size(), 0, 0)) == BERTH_OK);
        int why = -1;
        Expect(Checked(berth_shared_limiter_try_acquire(&why, h, 1)) == BERTH_OK);
        if (why == BERTH_LIMIT_GRANTED) SharedGranted(1);
        if (sh_held_ > 0) {
          Expect(Checked(berth_shared_limiter_release(h, 1)) == BERTH_OK);
          --sh_held_;
        }
        Expect(Checked(berth_shared_limiter_close(h)) == BERTH_OK);  // not the last handle: nothing goes back
        Expect(Checked(berth_shared_limiter_close(h)) == BERTH_ERR_BAD_HANDLE);
        Expect(Checked(berth_shared_limiter_close(nullptr)) == BERTH_OK);
        break;
      }
      case 1:  // create = 1 on an existing region keeps its capacity
        Expect(Checked(berth_shared_limiter_open(&h, sh_name_.data(), sh_name_.size(), 1 + b % 9, 1)) == BERTH_OK);
        SharedStats();
        Expect(Checked(berth_shared_limiter_close(h)) == BERTH_OK);
        break;
      case 2: {
        bool valid = true;
        std::string name = Name(b >> 3, &valid);
        if (valid) name += "/x";  // outside [A-Za-z0-9._-]
        Expect(Checked(berth_shared_limiter_open(&h, name.data(), name.size(), 1, 1)) == BERTH_ERR_INVALID_NAME);
        Expect(Checked(berth_shared_limiter_unlink(name.data(), name.size())) == BERTH_ERR_INVALID_NAME);
        const std::string long_name(201, 'a');
        Expect(Checked(berth_shared_limiter_open(&h, long_name.data(), long_name.size(), 1, 1)) ==
               BERTH_ERR_INVALID_NAME);
        break;
      }
      case 3:
        Expect(Checked(berth_shared_limiter_open(&h, absent.data(), absent.size(), 1, 0)) == BERTH_ERR_NOT_FOUND);
        Expect(Checked(berth_shared_limiter_unlink(absent.data(), absent.size())) == BERTH_ERR_NOT_FOUND);
        break;
      case 4:
        Expect(Checked(berth_shared_limiter_open(&h, absent.data(), absent.size(), 0, 1)) ==
               BERTH_ERR_INVALID_ARGUMENT);  // capacity < 1
        Expect(Checked(berth_shared_limiter_open(&h, absent.data(), absent.size(), 1, 2)) ==
               BERTH_ERR_INVALID_ARGUMENT);  // create not 0 or 1
        Expect(Checked(berth_shared_limiter_open(nullptr, absent.data(), absent.size(), 1, 1)) ==
               BERTH_ERR_INVALID_ARGUMENT);
        Expect(Checked(berth_shared_limiter_open(&h, nullptr, 3, 1, 1)) == BERTH_ERR_INVALID_ARGUMENT);
        break;
      case 5: {
        berth_shared_limiter_stats st{};
        Expect(Checked(berth_shared_limiter_get_stats(nullptr, shared_)) == BERTH_ERR_INVALID_ARGUMENT);
        Expect(Checked(berth_shared_limiter_get_stats(&st, reinterpret_cast<berth_shared_limiter*>(limiter_))) ==
               BERTH_ERR_BAD_HANDLE);
        int why = -1;
        Expect(Checked(berth_shared_limiter_try_acquire(nullptr, shared_, 1)) == BERTH_ERR_INVALID_ARGUMENT);
        Expect(Checked(berth_shared_limiter_try_acquire(&why, nullptr, 1)) == BERTH_ERR_INVALID_ARGUMENT);
        break;
      }
    }
  }

  // Every ticket cancelled and every permit released, the handle closed:
  // the region holds nothing and nobody waits.
  void SharedFinish() {
    if (shared_ == nullptr) return;
    for (const SharedTicket& t : sh_tickets_) {
      int outcome = -1;
      Expect(Checked(berth_shared_limiter_cancel(&outcome, shared_, t.ticket)) == BERTH_OK);
      Expect(outcome == BERTH_CANCEL_WAS_WAITING || outcome == BERTH_CANCEL_WAS_GRANTED);
    }
    if (sh_held_ > 0) Expect(Checked(berth_shared_limiter_release(shared_, sh_held_)) == BERTH_OK);
    Expect(Checked(berth_shared_limiter_close(shared_)) == BERTH_OK);
    berth_shared_limiter* again = nullptr;
    Expect(Checked(berth_shared_limiter_open(&again, sh_name_.data(), sh_name_.size(), 0, 0)) == BERTH_OK);
    berth_shared_limiter_stats st{};
    Expect(Checked(berth_shared_limiter_get_stats(&st, again)) == BERTH_OK);
    Expect(st.in_use == 0 && st.waiting == 0 && st.holders == 0 && st.capacity == sh_cap_);
    Expect(Checked(berth_shared_limiter_close(again)) == BERTH_OK);
    Expect(Checked(berth_shared_limiter_unlink(sh_name_.data(), sh_name_.size())) == BERTH_OK);
  }

  // ---- the library, NULLs and bad handles ----------------------------------

  void Library() {
    Expect(berth_abi_version() == BERTH_ABI_VERSION);
    const berth_status s = static_cast<int8_t>(in_.byte());
    const std::string name = berth_status_name(s);
    Expect(name.rfind("BERTH_", 0) == 0);
    Expect((name == "BERTH_UNKNOWN_STATUS") == (s < BERTH_OK || s > BERTH_ERR_FORKED));
    Expect(std::string(berth_status_name(BERTH_ERR_BAD_REGION)) == "BERTH_ERR_BAD_REGION");
    const int64_t a = berth_clock_now_ns(), b = berth_clock_now_ns();
    Expect(a > 0 && b >= a);
  }

  void NullHandles() {
    berth_pool_key k;
    Expect(Checked(berth_pool_pop_spread(&k, nullptr, pool_, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_pool_add(nullptr, engine_, nullptr, 5, "ns", 2, "a", 1, "", 0, 1)) ==
           BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_cache_upsert(nullptr, nullptr, "ns", 2, "a", 1, 1, nullptr, 0, nullptr, 0)) ==
           BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_limiter_release(nullptr, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_limiter_new(nullptr, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    berth_limiter* l = nullptr;
    Expect(Checked(berth_limiter_new(&l, 0)) == BERTH_ERR_INVALID_ARGUMENT && l == nullptr);
    Expect(Checked(berth_limiter_claim(nullptr, limiter_, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_limiter_get_stats(nullptr, limiter_)) == BERTH_ERR_INVALID_ARGUMENT);
    size_t n = 0;
    uint64_t t = 0;
    Expect(Checked(berth_notifier_drain(&n, nullptr, &t, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_bucket_allow(nullptr, bucket_, 1, BERTH_NOW)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_bucket_new(nullptr, 1, 1)) == BERTH_ERR_INVALID_ARGUMENT);
    Expect(Checked(berth_engine_new(nullptr)) == BERTH_ERR_INVALID_ARGUMENT);
  }

  // Freed, wrong-type and made-up handles: refused, nothing changes.
  void BadHandles() {
    berth_selector* sel = nullptr;
    Expect(Checked(berth_selector_parse(&sel, "a=b", 3)) == BERTH_OK);
    berth_buffer* buf = nullptr;
    Expect(Checked(berth_selector_string(&buf, sel)) == BERTH_OK);
    Expect(Checked(berth_selector_free(sel)) == BERTH_OK && Checked(berth_buffer_free(buf)) == BERTH_OK);
    int matches = 0;
    const uint8_t* bytes = nullptr;
    size_t len = 0;
    Expect(Checked(berth_selector_matches(&matches, sel, nullptr, 0)) == BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_buffer_data(&bytes, &len, buf)) == BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_selector_free(sel)) == BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_cache_list(&buf, cache_, nullptr, 0, sel)) == BERTH_ERR_BAD_HANDLE);
    berth_pool_stats st{};
    Expect(Checked(berth_pool_get_stats(&st, reinterpret_cast<berth_engine*>(cache_), pool_, 1)) ==
           BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_limiter_release(reinterpret_cast<berth_limiter*>(engine_), 1)) == BERTH_ERR_BAD_HANDLE);
    berth_bucket_stats bs{};
    Expect(Checked(berth_bucket_get_stats(&bs, reinterpret_cast<berth_bucket*>(limiter_), BERTH_NOW)) ==
           BERTH_ERR_BAD_HANDLE);
    Expect(Checked(berth_notifier_drain(&len, reinterpret_cast<berth_notifier*>(limiter_), nullptr, 0)) ==
           BERTH_ERR_BAD_HANDLE);
    // Eight bytes of the input as a handle value (unless they spell a live one).
    const uintptr_t v = static_cast<uintptr_t>(in_.u64());
    const void* live[] = {engine_, cache_, limiter_, notifier_, bucket_, wild_, shared_};
    if (v != 0 && std::find(std::begin(live), std::end(live), reinterpret_cast<const void*>(v)) == std::end(live)) {
      Expect(Checked(berth_pool_get_stats(&st, reinterpret_cast<berth_engine*>(v), pool_, 1)) ==
             BERTH_ERR_BAD_HANDLE);
      Expect(Checked(berth_cache_free(reinterpret_cast<berth_cache*>(v))) == BERTH_ERR_BAD_HANDLE);
      Expect(Checked(berth_bucket_free(reinterpret_cast<berth_bucket*>(v))) == BERTH_ERR_BAD_HANDLE);
      Expect(Checked(berth_shared_limiter_close(reinterpret_cast<berth_shared_limiter*>(v))) ==
             BERTH_ERR_BAD_HANDLE);
    }
  }

  Input& in_;
  int waits_ = 0;

  berth_engine* engine_ = nullptr;
  NaivePool pool_model_;
  bool pool_exists_ = false;
  const char* pool_ = "p";
  std::vector<HandOut> handed_;

  berth_cache* cache_ = nullptr;
  NaiveCache cache_model_{4};
  uint64_t clock_ = 10;
  bool synced_ = false;
  berth_object* held_ = nullptr;  // a reference kept across operations (Hold)
  std::string held_name_, held_payload_;
  uint64_t held_rv_ = 0;

  berth_limiter* limiter_ = nullptr;
  NaiveLimiter lim_model_{4};
  int64_t lim_ceiling_ = 4;  // what may be in use (see LimiterStats)
  std::vector<uint64_t> lim_tickets_;
  berth_notifier* notifier_ = nullptr;
  berth_notifier* stale_notifier_ = nullptr;  // freed
  int notifier_gen_ = 0;
  uint64_t next_token_ = 0;
  std::multiset<uint64_t> lim_posted_;  // to the current notifier, not drained yet

  berth_bucket* bucket_ = nullptr;
  double rate_ = 1;
  int64_t burst_ = 1;
  int64_t now_ = 1'000'000'000;
  std::optional<BucketBound> bound_;  // none while the rate is infinite
  int epoch_ = 0;                     // bumped with each new bound
  std::vector<Reserved> open_;        // not yet acted, may still be cancelled
  std::vector<berth_reservation> due_;  // acted: cancelling them is a no-op
  berth_bucket* wild_ = nullptr;
  int64_t wild_burst_ = 0;
  berth_reservation wild_res_{};

  berth_shared_limiter* shared_ = nullptr;
  std::string sh_name_;
  int64_t sh_cap_ = 0, sh_cap_max_ = 0;
  int64_t sh_held_ = 0;  // granted to this thread's calls (and claims), not released
  bool sh_async_ = false;
  std::vector<SharedTicket> sh_tickets_;  // neither claimed nor cancelled
  std::set<uint64_t> sh_posted_;          // tokens the notifier may still get
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Run run(in);
  for (int steps = 0; in.more() && steps < 400; ++steps) run.Step();
  run.Finish();
  return 0;
}
