// What the calls of the in-process limiter (limiter.cc) and the shared
// limiter (shared_limiter.cc) share: their objects, the notifier both wake,
// and each call's checks, written once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "capi/internal.h"
#include "core/limit/limiter.h"
#include "core/limit/notifier.h"
#include "core/limit/shared.h"

namespace berth::capi {

struct LimiterObject {
  explicit LimiterObject(int64_t capacity) : limiter(capacity) {}
  berth::ConcurrencyLimiter limiter;
};

struct NotifierObject {
  std::shared_ptr<berth::Notifier> notifier;
};

struct SharedLimiterObject {
  berth::MiUnique<berth::SharedLimiter> limiter;
};

// timeout_ns < 0, or too far away to add to the clock (> 2^62 ns, ~146
// years), means no deadline.
template <class Clock>
std::optional<typename Clock::time_point> DeadlineAfter(int64_t timeout_ns) {
  if (timeout_ns < 0 || timeout_ns > (int64_t{1} << 62)) return std::nullopt;
  return Clock::now() + std::chrono::nanoseconds(timeout_ns);
}

inline int CancelCode(berth::CancelOutcome c) {
  switch (c) {
    case berth::CancelOutcome::kWasWaiting: return BERTH_CANCEL_WAS_WAITING;
    case berth::CancelOutcome::kWasGranted: return BERTH_CANCEL_WAS_GRANTED;
    case berth::CancelOutcome::kUnknown: break;
  }
  return BERTH_CANCEL_UNKNOWN;
}

// The in-process and the shared limiter take the same calls; these carry
// each call's checks once. H is the handle type (berth_limiter or
// berth_shared_limiter); Core() gives the berth:: limiter behind it.
inline berth::ConcurrencyLimiter* Core(LimiterObject* o) { return &o->limiter; }
inline berth::SharedLimiter* Core(SharedLimiterObject* o) { return o->limiter.get(); }

template <class H>
berth_status LimiterAcquire(const char* fn, H* limiter, int64_t n, int64_t timeout_ns) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    auto* lim = Core(lo);
    const auto deadline = DeadlineAfter<typename std::remove_pointer_t<decltype(lim)>::Clock>(timeout_ns);
    bool acquired = false;
    BERTH_CHECK(lim->Acquire(n, deadline, &acquired), fn);
    if (!acquired) {
      return Fail(fn, BERTH_ERR_TIMEOUT, "no permits within " + std::to_string(timeout_ns) + " ns");
    }
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterAcquireAsync(const char* fn, int* out_granted_now, uint64_t* out_ticket,
                                 H* limiter, int64_t n, berth_notifier* notifier, uint64_t token) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_granted_now != nullptr, fn, "out_granted_now is NULL");
    BERTH_REQUIRE(out_ticket != nullptr, fn, "out_ticket is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    BERTH_HANDLE(ntf, notifier, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    bool now = false;
    uint64_t ticket = 0;
    BERTH_CHECK(Core(lo)->Enqueue(n, ntf->notifier, token, &now, &ticket), fn);
    *out_granted_now = now ? 1 : 0;
    *out_ticket = ticket;
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterClaim(const char* fn, int* out_claimed, H* limiter, uint64_t ticket) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_claimed != nullptr, fn, "out_claimed is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    *out_claimed = Core(lo)->Claim(ticket) ? 1 : 0;
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterCancel(const char* fn, int* out_outcome, H* limiter, uint64_t ticket) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    const int outcome = CancelCode(Core(lo)->Cancel(ticket));  // cancels even without out_outcome
    if (out_outcome != nullptr) *out_outcome = outcome;
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterRelease(const char* fn, H* limiter, int64_t n) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    BERTH_CHECK(Core(lo)->Release(n), fn);
    return BERTH_OK;
  });
}

}  // namespace berth::capi
