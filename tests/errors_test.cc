// Walks the bad-input table of docs/errors.md: every row is a way to call a
// C function wrongly, the status it gets and the exact message. Each row is
// run against a world holding a live handle of every type, which must be
// unchanged afterwards (a failed call changes nothing).
//
// The rows are defined here; the document is the table they produce. The
// test fails if a row of the document is missing here, if a row here is
// missing from the document, if the status or message differ, or if a
// function exported by berth.h has no row. After changing a row or a
// message, regenerate the table and read the diff:
//
//     BERTH_WRITE_ERRORS_DOC=1 ./build/tests/berth_capi_tests --gtest_filter='ErrorsDoc.*'
//
// Handle rows are derived: for every handle parameter of every function the
// table has "NULL <param>", "freed <param>" and "<param> of another type".
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <flatbuffers/flatbuffers.h>
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "berth_generated.h"
#include "capi/berth.h"
#include "tests/support/capi_helpers.h"

namespace {

using berth::testing::LastError;
using berth::testing::TakeBytes;

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kNearTheEnd = INT64_MAX - kSec / 10;  // 100 ms before int64 time runs out
const std::string kDocPath = std::string(BERTH_SOURCE_DIR) + "/docs/errors.md";
const std::string kHeaderPath = std::string(BERTH_SOURCE_DIR) + "/capi/berth.h";
// Functions that take no input they could reject.
const std::set<std::string> kCannotFail = {"berth_abi_version", "berth_status_name",
                                           "berth_last_error", "berth_clock_now_ns"};

// ---- handles --------------------------------------------------------------------

enum Slot {
  kEngine, kBuffer, kSelector, kCache, kLimiter, kNotifier, kBucket, kShared, kObject, kObjectList,
  kSlots
};

// One handle of each type, by slot. Handle types are opaque, so they are
// kept as void* and cast back where a call takes them.
struct Handles {
  std::array<void*, kSlots> h{};
  berth_engine* engine() const { return static_cast<berth_engine*>(h[kEngine]); }
  berth_buffer* buffer() const { return static_cast<berth_buffer*>(h[kBuffer]); }
  berth_selector* selector() const { return static_cast<berth_selector*>(h[kSelector]); }
  berth_cache* cache() const { return static_cast<berth_cache*>(h[kCache]); }
  berth_limiter* limiter() const { return static_cast<berth_limiter*>(h[kLimiter]); }
  berth_notifier* notifier() const { return static_cast<berth_notifier*>(h[kNotifier]); }
  berth_bucket* bucket() const { return static_cast<berth_bucket*>(h[kBucket]); }
  berth_shared_limiter* shared() const { return static_cast<berth_shared_limiter*>(h[kShared]); }
  berth_object* object() const { return static_cast<berth_object*>(h[kObject]); }
  berth_object_list* object_list() const { return static_cast<berth_object_list*>(h[kObjectList]); }
};

std::vector<uint8_t> Bytes(flatbuffers::FlatBufferBuilder& fbb) {
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::vector<uint8_t> KeyBatch(const std::vector<std::array<std::string, 3>>& keys,
                              const char* id = BERTH_FB_POOL_KEY_BATCH_ID) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::PoolKey>> offs;
  for (const auto& [ns, name, node] : keys) {
    offs.push_back(berth::fb::CreatePoolKey(fbb, fbb.CreateString(ns), fbb.CreateString(name),
                                            fbb.CreateString(node), true));
  }
  fbb.Finish(berth::fb::CreatePoolKeyBatchDirect(fbb, &offs), id);
  return Bytes(fbb);
}

struct Obj {
  std::string ns, name;
  uint64_t rv;
  std::vector<std::pair<std::string, std::string>> labels;
};

flatbuffers::Offset<berth::fb::Object> MakeObject(flatbuffers::FlatBufferBuilder& fbb, const Obj& o) {
  std::vector<flatbuffers::Offset<berth::fb::Label>> labels;
  for (const auto& [k, v] : o.labels) {
    labels.push_back(berth::fb::CreateLabel(fbb, fbb.CreateString(k), fbb.CreateString(v)));
  }
  return berth::fb::CreateObject(fbb, fbb.CreateString(o.ns), fbb.CreateString(o.name), o.rv,
                                 fbb.CreateVector(labels));
}

std::vector<uint8_t> ObjectList(const std::vector<Obj>& objs, uint64_t rv,
                                const char* id = BERTH_FB_OBJECT_LIST_ID) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Object>> offs;
  for (const Obj& o : objs) offs.push_back(MakeObject(fbb, o));
  fbb.Finish(berth::fb::CreateObjectListDirect(fbb, rv, &offs), id);
  return Bytes(fbb);
}

// An event batch; an event type outside the enum and an event without an
// object can be spelled too (type -1: no object).
std::vector<uint8_t> Events(const std::vector<std::pair<int, Obj>>& events) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Event>> offs;
  for (const auto& [type, o] : events) {
    if (type < 0) {
      offs.push_back(berth::fb::CreateEvent(fbb, berth::fb::EventType::Deleted, 0));
    } else {
      offs.push_back(berth::fb::CreateEvent(fbb, static_cast<berth::fb::EventType>(type),
                                            MakeObject(fbb, o)));
    }
  }
  fbb.Finish(berth::fb::CreateEventBatchDirect(fbb, &offs), BERTH_FB_EVENT_BATCH_ID);
  return Bytes(fbb);
}

// A live handle of every type with some state in it, a freed handle of
// every type, a cache that was never synced, and a bucket (rate 5, burst 3)
// spent at kNearTheEnd: its next token would be due 200 ms later, after
// INT64_MAX ns.
class World {
 public:
  World() : shared_name_("errors-test-" + std::to_string(getpid()) + "-" + std::to_string(count_++)) {
    Handles fresh;
    for (Handles* hs : {&live, &fresh}) {
      auto* e = reinterpret_cast<berth_engine**>(&hs->h[kEngine]);
      Ok(berth_engine_new(e));
      Ok(berth_pool_add(nullptr, *e, "p", 1, "ns", 2, "a", 1, "node-1", 6, 1));
      Ok(berth_pool_add(nullptr, *e, "p", 1, "ns", 2, "b", 1, "", 0, 0));
      Ok(berth_selector_parse(reinterpret_cast<berth_selector**>(&hs->h[kSelector]), "app=web", 7));
      Ok(berth_selector_string(reinterpret_cast<berth_buffer**>(&hs->h[kBuffer]), hs->selector()));
      Ok(berth_cache_new(reinterpret_cast<berth_cache**>(&hs->h[kCache]), nullptr));
      const auto list = ObjectList({{"ns", "web-1", 3, {{"app", "web"}}}, {"ns", "db-1", 4, {}}}, 4);
      Ok(berth_cache_replace(hs->cache(), list.data(), list.size()));
      Ok(berth_cache_get_object(reinterpret_cast<berth_object**>(&hs->h[kObject]), nullptr,
                                hs->cache(), "ns", 2, "web-1", 5));
      Ok(berth_cache_list_objects(reinterpret_cast<berth_object_list**>(&hs->h[kObjectList]),
                                  nullptr, hs->cache(), nullptr, 0, nullptr));
      Ok(berth_limiter_new(reinterpret_cast<berth_limiter**>(&hs->h[kLimiter]), 2));
      Ok(berth_limiter_acquire(hs->limiter(), 1, 0));
      Ok(berth_notifier_new(reinterpret_cast<berth_notifier**>(&hs->h[kNotifier])));
      Ok(berth_bucket_new(reinterpret_cast<berth_bucket**>(&hs->h[kBucket]), 5, 3));
      Ok(berth_shared_limiter_open(reinterpret_cast<berth_shared_limiter**>(&hs->h[kShared]),
                                   shared_name_.data(), shared_name_.size(), 2, 1));
    }
    Free(fresh);  // their values are the freed handles
    freed = fresh;
    Ok(berth_cache_new(&unsynced, nullptr));
    Ok(berth_bucket_new(&spent_near_the_end, 5, 3));
    int allowed = 0;
    Ok(berth_bucket_allow(&allowed, spent_near_the_end, 3, kNearTheEnd));
  }

  ~World() {
    Free(live);
    berth_cache_free(unsynced);
    berth_bucket_free(spent_near_the_end);
    berth_shared_limiter_unlink(shared_name_.data(), shared_name_.size());
  }

  // Everything a wrong call could have changed, as text.
  std::string Fingerprint() const {
    std::ostringstream out;
    berth_buffer* b = nullptr;
    if (berth_pool_snapshot(&b, live.engine(), "p", 1) == BERTH_OK) out << TakeBytes(b);
    berth_pool_stats ps{};
    berth_pool_get_stats(&ps, live.engine(), "p", 1);
    out << "|pool " << ps.keys << " " << ps.ready_keys << " " << ps.nodes << " " << ps.put_back_records;
    if (berth_cache_list(&b, live.cache(), nullptr, 0, nullptr) == BERTH_OK) out << TakeBytes(b);
    berth_cache_stats cs{};
    berth_cache_get_stats(&cs, live.cache());
    out << "|cache " << cs.objects << " " << cs.tombstones << " " << cs.applied << " " << cs.ignored;
    berth_cache_get_stats(&cs, unsynced);
    out << "|unsynced " << cs.objects << " " << int(cs.synced);
    if (berth_selector_string(&b, live.selector()) == BERTH_OK) out << "|selector " << TakeBytes(b);
    const uint8_t* data = nullptr;
    size_t len = 0;
    if (berth_buffer_data(&data, &len, live.buffer()) == BERTH_OK) {
      out << "|buffer " << std::string(reinterpret_cast<const char*>(data), len);
    }
    berth_limiter_stats ls{};
    berth_limiter_get_stats(&ls, live.limiter());
    out << "|limiter " << ls.capacity << " " << ls.in_use << " " << ls.waiting << " " << ls.granted;
    berth_shared_limiter_stats ss{};
    berth_shared_limiter_get_stats(&ss, live.shared());
    out << "|shared " << ss.capacity << " " << ss.in_use << " " << ss.waiting << " " << ss.granted;
    berth_bucket_stats bs{};
    berth_bucket_get_stats(&bs, live.bucket(), 10 * kSec);
    out << "|bucket " << bs.rate << " " << bs.burst << " " << bs.tokens;
    berth_bucket_get_stats(&bs, spent_near_the_end, kNearTheEnd);
    out << "|spent " << bs.tokens;
    berth_object_fields of{};
    if (berth_object_get_fields(&of, live.object()) == BERTH_OK) {
      out << "|object " << std::string(of.name, of.name_len) << " " << of.resource_version;
    }
    size_t listed = 0;
    berth_object_list_size(&listed, live.object_list());
    out << "|object list " << listed;
    size_t drained = 0;
    uint64_t tokens[4];
    berth_notifier_drain(&drained, live.notifier(), tokens, 4);
    out << "|notifier " << drained;
    return out.str();
  }

  Handles live, freed;
  berth_cache* unsynced = nullptr;
  berth_bucket* spent_near_the_end = nullptr;

 private:
  static void Ok(berth_status st) { ASSERT_EQ(st, BERTH_OK) << LastError(); }
  static void Free(const Handles& hs) {
    berth_engine_free(hs.engine());
    berth_buffer_free(hs.buffer());
    berth_selector_free(hs.selector());
    berth_cache_free(hs.cache());
    berth_limiter_release(hs.limiter(), 1);
    berth_limiter_free(hs.limiter());
    berth_notifier_free(hs.notifier());
    berth_bucket_free(hs.bucket());
    berth_shared_limiter_close(hs.shared());
    berth_object_free(hs.object());
    berth_object_list_free(hs.object_list());
  }

  std::string shared_name_;
  static inline int count_ = 0;
};

// ---- the rows -------------------------------------------------------------------------

using Call = std::function<berth_status(const Handles&)>;
using Own = std::vector<std::pair<std::string, Call>>;

struct HandleParam {
  const char* name;  // the parameter's name in berth.h
  Slot slot;
  bool optional = false;  // NULL is allowed
};

struct Row {
  std::string fn, what;
  Call call;
};

// A function with handles and a valid call (it succeeds with live handles;
// the derived rows replace one of them).
struct Function {
  std::string fn;
  Call valid;
};

class Table {
 public:
  explicit Table(World& w) : w_(w) {}

  void Fn(const std::string& name, std::vector<HandleParam> handles, Call valid, Own own) {
    const bool frees = name.ends_with("_free") || name.ends_with("_close");
    if (!handles.empty()) functions.push_back({name, valid});
    for (const HandleParam& hp : handles) {
      const Slot slot = hp.slot;
      if (!hp.optional && !frees) {  // NULL to a _free is a no-op, not an error
        Add(name, std::string("NULL ") + hp.name, valid, [](const Handles&, Slot) -> void* { return nullptr; }, slot);
      }
      World* w = &w_;
      Add(name, std::string("freed ") + hp.name, valid,
          [w](const Handles&, Slot s) { return w->freed.h[s]; }, slot);
      Add(name, std::string(hp.name) + " of another type", valid,
          [](const Handles& h, Slot s) { return h.h[(s + 1) % kSlots]; }, slot);
    }
    for (auto& [what, call] : own) rows.push_back({name, what, std::move(call)});
  }

  std::vector<Row> rows;
  std::vector<Function> functions;

 private:
  void Add(const std::string& name, const std::string& what, const Call& valid,
           std::function<void*(const Handles&, Slot)> pick, Slot slot) {
    rows.push_back({name, what, [valid, pick, slot](const Handles& h) {
                      Handles x = h;
                      x.h[slot] = pick(h, slot);
                      return valid(x);
                    }});
  }
  World& w_;
};

// The calls the in-process and the shared limiter both take (H: the handle
// type), so both get the same rows.
template <class H>
struct LimiterCalls {
  const char* prefix;
  HandleParam param;
  berth_status (*try_acquire)(int*, H*, int64_t);
  berth_status (*acquire)(H*, int64_t, int64_t);
  berth_status (*acquire_async)(int*, uint64_t*, H*, int64_t, berth_notifier*, uint64_t);
  berth_status (*claim)(int*, H*, uint64_t);
  berth_status (*cancel)(int*, H*, uint64_t);
  berth_status (*release)(H*, int64_t);
  berth_status (*set_capacity)(H*, int64_t);
};

// Every row of the table, in header order.
Table Build(World& w) {
  Table t(w);
  const HandleParam engine{"engine", kEngine}, cache{"cache", kCache}, selector{"selector", kSelector},
      limiter{"limiter", kLimiter}, notifier{"notifier", kNotifier}, bucket{"bucket", kBucket},
      shared{"limiter", kShared}, buffer{"buffer", kBuffer}, object{"object", kObject},
      object_list{"list", kObjectList};

  // Inputs shared by rows; static so the calls may keep pointers into them.
  static const std::string long_pool(BERTH_MAX_POOL_LEN + 1, 'p');
  static const std::string long_ns(BERTH_MAX_NAMESPACE_LEN + 1, 'n');
  static const std::string long_name(BERTH_MAX_NAME_LEN + 1, 'x');
  static const std::string long_node(BERTH_MAX_NODE_LEN + 1, 'd');
  static const std::string nul("a\0b", 3);
  static const std::string bad_utf8("\xc3\x28", 2);
  static const auto batch = KeyBatch({{"ns", "c", "node-2"}});
  static const auto batch_empty_name = KeyBatch({{"ns", "c", ""}, {"ns", "", ""}});
  static const auto batch_long_ns = KeyBatch({{long_ns, "c", ""}});
  static const auto batch_bad_node = KeyBatch({{"ns", "c", bad_utf8}});
  static const auto list = ObjectList({{"ns", "x", 9, {}}}, 9);
  static const auto list_wrong_id = ObjectList({{"ns", "x", 9, {}}}, 9, "XXXX");
  static const auto list_bad_label = ObjectList({{"ns", "x", 9, {}}, {"ns", "y", 9, {{"bad key", "v"}}}}, 9);
  static const auto list_empty_name = ObjectList({{"ns", "", 9, {}}}, 9);
  static const auto events = Events({{0, {"ns", "x", 9, {}}}});
  static const auto events_rv0 = Events({{0, {"ns", "x", 0, {}}}});
  static const auto events_type7 = Events({{7, {"ns", "x", 9, {}}}});
  static const auto events_no_object = Events({{-1, {}}});
  static const auto events_bad_label = Events({{1, {"ns", "x", 9, {{"app", std::string(64, 'v')}}}}});
  static const std::vector<uint8_t> truncated_batch(batch.begin(), batch.begin() + batch.size() / 2);
  static const std::vector<uint8_t> truncated_list(list.begin(), list.begin() + list.size() / 2);
  static const std::vector<uint8_t> garbage_batch = [] {
    std::vector<uint8_t> g(64, 0xAB);
    std::memcpy(g.data() + 4, BERTH_FB_POOL_KEY_BATCH_ID, 4);
    return g;
  }();
  static const std::vector<uint8_t> garbage_events = [] {
    std::vector<uint8_t> g(64, 0x7F);
    std::memcpy(g.data() + 4, BERTH_FB_EVENT_BATCH_ID, 4);
    return g;
  }();
  static const std::string long_value(64, 'v');
  static const berth_label label_ok[] = {{"app", 3, "web", 3}};
  static const berth_label label_long_value[] = {{"app", 3, long_value.data(), long_value.size()}};
  static const berth_label label_bad_key[] = {{"bad key", 7, "v", 1}};
  static const berth_label label_null_key[] = {{nullptr, 3, "v", 1}};
  static const std::vector<berth_label> too_many(BERTH_MAX_LABELS + 1, berth_label{"k", 1, "v", 1});
  static const std::vector<uint8_t> big_payload(size_t{BERTH_MAX_PAYLOAD_LEN} + 1);
  static const std::string long_shared(300, 's');
  static const size_t kHuge = size_t{BERTH_MAX_BUFFER_LEN} + 1;

  // Out-parameters the rows write to (never read).
  static berth_pool_key key;
  static berth_pool_stats pool_stats;
  static berth_buffer* buf;
  static berth_selector* sel;
  static berth_cache_stats cache_stats;
  static berth_object* obj;
  static berth_object_list* obj_list;
  static berth_object_fields fields;
  static berth_label labels[4];
  static berth_limiter* new_limiter;
  static berth_limiter_stats limiter_stats;
  static berth_shared_limiter* new_shared;
  static berth_shared_limiter_stats shared_stats;
  static berth_bucket* new_bucket;
  static berth_bucket_stats bucket_stats;
  static berth_reservation reservation;
  static int flag;
  static size_t count;
  static uint64_t ticket, tokens[4];
  static const uint8_t* data;
  static size_t len;

  // ---- engine and pools
  t.Fn("berth_engine_new", {}, nullptr,
       {{"NULL out_engine", [](const Handles&) { return berth_engine_new(nullptr); }}});
  t.Fn("berth_engine_free", {engine}, [](const Handles& h) { return berth_engine_free(h.engine()); }, {});
  t.Fn("berth_engine_list_pools", {engine},
       [](const Handles& h) {
         const berth_status st = berth_engine_list_pools(&buf, h.engine());
         if (st == BERTH_OK) berth_buffer_free(buf);
         return st;
       },
       {{"NULL out_buffer", [](const Handles& h) { return berth_engine_list_pools(nullptr, h.engine()); }}});
  for (auto [name, raw] : {std::pair{"berth_pool_add", &berth_pool_add},
                           std::pair{"berth_pool_update", &berth_pool_update}}) {
    auto f = [raw](const Handles& h, std::string_view pool, std::string_view ns, std::string_view name,
                   std::string_view node, int ready) {
      return raw(nullptr, h.engine(), pool.data(), pool.size(), ns.data(), ns.size(), name.data(),
                 name.size(), node.data(), node.size(), ready);
    };
    t.Fn(name, {engine}, [f](const Handles& h) { return f(h, "p", "ns", "a", "node-1", 1); },
         {{"NULL pool with a length", [raw](const Handles& h) { return raw(nullptr, h.engine(), nullptr, 1, "ns", 2, "a", 1, "", 0, 1); }},
          {"NULL namespace_ with a length", [raw](const Handles& h) { return raw(nullptr, h.engine(), "p", 1, nullptr, 2, "a", 1, "", 0, 1); }},
          {"NULL name with a length", [raw](const Handles& h) { return raw(nullptr, h.engine(), "p", 1, "ns", 2, nullptr, 1, "", 0, 1); }},
          {"NULL node with a length", [raw](const Handles& h) { return raw(nullptr, h.engine(), "p", 1, "ns", 2, "a", 1, nullptr, 4, 1); }},
          {"ready 2", [f](const Handles& h) { return f(h, "p", "ns", "a", "", 2); }},
          {"ready -1", [f](const Handles& h) { return f(h, "p", "ns", "a", "", -1); }},
          {"empty pool", [f](const Handles& h) { return f(h, "", "ns", "a", "", 1); }},
          {"empty name", [f](const Handles& h) { return f(h, "p", "ns", "", "", 1); }},
          {"pool over BERTH_MAX_POOL_LEN", [f](const Handles& h) { return f(h, long_pool, "ns", "a", "", 1); }},
          {"namespace_ over BERTH_MAX_NAMESPACE_LEN", [f](const Handles& h) { return f(h, "p", long_ns, "a", "", 1); }},
          {"name over BERTH_MAX_NAME_LEN", [f](const Handles& h) { return f(h, "p", "ns", long_name, "", 1); }},
          {"node over BERTH_MAX_NODE_LEN", [f](const Handles& h) { return f(h, "p", "ns", "a", long_node, 1); }},
          {"NUL byte in pool", [f](const Handles& h) { return f(h, nul, "ns", "a", "", 1); }},
          {"NUL byte in name", [f](const Handles& h) { return f(h, "p", "ns", nul, "", 1); }},
          {"invalid UTF-8 in namespace_", [f](const Handles& h) { return f(h, "p", bad_utf8, "a", "", 1); }},
          {"invalid UTF-8 in node", [f](const Handles& h) { return f(h, "p", "ns", "a", bad_utf8, 1); }}});
  }
  t.Fn("berth_pool_add_batch", {engine},
       [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, batch.data(), batch.size()); },
       {{"NULL pool with a length", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), nullptr, 1, batch.data(), batch.size()); }},
        {"empty pool", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "", 0, batch.data(), batch.size()); }},
        {"NULL buf with a length", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, nullptr, 10); }},
        {"empty buffer", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, nullptr, 0); }},
        {"buffer over BERTH_MAX_BUFFER_LEN", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, batch.data(), kHuge); }},
        {"an ObjectList instead of a PoolKeyBatch", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, list.data(), list.size()); }},
        {"truncated buffer", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, truncated_batch.data(), truncated_batch.size()); }},
        {"garbage after the identifier", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, garbage_batch.data(), garbage_batch.size()); }},
        {"key 1 with an empty name", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, batch_empty_name.data(), batch_empty_name.size()); }},
        {"key 0 with a namespace over the limit", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, batch_long_ns.data(), batch_long_ns.size()); }},
        {"key 0 with invalid UTF-8 in node", [](const Handles& h) { return berth_pool_add_batch(nullptr, h.engine(), "p", 1, batch_bad_node.data(), batch_bad_node.size()); }}});
  t.Fn("berth_pool_remove", {engine},
       [](const Handles& h) { return berth_pool_remove(nullptr, h.engine(), "p", 1, "ns", 2, "zz", 2); },
       {{"NULL name with a length", [](const Handles& h) { return berth_pool_remove(nullptr, h.engine(), "p", 1, "ns", 2, nullptr, 2); }},
        {"empty name", [](const Handles& h) { return berth_pool_remove(nullptr, h.engine(), "p", 1, "ns", 2, "", 0); }},
        {"empty pool", [](const Handles& h) { return berth_pool_remove(nullptr, h.engine(), "", 0, "ns", 2, "a", 1); }},
        {"namespace_ over BERTH_MAX_NAMESPACE_LEN", [](const Handles& h) { return berth_pool_remove(nullptr, h.engine(), "p", 1, long_ns.data(), long_ns.size(), "a", 1); }}});
  t.Fn("berth_pool_remove_pool", {engine},
       [](const Handles& h) { return berth_pool_remove_pool(nullptr, h.engine(), "zz", 2); },
       {{"NULL pool with a length", [](const Handles& h) { return berth_pool_remove_pool(nullptr, h.engine(), nullptr, 2); }},
        {"empty pool", [](const Handles& h) { return berth_pool_remove_pool(nullptr, h.engine(), "", 0); }},
        {"pool over BERTH_MAX_POOL_LEN", [](const Handles& h) { return berth_pool_remove_pool(nullptr, h.engine(), long_pool.data(), long_pool.size()); }}});
  for (auto [name, pop] : {std::pair{"berth_pool_pop_fifo", &berth_pool_pop_fifo},
                           std::pair{"berth_pool_pop_spread", &berth_pool_pop_spread}}) {
    t.Fn(name, {engine}, [pop](const Handles& h) { return pop(&key, h.engine(), "p", 1); },
         {{"NULL out_key", [pop](const Handles& h) { return pop(nullptr, h.engine(), "p", 1); }},
          {"unknown pool", [pop](const Handles& h) { return pop(&key, h.engine(), "nope", 4); }},
          {"empty pool", [pop](const Handles& h) { return pop(&key, h.engine(), "", 0); }},
          {"invalid UTF-8 in pool", [pop](const Handles& h) { return pop(&key, h.engine(), bad_utf8.data(), bad_utf8.size()); }}});
  }
  t.Fn("berth_pool_put_back", {engine},
       [](const Handles& h) { return berth_pool_put_back(nullptr, h.engine(), "p", 1, "ns", 2, "zz", 2, 1); },
       {{"unknown pool", [](const Handles& h) { return berth_pool_put_back(nullptr, h.engine(), "nope", 4, "ns", 2, "a", 1, 1); }},
        {"NULL namespace_ with a length", [](const Handles& h) { return berth_pool_put_back(nullptr, h.engine(), "p", 1, nullptr, 2, "a", 1, 1); }},
        {"empty name", [](const Handles& h) { return berth_pool_put_back(nullptr, h.engine(), "p", 1, "ns", 2, "", 0, 1); }},
        {"name over BERTH_MAX_NAME_LEN", [](const Handles& h) { return berth_pool_put_back(nullptr, h.engine(), "p", 1, "ns", 2, long_name.data(), long_name.size(), 1); }}});
  t.Fn("berth_pool_get_stats", {engine}, [](const Handles& h) { return berth_pool_get_stats(&pool_stats, h.engine(), "p", 1); },
       {{"NULL out_stats", [](const Handles& h) { return berth_pool_get_stats(nullptr, h.engine(), "p", 1); }},
        {"unknown pool", [](const Handles& h) { return berth_pool_get_stats(&pool_stats, h.engine(), "nope", 4); }},
        {"NULL pool with a length", [](const Handles& h) { return berth_pool_get_stats(&pool_stats, h.engine(), nullptr, 4); }}});
  for (auto [name, get] : {std::pair{"berth_pool_snapshot", &berth_pool_snapshot},
                           std::pair{"berth_pool_node_stats", &berth_pool_node_stats}}) {
    t.Fn(name, {engine},
         [get](const Handles& h) {
           const berth_status st = get(&buf, h.engine(), "p", 1);
           if (st == BERTH_OK) berth_buffer_free(buf);
           return st;
         },
         {{"NULL out_buffer", [get](const Handles& h) { return get(nullptr, h.engine(), "p", 1); }},
          {"unknown pool", [get](const Handles& h) { return get(&buf, h.engine(), "nope", 4); }}});
  }

  // ---- selectors
  t.Fn("berth_selector_parse", {}, nullptr,
       {{"NULL out_selector", [](const Handles&) { return berth_selector_parse(nullptr, "a=b", 3); }},
        {"NULL text with a length", [](const Handles&) { return berth_selector_parse(&sel, nullptr, 3); }},
        {"a key Kubernetes rejects", [](const Handles&) { return berth_selector_parse(&sel, "-a=b", 4); }},
        {"an unclosed set", [](const Handles&) { return berth_selector_parse(&sel, "a in (b", 7); }},
        {"a value over 63 bytes", [](const Handles&) {
           static const std::string s = "a=" + std::string(64, 'v');
           return berth_selector_parse(&sel, s.data(), s.size()); }},
        {"NUL byte in text", [](const Handles&) { return berth_selector_parse(&sel, nul.data(), nul.size()); }},
        {"invalid UTF-8 in text", [](const Handles&) { return berth_selector_parse(&sel, bad_utf8.data(), bad_utf8.size()); }}});
  t.Fn("berth_selector_free", {selector}, [](const Handles& h) { return berth_selector_free(h.selector()); }, {});
  t.Fn("berth_selector_string", {selector},
       [](const Handles& h) {
         const berth_status st = berth_selector_string(&buf, h.selector());
         if (st == BERTH_OK) berth_buffer_free(buf);
         return st;
       },
       {{"NULL out_buffer", [](const Handles& h) { return berth_selector_string(nullptr, h.selector()); }}});
  t.Fn("berth_selector_matches", {selector},
       [](const Handles& h) { return berth_selector_matches(&flag, h.selector(), label_ok, 1); },
       {{"NULL out_matches", [](const Handles& h) { return berth_selector_matches(nullptr, h.selector(), label_ok, 1); }},
        {"NULL labels with n_labels > 0", [](const Handles& h) { return berth_selector_matches(&flag, h.selector(), nullptr, 2); }},
        {"a label key NULL with a length", [](const Handles& h) { return berth_selector_matches(&flag, h.selector(), label_null_key, 1); }}});

  // ---- cache
  auto upsert = [](const Handles& h, std::string_view ns, std::string_view name, uint64_t rv,
                   const berth_label* labels, size_t n, const uint8_t* payload, size_t payload_len) {
    return berth_cache_upsert(nullptr, h.cache(), ns.data(), ns.size(), name.data(), name.size(), rv,
                              labels, n, payload, payload_len);
  };
  t.Fn("berth_cache_new", {}, nullptr,
       {{"NULL out_cache", [](const Handles&) { return berth_cache_new(nullptr, nullptr); }}});
  t.Fn("berth_cache_free", {cache}, [](const Handles& h) { return berth_cache_free(h.cache()); }, {});
  t.Fn("berth_cache_upsert", {cache}, [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, label_ok, 1, nullptr, 0); },
       {{"resource_version 0", [upsert](const Handles& h) { return upsert(h, "ns", "x", 0, nullptr, 0, nullptr, 0); }},
        {"NULL namespace_ with a length", [](const Handles& h) { return berth_cache_upsert(nullptr, h.cache(), nullptr, 2, "x", 1, 9, nullptr, 0, nullptr, 0); }},
        {"NULL name with a length", [](const Handles& h) { return berth_cache_upsert(nullptr, h.cache(), "ns", 2, nullptr, 1, 9, nullptr, 0, nullptr, 0); }},
        {"empty name", [upsert](const Handles& h) { return upsert(h, "ns", "", 9, nullptr, 0, nullptr, 0); }},
        {"name over BERTH_MAX_NAME_LEN", [upsert](const Handles& h) { return upsert(h, "ns", long_name, 9, nullptr, 0, nullptr, 0); }},
        {"invalid UTF-8 in namespace_", [upsert](const Handles& h) { return upsert(h, bad_utf8, "x", 9, nullptr, 0, nullptr, 0); }},
        {"NUL byte in name", [upsert](const Handles& h) { return upsert(h, "ns", nul, 9, nullptr, 0, nullptr, 0); }},
        {"a label value over 63 bytes", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, label_long_value, 1, nullptr, 0); }},
        {"a label key Kubernetes rejects", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, label_bad_key, 1, nullptr, 0); }},
        {"a label key NULL with a length", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, label_null_key, 1, nullptr, 0); }},
        {"NULL labels with n_labels > 0", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, nullptr, 2, nullptr, 0); }},
        {"more than BERTH_MAX_LABELS labels", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, too_many.data(), too_many.size(), nullptr, 0); }},
        {"NULL payload with a length", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, nullptr, 0, nullptr, 9); }},
        {"payload over BERTH_MAX_PAYLOAD_LEN", [upsert](const Handles& h) { return upsert(h, "ns", "x", 9, nullptr, 0, big_payload.data(), big_payload.size()); }}});
  t.Fn("berth_cache_delete", {cache}, [](const Handles& h) { return berth_cache_delete(nullptr, h.cache(), "ns", 2, "zz", 2, 9); },
       {{"NULL name with a length", [](const Handles& h) { return berth_cache_delete(nullptr, h.cache(), "ns", 2, nullptr, 2, 9); }},
        {"empty name", [](const Handles& h) { return berth_cache_delete(nullptr, h.cache(), "ns", 2, "", 0, 9); }},
        {"invalid UTF-8 in name", [](const Handles& h) { return berth_cache_delete(nullptr, h.cache(), "ns", 2, "\xff", 1, 9); }},
        {"namespace_ over BERTH_MAX_NAMESPACE_LEN", [](const Handles& h) { return berth_cache_delete(nullptr, h.cache(), long_ns.data(), long_ns.size(), "x", 1, 9); }}});
  auto apply = [](const std::vector<uint8_t>& b) {
    return [&b](const Handles& h) { return berth_cache_apply(nullptr, h.cache(), b.data(), b.size()); };
  };
  t.Fn("berth_cache_apply", {cache}, apply(events),
       {{"NULL buf with a length", [](const Handles& h) { return berth_cache_apply(nullptr, h.cache(), nullptr, 8); }},
        {"empty buffer", [](const Handles& h) { return berth_cache_apply(nullptr, h.cache(), nullptr, 0); }},
        {"buffer over BERTH_MAX_BUFFER_LEN", [](const Handles& h) { return berth_cache_apply(nullptr, h.cache(), events.data(), kHuge); }},
        {"an ObjectList instead of an EventBatch", apply(list)},
        {"garbage after the identifier", apply(garbage_events)},
        {"event 0 with resource_version 0", apply(events_rv0)},
        {"event 0 of unknown type 7", apply(events_type7)},
        {"event 0 without an object", apply(events_no_object)},
        {"event 0 with a label value over 63 bytes", apply(events_bad_label)}});
  auto replace = [](const std::vector<uint8_t>& b) {
    return [&b](const Handles& h) { return berth_cache_replace(h.cache(), b.data(), b.size()); };
  };
  t.Fn("berth_cache_replace", {cache}, replace(list),
       {{"NULL buf with a length", [](const Handles& h) { return berth_cache_replace(h.cache(), nullptr, 8); }},
        {"buffer over BERTH_MAX_BUFFER_LEN", [](const Handles& h) { return berth_cache_replace(h.cache(), list.data(), kHuge); }},
        {"wrong file identifier", replace(list_wrong_id)},
        {"an EventBatch instead of an ObjectList", replace(events)},
        {"truncated buffer", replace(truncated_list)},
        {"object 0 with an empty name", replace(list_empty_name)},
        {"object 1 with a label key Kubernetes rejects", replace(list_bad_label)}});
  World* wp = &w;
  t.Fn("berth_cache_list", {cache, HandleParam{"selector", kSelector, true}},
       [](const Handles& h) {
         const berth_status st = berth_cache_list(&buf, h.cache(), "ns", 2, h.selector());
         if (st == BERTH_OK) berth_buffer_free(buf);
         return st;
       },
       {{"NULL out_buffer", [](const Handles& h) { return berth_cache_list(nullptr, h.cache(), "ns", 2, nullptr); }},
        {"NULL namespace_ with a length", [](const Handles& h) { return berth_cache_list(&buf, h.cache(), nullptr, 2, nullptr); }},
        {"namespace_ over BERTH_MAX_NAMESPACE_LEN", [](const Handles& h) { return berth_cache_list(&buf, h.cache(), long_ns.data(), long_ns.size(), nullptr); }},
        {"invalid UTF-8 in namespace_", [](const Handles& h) { return berth_cache_list(&buf, h.cache(), bad_utf8.data(), bad_utf8.size(), nullptr); }},
        {"cache not synced yet", [wp](const Handles&) { return berth_cache_list(&buf, wp->unsynced, nullptr, 0, nullptr); }}});
  t.Fn("berth_cache_get", {cache},
       [](const Handles& h) {
         const berth_status st = berth_cache_get(&buf, h.cache(), "ns", 2, "web-1", 5);
         if (st == BERTH_OK) berth_buffer_free(buf);
         return st;
       },
       {{"NULL out_buffer", [](const Handles& h) { return berth_cache_get(nullptr, h.cache(), "ns", 2, "a", 1); }},
        {"NULL name with a length", [](const Handles& h) { return berth_cache_get(&buf, h.cache(), "ns", 2, nullptr, 1); }},
        {"empty name", [](const Handles& h) { return berth_cache_get(&buf, h.cache(), "ns", 2, "", 0); }},
        {"NUL byte in name", [](const Handles& h) { return berth_cache_get(&buf, h.cache(), "ns", 2, nul.data(), nul.size()); }},
        {"cache not synced yet", [wp](const Handles&) { return berth_cache_get(&buf, wp->unsynced, "ns", 2, "a", 1); }}});
  t.Fn("berth_cache_get_stats", {cache}, [](const Handles& h) { return berth_cache_get_stats(&cache_stats, h.cache()); },
       {{"NULL out_stats", [](const Handles& h) { return berth_cache_get_stats(nullptr, h.cache()); }}});

  // ---- cached objects (the live object is ns/web-1; the live list holds two)
  t.Fn("berth_cache_get_object", {cache},
       [](const Handles& h) {
         const berth_status st = berth_cache_get_object(&obj, &fields, h.cache(), "ns", 2, "web-1", 5);
         if (st == BERTH_OK) berth_object_free(obj);
         return st;
       },
       {{"NULL out_object", [](const Handles& h) { return berth_cache_get_object(nullptr, &fields, h.cache(), "ns", 2, "a", 1); }},
        {"NULL name with a length", [](const Handles& h) { return berth_cache_get_object(&obj, nullptr, h.cache(), "ns", 2, nullptr, 1); }},
        {"empty name", [](const Handles& h) { return berth_cache_get_object(&obj, nullptr, h.cache(), "ns", 2, "", 0); }},
        {"NUL byte in name", [](const Handles& h) { return berth_cache_get_object(&obj, nullptr, h.cache(), "ns", 2, nul.data(), nul.size()); }},
        {"cache not synced yet", [wp](const Handles&) { return berth_cache_get_object(&obj, nullptr, wp->unsynced, "ns", 2, "a", 1); }}});
  t.Fn("berth_cache_list_objects", {cache, {"selector", kSelector, true}},
       [](const Handles& h) {
         const berth_status st = berth_cache_list_objects(&obj_list, nullptr, h.cache(), "ns", 2, h.selector());
         if (st == BERTH_OK) berth_object_list_free(obj_list);
         return st;
       },
       {{"NULL out_list", [](const Handles& h) { return berth_cache_list_objects(nullptr, nullptr, h.cache(), nullptr, 0, nullptr); }},
        {"NULL namespace_ with a length", [](const Handles& h) { return berth_cache_list_objects(&obj_list, nullptr, h.cache(), nullptr, 2, nullptr); }},
        {"namespace_ over BERTH_MAX_NAMESPACE_LEN", [](const Handles& h) { return berth_cache_list_objects(&obj_list, nullptr, h.cache(), long_ns.data(), long_ns.size(), nullptr); }},
        {"invalid UTF-8 in namespace_", [](const Handles& h) { return berth_cache_list_objects(&obj_list, nullptr, h.cache(), bad_utf8.data(), bad_utf8.size(), nullptr); }},
        {"cache not synced yet", [wp](const Handles&) { return berth_cache_list_objects(&obj_list, nullptr, wp->unsynced, nullptr, 0, nullptr); }}});
  t.Fn("berth_object_get_fields", {object}, [](const Handles& h) { return berth_object_get_fields(&fields, h.object()); },
       {{"NULL out_fields", [](const Handles& h) { return berth_object_get_fields(nullptr, h.object()); }}});
  t.Fn("berth_object_labels", {object}, [](const Handles& h) { return berth_object_labels(labels, 4, &count, h.object()); },
       {{"NULL out_n", [](const Handles& h) { return berth_object_labels(labels, 4, nullptr, h.object()); }},
        {"NULL out_labels with a capacity", [](const Handles& h) { return berth_object_labels(nullptr, 1, &count, h.object()); }}});
  t.Fn("berth_object_free", {object}, [](const Handles& h) { return berth_object_free(h.object()); }, {});
  t.Fn("berth_object_list_size", {object_list}, [](const Handles& h) { return berth_object_list_size(&count, h.object_list()); },
       {{"NULL out_size", [](const Handles& h) { return berth_object_list_size(nullptr, h.object_list()); }}});
  t.Fn("berth_object_list_get", {object_list},
       [](const Handles& h) {
         const berth_status st = berth_object_list_get(&obj, &fields, h.object_list(), 1);
         if (st == BERTH_OK) berth_object_free(obj);
         return st;
       },
       {{"both outputs NULL", [](const Handles& h) { return berth_object_list_get(nullptr, nullptr, h.object_list(), 0); }},
        {"index out of range", [](const Handles& h) { return berth_object_list_get(nullptr, &fields, h.object_list(), 2); }}});
  t.Fn("berth_object_list_free", {object_list}, [](const Handles& h) { return berth_object_list_free(h.object_list()); }, {});

  // ---- concurrency limiter (the live one has capacity 2, one permit held)
  t.Fn("berth_limiter_new", {}, nullptr,
       {{"NULL out_limiter", [](const Handles&) { return berth_limiter_new(nullptr, 1); }},
        {"capacity 0", [](const Handles&) { return berth_limiter_new(&new_limiter, 0); }},
        {"capacity -1", [](const Handles&) { return berth_limiter_new(&new_limiter, -1); }}});
  t.Fn("berth_limiter_free", {limiter}, [](const Handles& h) { return berth_limiter_free(h.limiter()); }, {});

  // The calls both limiters take, with the same rows.
  auto limiter_rows = [&]<class H>(const LimiterCalls<H>& c) {
    const std::string p = c.prefix;
    const Slot s = c.param.slot;
    t.Fn(p + "try_acquire", {c.param}, [c, s](const Handles& h) {
           const berth_status st = c.try_acquire(&flag, static_cast<H*>(h.h[s]), 1);
           if (st == BERTH_OK && flag == BERTH_LIMIT_GRANTED) c.release(static_cast<H*>(h.h[s]), 1);
           return st; },
         {{"NULL out_refusal", [c, s](const Handles& h) { return c.try_acquire(nullptr, static_cast<H*>(h.h[s]), 1); }},
          {"n 0", [c, s](const Handles& h) { return c.try_acquire(&flag, static_cast<H*>(h.h[s]), 0); }},
          {"n over the capacity", [c, s](const Handles& h) { return c.try_acquire(&flag, static_cast<H*>(h.h[s]), 3); }}});
    t.Fn(p + "acquire", {c.param}, [c, s](const Handles& h) {
           const berth_status st = c.acquire(static_cast<H*>(h.h[s]), 1, 0);
           if (st == BERTH_OK) c.release(static_cast<H*>(h.h[s]), 1);
           return st; },
         {{"n 0", [c, s](const Handles& h) { return c.acquire(static_cast<H*>(h.h[s]), 0, 0); }},
          {"n -5", [c, s](const Handles& h) { return c.acquire(static_cast<H*>(h.h[s]), -5, 0); }},
          {"n over the capacity", [c, s](const Handles& h) { return c.acquire(static_cast<H*>(h.h[s]), 3, 0); }}});
    t.Fn(p + "acquire_async", {c.param, notifier}, [c, s](const Handles& h) {
           const berth_status st = c.acquire_async(&flag, &ticket, static_cast<H*>(h.h[s]), 1, h.notifier(), 7);
           if (st == BERTH_OK) c.cancel(&flag, static_cast<H*>(h.h[s]), ticket);
           if (flag == BERTH_CANCEL_WAS_GRANTED) c.release(static_cast<H*>(h.h[s]), 1);
           return st; },
         {{"NULL out_granted_now", [c, s](const Handles& h) { return c.acquire_async(nullptr, &ticket, static_cast<H*>(h.h[s]), 1, h.notifier(), 7); }},
          {"NULL out_ticket", [c, s](const Handles& h) { return c.acquire_async(&flag, nullptr, static_cast<H*>(h.h[s]), 1, h.notifier(), 7); }},
          {"n 0", [c, s](const Handles& h) { return c.acquire_async(&flag, &ticket, static_cast<H*>(h.h[s]), 0, h.notifier(), 7); }},
          {"n over the capacity", [c, s](const Handles& h) { return c.acquire_async(&flag, &ticket, static_cast<H*>(h.h[s]), 3, h.notifier(), 7); }}});
    t.Fn(p + "claim", {c.param}, [c, s](const Handles& h) { return c.claim(&flag, static_cast<H*>(h.h[s]), 12345); },
         {{"NULL out_claimed", [c, s](const Handles& h) { return c.claim(nullptr, static_cast<H*>(h.h[s]), 1); }}});
    t.Fn(p + "cancel", {c.param}, [c, s](const Handles& h) { return c.cancel(&flag, static_cast<H*>(h.h[s]), 12345); }, {});
    t.Fn(p + "release", {c.param}, [c, s](const Handles& h) {
           c.acquire(static_cast<H*>(h.h[s]), 1, 0);
           return c.release(static_cast<H*>(h.h[s]), 1); },
         {{"n 0", [c, s](const Handles& h) { return c.release(static_cast<H*>(h.h[s]), 0); }},
          {"more than this process holds", [c, s](const Handles& h) { return c.release(static_cast<H*>(h.h[s]), 2); }}});
    t.Fn(p + "set_capacity", {c.param}, [c, s](const Handles& h) { return c.set_capacity(static_cast<H*>(h.h[s]), 2); },
         {{"capacity 0", [c, s](const Handles& h) { return c.set_capacity(static_cast<H*>(h.h[s]), 0); }},
          {"capacity -1", [c, s](const Handles& h) { return c.set_capacity(static_cast<H*>(h.h[s]), -1); }}});
  };
  limiter_rows(LimiterCalls<berth_limiter>{"berth_limiter_", limiter, berth_limiter_try_acquire, berth_limiter_acquire,
                                       berth_limiter_acquire_async, berth_limiter_claim, berth_limiter_cancel,
                                       berth_limiter_release, berth_limiter_set_capacity});
  t.Fn("berth_limiter_get_stats", {limiter}, [](const Handles& h) { return berth_limiter_get_stats(&limiter_stats, h.limiter()); },
       {{"NULL out_stats", [](const Handles& h) { return berth_limiter_get_stats(nullptr, h.limiter()); }}});

  // ---- notifier
  t.Fn("berth_notifier_new", {}, nullptr,
       {{"NULL out_notifier", [](const Handles&) { return berth_notifier_new(nullptr); }}});
  t.Fn("berth_notifier_free", {notifier}, [](const Handles& h) { return berth_notifier_free(h.notifier()); }, {});
  t.Fn("berth_notifier_fd", {notifier}, [](const Handles& h) { return berth_notifier_fd(&flag, h.notifier()); },
       {{"NULL out_fd", [](const Handles& h) { return berth_notifier_fd(nullptr, h.notifier()); }}});
  t.Fn("berth_notifier_drain", {notifier}, [](const Handles& h) { return berth_notifier_drain(&count, h.notifier(), tokens, 4); },
       {{"NULL out_count", [](const Handles& h) { return berth_notifier_drain(nullptr, h.notifier(), tokens, 4); }},
        {"NULL tokens with cap > 0", [](const Handles& h) { return berth_notifier_drain(&count, h.notifier(), nullptr, 4); }}});

  // ---- shared limiter (the live one has capacity 2)
  auto open = [](std::string_view name, int64_t capacity, int create) {
    return [name, capacity, create](const Handles&) {
      const berth_status st = berth_shared_limiter_open(&new_shared, name.data(), name.size(), capacity, create);
      if (st == BERTH_OK) berth_shared_limiter_close(new_shared);
      return st;
    };
  };
  t.Fn("berth_shared_limiter_open", {}, nullptr,
       {{"NULL out_limiter", [](const Handles&) { return berth_shared_limiter_open(nullptr, "x", 1, 1, 1); }},
        {"NULL name with a length", [](const Handles&) { return berth_shared_limiter_open(&new_shared, nullptr, 3, 1, 1); }},
        {"empty name", open("", 1, 1)},
        {"name over its limit", open(long_shared, 1, 1)},
        {"a slash in name", open("a/b", 1, 1)},
        {"invalid UTF-8 in name", open(bad_utf8, 1, 1)},
        {"create 2", open("berth-errors-test", 1, 2)},
        {"capacity 0 with create 1", open("berth-errors-test", 0, 1)},
        {"absent name with create 0", open("berth-errors-test-absent", 1, 0)},
        {"a region of another program under the name", [open](const Handles&) -> berth_status {
           // A foreign file of the right size where the region would live.
           const int fd = shm_open("/berth.berth-errors-test-foreign", O_CREAT | O_RDWR | O_TRUNC, 0600);
           if (fd < 0) return BERTH_ERR_INTERNAL;
           std::vector<char> junk(4096, 'j');
           const bool wrote = write(fd, junk.data(), junk.size()) == static_cast<ssize_t>(junk.size());
           close(fd);
           const berth_status st = wrote ? open("berth-errors-test-foreign", 1, 1)(Handles{}) : BERTH_ERR_INTERNAL;
           shm_unlink("/berth.berth-errors-test-foreign");
           return st; }},
        {"a region others may write (mode 0666)", [open](const Handles&) -> berth_status {
           // Made by Berth, then opened up: whoever could write it is not trusted.
           berth_status st = open("berth-errors-test-mode", 1, 1)(Handles{});
           const int fd = shm_open("/berth.berth-errors-test-mode", O_RDWR, 0);
           if (st != BERTH_OK || fd < 0 || fchmod(fd, 0666) != 0) st = BERTH_ERR_INTERNAL;
           if (fd >= 0) close(fd);
           if (st == BERTH_OK) st = open("berth-errors-test-mode", 1, 0)(Handles{});
           shm_unlink("/berth.berth-errors-test-mode");
           return st; }}});
  t.Fn("berth_shared_limiter_close", {shared}, [](const Handles& h) { return berth_shared_limiter_close(h.shared()); }, {});
  t.Fn("berth_shared_limiter_unlink", {}, nullptr,
       {{"NULL name with a length", [](const Handles&) { return berth_shared_limiter_unlink(nullptr, 3); }},
        {"empty name", [](const Handles&) { return berth_shared_limiter_unlink("", 0); }},
        {"absent name", [](const Handles&) { return berth_shared_limiter_unlink("berth-errors-test-absent", 24); }}});
  limiter_rows(LimiterCalls<berth_shared_limiter>{"berth_shared_limiter_", shared, berth_shared_limiter_try_acquire, berth_shared_limiter_acquire,
                                       berth_shared_limiter_acquire_async, berth_shared_limiter_claim, berth_shared_limiter_cancel,
                                       berth_shared_limiter_release, berth_shared_limiter_set_capacity});
  t.Fn("berth_shared_limiter_get_stats", {shared}, [](const Handles& h) { return berth_shared_limiter_get_stats(&shared_stats, h.shared()); },
       {{"NULL out_stats", [](const Handles& h) { return berth_shared_limiter_get_stats(nullptr, h.shared()); }}});

  // ---- token bucket (rate 5/s, burst 3)
  t.Fn("berth_bucket_new", {}, nullptr,
       {{"NULL out_bucket", [](const Handles&) { return berth_bucket_new(nullptr, 1, 1); }},
        {"rate 0", [](const Handles&) { return berth_bucket_new(&new_bucket, 0, 1); }},
        {"rate -1", [](const Handles&) { return berth_bucket_new(&new_bucket, -1, 1); }},
        {"rate NaN", [](const Handles&) { return berth_bucket_new(&new_bucket, NAN, 1); }},
        {"rate 1e-300 (a token in 1e309 ns)", [](const Handles&) { return berth_bucket_new(&new_bucket, 1e-300, 1); }},
        {"burst 0", [](const Handles&) { return berth_bucket_new(&new_bucket, 1, 0); }}});
  t.Fn("berth_bucket_free", {bucket}, [](const Handles& h) { return berth_bucket_free(h.bucket()); }, {});
  t.Fn("berth_bucket_allow", {bucket}, [](const Handles& h) { return berth_bucket_allow(&flag, h.bucket(), 1, kSec); },
       {{"NULL out_allowed", [](const Handles& h) { return berth_bucket_allow(nullptr, h.bucket(), 1, kSec); }},
        {"n 0", [](const Handles& h) { return berth_bucket_allow(&flag, h.bucket(), 0, kSec); }},
        {"n over the burst", [](const Handles& h) { return berth_bucket_allow(&flag, h.bucket(), 4, kSec); }}});
  t.Fn("berth_bucket_reserve", {bucket}, [](const Handles& h) { return berth_bucket_reserve(&reservation, h.bucket(), 1, kSec); },
       {{"NULL out_reservation", [](const Handles& h) { return berth_bucket_reserve(nullptr, h.bucket(), 1, kSec); }},
        {"n 0", [](const Handles& h) { return berth_bucket_reserve(&reservation, h.bucket(), 0, kSec); }},
        {"n over the burst", [](const Handles& h) { return berth_bucket_reserve(&reservation, h.bucket(), 4, kSec); }},
        {"due after INT64_MAX ns", [wp](const Handles&) { return berth_bucket_reserve(&reservation, wp->spent_near_the_end, 1, kNearTheEnd); }}});
  t.Fn("berth_bucket_cancel", {bucket}, [](const Handles& h) {
         berth_reservation r{};
         return berth_bucket_cancel(h.bucket(), &r, kSec); },
       {{"NULL reservation", [](const Handles& h) { return berth_bucket_cancel(h.bucket(), nullptr, kSec); }},
        {"a reservation with rate NaN", [](const Handles& h) {
           berth_reservation r{kSec, 0, 1, NAN};
           return berth_bucket_cancel(h.bucket(), &r, kSec); }}});
  t.Fn("berth_bucket_set_rate", {bucket}, [](const Handles& h) { return berth_bucket_set_rate(h.bucket(), 5, kSec); },
       {{"rate 0", [](const Handles& h) { return berth_bucket_set_rate(h.bucket(), 0, kSec); }},
        {"rate NaN", [](const Handles& h) { return berth_bucket_set_rate(h.bucket(), NAN, kSec); }},
        {"rate 1e-300 (a token in 1e309 ns)", [](const Handles& h) { return berth_bucket_set_rate(h.bucket(), 1e-300, kSec); }}});
  t.Fn("berth_bucket_set_burst", {bucket}, [](const Handles& h) { return berth_bucket_set_burst(h.bucket(), 3, kSec); },
       {{"burst 0", [](const Handles& h) { return berth_bucket_set_burst(h.bucket(), 0, kSec); }},
        {"burst -2", [](const Handles& h) { return berth_bucket_set_burst(h.bucket(), -2, kSec); }}});
  t.Fn("berth_bucket_get_stats", {bucket}, [](const Handles& h) { return berth_bucket_get_stats(&bucket_stats, h.bucket(), kSec); },
       {{"NULL out_stats", [](const Handles& h) { return berth_bucket_get_stats(nullptr, h.bucket(), kSec); }}});

  // ---- buffers
  t.Fn("berth_buffer_data", {buffer}, [](const Handles& h) { return berth_buffer_data(&data, &len, h.buffer()); },
       {{"NULL out_data", [](const Handles& h) { return berth_buffer_data(nullptr, &len, h.buffer()); }},
        {"NULL out_len", [](const Handles& h) { return berth_buffer_data(&data, nullptr, h.buffer()); }}});
  t.Fn("berth_buffer_free", {buffer}, [](const Handles& h) { return berth_buffer_free(h.buffer()); }, {});
  return t;
}

// ---- the document -----------------------------------------------------------------------

struct DocRow {
  std::string status, message;
};

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '|') continue;
    out += s[i];
  }
  return out;
}

// Splits a table line on unescaped '|'.
std::vector<std::string> Cells(const std::string& line) {
  std::vector<std::string> cells;
  std::string cur;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '|' && line[i - 1] != '\\') {
      const size_t b = cur.find_first_not_of(' '), e = cur.find_last_not_of(' ');
      cells.push_back(b == std::string::npos ? "" : Unescape(cur.substr(b, e - b + 1)));
      cur.clear();
    } else {
      cur += line[i];
    }
  }
  return cells;
}

std::string Unquote(const std::string& s) {
  return s.size() >= 2 && s.front() == '`' && s.back() == '`' ? s.substr(1, s.size() - 2) : s;
}

const char* Section(const std::string& fn) {
  static const std::vector<std::pair<const char*, const char*>> sections = {
      {"berth_engine_", "Engine"}, {"berth_pool_", "Warm pools"}, {"berth_selector_", "Label selectors"},
      {"berth_cache_", "Object cache"}, {"berth_object_", "Cached objects"},
      {"berth_limiter_", "Concurrency limiter"},
      {"berth_notifier_", "Notifier"}, {"berth_shared_limiter_", "Shared limiter"},
      {"berth_bucket_", "Token bucket"}, {"berth_buffer_", "Buffers"}};
  for (const auto& [prefix, title] : sections) {
    if (fn.starts_with(prefix)) return title;
  }
  return "Other";
}

struct Result {
  berth_status status;
  std::string message;  // without the "fn: " prefix
};

TEST(ErrorsDoc, EveryRowGetsItsStatusAndMessageAndChangesNothing) {
  World w;
  Table t = Build(w);
  const std::string before = w.Fingerprint();
  ASSERT_FALSE(before.empty());

  std::map<std::pair<std::string, std::string>, Result> results;
  for (const Row& row : t.rows) {
    SCOPED_TRACE(row.fn + ": " + row.what);
    const berth_status st = row.call(w.live);
    std::string msg = LastError();
    EXPECT_NE(st, BERTH_OK);
    EXPECT_NE(st, BERTH_EMPTY);
    const std::string prefix = row.fn + ": ";
    EXPECT_TRUE(msg.starts_with(prefix)) << msg;
    if (msg.starts_with(prefix)) msg = msg.substr(prefix.size());
    EXPECT_TRUE(results.insert({{row.fn, row.what}, {st, msg}}).second) << "row defined twice";
    EXPECT_EQ(w.Fingerprint(), before) << "a failed call changed state";
  }

  if (std::getenv("BERTH_WRITE_ERRORS_DOC") != nullptr) {
    std::ifstream in(kDocPath);
    std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string marker = "<!-- rows below are written by tests/errors_test.cc -->\n";
    const size_t at = doc.find(marker);
    ASSERT_NE(at, std::string::npos) << "marker missing in " << kDocPath;
    std::ostringstream out;
    out << doc.substr(0, at + marker.size());
    std::string section;
    for (const Row& row : t.rows) {
      if (Section(row.fn) != section) {
        section = Section(row.fn);
        out << "\n## " << section << "\n\n| Function | Wrong call | Status | Message |\n|---|---|---|---|\n";
      }
      const Result& r = results.at({row.fn, row.what});
      out << "| `" << row.fn << "` | " << Escape(row.what) << " | `" << berth_status_name(r.status)
          << "` | " << Escape(r.message) << " |\n";
    }
    std::ofstream(kDocPath) << out.str();
    GTEST_SKIP() << "wrote " << t.rows.size() << " rows to " << kDocPath;
  }

  // Every row of the document is run here with its status and message, and
  // every row run here is in the document.
  std::ifstream in(kDocPath);
  ASSERT_TRUE(in) << kDocPath;
  std::set<std::pair<std::string, std::string>> documented;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("| `berth_")) continue;
    const std::vector<std::string> c = Cells(line);
    ASSERT_EQ(c.size(), 4u) << line;
    const std::string fn = Unquote(c[0]);
    SCOPED_TRACE(fn + ": " + c[1]);
    EXPECT_TRUE(documented.insert({fn, c[1]}).second) << "documented twice";
    auto it = results.find({fn, c[1]});
    if (it == results.end()) {
      ADD_FAILURE() << "documented but not tested (stale row?): " << line;
      continue;
    }
    EXPECT_EQ(Unquote(c[2]), berth_status_name(it->second.status));
    EXPECT_EQ(c[3], it->second.message);
  }
  for (const auto& [key, r] : results) {
    EXPECT_TRUE(documented.count(key)) << "not in docs/errors.md: " << key.first << ": " << key.second
                                       << " (regenerate: see the top of tests/errors_test.cc)";
  }
  RecordProperty("rows", static_cast<int>(results.size()));
  std::printf("[ errors ] %zu bad-input rows walked\n", results.size());
}

TEST(ErrorsDoc, EveryExportedFunctionHasRowsOrCannotFail) {
  World w;
  Table t = Build(w);
  std::set<std::string> covered = kCannotFail;
  for (const Row& row : t.rows) covered.insert(row.fn);
  std::ifstream in(kHeaderPath);
  std::string header((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::regex api(R"(BERTH_API\s+[\w\s\*]+?\b(berth_\w+)\()");
  size_t exported = 0;
  for (auto it = std::sregex_iterator(header.begin(), header.end(), api); it != std::sregex_iterator(); ++it) {
    ++exported;
    EXPECT_TRUE(covered.count((*it)[1])) << (*it)[1] << " has no row in the bad-input table";
  }
  EXPECT_GT(exported, 60u);
}

TEST(ErrorsDoc, ValidCallsSucceedWithLiveHandles) {
  // The derived handle rows fail because of the handle alone: with every
  // handle live, the same call succeeds (on a world of its own).
  World probe;
  Table t = Build(probe);
  for (const Function& f : t.functions) {
    World w;
    SCOPED_TRACE(f.fn);
    const berth_status st = f.valid(w.live);
    EXPECT_TRUE(st == BERTH_OK || st == BERTH_EMPTY) << berth_status_name(st) << ": " << LastError();
  }
}

}  // namespace
