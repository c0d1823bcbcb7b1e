// The C ABI of the engine and its warm pools (berth_engine_*, berth_pool_*).
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "berth_generated.h"
#include "capi/internal.h"
#include "core/engine/engine.h"
#include "core/pool/pool.h"

namespace berth::capi {

struct EngineObject {
  berth::Engine engine;
};

}  // namespace berth::capi

namespace {

using namespace berth::capi;
using berth::Status;

static_assert(BERTH_MAX_POOL_LEN == berth::kMaxPoolLen);
static_assert(BERTH_MAX_NAMESPACE_LEN == berth::kMaxNamespaceLen);
static_assert(BERTH_MAX_NAME_LEN == berth::kMaxNameLen);
static_assert(BERTH_MAX_NODE_LEN == berth::kMaxNodeLen);
static_assert(BERTH_POOL_PUT_BACK_WINDOW == berth::kPutBackWindow);

berth_status UnknownPool(const char* fn, std::string_view pool) {
  return Fail(fn, BERTH_ERR_NOT_FOUND, "unknown pool '" + std::string(pool) + "'");
}

// The shared prologue of calls that read one existing pool into `out`:
// checks out, engine and the pool name; on success stores the engine's
// object in *eng and the name in *p.
berth_status ReadArgs(const char* fn, const void* out, const char* out_name,
                      const berth_engine* engine, const char* pool, size_t pool_len,
                      EngineObject** eng, std::string_view* p) {
  if (out == nullptr) return Fail(fn, BERTH_ERR_INVALID_ARGUMENT, std::string(out_name) + " is NULL");
  *eng = Find(engine);
  if (*eng == nullptr) return BadHandle(fn, "engine", engine);
  BERTH_REQUIRE(View(pool, pool_len, p), fn, "pool is NULL with a non-zero length");
  BERTH_CHECK(berth::CheckPoolName(*p), fn);
  return BERTH_OK;
}

void CopyOut(const berth::HandOut& h, berth_pool_key* out) {
  out->seq = h.seq;
  out->token = h.token;
  out->ready = h.ready ? 1 : 0;
  std::memset(out->reserved_, 0, sizeof out->reserved_);
  out->namespace_len = h.ns.len;
  out->name_len = h.name.len;
  out->node_len = h.node.len;
  std::memcpy(out->namespace_, h.ns.data, h.ns.len);
  std::memcpy(out->name, h.name.data, h.name.len);
  std::memcpy(out->node, h.node.data, h.node.len);
}

using PopFn = bool (berth::WarmPool::*)(berth::HandOut*);

berth_status Pop(const char* fn, PopFn pop, berth_pool_key* out_key, berth_engine* engine,
                 const char* pool, size_t pool_len) {
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_key, "out_key", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    berth::HandOut h;
    bool got = false;
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) { got = (wp.*pop)(&h); })) {
      return UnknownPool(fn, p);
    }
    if (!got) return BERTH_EMPTY;
    CopyOut(h, out_key);
    return BERTH_OK;
  });
}

// add and update take the same arguments; `upsert` picks the semantics.
berth_status AddOrUpdate(const char* fn, bool upsert, int* out_flag, berth_engine* engine,
                         const char* pool, size_t pool_len, const char* namespace_,
                         size_t namespace_len, const char* name, size_t name_len,
                         const char* node, size_t node_len, int ready) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_VIEW(nd, node, node_len, fn, "node");
    BERTH_REQUIRE(ready == 0 || ready == 1, fn, "ready must be 0 or 1");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    const berth::KeyView key{ns, nm, nd, ready == 1};
    BERTH_CHECK(berth::CheckKey(key), fn);
    bool flag = false;
    eng->engine.pools.With(p, upsert, [&](berth::WarmPool& wp) {
      flag = upsert ? wp.Add(key) : wp.Update(key);
    });
    if (out_flag != nullptr) *out_flag = flag ? 1 : 0;
    return BERTH_OK;
  });
}

}  // namespace

extern "C" {

berth_status berth_engine_new(berth_engine** out_engine) {
  static const char* fn = "berth_engine_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_engine != nullptr, fn, "out_engine is NULL");
    return Publish(fn, out_engine, berth::MakeMiUnique<EngineObject>());
  });
}

berth_status berth_engine_free(berth_engine* engine) { return Destroy("berth_engine_free", "engine", engine); }

berth_status berth_pool_add(int* out_inserted, berth_engine* engine, const char* pool,
                            size_t pool_len, const char* namespace_, size_t namespace_len,
                            const char* name, size_t name_len, const char* node, size_t node_len,
                            int ready) {
  return AddOrUpdate("berth_pool_add", true, out_inserted, engine, pool, pool_len, namespace_,
                     namespace_len, name, name_len, node, node_len, ready);
}

berth_status berth_pool_update(int* out_updated, berth_engine* engine, const char* pool,
                               size_t pool_len, const char* namespace_, size_t namespace_len,
                               const char* name, size_t name_len, const char* node,
                               size_t node_len, int ready) {
  return AddOrUpdate("berth_pool_update", false, out_updated, engine, pool, pool_len, namespace_,
                     namespace_len, name, name_len, node, node_len, ready);
}

berth_status berth_pool_add_batch(size_t* out_inserted, berth_engine* engine, const char* pool,
                                  size_t pool_len, const uint8_t* buf, size_t buf_len) {
  static const char* fn = "berth_pool_add_batch";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_REQUIRE(buf != nullptr || buf_len == 0, fn, "buf is NULL with a non-zero length");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    const AlignedInput in(buf, buf_len);
    if (berth_status st = Verify<berth::fb::PoolKeyBatch>(fn, in.data(), buf_len,
                                                          BERTH_FB_POOL_KEY_BATCH_ID, "PoolKeyBatch");
        st != BERTH_OK) {
      return st;
    }
    const auto* batch = flatbuffers::GetRoot<berth::fb::PoolKeyBatch>(in.data());
    std::vector<berth::KeyView, berth::Alloc<berth::KeyView>> keys;
    if (const auto* list = batch->keys(); list != nullptr) {
      keys.reserve(list->size());
      for (flatbuffers::uoffset_t i = 0; i < list->size(); ++i) {
        const berth::fb::PoolKey* k = list->Get(i);
        berth::KeyView key{Text(k->namespace_()), Text(k->name()), Text(k->node()), k->ready()};
        if (Status s = berth::CheckKey(key); !s.ok()) {
          return Fail(fn, static_cast<berth_status>(s.code()),
                      "key " + std::to_string(i) + ": " + s.message());
        }
        keys.push_back(key);
      }
    }
    size_t inserted = 0;
    eng->engine.pools.With(p, true, [&](berth::WarmPool& wp) {
      for (const auto& key : keys) inserted += wp.Add(key) ? 1 : 0;
    });
    if (out_inserted != nullptr) *out_inserted = inserted;
    return BERTH_OK;
  });
}

berth_status berth_pool_remove(int* out_removed, berth_engine* engine, const char* pool,
                               size_t pool_len, const char* namespace_, size_t namespace_len,
                               const char* name, size_t name_len) {
  static const char* fn = "berth_pool_remove";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    bool removed = false;
    eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) { removed = wp.Remove(ns, nm); });
    if (out_removed != nullptr) *out_removed = removed ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_engine_list_pools(berth_buffer** out_buffer, const berth_engine* engine) {
  static const char* fn = "berth_engine_list_pools";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    BERTH_HANDLE(eng, engine, fn);
    auto buf = berth::MakeMiUnique<BufferObject>();
    for (const berth::String& name : eng->engine.pools.Names()) {
      buf->text.append(name);
      buf->text.push_back('\0');
    }
    return Publish(fn, out_buffer, std::move(buf));
  });
}

berth_status berth_pool_remove_pool(int* out_removed, berth_engine* engine, const char* pool,
                                    size_t pool_len) {
  static const char* fn = "berth_pool_remove_pool";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    const bool removed = eng->engine.pools.Remove(p);
    if (out_removed != nullptr) *out_removed = removed ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_pool_pop_fifo(berth_pool_key* out_key, berth_engine* engine, const char* pool,
                                 size_t pool_len) {
  return Pop("berth_pool_pop_fifo", &berth::WarmPool::PopFifo, out_key, engine, pool, pool_len);
}

berth_status berth_pool_pop_spread(berth_pool_key* out_key, berth_engine* engine,
                                   const char* pool, size_t pool_len) {
  return Pop("berth_pool_pop_spread", &berth::WarmPool::PopSpread, out_key, engine, pool,
             pool_len);
}

berth_status berth_pool_put_back(int* out_restored, berth_engine* engine, const char* pool,
                                 size_t pool_len, const char* namespace_, size_t namespace_len,
                                 const char* name, size_t name_len, uint64_t token) {
  static const char* fn = "berth_pool_put_back";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    bool restored = false;
    if (!eng->engine.pools.With(
            p, false, [&](berth::WarmPool& wp) { restored = wp.PutBack(ns, nm, token); })) {
      return UnknownPool(fn, p);
    }
    if (out_restored != nullptr) *out_restored = restored ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_pool_get_stats(berth_pool_stats* out_stats, berth_engine* engine,
                              const char* pool, size_t pool_len) {
  static const char* fn = "berth_pool_get_stats";
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_stats, "out_stats", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    berth::PoolStats s;
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) { s = wp.Stats(); })) {
      return UnknownPool(fn, p);
    }
    *out_stats = berth_pool_stats{s.keys, s.ready_keys, s.scheduled_keys, s.nodes,
                                  s.put_back_records};
    return BERTH_OK;
  });
}

berth_status berth_pool_snapshot(berth_buffer** out_buffer, berth_engine* engine,
                                 const char* pool, size_t pool_len) {
  static const char* fn = "berth_pool_snapshot";
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_buffer, "out_buffer", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    // Copy under the pool's lock into one flat arena (cheap), then build the
    // FlatBuffer outside it, so the critical section stays a memcpy per key.
    struct Rec {
      uint32_t ns_off, ns_len, name_off, name_len, node_off, node_len;
      bool ready;
      uint64_t seq;
    };
    std::vector<Rec, berth::Alloc<Rec>> recs;
    berth::String arena;
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) {
          recs.reserve(wp.Stats().keys);
          wp.ForEachKey([&](const berth::KeyInfo& k) {
            Rec r{};
            auto put = [&](std::string_view s, uint32_t* off, uint32_t* len) {
              *off = static_cast<uint32_t>(arena.size());
              *len = static_cast<uint32_t>(s.size());
              arena.append(s);
            };
            put(k.ns, &r.ns_off, &r.ns_len);
            put(k.name, &r.name_off, &r.name_len);
            put(k.node, &r.node_off, &r.node_len);
            r.ready = k.ready;
            r.seq = k.seq;
            recs.push_back(r);
          });
        })) {
      return UnknownPool(fn, p);
    }
    flatbuffers::FlatBufferBuilder fbb(1024 + arena.size() * 2 + recs.size() * 48,
                                       &g_mi_allocator);
    std::vector<flatbuffers::Offset<berth::fb::PoolKey>,
                berth::Alloc<flatbuffers::Offset<berth::fb::PoolKey>>>
        offsets;
    offsets.reserve(recs.size());
    for (const Rec& r : recs) {
      auto ns = fbb.CreateSharedString(arena.data() + r.ns_off, r.ns_len);
      auto name = fbb.CreateString(arena.data() + r.name_off, r.name_len);
      auto node = fbb.CreateSharedString(arena.data() + r.node_off, r.node_len);
      offsets.push_back(berth::fb::CreatePoolKey(fbb, ns, name, node, r.ready, r.seq));
    }
    auto keys = fbb.CreateVector(offsets.data(), offsets.size());
    auto pool_name = fbb.CreateString(p.data(), p.size());
    fbb.Finish(berth::fb::CreatePoolSnapshot(fbb, pool_name, keys), BERTH_FB_POOL_SNAPSHOT_ID);
    return Publish(fn, out_buffer, Detach(fbb));
  });
}

berth_status berth_pool_node_stats(berth_buffer** out_buffer, berth_engine* engine,
                                   const char* pool, size_t pool_len) {
  static const char* fn = "berth_pool_node_stats";
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_buffer, "out_buffer", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    flatbuffers::FlatBufferBuilder fbb(1024, &g_mi_allocator);
    std::vector<flatbuffers::Offset<berth::fb::NodeStat>,
                berth::Alloc<flatbuffers::Offset<berth::fb::NodeStat>>>
        offsets;
    // O(M) under the lock: there are few nodes, and the builder copies each
    // name once.
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) {
          wp.ForEachNode([&](const berth::NodeInfo& n) {
            auto name = fbb.CreateString(n.node.data(), n.node.size());
            offsets.push_back(berth::fb::CreateNodeStat(fbb, name, n.keys, n.ready_keys));
          });
        })) {
      return UnknownPool(fn, p);
    }
    auto nodes = fbb.CreateVector(offsets.data(), offsets.size());
    auto pool_name = fbb.CreateString(p.data(), p.size());
    fbb.Finish(berth::fb::CreatePoolNodeStats(fbb, pool_name, nodes), BERTH_FB_POOL_NODE_STATS_ID);
    return Publish(fn, out_buffer, Detach(fbb));
  });
}

}  // extern "C"
