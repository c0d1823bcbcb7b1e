// The C ABI of the concurrency limiter (berth_limiter_*) and of the
// notifier its asynchronous waits (and the shared limiter's) wake
// (berth_notifier_*).
#include "capi/limiter.h"

using namespace berth::capi;
using berth::Status;

extern "C" {

berth_status berth_limiter_new(berth_limiter** out_limiter, int64_t capacity) {
  static const char* fn = "berth_limiter_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_limiter != nullptr, fn, "out_limiter is NULL");
    if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    return Publish(fn, out_limiter, berth::MakeMiUnique<LimiterObject>(capacity));
  });
}

berth_status berth_limiter_free(berth_limiter* limiter) { return Destroy("berth_limiter_free", "limiter", limiter); }

berth_status berth_limiter_try_acquire(int* out_refusal, berth_limiter* limiter, int64_t n) {
  static const char* fn = "berth_limiter_try_acquire";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_refusal != nullptr, fn, "out_refusal is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    berth::Refusal why = berth::Refusal::kNone;
    BERTH_CHECK(lo->limiter.TryAcquireChecked(n, &why), fn);
    switch (why) {
      case berth::Refusal::kNone: *out_refusal = BERTH_LIMIT_GRANTED; break;
      case berth::Refusal::kAtCapacity: *out_refusal = BERTH_LIMIT_AT_CAPACITY; break;
      case berth::Refusal::kWaitersQueued: *out_refusal = BERTH_LIMIT_WAITERS_QUEUED; break;
    }
    return BERTH_OK;
  });
}

berth_status berth_limiter_acquire(berth_limiter* limiter, int64_t n, int64_t timeout_ns) {
  return LimiterAcquire("berth_limiter_acquire", limiter, n, timeout_ns);
}

berth_status berth_limiter_acquire_async(int* out_granted_now, uint64_t* out_ticket,
                                         berth_limiter* limiter, int64_t n,
                                         berth_notifier* notifier, uint64_t token) {
  return LimiterAcquireAsync("berth_limiter_acquire_async", out_granted_now, out_ticket,
                             limiter, n, notifier, token);
}

berth_status berth_limiter_claim(int* out_claimed, berth_limiter* limiter, uint64_t ticket) {
  return LimiterClaim("berth_limiter_claim", out_claimed, limiter, ticket);
}

berth_status berth_limiter_cancel(int* out_outcome, berth_limiter* limiter, uint64_t ticket) {
  return LimiterCancel("berth_limiter_cancel", out_outcome, limiter, ticket);
}

berth_status berth_limiter_release(berth_limiter* limiter, int64_t n) {
  return LimiterRelease("berth_limiter_release", limiter, n);
}

berth_status berth_limiter_set_capacity(berth_limiter* limiter, int64_t capacity) {
  static const char* fn = "berth_limiter_set_capacity";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    lo->limiter.SetCapacity(capacity);
    return BERTH_OK;
  });
}

berth_status berth_limiter_get_stats(berth_limiter_stats* out_stats, const berth_limiter* limiter) {
  static const char* fn = "berth_limiter_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    const berth::LimiterStats s = lo->limiter.Stats();
    *out_stats = berth_limiter_stats{s.capacity, s.in_use,  s.waiting,  s.waiting_permits,
                                     s.granted,  s.rejected, s.timed_out, s.cancelled};
    return BERTH_OK;
  });
}

berth_status berth_notifier_new(berth_notifier** out_notifier) {
  static const char* fn = "berth_notifier_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_notifier != nullptr, fn, "out_notifier is NULL");
    auto n = berth::MakeMiUnique<NotifierObject>();
    BERTH_CHECK(berth::Notifier::Make(&n->notifier), fn);
    return Publish(fn, out_notifier, std::move(n));
  });
}

berth_status berth_notifier_free(berth_notifier* notifier) { return Destroy("berth_notifier_free", "notifier", notifier); }

berth_status berth_notifier_fd(int* out_fd, const berth_notifier* notifier) {
  static const char* fn = "berth_notifier_fd";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_fd != nullptr, fn, "out_fd is NULL");
    BERTH_HANDLE(ntf, notifier, fn);
    *out_fd = ntf->notifier->fd();
    return BERTH_OK;
  });
}

berth_status berth_notifier_drain(size_t* out_count, berth_notifier* notifier, uint64_t* tokens,
                                  size_t cap) {
  static const char* fn = "berth_notifier_drain";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_count != nullptr, fn, "out_count is NULL");
    BERTH_HANDLE(ntf, notifier, fn);
    BERTH_REQUIRE(tokens != nullptr || cap == 0, fn, "tokens is NULL with cap > 0");
    *out_count = cap == 0 ? 0 : ntf->notifier->Drain(tokens, cap);
    return BERTH_OK;
  });
}

}  // extern "C"
