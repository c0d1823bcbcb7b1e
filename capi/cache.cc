// The C ABI of the object cache (berth_cache_*).
#include <string>
#include <string_view>
#include <vector>

#include "berth_generated.h"
#include "capi/internal.h"
#include "core/cache/cache.h"
#include "core/common/text.h"
#include "core/pool/pool.h"  // CheckKeyName, kMaxNamespaceLen

namespace berth::capi {

struct CacheObject {
  explicit CacheObject(size_t tombstone_limit) : cache(tombstone_limit) {}
  berth::ObjectCache cache;
};

}  // namespace berth::capi

namespace {

using namespace berth::capi;
using berth::Code;
using berth::Status;

static_assert(BERTH_MAX_PAYLOAD_LEN == berth::kMaxPayloadLen);
static_assert(BERTH_MAX_LABELS == berth::kMaxLabels);

// A FlatBuffers Object, validated and copied into a cache object.
Status ReadObject(const berth::fb::Object* o, berth::ObjectRef* out) {
  LabelVec labels;
  if (const auto* ls = o->labels(); ls != nullptr) {
    labels.reserve(ls->size());
    for (const berth::fb::Label* l : *ls) labels.push_back({Text(l->key()), Text(l->value())});
  }
  std::string_view payload;
  if (const auto* p = o->payload(); p != nullptr) {
    payload = std::string_view(reinterpret_cast<const char*>(p->data()), p->size());
  }
  const std::string_view ns = Text(o->namespace_()), name = Text(o->name());
  if (Status s = berth::CheckObject(ns, name, o->resource_version(), labels, payload.size());
      !s.ok()) {
    return s;
  }
  *out = berth::Object::Make(ns, name, o->resource_version(), labels, payload);
  return {};
}

berth_status Indexed(const char* fn, const char* what, size_t i, const Status& s) {
  return Fail(fn, static_cast<berth_status>(s.code()),
              std::string(what) + " " + std::to_string(i) + ": " + s.message());
}

// The arguments and the list of berth_cache_list and _list_objects.
berth_status List(const char* fn, const berth_cache* cache, const char* namespace_,
                  size_t namespace_len, const berth_selector* selector,
                  std::vector<berth::ObjectRef>* objects, uint64_t* rv) {
  BERTH_HANDLE(oc, cache, fn);
  BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
  BERTH_CHECK(berth::CheckName("namespace", ns, berth::kMaxNamespaceLen, true), fn);
  const berth::Selector* sel = nullptr;  // NULL selector: everything
  if (selector != nullptr) {
    const SelectorObject* so = Find(selector);
    if (so == nullptr) return BadHandle(fn, "selector", selector);
    sel = &so->selector;
  }
  BERTH_CHECK(oc->cache.List(ns, sel, objects, rv), fn);
  return BERTH_OK;
}

berth::MiUnique<BufferObject> ObjectListBuffer(const std::vector<berth::ObjectRef>& objects, uint64_t rv) {
  size_t bytes = 256;
  for (const auto& o : objects) bytes += 128 + o->key().size() + o->payload().size() + o->label_count() * 48;
  flatbuffers::FlatBufferBuilder fbb(bytes, &g_mi_allocator);
  std::vector<flatbuffers::Offset<berth::fb::Object>,
              berth::Alloc<flatbuffers::Offset<berth::fb::Object>>>
      offsets;
  std::vector<flatbuffers::Offset<berth::fb::Label>, berth::Alloc<flatbuffers::Offset<berth::fb::Label>>>
      labels;
  offsets.reserve(objects.size());
  for (const berth::ObjectRef& o : objects) {
    labels.clear();
    for (size_t i = 0; i < o->label_count(); ++i) {
      const berth::LabelPair l = o->label(i);
      // Plain strings: deduplicating (CreateSharedString) costs a set insert
      // per string, which was most of building a listing.
      auto k = fbb.CreateString(l.key.data(), l.key.size());
      auto v = fbb.CreateString(l.value.data(), l.value.size());
      labels.push_back(berth::fb::CreateLabel(fbb, k, v));
    }
    auto label_vec = fbb.CreateVector(labels.data(), labels.size());
    auto payload = fbb.CreateVector(reinterpret_cast<const uint8_t*>(o->payload().data()),
                                    o->payload().size());
    auto ns = fbb.CreateString(o->ns().data(), o->ns().size());
    auto name = fbb.CreateString(o->name().data(), o->name().size());
    offsets.push_back(berth::fb::CreateObject(fbb, ns, name, o->rv(), label_vec, payload));
  }
  auto vec = fbb.CreateVector(offsets.data(), offsets.size());
  fbb.Finish(berth::fb::CreateObjectList(fbb, rv, vec), BERTH_FB_OBJECT_LIST_ID);
  return Detach(fbb);
}

}  // namespace

extern "C" {

berth_status berth_cache_new(berth_cache** out_cache, const berth_cache_options* options) {
  static const char* fn = "berth_cache_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_cache != nullptr, fn, "out_cache is NULL");
    size_t limit = berth::kDefaultTombstoneLimit;
    if (options != nullptr && options->tombstone_limit != 0) limit = options->tombstone_limit;
    return Publish(fn, out_cache, berth::MakeMiUnique<CacheObject>(limit));
  });
}

berth_status berth_cache_free(berth_cache* cache) { return Destroy("berth_cache_free", "cache", cache); }

berth_status berth_cache_upsert(int* out_applied, berth_cache* cache, const char* namespace_,
                                size_t namespace_len, const char* name, size_t name_len,
                                uint64_t resource_version, const berth_label* labels,
                                size_t n_labels, const uint8_t* payload, size_t payload_len) {
  static const char* fn = "berth_cache_upsert";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_VIEW(body, reinterpret_cast<const char*>(payload), payload_len, fn, "payload");
    LabelVec ls;
    BERTH_REQUIRE(ReadLabels(labels, n_labels, &ls), fn,
                  "labels is NULL with n_labels > 0, or a key/value is NULL with a length");
    BERTH_CHECK(berth::CheckObject(ns, nm, resource_version, ls, body.size()), fn);
    // Built before the cache's lock is taken: the lock covers only the index.
    const bool applied = oc->cache.Upsert(berth::Object::Make(ns, nm, resource_version, ls, body));
    if (out_applied != nullptr) *out_applied = applied ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_cache_delete(int* out_applied, berth_cache* cache, const char* namespace_,
                                size_t namespace_len, const char* name, size_t name_len,
                                uint64_t resource_version) {
  static const char* fn = "berth_cache_delete";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    const bool applied = oc->cache.Delete(ns, nm, resource_version);
    if (out_applied != nullptr) *out_applied = applied ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_cache_apply(size_t* out_applied, berth_cache* cache, const uint8_t* buf,
                               size_t buf_len) {
  static const char* fn = "berth_cache_apply";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_REQUIRE(buf != nullptr || buf_len == 0, fn, "buf is NULL with a non-zero length");
    const AlignedInput in(buf, buf_len);
    if (berth_status st = Verify<berth::fb::EventBatch>(fn, in.data(), buf_len, BERTH_FB_EVENT_BATCH_ID,
                                                        "EventBatch");
        st != BERTH_OK) {
      return st;
    }
    const auto* batch = flatbuffers::GetRoot<berth::fb::EventBatch>(in.data());
    std::vector<berth::CacheEvent, berth::Alloc<berth::CacheEvent>> events;
    if (const auto* list = batch->events(); list != nullptr) {
      events.reserve(list->size());
      for (flatbuffers::uoffset_t i = 0; i < list->size(); ++i) {
        const berth::fb::Event* e = list->Get(i);
        const berth::fb::Object* o = e->object();
        if (o == nullptr) {
          return Indexed(fn, "event", i, {Code::kInvalidArgument, "object is missing"});
        }
        berth::CacheEvent ce;
        switch (e->type()) {
          case berth::fb::EventType::Added:
          case berth::fb::EventType::Modified: {
            ce.type = berth::CacheEvent::Type::kUpsert;
            if (Status s = ReadObject(o, &ce.object); !s.ok()) return Indexed(fn, "event", i, s);
            break;
          }
          case berth::fb::EventType::Deleted: {
            ce.type = berth::CacheEvent::Type::kDelete;
            ce.ns = Text(o->namespace_());
            ce.name = Text(o->name());
            ce.rv = o->resource_version();
            if (Status s = berth::CheckKeyName(ce.ns, ce.name); !s.ok()) {
              return Indexed(fn, "event", i, s);
            }
            break;
          }
          default:
            return Indexed(fn, "event", i,
                           {Code::kInvalidArgument,
                            "unknown event type " + std::to_string(static_cast<int>(e->type()))});
        }
        events.push_back(std::move(ce));
      }
    }
    const size_t applied = oc->cache.Apply(events);
    if (out_applied != nullptr) *out_applied = applied;
    return BERTH_OK;
  });
}

berth_status berth_cache_replace(berth_cache* cache, const uint8_t* buf, size_t buf_len) {
  static const char* fn = "berth_cache_replace";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_REQUIRE(buf != nullptr || buf_len == 0, fn, "buf is NULL with a non-zero length");
    const AlignedInput in(buf, buf_len);
    if (berth_status st = Verify<berth::fb::ObjectList>(fn, in.data(), buf_len, BERTH_FB_OBJECT_LIST_ID,
                                                        "ObjectList");
        st != BERTH_OK) {
      return st;
    }
    const auto* list = flatbuffers::GetRoot<berth::fb::ObjectList>(in.data());
    std::vector<berth::ObjectRef> objects;
    if (const auto* objs = list->objects(); objs != nullptr) {
      objects.reserve(objs->size());
      for (flatbuffers::uoffset_t i = 0; i < objs->size(); ++i) {
        berth::ObjectRef o;
        if (Status s = ReadObject(objs->Get(i), &o); !s.ok()) return Indexed(fn, "object", i, s);
        objects.push_back(std::move(o));
      }
    }
    oc->cache.Replace(objects, list->resource_version());
    return BERTH_OK;
  });
}

berth_status berth_cache_list(berth_buffer** out_buffer, const berth_cache* cache,
                              const char* namespace_, size_t namespace_len,
                              const berth_selector* selector) {
  static const char* fn = "berth_cache_list";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    std::vector<berth::ObjectRef> objects;
    uint64_t rv = 0;
    if (berth_status st = List(fn, cache, namespace_, namespace_len, selector, &objects, &rv);
        st != BERTH_OK) {
      return st;
    }
    return Publish(fn, out_buffer, ObjectListBuffer(objects, rv));
  });
}

berth_status berth_cache_get(berth_buffer** out_buffer, const berth_cache* cache,
                             const char* namespace_, size_t namespace_len, const char* name,
                             size_t name_len) {
  static const char* fn = "berth_cache_get";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    berth::ObjectRef o;
    uint64_t rv = 0;
    BERTH_CHECK(oc->cache.Get(ns, nm, &o, &rv), fn);
    if (!o) return BERTH_EMPTY;
    return Publish(fn, out_buffer, ObjectListBuffer({o}, rv));
  });
}

berth_status berth_cache_get_object(berth_object** out_object, berth_object_fields* out_fields,
                                    const berth_cache* cache, const char* namespace_,
                                    size_t namespace_len, const char* name, size_t name_len) {
  static const char* fn = "berth_cache_get_object";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_object != nullptr, fn, "out_object is NULL");
    *out_object = nullptr;
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    auto oh = berth::MakeMiUnique<ObjectHandleObject>();
    BERTH_CHECK(oc->cache.Get(ns, nm, &oh->ref), fn);
    if (!oh->ref) return BERTH_EMPTY;
    // Read before the handle is published: from then on the caller owns it.
    berth_object_fields fields;
    ReadFields(*oh->ref, &fields);
    if (berth_status st = Publish(fn, out_object, std::move(oh)); st != BERTH_OK) return st;
    if (out_fields != nullptr) *out_fields = fields;
    return BERTH_OK;
  });
}

berth_status berth_cache_list_objects(berth_object_list** out_list, uint64_t* out_resource_version,
                                      const berth_cache* cache, const char* namespace_,
                                      size_t namespace_len, const berth_selector* selector) {
  static const char* fn = "berth_cache_list_objects";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_list != nullptr, fn, "out_list is NULL");
    auto ol = berth::MakeMiUnique<ObjectListObject>();
    uint64_t rv = 0;
    if (berth_status st = List(fn, cache, namespace_, namespace_len, selector, &ol->objects, &rv);
        st != BERTH_OK) {
      return st;
    }
    if (berth_status st = Publish(fn, out_list, std::move(ol)); st != BERTH_OK) return st;
    if (out_resource_version != nullptr) *out_resource_version = rv;
    return BERTH_OK;
  });
}

berth_status berth_cache_get_stats(berth_cache_stats* out_stats, const berth_cache* cache) {
  static const char* fn = "berth_cache_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(oc, cache, fn);
    const berth::CacheStats s = oc->cache.Stats();
    *out_stats = berth_cache_stats{};
    out_stats->objects = s.objects;
    out_stats->tombstones = s.tombstones;
    out_stats->resource_version = s.resource_version;
    out_stats->applied = s.applied;
    out_stats->ignored = s.ignored;
    out_stats->synced = s.synced ? 1 : 0;
    return BERTH_OK;
  });
}

}  // extern "C"
