// Limiters and buckets through the C ABI: statuses, the async ticket life
// cycle through a notifier, and bad input that changes nothing.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "capi/berth.h"
#include "tests/support/capi_helpers.h"

namespace {

using berth::testing::LastError;

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMs = 1'000'000;

struct Limiter {
  berth_limiter* l = nullptr;
  explicit Limiter(int64_t capacity) { EXPECT_EQ(berth_limiter_new(&l, capacity), BERTH_OK); }
  ~Limiter() { EXPECT_EQ(berth_limiter_free(l), BERTH_OK); }
  berth_limiter_stats Stats() const {
    berth_limiter_stats s{};
    EXPECT_EQ(berth_limiter_get_stats(&s, l), BERTH_OK);
    return s;
  }
};

struct Notifier {
  berth_notifier* n = nullptr;
  Notifier() { EXPECT_EQ(berth_notifier_new(&n), BERTH_OK); }
  ~Notifier() { EXPECT_EQ(berth_notifier_free(n), BERTH_OK); }
  std::vector<uint64_t> Drain() {
    uint64_t buf[8];
    size_t count = 0;
    EXPECT_EQ(berth_notifier_drain(&count, n, buf, 8), BERTH_OK);
    return std::vector<uint64_t>(buf, buf + count);
  }
  bool Readable() {
    int fd = -1;
    EXPECT_EQ(berth_notifier_fd(&fd, n), BERTH_OK);
    pollfd p{fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }
};

TEST(CApiLimiter, TryAcquireSaysWhy) {
  Limiter l(3);
  int why = -1;
  ASSERT_EQ(berth_limiter_try_acquire(&why, l.l, 2), BERTH_OK);
  EXPECT_EQ(why, BERTH_LIMIT_GRANTED);
  ASSERT_EQ(berth_limiter_try_acquire(&why, l.l, 2), BERTH_OK);
  EXPECT_EQ(why, BERTH_LIMIT_AT_CAPACITY);
  Notifier n;
  int now = -1;
  uint64_t ticket = 0;
  ASSERT_EQ(berth_limiter_acquire_async(&now, &ticket, l.l, 3, n.n, 42), BERTH_OK);
  EXPECT_EQ(now, 0);
  EXPECT_NE(ticket, 0u);
  ASSERT_EQ(berth_limiter_try_acquire(&why, l.l, 1), BERTH_OK);
  EXPECT_EQ(why, BERTH_LIMIT_WAITERS_QUEUED);
  EXPECT_FALSE(n.Readable());
  ASSERT_EQ(berth_limiter_release(l.l, 2), BERTH_OK);
  EXPECT_TRUE(n.Readable());
  EXPECT_EQ(n.Drain(), std::vector<uint64_t>{42});
  int claimed = -1;
  ASSERT_EQ(berth_limiter_claim(&claimed, l.l, ticket), BERTH_OK);
  EXPECT_EQ(claimed, 1);
  EXPECT_EQ(l.Stats().in_use, 3);
  ASSERT_EQ(berth_limiter_release(l.l, 3), BERTH_OK);
}

TEST(CApiLimiter, CancelAfterTheGrantGivesThePermitsBack) {
  Limiter l(1);
  Notifier n;
  int why, now, outcome = -1;
  uint64_t ticket;
  ASSERT_EQ(berth_limiter_try_acquire(&why, l.l, 1), BERTH_OK);
  ASSERT_EQ(berth_limiter_acquire_async(&now, &ticket, l.l, 1, n.n, 7), BERTH_OK);
  ASSERT_EQ(berth_limiter_release(l.l, 1), BERTH_OK);  // granted, not claimed
  ASSERT_EQ(berth_limiter_cancel(&outcome, l.l, ticket), BERTH_OK);
  EXPECT_EQ(outcome, BERTH_CANCEL_WAS_GRANTED);
  EXPECT_EQ(l.Stats().in_use, 0);
  ASSERT_EQ(berth_limiter_cancel(&outcome, l.l, ticket), BERTH_OK);
  EXPECT_EQ(outcome, BERTH_CANCEL_UNKNOWN);
}

TEST(CApiLimiter, NotifierOutlivesItsHandleWhileTicketsWait) {
  Limiter l(1);
  int why, now, claimed = 0;
  uint64_t ticket;
  ASSERT_EQ(berth_limiter_try_acquire(&why, l.l, 1), BERTH_OK);
  berth_notifier* n = nullptr;
  ASSERT_EQ(berth_notifier_new(&n), BERTH_OK);
  ASSERT_EQ(berth_limiter_acquire_async(&now, &ticket, l.l, 1, n, 1), BERTH_OK);
  ASSERT_EQ(berth_notifier_free(n), BERTH_OK);   // the ticket keeps it alive
  ASSERT_EQ(berth_limiter_release(l.l, 1), BERTH_OK);  // posts to it: no crash
  ASSERT_EQ(berth_limiter_claim(&claimed, l.l, ticket), BERTH_OK);
  EXPECT_EQ(claimed, 1);
}

TEST(CApiLimiter, BlockingAcquireTimesOut) {
  Limiter l(1);
  int why;
  ASSERT_EQ(berth_limiter_try_acquire(&why, l.l, 1), BERTH_OK);
  EXPECT_EQ(berth_limiter_acquire(l.l, 1, 10 * kMs), BERTH_ERR_TIMEOUT);
  EXPECT_NE(LastError().find("no permits within"), std::string::npos);
  std::thread t([&] { berth_limiter_release(l.l, 1); });
  EXPECT_EQ(berth_limiter_acquire(l.l, 1, -1), BERTH_OK);
  t.join();
  EXPECT_EQ(l.Stats().timed_out, 1u);
}

TEST(CApiBucket, AllowReserveCancelWithExplicitTime) {
  berth_bucket* b = nullptr;
  ASSERT_EQ(berth_bucket_new(&b, 10, 2), BERTH_OK);
  int ok = -1;
  ASSERT_EQ(berth_bucket_allow(&ok, b, 2, kSec), BERTH_OK);
  EXPECT_EQ(ok, 1);
  ASSERT_EQ(berth_bucket_allow(&ok, b, 1, kSec), BERTH_OK);
  EXPECT_EQ(ok, 0);
  berth_reservation r{};
  ASSERT_EQ(berth_bucket_reserve(&r, b, 1, kSec), BERTH_OK);
  EXPECT_EQ(r.delay_ns, 100 * kMs);
  EXPECT_EQ(r.time_to_act_ns, kSec + 100 * kMs);
  ASSERT_EQ(berth_bucket_cancel(b, &r, kSec), BERTH_OK);
  EXPECT_EQ(r.tokens, 0);
  ASSERT_EQ(berth_bucket_cancel(b, &r, kSec), BERTH_OK);  // again: gives nothing back
  berth_bucket_stats st{};
  ASSERT_EQ(berth_bucket_get_stats(&st, b, kSec), BERTH_OK);
  EXPECT_NEAR(st.tokens, 0, 1e-9);
  ASSERT_EQ(berth_bucket_set_rate(b, INFINITY, kSec), BERTH_OK);
  ASSERT_EQ(berth_bucket_allow(&ok, b, 2, kSec), BERTH_OK);
  EXPECT_EQ(ok, 1);
  EXPECT_GT(berth_clock_now_ns(), 0);
  ASSERT_EQ(berth_bucket_reserve(&r, b, 1, BERTH_NOW), BERTH_OK);  // the real clock
  EXPECT_EQ(r.delay_ns, 0);
  berth_bucket_free(b);
}

TEST(CApiSharedLimiter, OpenAcquireReleaseAcrossHandles) {
  const std::string name = "capi-test-" + std::to_string(getpid());
  berth_shared_limiter *a = nullptr, *b = nullptr;
  ASSERT_EQ(berth_shared_limiter_open(&a, name.data(), name.size(), 2, 1), BERTH_OK) << LastError();
  ASSERT_EQ(berth_shared_limiter_open(&b, name.data(), name.size(), 0, 0), BERTH_OK) << LastError();
  int why = -1;
  ASSERT_EQ(berth_shared_limiter_try_acquire(&why, a, 2), BERTH_OK);
  EXPECT_EQ(why, BERTH_LIMIT_GRANTED);
  EXPECT_EQ(berth_shared_limiter_acquire(b, 1, 5 * kMs), BERTH_ERR_TIMEOUT);
  berth_shared_limiter_stats st{};
  ASSERT_EQ(berth_shared_limiter_get_stats(&st, b), BERTH_OK);
  EXPECT_EQ(st.in_use, 2);
  EXPECT_EQ(st.holders, 1);
  EXPECT_EQ(st.timed_out, 1u);
  EXPECT_EQ(berth_shared_limiter_release(b, 3), BERTH_ERR_INVALID_ARGUMENT);
  EXPECT_NE(LastError().find("this process holds 2"), std::string::npos);
  ASSERT_EQ(berth_shared_limiter_release(b, 2), BERTH_OK);
  // Async: granted at once, then a ticket that a release grants.
  Notifier n;
  int now = -1, claimed = 0;
  uint64_t t1 = 0, t2 = 0;
  ASSERT_EQ(berth_shared_limiter_acquire_async(&now, &t1, a, 2, n.n, 5), BERTH_OK);
  EXPECT_EQ(now, 1);
  ASSERT_EQ(berth_shared_limiter_acquire_async(&now, &t2, b, 1, n.n, 6), BERTH_OK);
  EXPECT_EQ(now, 0);
  ASSERT_EQ(berth_shared_limiter_release(a, 2), BERTH_OK);
  std::vector<uint64_t> got;
  for (int i = 0; i < 5000 && got.empty(); ++i) {
    got = n.Drain();
    if (got.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(got, std::vector<uint64_t>{6});
  ASSERT_EQ(berth_shared_limiter_claim(&claimed, b, t2), BERTH_OK);
  EXPECT_EQ(claimed, 1);
  int outcome = -1;
  ASSERT_EQ(berth_shared_limiter_cancel(&outcome, b, t2), BERTH_OK);
  EXPECT_EQ(outcome, BERTH_CANCEL_UNKNOWN);  // claimed: the caller releases
  ASSERT_EQ(berth_shared_limiter_release(b, 1), BERTH_OK);
  // Cancelling without asking for the outcome still cancels.
  ASSERT_EQ(berth_shared_limiter_try_acquire(&why, a, 2), BERTH_OK);
  uint64_t t3 = 0;
  ASSERT_EQ(berth_shared_limiter_acquire_async(&now, &t3, b, 1, n.n, 7), BERTH_OK);
  ASSERT_EQ(now, 0);
  ASSERT_EQ(berth_shared_limiter_cancel(nullptr, b, t3), BERTH_OK);
  ASSERT_EQ(berth_shared_limiter_cancel(&outcome, b, t3), BERTH_OK);
  EXPECT_EQ(outcome, BERTH_CANCEL_UNKNOWN);  // already gone
  ASSERT_EQ(berth_shared_limiter_release(a, 2), BERTH_OK);
  ASSERT_EQ(berth_shared_limiter_close(a), BERTH_OK);
  ASSERT_EQ(berth_shared_limiter_close(b), BERTH_OK);
  ASSERT_EQ(berth_shared_limiter_unlink(name.data(), name.size()), BERTH_OK);
  EXPECT_EQ(berth_shared_limiter_unlink(name.data(), name.size()), BERTH_ERR_NOT_FOUND);
  EXPECT_EQ(berth_shared_limiter_open(&a, name.data(), name.size(), 2, 0), BERTH_ERR_NOT_FOUND);
  EXPECT_EQ(berth_shared_limiter_open(&a, "a/b", 3, 2, 1), BERTH_ERR_INVALID_NAME);
  EXPECT_EQ(berth_shared_limiter_open(&a, name.data(), name.size(), 0, 1), BERTH_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(berth_shared_limiter_open(&a, name.data(), name.size(), 1, 2), BERTH_ERR_INVALID_ARGUMENT);
  EXPECT_STREQ(berth_status_name(BERTH_ERR_BAD_REGION), "BERTH_ERR_BAD_REGION");
}

// berth.h: a cancel gives back what a reservation took, less the tokens
// reserved after it, and never more. With x/time/rate's arithmetic a 1-token
// reservation gave back 3 here, and 17 tokens passed at one instant with a
// burst of 16: the latest reservation time fell behind B's (reserve after a
// partial give-back, then a cancel rolling it back). Found by the bucket
// stress scenario.
TEST(CApiBucket, CancelNeverGivesBackMoreThanItTook) {
  constexpr int64_t t = 1'000'000'000;  // every call at the same instant
  berth_bucket* b = nullptr;
  ASSERT_EQ(berth_bucket_new(&b, 2000, 16), BERTH_OK);  // a token per 0.5 ms
  auto tokens = [&] {
    berth_bucket_stats s{};
    EXPECT_EQ(berth_bucket_get_stats(&s, b, t), BERTH_OK);
    return s.tokens;
  };
  int ok = -1;
  ASSERT_EQ(berth_bucket_allow(&ok, b, 16, t), BERTH_OK);
  ASSERT_EQ(ok, 1);  // the burst is spent
  berth_reservation a{}, bb{}, c{};
  ASSERT_EQ(berth_bucket_reserve(&a, b, 3, t), BERTH_OK);   // acts at t + 1.5 ms
  ASSERT_EQ(berth_bucket_reserve(&bb, b, 1, t), BERTH_OK);  // acts at t + 2 ms
  ASSERT_EQ(berth_bucket_cancel(b, &a, t), BERTH_OK);       // gives back 3 - 1 = 2
  EXPECT_DOUBLE_EQ(tokens(), -2);
  ASSERT_EQ(berth_bucket_reserve(&c, b, 1, t), BERTH_OK);   // acts at t + 1.5 ms, before B
  EXPECT_EQ(c.time_to_act_ns, t + 1'500'000);
  ASSERT_EQ(berth_bucket_cancel(b, &c, t), BERTH_OK);       // gives back its 1
  EXPECT_DOUBLE_EQ(tokens(), -2);
  const double before = tokens();
  ASSERT_EQ(berth_bucket_cancel(b, &bb, t), BERTH_OK);      // B took 1 token
  EXPECT_LE(tokens() - before, 1.0) << "cancelling a 1-token reservation gave back " << tokens() - before;
  ASSERT_EQ(berth_bucket_allow(&ok, b, 1, t), BERTH_OK);
  EXPECT_EQ(ok, 0) << "every reservation was cancelled, yet a 17th token passes at the instant the burst of 16 was spent";
  EXPECT_EQ(berth_bucket_free(b), BERTH_OK);
}

// Issue 10, item 6: `t + wait` overflowed int64 (UBSan) when a reservation
// was due after INT64_MAX ns; time_to_act came back negative and a cancel of
// it did nothing. Such a reservation is now refused and takes nothing.
struct Bucket {
  berth_bucket* b = nullptr;
  Bucket(double rate, int64_t burst) { EXPECT_EQ(berth_bucket_new(&b, rate, burst), BERTH_OK) << LastError(); }
  ~Bucket() { EXPECT_EQ(berth_bucket_free(b), BERTH_OK); }
  double Tokens(int64_t now) const {
    berth_bucket_stats s{};
    EXPECT_EQ(berth_bucket_get_stats(&s, b, now), BERTH_OK) << LastError();
    return s.tokens;
  }
};

constexpr int64_t kMaxNs = INT64_MAX;

TEST(CApiBucket, ReserveDueAfterInt64MaxIsRefusedAndTakesNothing) {
  Bucket b(10, 1);
  berth_reservation r{};
  ASSERT_EQ(berth_bucket_reserve(&r, b.b, 1, kMaxNs - 2), BERTH_OK) << LastError();
  EXPECT_EQ(r.time_to_act_ns, kMaxNs - 2);
  EXPECT_EQ(r.delay_ns, 0);
  berth_reservation r2{};
  EXPECT_EQ(berth_bucket_reserve(&r2, b.b, 1, kMaxNs - 2), BERTH_ERR_INVALID_ARGUMENT)
      << "time_to_act_ns " << r2.time_to_act_ns << ", delay_ns " << r2.delay_ns;
  EXPECT_NE(LastError().find("INT64_MAX"), std::string::npos) << LastError();
  EXPECT_NEAR(b.Tokens(kMaxNs - 2), 0, 1e-9);  // nothing taken
}

TEST(CApiBucket, ReservationDueAtInt64MaxIsGrantedAndCancelGivesItBack) {
  Bucket b(10, 1);
  const int64_t t = kMaxNs - 100 * kMs;
  berth_reservation r{};
  ASSERT_EQ(berth_bucket_reserve(&r, b.b, 1, t), BERTH_OK);
  ASSERT_EQ(berth_bucket_reserve(&r, b.b, 1, t), BERTH_OK) << LastError();
  EXPECT_EQ(r.time_to_act_ns, kMaxNs);
  EXPECT_EQ(r.delay_ns, 100 * kMs);
  EXPECT_NEAR(b.Tokens(t), -1, 1e-9);
  ASSERT_EQ(berth_bucket_cancel(b.b, &r, t), BERTH_OK);
  EXPECT_NEAR(b.Tokens(t), 0, 1e-9);
  EXPECT_NEAR(b.Tokens(kMaxNs), 1, 1e-9);
}

TEST(CApiBucket, RateTooSmallForOneTokenInInt64NanosIsRefused) {
  // 1e-300 tokens/s: one token takes 1e309 ns. Two reserves overflowed.
  berth_bucket* b = nullptr;
  EXPECT_EQ(berth_bucket_new(&b, 1e-300, 1), BERTH_ERR_INVALID_ARGUMENT);
  EXPECT_NE(LastError().find("INT64_MAX"), std::string::npos) << LastError();
  EXPECT_EQ(b, nullptr);
  EXPECT_EQ(berth_bucket_new(&b, 1e-10, 1), BERTH_ERR_INVALID_ARGUMENT);  // 317 years a token
  Bucket ok(1.1e-10, 1);  // 288 years a token: fits
  EXPECT_EQ(berth_bucket_set_rate(ok.b, 1e-300, kSec), BERTH_ERR_INVALID_ARGUMENT);
  berth_bucket_stats s{};
  ASSERT_EQ(berth_bucket_get_stats(&s, ok.b, kSec), BERTH_OK);
  EXPECT_EQ(s.rate, 1.1e-10);  // unchanged
  berth_reservation r{};
  ASSERT_EQ(berth_bucket_reserve(&r, ok.b, 1, kSec), BERTH_OK);
  ASSERT_EQ(berth_bucket_reserve(&r, ok.b, 1, 0), BERTH_OK) << LastError();
  EXPECT_GT(r.delay_ns, 0);
  EXPECT_EQ(berth_bucket_reserve(&r, ok.b, 1, kSec), BERTH_ERR_INVALID_ARGUMENT);  // 2 tokens owed
}

TEST(CApiBucket, HugeBurstAndNDoNotOverflow) {
  Bucket b(10, kMaxNs);
  berth_reservation r{};
  ASSERT_EQ(berth_bucket_reserve(&r, b.b, kMaxNs, kSec), BERTH_OK);
  EXPECT_EQ(berth_bucket_reserve(&r, b.b, kMaxNs, kSec), BERTH_ERR_INVALID_ARGUMENT);
  Bucket fast(1e12, kMaxNs);
  ASSERT_EQ(berth_bucket_reserve(&r, fast.b, kMaxNs, kSec), BERTH_OK);
  ASSERT_EQ(berth_bucket_reserve(&r, fast.b, kMaxNs, kSec), BERTH_OK) << LastError();
  EXPECT_GT(r.delay_ns, 0);
  EXPECT_EQ(r.time_to_act_ns, kSec + r.delay_ns);
  ASSERT_EQ(berth_bucket_cancel(fast.b, &r, kSec), BERTH_OK);
  EXPECT_NEAR(fast.Tokens(kSec), 0, 1e3);
  EXPECT_EQ(berth_bucket_set_burst(fast.b, kMaxNs - 1, kMaxNs), BERTH_OK);
  EXPECT_NEAR(fast.Tokens(kMaxNs), 9.223372036854775807e18, 1e4);
}

TEST(CApiBucket, CancellingAReservationMadeAtAnInfiniteRateGivesNothingBack) {
  Bucket b(10, 2);
  ASSERT_EQ(berth_bucket_set_rate(b.b, INFINITY, kSec), BERTH_OK);
  berth_reservation r{};
  ASSERT_EQ(berth_bucket_reserve(&r, b.b, 1, kSec + 1), BERTH_OK);
  EXPECT_EQ(r.rate, INFINITY);
  ASSERT_EQ(berth_bucket_set_rate(b.b, 10, kSec + 1), BERTH_OK);
  int ok = -1;
  ASSERT_EQ(berth_bucket_allow(&ok, b.b, 2, kSec + 1), BERTH_OK);
  ASSERT_EQ(ok, 1);
  ASSERT_EQ(berth_bucket_cancel(b.b, &r, kSec + 1), BERTH_OK);
  EXPECT_NEAR(b.Tokens(kSec + 1), 0, 1e-9);  // it took nothing (was NaN: every allow passed)
  ASSERT_EQ(berth_bucket_allow(&ok, b.b, 1, kSec + 1), BERTH_OK);
  EXPECT_EQ(ok, 0);
}

}  // namespace
