// The C ABI of the token bucket (berth_bucket_*).
#include <cmath>
#include <string>

#include "capi/internal.h"
#include "core/limit/bucket.h"

namespace berth::capi {

struct BucketObject {
  BucketObject(double rate, int64_t burst) : bucket(rate, burst) {}
  berth::TokenBucket bucket;
};

}  // namespace berth::capi

namespace {

using namespace berth::capi;
using berth::Status;

int64_t Now(int64_t now_ns) { return now_ns < 0 ? berth_clock_now_ns() : now_ns; }

bool ValidRate(double rate) { return rate > 0 && !std::isnan(rate); }

berth_status CheckTokens(const char* fn, const BucketObject* bk, int64_t n, int64_t now) {
  if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
  const int64_t burst = bk->bucket.Stats(now).burst;
  if (n > burst) {
    return Fail(fn, BERTH_ERR_INVALID_ARGUMENT,
                "n (" + std::to_string(n) + ") exceeds the burst (" + std::to_string(burst) + ")");
  }
  return BERTH_OK;
}

}  // namespace

extern "C" {

berth_status berth_bucket_new(berth_bucket** out_bucket, double rate, int64_t burst) {
  static const char* fn = "berth_bucket_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_bucket != nullptr, fn, "out_bucket is NULL");
    BERTH_CHECK(berth::TokenBucket::CheckRate(rate), fn);
    if (berth_status st = CheckCount(fn, "burst", burst); st != BERTH_OK) return st;
    return Publish(fn, out_bucket, berth::MakeMiUnique<BucketObject>(rate, burst));
  });
}

berth_status berth_bucket_free(berth_bucket* bucket) { return Destroy("berth_bucket_free", "bucket", bucket); }


berth_status berth_bucket_allow(int* out_allowed, berth_bucket* bucket, int64_t n, int64_t now_ns) {
  static const char* fn = "berth_bucket_allow";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_allowed != nullptr, fn, "out_allowed is NULL");
    BERTH_HANDLE(bk, bucket, fn);
    const int64_t now = Now(now_ns);
    if (berth_status st = CheckTokens(fn, bk, n, now); st != BERTH_OK) return st;
    *out_allowed = bk->bucket.Allow(n, now) ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_bucket_reserve(berth_reservation* out_reservation, berth_bucket* bucket,
                                  int64_t n, int64_t now_ns) {
  static const char* fn = "berth_bucket_reserve";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_reservation != nullptr, fn, "out_reservation is NULL");
    BERTH_HANDLE(bk, bucket, fn);
    const int64_t now = Now(now_ns);
    if (berth_status st = CheckTokens(fn, bk, n, now); st != BERTH_OK) return st;
    const berth::Reservation r = bk->bucket.Reserve(n, now);
    if (!r.ok) {  // kOverBurst: the burst shrank since the check
      return Fail(fn, BERTH_ERR_INVALID_ARGUMENT,
                  r.refusal == berth::ReserveRefusal::kTooLate
                      ? "the time to act would be after INT64_MAX ns (the tokens owed take too "
                        "long at this rate); nothing was taken"
                      : "n exceeds the burst");
    }
    // time_to_act >= now >= 0: the difference fits.
    *out_reservation = berth_reservation{r.time_to_act, r.time_to_act - now, r.tokens, r.rate};
    return BERTH_OK;
  });
}

berth_status berth_bucket_cancel(berth_bucket* bucket, berth_reservation* reservation,
                                 int64_t now_ns) {
  static const char* fn = "berth_bucket_cancel";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(bk, bucket, fn);
    BERTH_REQUIRE(reservation != nullptr, fn, "reservation is NULL");
    berth::Reservation r;
    r.ok = reservation->tokens > 0;
    r.tokens = reservation->tokens;
    r.time_to_act = reservation->time_to_act_ns;
    r.rate = reservation->rate;
    BERTH_REQUIRE(!r.ok || ValidRate(r.rate), fn, "reservation has an invalid rate");
    bk->bucket.Cancel(r, Now(now_ns));
    reservation->tokens = 0;  // a second cancel gives nothing back
    return BERTH_OK;
  });
}

berth_status berth_bucket_set_rate(berth_bucket* bucket, double rate, int64_t now_ns) {
  static const char* fn = "berth_bucket_set_rate";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(bk, bucket, fn);
    BERTH_CHECK(berth::TokenBucket::CheckRate(rate), fn);
    bk->bucket.SetRate(rate, Now(now_ns));
    return BERTH_OK;
  });
}

berth_status berth_bucket_set_burst(berth_bucket* bucket, int64_t burst, int64_t now_ns) {
  static const char* fn = "berth_bucket_set_burst";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(bk, bucket, fn);
    if (berth_status st = CheckCount(fn, "burst", burst); st != BERTH_OK) return st;
    bk->bucket.SetBurst(burst, Now(now_ns));
    return BERTH_OK;
  });
}

berth_status berth_bucket_get_stats(berth_bucket_stats* out_stats, const berth_bucket* bucket,
                                    int64_t now_ns) {
  static const char* fn = "berth_bucket_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(bk, bucket, fn);
    const berth::BucketStats s = bk->bucket.Stats(Now(now_ns));
    *out_stats = berth_bucket_stats{s.rate, s.burst, s.tokens};
    return BERTH_OK;
  });
}

}  // extern "C"
