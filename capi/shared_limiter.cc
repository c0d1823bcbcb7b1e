// The C ABI of the limiter shared between processes (berth_shared_limiter_*).
#include "capi/limiter.h"

using namespace berth::capi;
using berth::Status;

extern "C" {

berth_status berth_shared_limiter_open(berth_shared_limiter** out_limiter, const char* name,
                                       size_t name_len, int64_t capacity, int create) {
  static const char* fn = "berth_shared_limiter_open";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_limiter != nullptr, fn, "out_limiter is NULL");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_REQUIRE(create == 0 || create == 1, fn, "create must be 0 or 1");
    if (create == 1) {
      if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    }
    auto handle = berth::MakeMiUnique<SharedLimiterObject>();
    BERTH_CHECK(berth::SharedLimiter::Open(nm, capacity, create == 1, &handle->limiter), fn);
    return Publish(fn, out_limiter, std::move(handle));
  });
}

berth_status berth_shared_limiter_close(berth_shared_limiter* limiter) { return Destroy("berth_shared_limiter_close", "limiter", limiter); }

berth_status berth_shared_limiter_unlink(const char* name, size_t name_len) {
  static const char* fn = "berth_shared_limiter_unlink";
  return Guard(fn, [&]() -> berth_status {
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::SharedLimiter::Unlink(nm), fn);
    return BERTH_OK;
  });
}

berth_status berth_shared_limiter_try_acquire(int* out_refusal, berth_shared_limiter* limiter,
                                              int64_t n) {
  static const char* fn = "berth_shared_limiter_try_acquire";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_refusal != nullptr, fn, "out_refusal is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    berth::Refusal why = berth::Refusal::kNone;
    BERTH_CHECK(lo->limiter->TryAcquire(n, &why), fn);
    *out_refusal = why == berth::Refusal::kNone         ? BERTH_LIMIT_GRANTED
                   : why == berth::Refusal::kAtCapacity ? BERTH_LIMIT_AT_CAPACITY
                                                        : BERTH_LIMIT_WAITERS_QUEUED;
    return BERTH_OK;
  });
}

berth_status berth_shared_limiter_acquire(berth_shared_limiter* limiter, int64_t n,
                                          int64_t timeout_ns) {
  return LimiterAcquire("berth_shared_limiter_acquire", limiter, n,
                        timeout_ns);
}

berth_status berth_shared_limiter_acquire_async(int* out_granted_now, uint64_t* out_ticket,
                                                berth_shared_limiter* limiter, int64_t n,
                                                berth_notifier* notifier, uint64_t token) {
  return LimiterAcquireAsync("berth_shared_limiter_acquire_async", out_granted_now, out_ticket,
                             limiter, n, notifier, token);
}

berth_status berth_shared_limiter_claim(int* out_claimed, berth_shared_limiter* limiter,
                                        uint64_t ticket) {
  return LimiterClaim("berth_shared_limiter_claim", out_claimed,
                      limiter, ticket);
}

berth_status berth_shared_limiter_cancel(int* out_outcome, berth_shared_limiter* limiter,
                                         uint64_t ticket) {
  return LimiterCancel("berth_shared_limiter_cancel", out_outcome,
                       limiter, ticket);
}

berth_status berth_shared_limiter_release(berth_shared_limiter* limiter, int64_t n) {
  return LimiterRelease("berth_shared_limiter_release", limiter, n);
}

berth_status berth_shared_limiter_set_capacity(berth_shared_limiter* limiter, int64_t capacity) {
  static const char* fn = "berth_shared_limiter_set_capacity";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    BERTH_CHECK(lo->limiter->SetCapacity(capacity), fn);
    return BERTH_OK;
  });
}

berth_status berth_shared_limiter_get_stats(berth_shared_limiter_stats* out_stats,
                                            berth_shared_limiter* limiter) {
  static const char* fn = "berth_shared_limiter_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    berth::SharedLimiterStats s;
    BERTH_CHECK(lo->limiter->Stats(&s), fn);
    *out_stats = berth_shared_limiter_stats{s.capacity, s.in_use,   s.waiting,   s.holders,
                                            s.granted,  s.rejected, s.timed_out, s.reclaimed};
    return BERTH_OK;
  });
}

}  // extern "C"
