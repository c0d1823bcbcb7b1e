// The shared-memory limiter: one capacity across processes, foreign regions
// refused, and permits of processes killed mid-hold coming back.
#include "core/limit/shared.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace berth {
namespace {

std::string UniqueName(const char* what) {
  return std::string("test-") + what + "-" + std::to_string(getpid());
}

struct Cleanup {
  std::string name;
  ~Cleanup() { (void)SharedLimiter::Unlink(name); }
};

TEST(SharedLimiter, OneCapacityForEveryHandleAndPerProcessRelease) {
  const std::string name = UniqueName("basic");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> a, b;
  ASSERT_TRUE(SharedLimiter::Open(name, 3, true, &a).ok());
  ASSERT_TRUE(SharedLimiter::Open(name, 99, true, &b).ok());  // exists: keeps capacity 3
  Refusal why;
  ASSERT_TRUE(a->TryAcquire(2, &why).ok());
  EXPECT_EQ(why, Refusal::kNone);
  ASSERT_TRUE(b->TryAcquire(2, &why).ok());
  EXPECT_EQ(why, Refusal::kAtCapacity);
  EXPECT_EQ(b->Stats().in_use, 2);
  EXPECT_EQ(b->Stats().capacity, 3);
  EXPECT_EQ(a->Release(3).code(), Code::kInvalidArgument);  // this process holds 2
  ASSERT_TRUE(b->Release(2).ok());  // permits are the process's, not the handle's
  EXPECT_EQ(a->Stats().in_use, 0);
  EXPECT_EQ(a->TryAcquire(4, &why).code(), Code::kInvalidArgument);  // > capacity
  ASSERT_TRUE(a->SetCapacity(5).ok());
  ASSERT_TRUE(a->TryAcquire(4, &why).ok());
  EXPECT_EQ(why, Refusal::kNone);
  ASSERT_TRUE(a->Release(4).ok());
}

TEST(SharedLimiter, BlockingAcquireTimesOutAndIsWokenByARelease) {
  const std::string name = UniqueName("block");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  Refusal why;
  ASSERT_TRUE(l->TryAcquire(1, &why).ok());
  bool acquired = true;
  ASSERT_TRUE(l->Acquire(1, SharedLimiter::Clock::now() + std::chrono::milliseconds(30), &acquired).ok());
  EXPECT_FALSE(acquired);
  EXPECT_EQ(l->Stats().timed_out, 1u);
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_TRUE(l->Release(1).ok());
  });
  ASSERT_TRUE(l->Acquire(1, std::nullopt, &acquired).ok());
  EXPECT_TRUE(acquired);
  t.join();
  ASSERT_TRUE(l->Release(1).ok());
}

TEST(SharedLimiter, MissingForeignOrBadlyNamedRegionsAreRefused) {
  MiUnique<SharedLimiter> l;
  EXPECT_EQ(SharedLimiter::Open(UniqueName("absent"), 1, false, &l).code(), Code::kNotFound);
  EXPECT_EQ(SharedLimiter::Open("bad/name", 1, true, &l).code(), Code::kInvalidName);
  EXPECT_EQ(SharedLimiter::Open("", 1, true, &l).code(), Code::kInvalidName);
  // A region of the right size holding something else.
  const std::string good = UniqueName("good"), foreign = UniqueName("foreign");
  Cleanup c1{good}, c2{foreign};
  ASSERT_TRUE(SharedLimiter::Open(good, 1, true, &l).ok());
  const int gfd = shm_open(("/berth." + good).c_str(), O_RDONLY, 0);
  struct stat st {};
  ASSERT_EQ(fstat(gfd, &st), 0);
  close(gfd);
  const int fd = shm_open(("/berth." + foreign).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, st.st_size), 0);
  std::vector<char> junk(static_cast<size_t>(st.st_size), static_cast<char>(0xAB));
  ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
  close(fd);
  MiUnique<SharedLimiter> f;
  Status s = SharedLimiter::Open(foreign, 1, false, &f);
  EXPECT_EQ(s.code(), Code::kBadRegion) << s.message();
  // The wrong size is refused too.
  const int fd2 = shm_open(("/berth." + foreign).c_str(), O_RDWR, 0);
  ASSERT_EQ(ftruncate(fd2, 100), 0);
  close(fd2);
  EXPECT_EQ(SharedLimiter::Open(foreign, 1, true, &f).code(), Code::kBadRegion);
}

// Worker processes contend for a capacity of 3; the parent SIGKILLs some of
// them while they hold permits. Every worker checks, each time it holds, that
// the live workers together never hold more than the capacity; at the end
// the dead workers' permits have come back and in-use is 0.
TEST(SharedLimiterProcesses, KilledHoldersGetTheirPermitsReclaimed) {
  const std::string name = UniqueName("kill");
  Cleanup cleanup{name};
  constexpr int kWorkers = 6, kCapacity = 3, kKill = 3;
  struct Board {
    std::atomic<int> stop;
    std::atomic<int> holding[kWorkers];  // 1 while worker i holds a permit
    std::atomic<int> pid[kWorkers];
    std::atomic<int> doomed[kWorkers];  // set just before the parent kills it
  };
  void* mem = mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mem, MAP_FAILED);
  Board* board = new (mem) Board();
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, kCapacity, true, &l).ok());
  }
  std::vector<pid_t> pids;
  for (int i = 0; i < kWorkers; ++i) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 0;
      {
        MiUnique<SharedLimiter> l;
        if (!SharedLimiter::Open(name, kCapacity, false, &l).ok()) _exit(10);
        std::mt19937 rng(static_cast<unsigned>(i));
        while (board->stop.load() == 0) {
          bool got = false;
          if (!l->Acquire(1, SharedLimiter::Clock::now() + std::chrono::seconds(5), &got).ok()) _exit(11);
          if (!got) continue;
          board->holding[i].store(1);
          int live = 0;
          for (int j = 0; j < kWorkers; ++j) {
            // A killed worker stays a zombie until reaped but holds nothing
            // once dead; the parent marks it doomed before the kill.
            if (board->holding[j].load() == 1 && board->doomed[j].load() == 0) ++live;
          }
          if (live > kCapacity) rc = 12;  // more holders than the capacity
          std::this_thread::sleep_for(std::chrono::microseconds(500 + rng() % 1500));
          board->holding[i].store(0);
          if (!l->Release(1).ok()) _exit(13);
          std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
        }
      }
      _exit(rc);
    }
    board->pid[i].store(pid);
    pids.push_back(pid);
  }
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, kCapacity, false, &l).ok());
  auto watch = [&](std::chrono::milliseconds d) {
    const auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      ASSERT_LE(l->Stats().in_use, kCapacity);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  watch(std::chrono::milliseconds(200));
  std::vector<bool> killed(kWorkers, false);
  int killed_holding = 0;
  for (int k = 0; k < kKill; ++k) {
    // Kill a worker while it holds a permit, when one can be caught doing so.
    for (int tries = 0; tries < 2000; ++tries) {
      const int i = tries % kWorkers;
      if (!killed[i] && board->holding[i].load() == 1) {
        board->doomed[i].store(1);
        kill(pids[i], SIGKILL);
        killed[i] = true;
        ++killed_holding;
        break;
      }
      if (tries % kWorkers == kWorkers - 1) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    watch(std::chrono::milliseconds(100));
  }
  for (int i = 0; i < kWorkers; ++i) {
    if (killed[i]) {
      int status = 0;
      waitpid(pids[i], &status, 0);
      EXPECT_TRUE(WIFSIGNALED(status));
    }
  }
  watch(std::chrono::milliseconds(300));  // the survivors go on at full capacity
  board->stop.store(1);
  for (int i = 0; i < kWorkers; ++i) {
    if (killed[i]) continue;
    int status = 0;
    waitpid(pids[i], &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "worker " << i;
  }
  SharedLimiterStats s = l->Stats();
  EXPECT_EQ(s.in_use, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.holders, 0);
  EXPECT_GE(killed_holding, 1);
  EXPECT_GE(s.reclaimed, static_cast<uint64_t>(killed_holding));
  munmap(mem, sizeof(Board));
}

}  // namespace
}  // namespace berth

namespace berth {
namespace {

std::shared_ptr<Notifier> NewNotifier() {
  std::shared_ptr<Notifier> n;
  EXPECT_TRUE(Notifier::Make(&n).ok());
  return n;
}

std::vector<uint64_t> WaitTokens(Notifier& n, size_t want) {
  std::vector<uint64_t> got;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (got.size() < want && std::chrono::steady_clock::now() < end) {
    uint64_t buf[8];
    const size_t k = n.Drain(buf, 8);
    got.insert(got.end(), buf, buf + k);
    if (k == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return got;
}

TEST(SharedLimiterAsync, TicketsAreGrantedInOrderAndClaimed) {
  const std::string name = UniqueName("async");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 2, true, &l).ok());
  auto n = NewNotifier();
  bool now = false;
  uint64_t t0, t1, t2;
  ASSERT_TRUE(l->Enqueue(2, n, 10, &now, &t0).ok());
  EXPECT_TRUE(now);  // free: granted at once, no ticket
  ASSERT_TRUE(l->Enqueue(1, n, 11, &now, &t1).ok());
  EXPECT_FALSE(now);
  ASSERT_TRUE(l->Enqueue(1, n, 12, &now, &t2).ok());
  EXPECT_FALSE(now);
  ASSERT_TRUE(l->Release(2).ok());
  EXPECT_EQ(WaitTokens(*n, 2), (std::vector<uint64_t>{11, 12}));
  EXPECT_TRUE(l->Claim(t1));
  EXPECT_TRUE(l->Claim(t2));
  EXPECT_EQ(l->Stats().in_use, 2);
  ASSERT_TRUE(l->Release(2).ok());
}

TEST(SharedLimiterAsync, CancelInterruptsTheWaitOrGivesTheGrantBack) {
  const std::string name = UniqueName("cancel");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  auto n = NewNotifier();
  Refusal why;
  ASSERT_TRUE(l->TryAcquire(1, &why).ok());
  bool now;
  uint64_t waiting, granted;
  ASSERT_TRUE(l->Enqueue(1, n, 1, &now, &waiting).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the thread waits in the region
  EXPECT_EQ(l->Cancel(waiting), CancelOutcome::kWasWaiting);
  ASSERT_TRUE(l->Enqueue(1, n, 2, &now, &granted).ok());
  ASSERT_TRUE(l->Release(1).ok());
  EXPECT_EQ(WaitTokens(*n, 1), std::vector<uint64_t>{2});
  EXPECT_EQ(l->Cancel(granted), CancelOutcome::kWasGranted);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (l->Stats().in_use != 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(l->Stats().in_use, 0);
  EXPECT_EQ(l->Stats().waiting, 0);
}

TEST(SharedLimiterAsyncStress, RandomCancellationsNeverLeak) {
  const std::string name = UniqueName("astress");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 2, true, &l).ok());
  auto n = NewNotifier();
  std::vector<std::thread> ts;
  for (int t = 0; t < 3; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 400; ++i) {
        bool now;
        uint64_t ticket;
        ASSERT_TRUE(l->Enqueue(1, n, 0, &now, &ticket).ok());
        bool holding = now;
        if (!now) {
          if (rng() % 2 == 0) {
            if (rng() % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
            ASSERT_NE(l->Cancel(ticket), CancelOutcome::kUnknown);
            continue;
          }
          while (!l->Claim(ticket)) std::this_thread::yield();
          holding = true;
        }
        if (holding) ASSERT_TRUE(l->Release(1).ok());
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (l->Stats().in_use != 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  SharedLimiterStats s = l->Stats();
  EXPECT_EQ(s.in_use, 0);
  EXPECT_EQ(s.waiting, 0);
}

}  // namespace
}  // namespace berth
