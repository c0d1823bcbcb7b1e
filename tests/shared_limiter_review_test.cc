// Found by an adversarial review: a wait that gives up without the region's
// lock, a takeover after damage, pid reuse in a grandchild.
#include "core/limit/shared.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace berth {
namespace {

std::string Name(const char* what) { return std::string("review-") + what + "-" + std::to_string(getpid()); }
struct Cleanup {
  std::string name;
  ~Cleanup() { (void)SharedLimiter::Unlink(name); }
};
struct Raw {
  explicit Raw(const std::string& name) {
    fd = shm_open(("/berth." + name).c_str(), O_RDWR, 0);  // never closed (record-lock trap)
    size = SharedLimiter::LayoutForTesting().size;
    bytes = static_cast<unsigned char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  }
  template <class T>
  T& at(size_t off) { return *reinterpret_cast<T*>(bytes + off); }
  int fd;
  size_t size;
  unsigned char* bytes;
};

// A waiter whose Relock fails (lock held > kLockPatience by a live, stopped
// process) returns kBadRegion but leaves its waiter entry queued. The
// process is alive, so nobody reclaims it: it stays the head forever and
// every later acquire of every process is refused / times out.
TEST(SharedLimiterReview, AWaitThatGivesUpWithoutTheLockLeavesNoTicketQueued) {
  const std::string name = Name("leak");
  Cleanup c{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  Refusal why;
  ASSERT_TRUE(l->TryAcquire(1, &why).ok());
  ASSERT_EQ(why, Refusal::kNone);
  Status waiter_status;
  std::thread t([&] {
    bool got = false;
    waiter_status = l->Acquire(1, SharedLimiter::Clock::now() + std::chrono::seconds(20), &got);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // queued and asleep
  Raw raw(name);
  const auto layout = SharedLimiter::LayoutForTesting();
  const uint32_t epoch = raw.at<uint32_t>(layout.slots);  // this process: slot 0
  // Stands for a process SIGSTOPped (debugger, cgroup freezer, ^Z) while
  // holding the region's lock for more than kLockPatience.
  raw.at<std::atomic<uint64_t>>(layout.lock_owner).store(uint64_t{epoch} << 32 | 1);
  t.join();
  EXPECT_EQ(waiter_status.code(), Code::kBadRegion) << waiter_status.message();
  raw.at<std::atomic<uint64_t>>(layout.lock_owner).store(0);  // the stopped process resumes
  ASSERT_TRUE(l->Release(1).ok());
  SharedLimiterStats s;
  ASSERT_TRUE(l->Stats(&s).ok());
  std::printf("after recovery: in_use=%lld waiting=%lld\n", (long long)s.in_use, (long long)s.waiting);
  EXPECT_EQ(s.waiting, 0);  // nobody waits any more
  ASSERT_TRUE(l->TryAcquire(1, &why).ok());
  EXPECT_EQ(why, Refusal::kNone) << "refusal " << static_cast<int>(why) << " with 0 of 1 in use";
}

// Takeover from a (claimed) dead owner reseals whatever the slots hold, so
// a live process's permits written down to 0 become sealed truth: a grant
// beyond the capacity to live processes.
TEST(SharedLimiterReview, ATakeoverNeverResealsALiveProcessesDamagedSlot) {
  const std::string name = Name("launder");
  Cleanup c{name};
  MiUnique<SharedLimiter> l;
  ASSERT_TRUE(SharedLimiter::Open(name, 2, true, &l).ok());
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  const pid_t child = fork();
  if (child == 0) {
    MiUnique<SharedLimiter> cl;
    if (!SharedLimiter::Open(name, 2, false, &cl).ok()) _exit(2);
    Refusal w;
    if (!cl->TryAcquire(2, &w).ok() || w != Refusal::kNone) _exit(3);
    char b = 1;
    (void)!write(done[1], &b, 1);
    (void)!read(go[0], &b, 1);  // holds 2 of 2 until told
    _exit(0);
  }
  char b;
  ASSERT_EQ(read(done[0], &b, 1), 1);
  Raw raw(name);
  const auto layout = SharedLimiter::LayoutForTesting();
  // The child took slot 1. One stray 8-byte write to its permits (no check
  // word), plus an owner word naming a slot that is not alive.
  raw.at<int64_t>(layout.slots + 1 * layout.slot_size + 8) = 0;
  raw.at<std::atomic<uint64_t>>(layout.lock_owner).store(uint64_t{777} << 32 | 200);
  Refusal why = Refusal::kAtCapacity;
  const Status st = l->TryAcquire(2, &why);
  std::printf("parent TryAcquire(2) with the child holding 2 of 2: %s refusal=%d\n",
              st.ok() ? "ok" : st.message().c_str(), static_cast<int>(why));
  EXPECT_FALSE(st.ok() && why == Refusal::kNone) << "over-grant: 4 permits held of capacity 2";
  (void)!write(go[1], &b, 1);
  int status = 0;
  waitpid(child, &status, 0);
}

// Attachment::pid / the Async pid / the handle table's pid compare pids.
// P opens, forks C, exits; C forks G, which gets P's pid (reuse). G then
// believes it is P: it uses P's slot without holding its byte lock, so a
// third process reclaims G's permits while G still holds them.
TEST(SharedLimiterReview, AGrandchildWithItsDeadGrandparentsPidTakesASlotOfItsOwn) {
  const std::string name = Name("pidreuse");
  Cleanup c{name};
  {
    MiUnique<SharedLimiter> l;
    ASSERT_TRUE(SharedLimiter::Open(name, 1, true, &l).ok());
  }
  // Shared result words.
  auto* res = static_cast<std::atomic<int>*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  res[0] = -1; res[1] = -1; res[2] = -1;
  const pid_t outer = fork();
  if (outer == 0) {
    if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(77);
    const pid_t init = fork();  // pid 1 of the namespace
    if (init == 0) {
      if (mount("proc", "/proc", "proc", 0, nullptr) != 0) _exit(76);
      int p2c[2];
      if (pipe(p2c) != 0) _exit(75);
      const pid_t P = fork();
      if (P == 0) {  // P
        MiUnique<SharedLimiter> l;
        if (!SharedLimiter::Open(name, 1, false, &l).ok()) _exit(2);
        const pid_t C = fork();
        if (C == 0) {  // C: never uses the handle
          char b;
          (void)!read(p2c[0], &b, 1);  // until P is gone
          const pid_t mypid_p = getpid() - 1;  // P's pid
          FILE* f = fopen("/proc/sys/kernel/ns_last_pid", "w");
          if (f == nullptr) _exit(74);
          std::fprintf(f, "%d", mypid_p - 1);
          std::fclose(f);
          const pid_t G = fork();
          if (G == 0) {
            res[0] = getpid() == mypid_p ? 1 : 0;  // G has P's pid
            Refusal w;
            const Status s = l->TryAcquire(1, &w);
            res[1] = s.ok() && w == Refusal::kNone ? 1 : 0;  // G holds the one permit
            std::this_thread::sleep_for(std::chrono::seconds(2));
            _exit(0);
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(300));
          // A third process: is the permit G holds still held?
          const pid_t Q = fork();
          if (Q == 0) {
            MiUnique<SharedLimiter> q;
            if (!SharedLimiter::Open(name, 1, false, &q).ok()) _exit(3);
            Refusal w;
            const Status s = q->TryAcquire(1, &w);
            res[2] = s.ok() && w == Refusal::kNone ? 1 : 0;  // 1: over-grant
            _exit(0);
          }
          waitpid(Q, nullptr, 0);
          waitpid(G, nullptr, 0);
          _exit(0);
        }
        _exit(0);  // P exits (C inherits l)
      }
      waitpid(P, nullptr, 0);
      (void)!write(p2c[1], "x", 1);
      while (wait(nullptr) > 0) {}
      _exit(0);
    }
    int st = 0;
    waitpid(init, &st, 0);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 99);
  }
  int st = 0;
  waitpid(outer, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 77) GTEST_SKIP() << "no namespaces";
  std::printf("G has P's pid: %d, G granted: %d, Q granted while G holds: %d\n", res[0].load(), res[1].load(),
              res[2].load());
  ASSERT_EQ(res[0], 1) << "pid reuse not arranged";
  EXPECT_EQ(res[1], 1);
  EXPECT_EQ(res[2], 0) << "over-grant: G and Q both hold the 1 permit";
}

}  // namespace
}  // namespace berth
