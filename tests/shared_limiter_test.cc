// The shared-memory limiter: one capacity across processes, foreign regions
// refused, and permits of processes killed mid-hold coming back.
#include "core/limit/shared.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
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

SharedLimiterStats StatsOf(SharedLimiter& l) {
  SharedLimiterStats s;
  const Status st = l.Stats(&s);
  EXPECT_TRUE(st.ok()) << st.message();
  return s;
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
  EXPECT_EQ(StatsOf(*b).in_use, 2);
  EXPECT_EQ(StatsOf(*b).capacity, 3);
  EXPECT_EQ(a->Release(3).code(), Code::kInvalidArgument);  // this process holds 2
  ASSERT_TRUE(b->Release(2).ok());  // permits are the process's, not the handle's
  EXPECT_EQ(StatsOf(*a).in_use, 0);
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
  EXPECT_EQ(StatsOf(*l).timed_out, 1u);
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
          // The parent dooms a worker only while it holds (2 replaces 1);
          // a doomed worker keeps its permit until the SIGKILL lands.
          if (board->holding[i].exchange(0) == 2) pause();
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
      ASSERT_LE(StatsOf(*l).in_use, kCapacity);
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
      int holding = 1;
      if (!killed[i] && board->holding[i].compare_exchange_strong(holding, 2)) {
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
  SharedLimiterStats s = StatsOf(*l);
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
  EXPECT_EQ(StatsOf(*l).in_use, 2);
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
  while (StatsOf(*l).in_use != 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ(StatsOf(*l).in_use, 0);
  EXPECT_EQ(StatsOf(*l).waiting, 0);
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
        if (holding) {
          ASSERT_TRUE(l->Release(1).ok());
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (StatsOf(*l).in_use != 0 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  SharedLimiterStats s = StatsOf(*l);
  EXPECT_EQ(s.in_use, 0);
  EXPECT_EQ(s.waiting, 0);
}

}  // namespace
}  // namespace berth

// ---------------------------------------------------------------------------
// Process models and regions Berth did not write (issue 10, items 3 to 5).
// ---------------------------------------------------------------------------

namespace berth {
namespace {

// The region's bytes, mapped as a process other than Berth would.
struct RawRegion {
  explicit RawRegion(const std::string& name) {
    const int fd = shm_open(("/berth." + name).c_str(), O_RDWR, 0);
    EXPECT_GE(fd, 0);
    size = SharedLimiter::LayoutForTesting().size;
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    EXPECT_NE(p, MAP_FAILED);
    // Not closed here: a test process holding slot locks on this file would
    // drop them (POSIX record locks), which is the documented trap.
    fds.push_back(fd);
    bytes = static_cast<unsigned char*>(p);
  }
  ~RawRegion() { munmap(bytes, size); }
  template <class T>
  T& at(size_t off) {
    return *reinterpret_cast<T*>(bytes + off);
  }
  unsigned char* bytes;
  size_t size;
  static inline std::vector<int> fds;  // kept open for the process's life
};

// Runs fn in a grandchild that is pid 1 of a new pid namespace, with its own
// mount namespace where /proc is an empty tmpfs: a container of a pod that
// shares /dev/shm but neither pids nor /proc. The child's exit status is
// the grandchild's. {-1, -1} if namespaces are not available here.
struct Container {
  pid_t child;  // what to wait for
  pid_t init;   // the grandchild, as this namespace sees it: what to kill
};

template <class Fn>
Container InContainer(Fn fn) {
  int ready[2];
  if (pipe(ready) != 0) return {-1, -1};
  const pid_t child = fork();
  if (child < 0) return {-1, -1};
  if (child == 0) {
    close(ready[0]);
    pid_t inner = -1;
    if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount("none", "/proc", "tmpfs", 0, nullptr) != 0) {
      (void)!write(ready[1], &inner, sizeof inner);
      _exit(77);
    }
    inner = fork();
    if (inner == 0) {
      close(ready[1]);
      _exit(getpid() == 1 ? fn() : 78);
    }
    (void)!write(ready[1], &inner, sizeof inner);
    close(ready[1]);
    int status = 0;
    waitpid(inner, &status, 0);
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  close(ready[1]);
  pid_t inner = -1;
  const bool started = read(ready[0], &inner, sizeof inner) == sizeof inner && inner > 0;
  close(ready[0]);
  if (!started) {
    int status = 0;
    waitpid(child, &status, 0);
    return {-1, -1};
  }
  return {child, inner};
}

int ExitCode(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Board {
  std::atomic<int> holding;   // processes holding the one permit right now
  std::atomic<int> overlaps;  // times two held it at once
  std::atomic<int> stop;
  std::atomic<int> held;      // the doomed container holds its permit
};

Board* NewBoard() {
  void* mem = mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return new (mem) Board();
}

// Two containers, both pid 1, no /proc, capacity 1: never both inside.
TEST(SharedLimiterNamespaces, TwoPid1ContainersWithoutProcNeverShareCapacityOne) {
  const std::string name = UniqueName("pidns");
  Cleanup cleanup{name};
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  }
  Board* board = NewBoard();
  auto worker = [&]() -> int {
    MiUnique<SharedLimiter> l;
    if (!SharedLimiter::Open(name, 1, false, &l).ok()) return 10;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(600);
    int rounds = 0;
    while (std::chrono::steady_clock::now() < end) {
      bool got = false;
      if (!l->Acquire(1, SharedLimiter::Clock::now() + std::chrono::seconds(5), &got).ok() || !got) return 11;
      if (board->holding.fetch_add(1) != 0) board->overlaps.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      board->holding.fetch_sub(1);
      if (!l->Release(1).ok()) return 12;
      ++rounds;
    }
    return rounds > 10 ? 0 : 13;
  };
  const Container a = InContainer(worker);
  if (a.child < 0) GTEST_SKIP() << "no pid/mount namespaces here (needs CAP_SYS_ADMIN)";
  const Container b = InContainer(worker);
  ASSERT_GT(b.child, 0);
  EXPECT_EQ(ExitCode(a.child), 0);
  EXPECT_EQ(ExitCode(b.child), 0);
  EXPECT_EQ(board->overlaps.load(), 0) << "capacity 1 was granted to two live processes";
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 1, false, &l).ok());
  EXPECT_EQ(StatsOf(*l).in_use, 0);
  EXPECT_EQ(StatsOf(*l).reclaimed, 0u);  // nobody was taken for dead
}

// A container (pid 1) dies holding the permit, possibly inside the region's
// lock; the next container is pid 1 as well. The dead one's permit comes
// back and nothing hangs.
TEST(SharedLimiterNamespaces, APid1HolderThatDiesIsReclaimedByTheNextPid1) {
  const std::string name = UniqueName("pid1");
  Cleanup cleanup{name};
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  }
  Board* board = NewBoard();
  for (int round = 0; round < 3; ++round) {
    board->held.store(0);
    const Container doomed = InContainer([&]() -> int {
      MiUnique<SharedLimiter> l;
      if (!SharedLimiter::Open(name, 1, false, &l).ok()) return 10;
      bool got = false;
      if (!l->Acquire(1, SharedLimiter::Clock::now() + std::chrono::seconds(5), &got).ok() || !got) return 11;
      board->held.store(1);
      // Busy in the region (inside its lock much of the time) until killed;
      // bounded, so a test that fails before the kill leaves nothing running.
      Refusal why;
      const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (std::chrono::steady_clock::now() < end) (void)l->TryAcquire(1, &why);
      return 20;
    });
    if (doomed.child < 0) GTEST_SKIP() << "no pid/mount namespaces here (needs CAP_SYS_ADMIN)";
    while (board->held.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20 * round));
    kill(doomed.init, SIGKILL);
    EXPECT_EQ(ExitCode(doomed.child), 128 + SIGKILL);
    const Container next = InContainer([&]() -> int {
      MiUnique<SharedLimiter> l;
      if (!SharedLimiter::Open(name, 1, false, &l).ok()) return 10;
      bool got = false;
      if (!l->Acquire(1, SharedLimiter::Clock::now() + std::chrono::seconds(10), &got).ok()) return 11;
      if (!got) return 12;  // the dead pid 1's permit never came back
      return l->Release(1).ok() ? 0 : 13;
    });
    ASSERT_GT(next.child, 0);
    EXPECT_EQ(ExitCode(next.child), 0) << "round " << round;
  }
}

// The same without namespaces: a reused pid or not, a killed holder's slot
// lock is gone, so its permits return.
TEST(SharedLimiterProcesses, ForkedChildStartsWithNoPermitsAndItsOwnSlot) {
  const std::string name = UniqueName("forkslot");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 2, true, &l).ok());
  Refusal why;
  ASSERT_TRUE(l->TryAcquire(1, &why).ok());
  ASSERT_EQ(why, Refusal::kNone);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The inherited handle works; the parent's permit is not the child's.
    if (l->Release(1).code() != Code::kInvalidArgument) _exit(10);
    Refusal w;
    if (!l->TryAcquire(1, &w).ok() || w != Refusal::kNone) _exit(11);
    if (!l->TryAcquire(1, &w).ok() || w != Refusal::kAtCapacity) _exit(12);
    SharedLimiterStats s;
    if (!l->Stats(&s).ok() || s.in_use != 2 || s.holders != 2) _exit(13);
    _exit(0);  // dies holding its permit: it comes back
  }
  EXPECT_EQ(ExitCode(child), 0);
  SharedLimiterStats s = StatsOf(*l);
  EXPECT_EQ(s.in_use, 1);  // the child's permit was reclaimed, the parent's stays
  EXPECT_EQ(s.reclaimed, 1u);
  ASSERT_TRUE(l->Release(1).ok());
}

TEST(SharedLimiter, ClosingTheLastHandleGivesBackWhatTheProcessHolds) {
  const std::string name = UniqueName("lastclose");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> a, b, watcher;
  ASSERT_TRUE(SharedLimiter::Open(name, 3, true, &a).ok());
  ASSERT_TRUE(SharedLimiter::Open(name, 3, false, &b).ok());
  Refusal why;
  ASSERT_TRUE(a->TryAcquire(2, &why).ok());
  a.reset();  // b is still open: the process keeps its permits
  EXPECT_EQ(StatsOf(*b).in_use, 2);
  b.reset();
  const pid_t child = fork();  // look from another process, which has none
  if (child == 0) {
    MiUnique<SharedLimiter> c;
    SharedLimiterStats s;
    _exit(SharedLimiter::Open(name, 3, false, &c).ok() && c->Stats(&s).ok() && s.in_use == 0 ? 0 : 1);
  }
  EXPECT_EQ(ExitCode(child), 0);
}

// ---- regions another user could touch ----

TEST(SharedLimiterTrust, ARegionOfAnotherUserIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to make a region owned by another uid";
  const std::string name = UniqueName("foreignuid");
  Cleanup cleanup{name};
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  }
  const int fd = shm_open(("/berth." + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fchown(fd, 65534, 65534), 0);
  ASSERT_EQ(fchmod(fd, 0666), 0);
  close(fd);
  MiUnique<SharedLimiter> l;
  for (bool create : {false, true}) {
    const Status s = SharedLimiter::Open(name, 8, create, &l);
    EXPECT_EQ(s.code(), Code::kBadRegion);
    EXPECT_NE(s.message().find("belongs to uid 65534"), std::string::npos) << s.message();
  }
}

TEST(SharedLimiterTrust, ARegionWritableByGroupOrOthersIsRefused) {
  const std::string name = UniqueName("modes");
  Cleanup cleanup{name};
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  }
  const int fd = shm_open(("/berth." + name).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  for (mode_t mode : {0666, 0620, 0602, 0660}) {
    ASSERT_EQ(fchmod(fd, mode), 0);
    MiUnique<SharedLimiter> l;
    const Status s = SharedLimiter::Open(name, 1, false, &l);
    EXPECT_EQ(s.code(), Code::kBadRegion) << std::oct << mode;
    EXPECT_NE(s.message().find("writable by group or others"), std::string::npos) << s.message();
  }
  ASSERT_EQ(fchmod(fd, 0644), 0);  // readable is fine
  MiUnique<SharedLimiter> l;
  EXPECT_TRUE(SharedLimiter::Open(name, 1, false, &l).ok());
  close(fd);
}

TEST(SharedLimiterTrust, ALockWordNamingALiveOwnerFailsAfterThePatienceNotForever) {
  const std::string name = UniqueName("stucklock");
  Cleanup cleanup{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 8, true, &l).ok());
  RawRegion raw(name);
  const auto layout = SharedLimiter::LayoutForTesting();
  // The owner word names this very process's slot and epoch (alive, and
  // never going to unlock): what a same-user writer could do.
  const uint32_t epoch = raw.at<uint32_t>(layout.slots);  // this process took slot 0
  raw.at<std::atomic<uint64_t>>(layout.lock_owner).store(uint64_t{epoch} << 32 | 1);
  const auto start = std::chrono::steady_clock::now();
  SharedLimiterStats s;
  const Status st = l->Stats(&s);
  EXPECT_EQ(st.code(), Code::kBadRegion);
  EXPECT_NE(st.message().find("held for over"), std::string::npos) << st.message();
  EXPECT_GE(std::chrono::steady_clock::now() - start, kLockPatience);
  raw.at<std::atomic<uint64_t>>(layout.lock_owner).store(0);
  EXPECT_TRUE(l->Stats(&s).ok());
}

// ---- damaged regions ----

// Every call on a region whose bytes were overwritten answers kBadRegion;
// nothing is granted beyond the capacity it had.
TEST(SharedLimiterDamage, RandomBytesInAnOpenRegionAreRefusedNeverUnlimited) {
  const auto layout = SharedLimiter::LayoutForTesting();
  std::mt19937_64 rng(42);
  for (int trial = 0; trial < 40; ++trial) {
    const std::string name = UniqueName("damage") + "-" + std::to_string(trial);
    Cleanup cleanup{name};
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 4, true, &l).ok());
    Refusal why;
    ASSERT_TRUE(l->TryAcquire(1, &why).ok());
    RawRegion raw(name);
    // Overwrite a random stretch of the region (the lock word excepted: a
    // random owner is taken over, then the checks speak), or all of it.
    const size_t from = trial % 4 == 0 ? 0 : rng() % layout.size;
    const size_t len = trial % 4 == 0 ? layout.size : 8 + rng() % 64;
    for (size_t i = from; i < std::min(layout.size, from + len); ++i) {
      if (i >= layout.lock_owner && i < layout.lock_owner + 8) continue;
      raw.bytes[i] = static_cast<unsigned char>(rng());
    }
    SharedLimiterStats s;
    const Status st = l->Stats(&s);
    if (st.ok()) {
      // The stretch missed everything that is checked (padding, statistics,
      // free waiter slots' bytes count too); the limits must be intact.
      EXPECT_EQ(s.capacity, 4) << trial;
      EXPECT_EQ(s.in_use, 1) << trial;
      continue;
    }
    EXPECT_EQ(st.code(), Code::kBadRegion) << trial << ": " << st.message();
    // And so is everything else; nothing is granted.
    bool got = true;
    EXPECT_EQ(l->TryAcquire(1, &why).code(), Code::kBadRegion) << trial;
    EXPECT_EQ(l->Acquire(1, SharedLimiter::Clock::now(), &got).code(), Code::kBadRegion) << trial;
    EXPECT_EQ(l->Release(1).code(), Code::kBadRegion) << trial;
    EXPECT_EQ(l->SetCapacity(5).code(), Code::kBadRegion) << trial;
    MiUnique<SharedLimiter> again;
    EXPECT_EQ(SharedLimiter::Open(name, 4, false, &again).code(), Code::kBadRegion) << trial;
  }
}

TEST(SharedLimiterDamage, CountsOutsideTheirRangeAreRefusedOnOpen) {
  const auto layout = SharedLimiter::LayoutForTesting();
  const std::string name = UniqueName("ranges");
  Cleanup cleanup{name};
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 4, true, &l).ok());
  }
  RawRegion raw(name);
  raw.at<int64_t>(layout.in_use) = -5;  // a valid header, a negative in-use
  MiUnique<SharedLimiter> l;
  EXPECT_EQ(SharedLimiter::Open(name, 4, false, &l).code(), Code::kBadRegion);
  raw.at<int64_t>(layout.in_use) = INT64_MIN + 1;
  raw.at<int64_t>(layout.capacity) = INT64_MAX;
  EXPECT_EQ(SharedLimiter::Open(name, 4, false, &l).code(), Code::kBadRegion);
}

}  // namespace
}  // namespace berth
