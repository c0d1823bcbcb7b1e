// Selectors and the object cache through the C ABI: FlatBuffers in and out,
// statuses, messages, and bad input that changes nothing.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "berth_generated.h"
#include "capi/berth.h"
#include "tests/support/capi_helpers.h"

namespace {

using berth::testing::LastError;
using berth::testing::TakeBytes;

struct Obj {
  std::string ns, name;
  uint64_t rv;
  std::vector<std::pair<std::string, std::string>> labels;
  std::string payload;
};

flatbuffers::Offset<berth::fb::Object> Build(flatbuffers::FlatBufferBuilder& fbb, const Obj& o) {
  std::vector<flatbuffers::Offset<berth::fb::Label>> ls;
  for (const auto& [k, v] : o.labels) ls.push_back(berth::fb::CreateLabelDirect(fbb, k.c_str(), v.c_str()));
  std::vector<uint8_t> payload(o.payload.begin(), o.payload.end());
  return berth::fb::CreateObjectDirect(fbb, o.ns.c_str(), o.name.c_str(), o.rv, &ls, &payload);
}

std::vector<uint8_t> ListBuffer(const std::vector<Obj>& objs, uint64_t rv,
                                const char* id = BERTH_FB_OBJECT_LIST_ID) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Object>> offs;
  for (const Obj& o : objs) offs.push_back(Build(fbb, o));
  fbb.Finish(berth::fb::CreateObjectListDirect(fbb, rv, &offs), id);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::vector<uint8_t> Events(const std::vector<std::pair<berth::fb::EventType, Obj>>& events) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Event>> offs;
  for (const auto& [type, o] : events) offs.push_back(berth::fb::CreateEvent(fbb, type, Build(fbb, o)));
  fbb.Finish(berth::fb::CreateEventBatchDirect(fbb, &offs), BERTH_FB_EVENT_BATCH_ID);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

struct Cache {
  berth_cache* c = nullptr;
  explicit Cache(uint32_t tombstones = 0) {
    berth_cache_options opts{};
    opts.tombstone_limit = tombstones;
    EXPECT_EQ(berth_cache_new(&c, &opts), BERTH_OK);
  }
  ~Cache() { EXPECT_EQ(berth_cache_free(c), BERTH_OK); }
  void Sync(const std::vector<Obj>& objs = {}, uint64_t rv = 1) {
    auto buf = ListBuffer(objs, rv);
    ASSERT_EQ(berth_cache_replace(c, buf.data(), buf.size()), BERTH_OK) << LastError();
  }
};

struct Sel {
  berth_selector* s = nullptr;
  explicit Sel(const std::string& text) {
    EXPECT_EQ(berth_selector_parse(&s, text.data(), text.size()), BERTH_OK) << LastError();
  }
  ~Sel() { berth_selector_free(s); }
};

// Names of a listing, and the listing's resourceVersion.
std::pair<std::vector<std::string>, uint64_t> Names(const std::string& bytes) {
  flatbuffers::Verifier v(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_TRUE(v.VerifyBuffer<berth::fb::ObjectList>(BERTH_FB_OBJECT_LIST_ID));
  const auto* list = flatbuffers::GetRoot<berth::fb::ObjectList>(bytes.data());
  std::vector<std::string> names;
  for (const auto* o : *list->objects()) names.push_back(o->namespace_()->str() + "/" + o->name()->str());
  return {names, list->resource_version()};
}

std::vector<std::string> List(const Cache& c, const std::string& ns, const berth_selector* sel) {
  berth_buffer* buf = nullptr;
  EXPECT_EQ(berth_cache_list(&buf, c.c, ns.data(), ns.size(), sel), BERTH_OK) << LastError();
  return Names(TakeBytes(buf)).first;
}

berth_status Upsert(berth_cache* c, const Obj& o, int* applied = nullptr) {
  std::vector<berth_label> ls;
  for (const auto& [k, v] : o.labels) ls.push_back({k.data(), k.size(), v.data(), v.size()});
  return berth_cache_upsert(applied, c, o.ns.data(), o.ns.size(), o.name.data(), o.name.size(), o.rv,
                            ls.data(), ls.size(), reinterpret_cast<const uint8_t*>(o.payload.data()),
                            o.payload.size());
}

TEST(CApiSelector, ParsePrintMatch) {
  Sel sel("tier notin (frontend, backend), environment in (production, qa)");
  EXPECT_EQ(TakeBytes([&] {
              berth_buffer* b = nullptr;
              EXPECT_EQ(berth_selector_string(&b, sel.s), BERTH_OK);
              return b;
            }()),
            "environment in (production,qa),tier notin (backend,frontend)");
  const berth_label prod[] = {{"environment", 11, "production", 10}, {"tier", 4, "cache", 5}};
  const berth_label fe[] = {{"environment", 11, "qa", 2}, {"tier", 4, "frontend", 8}};
  int m = -1;
  ASSERT_EQ(berth_selector_matches(&m, sel.s, prod, 2), BERTH_OK);
  EXPECT_EQ(m, 1);
  ASSERT_EQ(berth_selector_matches(&m, sel.s, fe, 2), BERTH_OK);
  EXPECT_EQ(m, 0);
  ASSERT_EQ(berth_selector_matches(&m, sel.s, nullptr, 0), BERTH_OK);
  EXPECT_EQ(m, 0);  // environment in (...) needs the label
}

TEST(CApiSelector, RepeatedLabelKeyCountsWithItsLastValue) {
  Sel sel("a=2");
  const berth_label ls[] = {{"a", 1, "1", 1}, {"a", 1, "2", 1}};
  int m = -1;
  ASSERT_EQ(berth_selector_matches(&m, sel.s, ls, 2), BERTH_OK);
  EXPECT_EQ(m, 1);
}

TEST(CApiSelector, BadSelectorNamesTheByteOffset) {
  berth_selector* s = reinterpret_cast<berth_selector*>(0x1);
  EXPECT_EQ(berth_selector_parse(&s, "a in (x y)", 10), BERTH_ERR_BAD_SELECTOR);
  EXPECT_EQ(s, reinterpret_cast<berth_selector*>(0x1));  // untouched
  EXPECT_EQ(LastError(), "berth_selector_parse: at byte 8: found 'y', expected: ',' or ')'");
  EXPECT_STREQ(berth_status_name(BERTH_ERR_BAD_SELECTOR), "BERTH_ERR_BAD_SELECTOR");
}

TEST(CApiCache, NotSyncedUntilTheFirstReplace) {
  Cache c;
  berth_buffer* buf = nullptr;
  EXPECT_EQ(berth_cache_list(&buf, c.c, nullptr, 0, nullptr), BERTH_ERR_NOT_SYNCED);
  EXPECT_EQ(berth_cache_get(&buf, c.c, "ns", 2, "a", 1), BERTH_ERR_NOT_SYNCED);
  berth_cache_stats st{};
  ASSERT_EQ(berth_cache_get_stats(&st, c.c), BERTH_OK);
  EXPECT_EQ(st.synced, 0);
  c.Sync({{"ns", "a", 3, {{"app", "web"}}, "{}"}}, 3);
  ASSERT_EQ(berth_cache_get_stats(&st, c.c), BERTH_OK);
  EXPECT_EQ(st.synced, 1);
  EXPECT_EQ(st.objects, 1u);
  EXPECT_EQ(st.resource_version, 3u);
}

TEST(CApiCache, WriteThroughAndWatchEventsShareTheVersionGuard) {
  Cache c;
  c.Sync();
  int applied = -1;
  ASSERT_EQ(Upsert(c.c, {"default", "sb-1", 10, {{"app", "sandbox"}}, "v10"}, &applied), BERTH_OK);
  EXPECT_EQ(applied, 1);  // our own create, with the RV the API server returned
  auto late = Events({{berth::fb::EventType::Added, {"default", "sb-1", 9, {{"app", "sandbox"}}, "v9"}},
                      {berth::fb::EventType::Deleted, {"default", "sb-2", 12, {}, ""}},
                      {berth::fb::EventType::Added, {"default", "sb-2", 11, {}, ""}}});
  size_t n = 99;
  ASSERT_EQ(berth_cache_apply(&n, c.c, late.data(), late.size()), BERTH_OK) << LastError();
  EXPECT_EQ(n, 1u);  // only the tombstone of sb-2 changed anything
  berth_buffer* buf = nullptr;
  ASSERT_EQ(berth_cache_get(&buf, c.c, "default", 7, "sb-1", 4), BERTH_OK);
  std::string bytes = TakeBytes(buf);
  const auto* list = flatbuffers::GetRoot<berth::fb::ObjectList>(bytes.data());
  ASSERT_EQ(list->objects()->size(), 1u);
  const auto* o = list->objects()->Get(0);
  EXPECT_EQ(o->resource_version(), 10u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(o->payload()->data()), o->payload()->size()), "v10");
  EXPECT_EQ(o->labels()->Get(0)->key()->str(), "app");
  EXPECT_EQ(berth_cache_get(&buf, c.c, "default", 7, "sb-2", 4), BERTH_EMPTY);
  ASSERT_EQ(berth_cache_delete(&applied, c.c, "default", 7, "sb-1", 4, 0), BERTH_OK);
  EXPECT_EQ(applied, 1);
  EXPECT_EQ(List(c, "", nullptr), std::vector<std::string>{});
}

TEST(CApiCache, ListBySelectorAndNamespaceIsSortedAndCarriesTheVersion) {
  Cache c;
  c.Sync({{"b", "x", 4, {{"app", "web"}, {"tier", "a"}}, ""},
          {"a", "y", 5, {{"app", "web"}, {"tier", "c"}}, ""},
          {"a", "x", 6, {{"app", "web"}, {"tier", "b"}}, ""},
          {"a", "z", 7, {{"app", "db"}}, ""}},
         20);
  Sel sel("app=web,tier in (a,b)");
  EXPECT_EQ(List(c, "", sel.s), (std::vector<std::string>{"a/x", "b/x"}));
  EXPECT_EQ(List(c, "a", sel.s), (std::vector<std::string>{"a/x"}));
  EXPECT_EQ(List(c, "a", nullptr), (std::vector<std::string>{"a/x", "a/y", "a/z"}));
  berth_buffer* buf = nullptr;
  ASSERT_EQ(berth_cache_list(&buf, c.c, nullptr, 0, nullptr), BERTH_OK);
  EXPECT_EQ(Names(TakeBytes(buf)).second, 20u);
}

}  // namespace
