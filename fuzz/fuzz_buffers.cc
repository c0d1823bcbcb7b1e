// Every FlatBuffers buffer the C ABI accepts: berth_pool_add_batch,
// berth_cache_apply and berth_cache_replace. The first byte picks the call,
// the rest is the buffer. A call either succeeds or fails with a status and
// a message; a failed call changes nothing (the pool's or cache's stats are
// compared before and after).
#include <cstdint>
#include <cstring>
#include <string>

#include "capi/berth.h"

namespace {

[[noreturn]] void Fail() { __builtin_trap(); }

void CheckFailure(berth_status s) {
  if (s == BERTH_OK) return;
  size_t len = 0;
  berth_last_error(&len);
  if (len == 0) Fail();  // every failure explains itself
  if (s != BERTH_ERR_BAD_BUFFER && s != BERTH_ERR_INVALID_NAME && s != BERTH_ERR_INVALID_ARGUMENT) Fail();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t which = data[0] % 3;
  const uint8_t* buf = data + 1;
  const size_t len = size - 1;
  if (which == 0) {
    berth_engine* e = nullptr;
    berth_engine_new(&e);
    berth_pool_add(nullptr, e, "p", 1, "ns", 2, "seed", 4, "n", 1, 1);
    berth_pool_stats before{}, after{};
    berth_pool_get_stats(&before, e, "p", 1);
    size_t inserted = 0;
    const berth_status s = berth_pool_add_batch(&inserted, e, "p", 1, buf, len);
    CheckFailure(s);
    berth_pool_get_stats(&after, e, "p", 1);
    if (s != BERTH_OK && std::memcmp(&before, &after, sizeof before) != 0) Fail();
    if (s == BERTH_OK && after.keys != before.keys + inserted) Fail();
    berth_engine_free(e);
    return 0;
  }
  berth_cache* c = nullptr;
  berth_cache_new(&c, nullptr);
  if (which == 1) {
    // apply needs no sync; compare counters around it
    berth_cache_stats before{}, after{};
    berth_cache_get_stats(&before, c);
    size_t applied = 0;
    const berth_status s = berth_cache_apply(&applied, c, buf, len);
    CheckFailure(s);
    berth_cache_get_stats(&after, c);
    if (s != BERTH_OK && std::memcmp(&before, &after, sizeof before) != 0) Fail();
    if (s == BERTH_OK && after.applied != before.applied + applied) Fail();
  } else {
    const berth_status s = berth_cache_replace(c, buf, len);
    CheckFailure(s);
    berth_cache_stats st{};
    berth_cache_get_stats(&st, c);
    if ((s == BERTH_OK) != (st.synced == 1)) Fail();
    if (s == BERTH_OK) {
      berth_buffer* out = nullptr;
      if (berth_cache_list(&out, c, nullptr, 0, nullptr) != BERTH_OK) Fail();
      berth_buffer_free(out);
    }
  }
  berth_cache_free(c);
  return 0;
}
