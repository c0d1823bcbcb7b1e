// A differential target: the input is decoded as a sequence of C ABI calls
// on a warm pool, an object cache and a limiter (including bad names, NULL,
// freed, wrong-type and made-up handles, and out-of-range numbers), and every
// result is checked against the naive reference models the tests use.
// Invalid calls must fail with their status and leave the model's state
// unchanged.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "berth_generated.h"
#include "capi/berth.h"
#include "tests/support/naive_cache.h"
#include "tests/support/naive_pool.h"

namespace {

[[noreturn]] void Fail() { __builtin_trap(); }

void Expect(bool ok) {
  if (!ok) Fail();
}

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool more() const { return p_ < end_; }
  uint8_t byte() { return p_ < end_ ? *p_++ : 0; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  berth_engine* engine = nullptr;
  Expect(berth_engine_new(&engine) == BERTH_OK);
  berth::testing::NaivePool pool_model;
  bool pool_exists = false;
  const char* pool = "p";

  berth_cache* cache = nullptr;
  berth_cache_options opts{};
  opts.tombstone_limit = 4;
  Expect(berth_cache_new(&cache, &opts) == BERTH_OK);
  berth::testing::NaiveCache cache_model(4);
  uint64_t clock = 10;

  berth_limiter* limiter = nullptr;
  Expect(berth_limiter_new(&limiter, 4) == BERTH_OK);
  int64_t in_use = 0;

  std::vector<HandOut> handed;
  bool synced = false;
  int steps = 0;
  while (in.more() && steps++ < 400) {
    const uint8_t op = in.byte() % 14;
    bool ok_name = true, ok_node = true;
    switch (op) {
      case 0:
      case 1: {  // add / update
        const std::string name = Name(in.byte(), &ok_name), node = Node(in.byte(), &ok_node);
        const int ready = in.byte() % 3;  // 2 is out of range
        int flag = -1;
        const berth_status s =
            (op == 0 ? berth_pool_add : berth_pool_update)(&flag, engine, pool, 1, "ns", 2, name.data(),
                                                            name.size(), node.data(), node.size(), ready);
        if (ready == 2) {
          Expect(s == BERTH_ERR_INVALID_ARGUMENT);
        } else if (!ok_name || !ok_node) {
          Expect(s == BERTH_ERR_INVALID_NAME);
        } else {
          Expect(s == BERTH_OK);
          const bool want = op == 0 ? pool_model.Add("ns", name, node, ready == 1)
                                    : pool_model.Update("ns", name, node, ready == 1);
          Expect((flag == 1) == want);
          pool_exists |= op == 0;
        }
        break;
      }
      case 2: {  // remove
        const std::string name = Name(in.byte(), &ok_name);
        int removed = -1;
        const berth_status s = berth_pool_remove(&removed, engine, pool, 1, "ns", 2, name.data(), name.size());
        if (!ok_name) {
          Expect(s == BERTH_ERR_INVALID_NAME);
        } else {
          Expect(s == BERTH_OK && (removed == 1) == pool_model.Remove("ns", name));
        }
        break;
      }
      case 3:
      case 4: {  // pop_spread / pop_fifo
        berth_pool_key k;
        const berth_status s =
            (op == 3 ? berth_pool_pop_spread : berth_pool_pop_fifo)(&k, engine, pool, 1);
        if (!pool_exists) {
          Expect(s == BERTH_ERR_NOT_FOUND);
          break;
        }
        auto want = op == 3 ? pool_model.PopSpread() : pool_model.PopFifo();
        if (!want) {
          Expect(s == BERTH_EMPTY);
          break;
        }
        Expect(s == BERTH_OK);
        Expect(std::string(k.name, k.name_len) == want->name && std::string(k.node, k.node_len) == want->node &&
               (k.ready == 1) == want->ready && k.seq == want->seq && k.token == want->token);
        handed.push_back({want->name, k.token});
        if (handed.size() > 8) handed.erase(handed.begin());
        break;
      }
      case 5: {  // put_back
        if (handed.empty() || !pool_exists) break;
        const HandOut& h = handed[in.byte() % handed.size()];
        const uint64_t token = in.byte() % 4 == 0 ? h.token + 1 : h.token;
        int restored = -1;
        Expect(berth_pool_put_back(&restored, engine, pool, 1, "ns", 2, h.name.data(), h.name.size(), token) ==
               BERTH_OK);
        Expect((restored == 1) == pool_model.PutBack("ns", h.name, token));
        break;
      }
      case 6: {  // cache upsert
        const std::string name = Name(in.byte(), &ok_name);
        const uint8_t r = in.byte();
        const uint64_t rv = r % 5 == 0 ? clock - (r % 4) : ++clock;  // some late versions
        const uint8_t l = in.byte();
        const std::string app = l % 2 ? "web" : "db", tier = l % 3 ? "a" : "b";
        const berth_label labels[] = {{"app", 3, app.data(), app.size()}, {"tier", 4, tier.data(), tier.size()}};
        int applied = -1;
        const berth_status s = berth_cache_upsert(&applied, cache, "ns", 2, name.data(), name.size(), rv,
                                                  labels, l % 3, nullptr, 0);
        if (!ok_name) {
          Expect(s == BERTH_ERR_INVALID_NAME);
          break;
        }
        Expect(s == BERTH_OK);
        std::vector<std::pair<std::string, std::string>> pairs;
        if (l % 3 > 0) pairs.emplace_back("app", app);
        if (l % 3 > 1) pairs.emplace_back("tier", tier);
        Expect((applied == 1) == cache_model.Upsert({"ns", name, rv, berth::Labels(pairs), ""}));
        break;
      }
      case 7: {  // cache delete
        const std::string name = Name(in.byte(), &ok_name);
        const uint64_t rv = in.byte() % 4 == 0 ? 0 : ++clock;
        int applied = -1;
        const berth_status s = berth_cache_delete(&applied, cache, "ns", 2, name.data(), name.size(), rv);
        if (!ok_name) {
          Expect(s == BERTH_ERR_INVALID_NAME);
          break;
        }
        Expect(s == BERTH_OK && (applied == 1) == cache_model.Delete("ns", name, rv));
        break;
      }
      case 8: {  // cache list
        static const char* selectors[] = {"", "app=web", "tier in (a)", "!tier", "app!=db,tier"};
        const char* text = selectors[in.byte() % 5];
        berth_selector* sel = nullptr;
        Expect(berth_selector_parse(&sel, text, std::strlen(text)) == BERTH_OK);
        berth_buffer* buf = nullptr;
        const berth_status s = berth_cache_list(&buf, cache, nullptr, 0, sel);
        if (!synced) {
          Expect(s == BERTH_ERR_NOT_SYNCED);
        } else {
          Expect(s == BERTH_OK);
          const uint8_t* bytes;
          size_t len;
          berth_buffer_data(&bytes, &len, buf);
          berth::Selector parsed;
          (void)berth::Selector::Parse(text, &parsed);
          const auto want = cache_model.List("", &parsed);
          // The listing's object count must match the model's.
          flatbuffers::Verifier v(bytes, len);
          Expect(v.VerifyBuffer<berth::fb::ObjectList>(BERTH_FB_OBJECT_LIST_ID));
          const auto* list = flatbuffers::GetRoot<berth::fb::ObjectList>(bytes);
          Expect(list->objects()->size() == want.size());
          for (size_t i = 0; i < want.size(); ++i) {
            Expect(list->objects()->Get(static_cast<flatbuffers::uoffset_t>(i))->name()->str() == want[i].name);
          }
          berth_buffer_free(buf);
        }
        berth_selector_free(sel);
        break;
      }
      case 9: {  // cache relist (empty list at the current clock)
        flatbuffers::FlatBufferBuilder fbb;
        fbb.Finish(berth::fb::CreateObjectList(fbb, clock), BERTH_FB_OBJECT_LIST_ID);
        Expect(berth_cache_replace(cache, fbb.GetBufferPointer(), fbb.GetSize()) == BERTH_OK);
        cache_model.Replace({}, clock);
        synced = true;
        break;
      }
      case 10: {  // limiter try_acquire, n in 0..5 (0 and 5 are out of range)
        const int64_t n = in.byte() % 6;
        int why = -1;
        const berth_status s = berth_limiter_try_acquire(&why, limiter, n);
        if (n < 1 || n > 4) {
          Expect(s == BERTH_ERR_INVALID_ARGUMENT);
        } else {
          Expect(s == BERTH_OK);
          const bool fits = in_use + n <= 4;
          Expect((why == BERTH_LIMIT_GRANTED) == fits);
          if (fits) in_use += n;
        }
        break;
      }
      case 11: {  // limiter release
        const int64_t n = in.byte() % 6;
        const berth_status s = berth_limiter_release(limiter, n);
        if (n < 1 || n > in_use) {
          Expect(s == BERTH_ERR_INVALID_ARGUMENT);
        } else {
          Expect(s == BERTH_OK);
          in_use -= n;
        }
        break;
      }
      case 12: {  // NULL handles and pointers
        berth_pool_key k;
        Expect(berth_pool_pop_spread(&k, nullptr, pool, 1) == BERTH_ERR_INVALID_ARGUMENT);
        Expect(berth_pool_add(nullptr, engine, nullptr, 5, "ns", 2, "a", 1, "", 0, 1) ==
               BERTH_ERR_INVALID_ARGUMENT);
        Expect(berth_cache_upsert(nullptr, nullptr, "ns", 2, "a", 1, 1, nullptr, 0, nullptr, 0) ==
               BERTH_ERR_INVALID_ARGUMENT);
        Expect(berth_limiter_release(nullptr, 1) == BERTH_ERR_INVALID_ARGUMENT);
        break;
      }
      case 13: {  // freed, wrong-type and made-up handles: refused, nothing changes
        berth_selector* sel = nullptr;
        Expect(berth_selector_parse(&sel, "a=b", 3) == BERTH_OK);
        berth_buffer* buf = nullptr;
        Expect(berth_selector_string(&buf, sel) == BERTH_OK);
        Expect(berth_selector_free(sel) == BERTH_OK && berth_buffer_free(buf) == BERTH_OK);
        int matches = 0;
        const uint8_t* bytes = nullptr;
        size_t len = 0;
        Expect(berth_selector_matches(&matches, sel, nullptr, 0) == BERTH_ERR_BAD_HANDLE);
        Expect(berth_buffer_data(&bytes, &len, buf) == BERTH_ERR_BAD_HANDLE);
        Expect(berth_selector_free(sel) == BERTH_ERR_BAD_HANDLE);
        Expect(berth_cache_list(&buf, cache, nullptr, 0, sel) == BERTH_ERR_BAD_HANDLE);
        berth_pool_stats st{};
        Expect(berth_pool_get_stats(&st, reinterpret_cast<berth_engine*>(cache), pool, 1) ==
               BERTH_ERR_BAD_HANDLE);
        Expect(berth_limiter_release(reinterpret_cast<berth_limiter*>(engine), 1) ==
               BERTH_ERR_BAD_HANDLE);
        // Eight bytes of the input as a handle value (unless they spell a live one).
        uintptr_t v = 0;
        for (int i = 0; i < 8; ++i) v = v << 8 | in.byte();
        if (v != 0 && v != reinterpret_cast<uintptr_t>(engine) &&
            v != reinterpret_cast<uintptr_t>(cache) && v != reinterpret_cast<uintptr_t>(limiter)) {
          Expect(berth_pool_get_stats(&st, reinterpret_cast<berth_engine*>(v), pool, 1) ==
                 BERTH_ERR_BAD_HANDLE);
          Expect(berth_cache_free(reinterpret_cast<berth_cache*>(v)) == BERTH_ERR_BAD_HANDLE);
        }
        break;
      }
    }
  }
  // Final state agrees with the models.
  if (pool_exists) {
    berth_pool_stats st{};
    Expect(berth_pool_get_stats(&st, engine, pool, 1) == BERTH_OK);
    Expect(st.keys == pool_model.size() && st.put_back_records == pool_model.put_back_records());
  }
  berth_cache_stats cs{};
  Expect(berth_cache_get_stats(&cs, cache) == BERTH_OK);
  Expect(cs.objects == cache_model.size() && cs.tombstones == cache_model.tombstones());
  berth_limiter_stats ls{};
  Expect(berth_limiter_get_stats(&ls, limiter) == BERTH_OK && ls.in_use == in_use);
  berth_limiter_free(limiter);
  berth_cache_free(cache);
  berth_engine_free(engine);
  return 0;
}
