// Concurrency limiter, token bucket and notifier: semantics case by case,
// and the cancellation races that must never leak or double-free a permit.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "core/limit/bucket.h"
#include "core/limit/limiter.h"
#include "core/limit/notifier.h"

namespace berth {
namespace {

constexpr int64_t kSec = 1'000'000'000;
constexpr int64_t kMs = 1'000'000;

std::shared_ptr<Notifier> MakeNotifier() {
  std::shared_ptr<Notifier> n;
  EXPECT_TRUE(Notifier::Make(&n).ok());
  return n;
}

bool Readable(const Notifier& n) {
  pollfd p{n.fd(), POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

std::vector<uint64_t> DrainAll(Notifier& n) {
  std::vector<uint64_t> out;
  uint64_t buf[4];
  for (;;) {
    const size_t got = n.Drain(buf, 4);
    out.insert(out.end(), buf, buf + got);
    if (got < 4) return out;
  }
}

// ---- Notifier ---------------------------------------------------------------

TEST(Notifier, ReadableAfterPostAndQuietAfterDrain) {
  auto n = MakeNotifier();
  EXPECT_FALSE(Readable(*n));
  for (uint64_t t = 1; t <= 9; ++t) n->Post(t);
  EXPECT_TRUE(Readable(*n));
  std::vector<uint64_t> got = DrainAll(*n);
  EXPECT_EQ(got.size(), 9u);
  EXPECT_FALSE(Readable(*n));
}

TEST(NotifierStress, NoCompletionIsLostAcrossThreads) {
  auto n = MakeNotifier();
  constexpr int kThreads = 4, kEach = 20000;
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) n->Post(static_cast<uint64_t>(t * kEach + i));
    });
  }
  std::vector<char> seen(kThreads * kEach, 0);
  size_t total = 0;
  while (total < seen.size()) {
    pollfd p{n->fd(), POLLIN, 0};
    ASSERT_GE(poll(&p, 1, 2000), 1) << "a completion was posted but the fd never woke";
    for (uint64_t t : DrainAll(*n)) {
      ASSERT_EQ(seen[t], 0);
      seen[t] = 1;
      ++total;
    }
  }
  for (auto& p : posters) p.join();
}

// ---- ConcurrencyLimiter ----------------------------------------------------

TEST(Limiter, TryAcquireAndReleaseWeightedPermits) {
  ConcurrencyLimiter l(10);
  EXPECT_EQ(l.TryAcquire(7), Refusal::kNone);
  EXPECT_EQ(l.TryAcquire(4), Refusal::kAtCapacity);
  EXPECT_EQ(l.TryAcquire(3), Refusal::kNone);
  EXPECT_EQ(l.Stats().in_use, 10);
  EXPECT_EQ(l.Release(11).code(), Code::kInvalidArgument);  // more than held
  EXPECT_EQ(l.Stats().in_use, 10);
  EXPECT_TRUE(l.Release(10).ok());
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.granted, 2u);
  EXPECT_EQ(s.rejected, 1u);
}

TEST(Limiter, LargeWaiterAtTheHeadIsNotStarvedBySmallOnes) {
  ConcurrencyLimiter l(4);
  auto n = MakeNotifier();
  ASSERT_EQ(l.TryAcquire(3), Refusal::kNone);
  bool now;
  uint64_t big, small;
  ASSERT_TRUE(l.Enqueue(4, n, 100, &now, &big).ok());
  EXPECT_FALSE(now);
  // One permit is free, but a small request may not barge past the big one.
  EXPECT_EQ(l.TryAcquire(1), Refusal::kWaitersQueued);
  ASSERT_TRUE(l.Enqueue(1, n, 200, &now, &small).ok());
  EXPECT_FALSE(now);
  ASSERT_TRUE(l.Release(3).ok());  // the big one fits now, then it holds everything
  EXPECT_EQ(DrainAll(*n), std::vector<uint64_t>{100});
  EXPECT_TRUE(l.Claim(big));
  ASSERT_TRUE(l.Release(4).ok());
  EXPECT_EQ(DrainAll(*n), std::vector<uint64_t>{200});
  EXPECT_TRUE(l.Claim(small));
  EXPECT_FALSE(l.Claim(small));
  EXPECT_TRUE(l.Release(1).ok());
  EXPECT_EQ(l.Stats().in_use, 0);
}

TEST(Limiter, LoweringCapacityRevokesNothingAndDelaysNewGrants) {
  ConcurrencyLimiter l(8);
  ASSERT_EQ(l.TryAcquire(6), Refusal::kNone);
  l.SetCapacity(4);
  EXPECT_EQ(l.Stats().in_use, 6);  // held permits stay held
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
  ASSERT_TRUE(l.Release(3).ok());  // in use 3 of 4
  EXPECT_EQ(l.TryAcquire(1), Refusal::kNone);
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
  auto n = MakeNotifier();
  bool now;
  uint64_t t;
  ASSERT_TRUE(l.Enqueue(2, n, 7, &now, &t).ok());
  EXPECT_FALSE(now);
  l.SetCapacity(6);  // raising it grants the waiter
  EXPECT_EQ(DrainAll(*n), std::vector<uint64_t>{7});
  EXPECT_EQ(l.Stats().in_use, 6);
}

TEST(Limiter, HugeCapacitiesDoNotOverflowTheFitCheck) {
  const int64_t big = int64_t{1} << 62;
  ConcurrencyLimiter l(big);
  ASSERT_EQ(l.TryAcquire(big), Refusal::kNone);
  l.SetCapacity(INT64_MAX);
  // Room is 2^63 - 1 - 2^62 = 2^62 - 1: one short. (in_use + n overflowed
  // to a negative number and granted it.)
  EXPECT_EQ(l.TryAcquire(big), Refusal::kAtCapacity);
  EXPECT_EQ(l.TryAcquire(big - 1), Refusal::kNone);
  EXPECT_EQ(l.Stats().in_use, INT64_MAX);
}

TEST(Limiter, MoreThanTheCapacityIsAnError) {
  ConcurrencyLimiter l(2);
  bool acquired;
  EXPECT_EQ(l.Acquire(3, std::nullopt, &acquired).code(), Code::kInvalidArgument);
  auto n = MakeNotifier();
  bool now;
  uint64_t t;
  EXPECT_EQ(l.Enqueue(3, n, 1, &now, &t).code(), Code::kInvalidArgument);
  EXPECT_EQ(l.Stats().waiting, 0);
}

TEST(Limiter, BlockingAcquireTimesOutAndLeavesNothingBehind) {
  ConcurrencyLimiter l(1);
  ASSERT_EQ(l.TryAcquire(1), Refusal::kNone);
  bool acquired = true;
  ASSERT_TRUE(l.Acquire(1, ConcurrencyLimiter::Clock::now() + std::chrono::milliseconds(20), &acquired).ok());
  EXPECT_FALSE(acquired);
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.timed_out, 1u);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.in_use, 1);
}

TEST(Limiter, BlockingAcquireIsGrantedByAnotherThreadsRelease) {
  ConcurrencyLimiter l(1);
  ASSERT_EQ(l.TryAcquire(1), Refusal::kNone);
  std::thread releaser([&] {
    while (l.Stats().waiting == 0) std::this_thread::yield();
    ASSERT_TRUE(l.Release(1).ok());
  });
  bool acquired = false;
  ASSERT_TRUE(l.Acquire(1, std::nullopt, &acquired).ok());
  EXPECT_TRUE(acquired);
  releaser.join();
  EXPECT_EQ(l.Stats().in_use, 1);
}

TEST(Limiter, CancelWhileWaitingOrAfterTheGrant) {
  ConcurrencyLimiter l(1);
  auto n = MakeNotifier();
  ASSERT_EQ(l.TryAcquire(1), Refusal::kNone);
  bool now;
  uint64_t a, b;
  ASSERT_TRUE(l.Enqueue(1, n, 1, &now, &a).ok());
  ASSERT_TRUE(l.Enqueue(1, n, 2, &now, &b).ok());
  EXPECT_EQ(l.Cancel(a), CancelOutcome::kWasWaiting);
  ASSERT_TRUE(l.Release(1).ok());  // b is granted
  EXPECT_EQ(DrainAll(*n), std::vector<uint64_t>{2});
  EXPECT_EQ(l.Cancel(b), CancelOutcome::kWasGranted);  // its permit goes back
  EXPECT_EQ(l.Stats().in_use, 0);
  EXPECT_EQ(l.Cancel(b), CancelOutcome::kUnknown);
  EXPECT_FALSE(l.Claim(b));
}

TEST(Limiter, TryAcquireRefusesWhileABlockedWaiterIsQueuedEvenWithPermitsFree) {
  ConcurrencyLimiter l(2);
  ASSERT_EQ(l.TryAcquire(2), Refusal::kNone);
  std::thread waiter([&] {
    bool acquired = false;
    ASSERT_TRUE(l.Acquire(2, std::nullopt, &acquired).ok());
    EXPECT_TRUE(acquired);
  });
  while (l.Stats().waiting == 0) std::this_thread::yield();
  ASSERT_TRUE(l.Release(1).ok());  // one free, the waiter wants two
  EXPECT_EQ(l.TryAcquire(1), Refusal::kWaitersQueued);
  bool got = true;
  ASSERT_TRUE(l.Acquire(1, ConcurrencyLimiter::Clock::now(), &got).ok());
  EXPECT_FALSE(got) << "a blocking acquire took the permit the head waiter is owed";
  ASSERT_TRUE(l.Release(1).ok());
  waiter.join();
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 2);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
}

TEST(Limiter, BlockedWaitersAreGrantedInArrivalOrder) {
  ConcurrencyLimiter l(1);
  ASSERT_EQ(l.TryAcquire(1), Refusal::kNone);
  constexpr int kWaiters = 4;
  std::atomic<int> order[kWaiters];
  std::atomic<int> next{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < kWaiters; ++i) {
    ts.emplace_back([&, i] {
      bool acquired = false;
      ASSERT_TRUE(l.Acquire(1, std::nullopt, &acquired).ok());
      order[next.fetch_add(1)].store(i);
    });
    while (l.Stats().waiting != i + 1) std::this_thread::yield();  // queued in index order
  }
  for (int i = 0; i < kWaiters; ++i) {
    ASSERT_TRUE(l.Release(1).ok());  // hands the permit to the head
    while (next.load() != i + 1) std::this_thread::yield();
  }
  for (auto& t : ts) t.join();
  for (int i = 0; i < kWaiters; ++i) EXPECT_EQ(order[i].load(), i);
  EXPECT_EQ(l.Stats().in_use, 1);
}

TEST(Limiter, CancellingTicketsNobodyWasGivenLeavesBlockedThreadsWaiting) {
  ConcurrencyLimiter l(1);
  ASSERT_EQ(l.TryAcquire(1), Refusal::kNone);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    bool acquired = false;
    ASSERT_TRUE(l.Acquire(1, std::nullopt, &acquired).ok());
    EXPECT_TRUE(acquired);
    done = true;
  });
  while (l.Stats().waiting == 0) std::this_thread::yield();
  for (uint64_t t = 0; t < 16; ++t) EXPECT_EQ(l.Cancel(t), CancelOutcome::kUnknown);
  EXPECT_EQ(l.Stats().waiting, 1);
  EXPECT_FALSE(done.load());
  ASSERT_TRUE(l.Release(1).ok());
  waiter.join();
  EXPECT_EQ(l.Stats().in_use, 1);
}

TEST(Limiter, CountsStayExactAcrossTheLockFreeAndLockedPaths) {
  ConcurrencyLimiter l(4);
  ASSERT_EQ(l.TryAcquire(3), Refusal::kNone);
  // Past 2^31 the packed word cannot hold the counts: the lock owns them.
  l.SetCapacity(int64_t{1} << 40);
  ASSERT_EQ(l.TryAcquire(int64_t{1} << 39), Refusal::kNone);
  EXPECT_EQ(l.Stats().in_use, (int64_t{1} << 39) + 3);
  ASSERT_TRUE(l.Release(int64_t{1} << 39).ok());
  l.SetCapacity(4);  // back in the packed word
  EXPECT_EQ(l.TryAcquire(1), Refusal::kNone);
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
  EXPECT_EQ(l.Release(5).code(), Code::kInvalidArgument);
  l.SetCapacity(2);  // below in-use: locked until it drops under
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
  ASSERT_TRUE(l.Release(3).ok());
  EXPECT_EQ(l.TryAcquire(1), Refusal::kNone);
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 2);
  EXPECT_EQ(s.granted, 4u);
  EXPECT_EQ(s.rejected, 3u);
  Refusal why;
  EXPECT_EQ(l.TryAcquireChecked(3, &why).code(), Code::kInvalidArgument);
}

// Blocking acquires (some with short deadlines) and releases from more
// threads than the capacity: never more held than the capacity, and at the
// end nothing in use, nothing queued.
TEST(LimiterStress, BlockingAcquiresUnderContentionNeverExceedTheCapacity) {
  ConcurrencyLimiter l(3);
  constexpr int kThreads = 8, kEach = 5000;
  std::atomic<int64_t> held{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < kEach; ++i) {
        const int64_t want = 1 + static_cast<int64_t>(rng() % 2);
        std::optional<ConcurrencyLimiter::Clock::time_point> deadline;
        if (rng() % 4 == 0) deadline = ConcurrencyLimiter::Clock::now() + std::chrono::microseconds(rng() % 50);
        bool acquired = false;
        ASSERT_TRUE(l.Acquire(want, deadline, &acquired).ok());
        if (!acquired) continue;
        ASSERT_LE(held.fetch_add(want) + want, 3) << "more permits held than the capacity";
        held.fetch_sub(want);
        ASSERT_TRUE(l.Release(want).ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.waiting_permits, 0);
}

TEST(LimiterBarging, TryAcquireTakesFreePermitsPastAQueuedWaiter) {
  ConcurrencyLimiter l(2, Order::kBarging);
  ASSERT_EQ(l.TryAcquire(2), Refusal::kNone);
  std::thread waiter([&] {
    bool acquired = false;
    ASSERT_TRUE(l.Acquire(2, std::nullopt, &acquired).ok());
    EXPECT_TRUE(acquired);
  });
  while (l.Stats().waiting == 0) std::this_thread::yield();
  ASSERT_TRUE(l.Release(1).ok());
  EXPECT_EQ(l.TryAcquire(1), Refusal::kNone) << "kBarging never refuses for waiters";
  EXPECT_EQ(l.TryAcquire(1), Refusal::kAtCapacity);
  ASSERT_TRUE(l.Release(2).ok());  // now the 2-permit waiter fits
  waiter.join();
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 2);
  EXPECT_EQ(s.waiting, 0);
}

TEST(LimiterBarging, ReleaseWakesASmallWaiterBehindALargeOneThatDoesNotFit) {
  ConcurrencyLimiter l(3, Order::kBarging);
  ASSERT_EQ(l.TryAcquire(3), Refusal::kNone);
  std::atomic<bool> small_done{false};
  std::thread big([&] {
    bool acquired = false;
    ASSERT_TRUE(l.Acquire(3, ConcurrencyLimiter::Clock::now() + std::chrono::seconds(30), &acquired).ok());
    EXPECT_TRUE(acquired);
  });
  while (l.Stats().waiting != 1) std::this_thread::yield();
  std::thread small([&] {
    bool acquired = false;
    ASSERT_TRUE(l.Acquire(1, std::nullopt, &acquired).ok());
    EXPECT_TRUE(acquired);
    small_done = true;
    ASSERT_TRUE(l.Release(1).ok());
  });
  while (l.Stats().waiting != 2) std::this_thread::yield();
  ASSERT_TRUE(l.Release(1).ok());  // the lock-free release path must wake the small one
  small.join();
  EXPECT_TRUE(small_done.load());
  ASSERT_TRUE(l.Release(2).ok());  // all three free: the big one
  big.join();
  EXPECT_EQ(l.Stats().in_use, 3);
  EXPECT_EQ(l.Stats().waiting, 0);
}

TEST(LimiterBarging, AsyncTicketsAreGrantedByTheReleaseAndCancelGivesPermitsBack) {
  ConcurrencyLimiter l(1, Order::kBarging);
  auto n = MakeNotifier();
  ASSERT_EQ(l.TryAcquire(1), Refusal::kNone);
  bool now;
  uint64_t a, b;
  ASSERT_TRUE(l.Enqueue(1, n, 7, &now, &a).ok());
  ASSERT_FALSE(now);
  ASSERT_TRUE(l.Enqueue(1, n, 8, &now, &b).ok());
  ASSERT_FALSE(now);
  ASSERT_TRUE(l.Release(1).ok());  // lock-free release; a is granted from the queue
  EXPECT_EQ(DrainAll(*n), std::vector<uint64_t>{7});
  EXPECT_EQ(l.Cancel(a), CancelOutcome::kWasGranted);  // back, and on to b
  EXPECT_EQ(DrainAll(*n), std::vector<uint64_t>{8});
  EXPECT_TRUE(l.Claim(b));
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 1);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.waiting_permits, 0);
}

TEST(LimiterStress, BargingBlockingAndAsyncWaitersNeverExceedTheCapacityOrHang) {
  ConcurrencyLimiter l(3, Order::kBarging);
  auto n = MakeNotifier();
  constexpr int kThreads = 8, kEach = 4000;
  std::atomic<int64_t> held{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < kEach; ++i) {
        const int64_t want = 1 + static_cast<int64_t>(rng() % 2);
        bool holding = false;
        if (t % 2 == 0) {
          std::optional<ConcurrencyLimiter::Clock::time_point> deadline;
          if (rng() % 4 == 0) deadline = ConcurrencyLimiter::Clock::now() + std::chrono::microseconds(rng() % 50);
          ASSERT_TRUE(l.Acquire(want, deadline, &holding).ok());
        } else {
          uint64_t ticket;
          ASSERT_TRUE(l.Enqueue(want, n, 0, &holding, &ticket).ok());
          if (!holding) {
            if (rng() % 2 == 0) {
              ASSERT_NE(l.Cancel(ticket), CancelOutcome::kUnknown);
              continue;
            }
            while (!l.Claim(ticket)) std::this_thread::yield();
            holding = true;
          }
        }
        if (!holding) continue;
        ASSERT_LE(held.fetch_add(want) + want, 3) << "more permits held than the capacity";
        held.fetch_sub(want);
        ASSERT_TRUE(l.Release(want).ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.waiting_permits, 0);
  DrainAll(*n);
}

// Many async waiters, released and cancelled from several threads in random
// order: every permit is either held by exactly one claimer or returned; at
// the end nothing is in use and nothing is queued.
TEST(LimiterStress, RandomCancellationsNeverLeakOrDoubleFree) {
  ConcurrencyLimiter l(3);
  auto n = MakeNotifier();
  constexpr int kThreads = 4, kEach = 4000;
  std::atomic<int64_t> held{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < kEach; ++i) {
        const int64_t want = 1 + static_cast<int64_t>(rng() % 2);
        bool now;
        uint64_t ticket;
        ASSERT_TRUE(l.Enqueue(want, n, 0, &now, &ticket).ok());
        bool holding = now;
        if (!now) {
          // Cancel at a random moment: before, around or after the grant.
          if (rng() % 3 == 0) std::this_thread::yield();
          if (rng() % 2 == 0) {
            const CancelOutcome c = l.Cancel(ticket);
            ASSERT_NE(c, CancelOutcome::kUnknown);
            continue;
          }
          // Wait for the grant, then claim it.
          while (!l.Claim(ticket)) std::this_thread::yield();
          holding = true;
        }
        if (holding) {
          ASSERT_LE(held.fetch_add(want) + want, 3) << "more permits held than the capacity";
          held.fetch_sub(want);
          ASSERT_TRUE(l.Release(want).ok());
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  LimiterStats s = l.Stats();
  EXPECT_EQ(s.in_use, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.waiting_permits, 0);
  DrainAll(*n);
}

// ---- TokenBucket -----------------------------------------------------------

TEST(Bucket, StartsFullAndRefillsAtTheRate) {
  TokenBucket b(10, 3);  // 10 tokens/s
  const int64_t t0 = 5 * kSec;
  EXPECT_TRUE(b.Allow(3, t0));
  EXPECT_FALSE(b.Allow(1, t0));
  EXPECT_FALSE(b.Allow(1, t0 + 99 * kMs));
  EXPECT_TRUE(b.Allow(1, t0 + 100 * kMs));
  EXPECT_FALSE(b.Allow(4, t0 + 10 * kSec));  // never more than the burst
  EXPECT_TRUE(b.Allow(3, t0 + 10 * kSec));
}

TEST(Bucket, ReserveSaysHowLongToWaitAndNeverSleeps) {
  TokenBucket b(10, 1);
  const int64_t t0 = kSec;
  Reservation r1 = b.Reserve(1, t0), r2 = b.Reserve(1, t0), r3 = b.Reserve(1, t0);
  ASSERT_TRUE(r1.ok && r2.ok && r3.ok);
  EXPECT_EQ(r1.time_to_act - t0, 0);
  EXPECT_EQ(r2.time_to_act - t0, 100 * kMs);
  EXPECT_EQ(r3.time_to_act - t0, 200 * kMs);
  EXPECT_FALSE(b.Reserve(2, t0).ok);  // more than the burst: never
}

TEST(Bucket, CancellingTheLastReservationGivesItsTokensBack) {
  TokenBucket b(10, 1);
  const int64_t t0 = kSec;
  b.Reserve(1, t0);
  b.Reserve(1, t0);
  Reservation r3 = b.Reserve(1, t0);  // acts at +200ms
  b.Cancel(r3, t0);
  EXPECT_EQ(b.Reserve(1, t0).time_to_act - t0, 200 * kMs);  // the slot is free again
}

TEST(Bucket, CancellingAnEarlierReservationKeepsLaterOnesTaken) {
  TokenBucket b(10, 1);
  const int64_t t0 = kSec;
  b.Reserve(1, t0);                   // now
  Reservation r2 = b.Reserve(1, t0);  // +100ms
  b.Reserve(1, t0);                   // +200ms
  b.Cancel(r2, t0);  // one token reserved after it stays taken: nothing back
  EXPECT_EQ(b.Reserve(1, t0).time_to_act - t0, 300 * kMs);
  TokenBucket c(10, 5);
  c.Allow(5, t0);
  Reservation big = c.Reserve(3, t0);  // +300ms
  c.Reserve(1, t0);                    // +400ms
  c.Cancel(big, t0);                   // 3 - 1 = 2 tokens come back
  EXPECT_NEAR(c.Stats(t0).tokens, -4 + 2, 1e-9);
}

TEST(Bucket, CancelAfterTheTimeToActChangesNothing) {
  TokenBucket b(10, 1);
  const int64_t t0 = kSec;
  b.Reserve(1, t0);
  Reservation r = b.Reserve(1, t0);  // +100ms
  b.Cancel(r, t0 + 200 * kMs);
  EXPECT_NEAR(b.Stats(t0 + 200 * kMs).tokens, 1, 1e-9);  // refilled, not restored on top
}

TEST(Bucket, RateAndBurstChangeAtRunTimeKeepingAccruedTokens) {
  TokenBucket b(1, 10);
  const int64_t t0 = kSec;
  EXPECT_TRUE(b.Allow(10, t0));
  b.SetRate(100, t0 + kSec);  // 1 token accrued at the old rate
  EXPECT_NEAR(b.Stats(t0 + kSec).tokens, 1, 1e-9);
  EXPECT_NEAR(b.Stats(t0 + kSec + 50 * kMs).tokens, 6, 1e-9);
  b.SetBurst(2, t0 + kSec + 50 * kMs);
  EXPECT_NEAR(b.Stats(t0 + 2 * kSec).tokens, 2, 1e-9);
  EXPECT_FALSE(b.Allow(3, t0 + 2 * kSec));
}

TEST(Bucket, InfiniteRateAllowsEverythingUpToTheBurst) {
  TokenBucket b(kInfiniteRate, 5);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(b.Allow(5, kSec));
  EXPECT_EQ(b.Reserve(5, kSec).time_to_act, kSec);
}

// ---- TokenBucket at the edges of int64 time (issue 10, item 6) -------------
// Every case here overflowed int64 arithmetic (UBSan) or left the bucket in a
// state it could not leave (NaN tokens, a negative time to act).

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

TEST(BucketEdges, ReserveDueAfterInt64MaxIsRefusedAndTakesNothing) {
  TokenBucket b(10, 1);
  const Reservation r1 = b.Reserve(1, kMax - 2);
  ASSERT_TRUE(r1.ok);
  EXPECT_EQ(r1.time_to_act, kMax - 2);
  const Reservation r2 = b.Reserve(1, kMax - 2);  // due at kMax - 2 + 100 ms
  EXPECT_FALSE(r2.ok);
  EXPECT_EQ(r2.refusal, ReserveRefusal::kTooLate);
  EXPECT_EQ(b.Reserve(2, kMax - 2).refusal, ReserveRefusal::kOverBurst);
  EXPECT_NEAR(b.Stats(kMax - 2).tokens, 0, 1e-9);  // nothing taken
}

TEST(BucketEdges, TinyRateWaitLongerThanInt64NanosIsRefused) {
  TokenBucket b(1e-300, 1);  // the C ABI refuses this rate; the core must not overflow
  ASSERT_TRUE(b.Reserve(1, kSec).ok);
  EXPECT_FALSE(b.Reserve(1, kSec).ok);  // 1e309 ns away
  EXPECT_FALSE(b.Reserve(1, 0).ok);     // even at 0: INT64_MAX would not be the real time
  EXPECT_NEAR(b.Stats(kSec).tokens, 0, 1e-9);
}

TEST(BucketEdges, CheckRateRefusesRatesTooSlowForOneTokenInInt64Nanos) {
  EXPECT_TRUE(TokenBucket::CheckRate(1.1e-10).ok());  // ~288 years a token
  EXPECT_TRUE(TokenBucket::CheckRate(kInfiniteRate).ok());
  EXPECT_TRUE(TokenBucket::CheckRate(1e308).ok());
  for (double bad : {1e-10, 1e-300, 5e-324, 0.0, -1.0, -kInfiniteRate, std::nan("")}) {
    const Status s = TokenBucket::CheckRate(bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(TokenBucket::CheckRate(1e-300).message(),
            "rate (1e-300) is too slow: one token would take more than INT64_MAX ns (~292 years)");
}

TEST(BucketEdges, TimeToActOfExactlyInt64MaxIsGrantedAndCancellable) {
  TokenBucket b(10, 1);
  const int64_t t = kMax - 100 * kMs;
  ASSERT_TRUE(b.Reserve(1, t).ok);
  const Reservation r = b.Reserve(1, t);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.time_to_act, kMax);
  b.Cancel(r, t);
  EXPECT_NEAR(b.Stats(t).tokens, 0, 1e-9);  // its token came back
  EXPECT_EQ(b.Reserve(1, t).time_to_act, kMax);
  EXPECT_FALSE(b.Reserve(1, t).ok);
}

TEST(BucketEdges, TimesFromInt64MinToInt64MaxDoNotOverflow) {
  TokenBucket b(10, 3);
  ASSERT_TRUE(b.Allow(1, kMin));
  EXPECT_NEAR(b.Stats(kMin).tokens, 2, 1e-9);
  EXPECT_NEAR(b.Stats(kMax).tokens, 3, 1e-9);  // refilled over the whole range
  b.SetRate(20, kMax);
  b.SetBurst(5, kMax);
  EXPECT_NEAR(b.Stats(kMax).tokens, 3, 1e-9);
  EXPECT_TRUE(b.Allow(3, kMax));
  const Reservation r = b.Reserve(1, kMin);  // time runs backwards: nothing accrues
  ASSERT_TRUE(r.ok);
  EXPECT_GE(r.time_to_act, kMin);
}

TEST(BucketEdges, CancelAtInt64MinDoesNotOverflow) {
  TokenBucket b(10, 1);
  const Reservation first = b.Reserve(1, kMin);  // no wait: acts at kMin
  ASSERT_TRUE(first.ok);
  b.Cancel(first, kMin);  // rolling the latest time back 100 ms would pass kMin
  EXPECT_NEAR(b.Stats(kMin).tokens, 1, 1e-9);

  TokenBucket c(10, 1);
  ASSERT_TRUE(c.Reserve(1, kMin).ok);
  const Reservation pending = c.Reserve(1, kMin);  // acts at kMin + 100 ms
  ASSERT_TRUE(pending.ok);
  ASSERT_TRUE(c.Reserve(1, kMax - kSec).ok);  // the latest time is now near kMax
  c.Cancel(pending, kMin);                    // kMax - kSec - (kMin + 100 ms) overflows
  EXPECT_LE(c.Stats(kMin).tokens, 1);
}

TEST(BucketEdges, BurstAndNNearInt64Max) {
  TokenBucket b(10, kMax);
  EXPECT_TRUE(b.Allow(kMax, kSec));
  EXPECT_FALSE(b.Reserve(kMax, kSec).ok);  // 9.2e18 tokens at 10/s: 2.9e10 years
  TokenBucket fast(1e12, kMax);
  ASSERT_TRUE(fast.Reserve(kMax, kSec).ok);
  const Reservation r = fast.Reserve(kMax, kSec);  // 9.2e18 tokens at 1e12/s
  ASSERT_TRUE(r.ok);
  EXPECT_NEAR(static_cast<double>(r.time_to_act - kSec), 9.223372036854775807e15, 1e3);
  fast.Cancel(r, kSec);
  EXPECT_NEAR(fast.Stats(kSec).tokens, 0, 1e3);
}

TEST(BucketEdges, LeavingAnInfiniteRateAtTheSameInstantKeepsTheTokens) {
  TokenBucket b(10, 2);
  ASSERT_TRUE(b.Allow(2, kSec));
  b.SetRate(kInfiniteRate, kSec);
  b.SetRate(10, kSec);  // no time passed at the infinite rate: 0 * inf was NaN
  EXPECT_NEAR(b.Stats(kSec).tokens, 0, 1e-9);
  EXPECT_FALSE(b.Allow(1, kSec));
  ASSERT_TRUE(b.Allow(2, 2 * kSec));
  b.SetRate(kInfiniteRate, 2 * kSec);
  b.SetRate(10, 2 * kSec + 1);  // 1 ns at the infinite rate fills the bucket
  EXPECT_NEAR(b.Stats(2 * kSec + 1).tokens, 2, 1e-9);
}

TEST(BucketEdges, CancellingAReservationMadeAtAnInfiniteRateGivesNothingBack) {
  TokenBucket b(10, 2);
  const int64_t t = kSec + 1;
  b.SetRate(kInfiniteRate, kSec);
  const Reservation r = b.Reserve(1, t);  // takes no tokens
  ASSERT_TRUE(r.ok);
  b.SetRate(10, t);
  ASSERT_TRUE(b.Allow(2, t));
  b.Cancel(r, t);  // was 1 - 0 * inf = NaN; without the time term, a token it never took
  EXPECT_NEAR(b.Stats(t).tokens, 0, 1e-9);
  EXPECT_FALSE(b.Allow(1, t));
}

// Found by fuzz_capi: at an infinite rate, the tokens accrued since the last
// update at that same instant were 0 * inf = NaN, and a NaN level allowed
// everything once the rate was finite again.
TEST(Bucket, AnInfiniteRateAtTheInstantOfTheLastUpdateLeavesANumber) {
  TokenBucket b(10, 4);
  ASSERT_TRUE(b.Allow(1, kSec));
  b.SetRate(kInfiniteRate, kSec);
  EXPECT_EQ(b.Stats(kSec).tokens, 3);
  b.SetRate(10, kSec);
  EXPECT_EQ(b.Stats(kSec).tokens, 3);
  EXPECT_TRUE(b.Allow(3, kSec));
  EXPECT_FALSE(b.Allow(1, kSec));
}

}  // namespace
}  // namespace berth
