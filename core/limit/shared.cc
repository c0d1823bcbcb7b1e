#include "core/limit/shared.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <new>
#include <mutex>
#include <thread>

namespace berth {

namespace {

constexpr uint64_t kMagic = 0x4C485348'54524542ull;  // "BERTHSHL"
constexpr uint32_t kLayoutVersion = 2;
constexpr auto kReclaimEvery = std::chrono::milliseconds(50);

struct Holder {
  int32_t pid;  // 0: free
  uint32_t reserved;
  uint64_t start_time;  // /proc/<pid>/stat field 22: tells a reused pid apart
  int64_t permits;
};

struct Waiter {
  uint64_t ticket;  // 0: free; smaller is earlier
  int32_t pid;
  uint32_t reserved;
  uint64_t start_time;
  int64_t n;
};

std::string RegionName(std::string_view name) { return "/berth." + std::string(name); }

Status CheckSharedName(std::string_view name) {
  if (name.empty() || name.size() > kMaxSharedNameLen) {
    return {Code::kInvalidName, "shared limiter name must be 1 to 200 bytes"};
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return {Code::kInvalidName, "shared limiter name may hold only [A-Za-z0-9._-]"};
  }
  return {};
}

// Start time of a process (clock ticks since boot) and whether it is a live
// process, not a zombie. nullopt if it does not exist.
struct ProcInfo {
  uint64_t start_time;
  bool zombie;
};

std::optional<ProcInfo> ReadProc(int32_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // parse from the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return std::nullopt;
  p += 2;
  const char state = *p;
  // Fields after comm: 3 state, 4 ppid, ... 22 starttime.
  int field = 3;
  while (*p != '\0' && field < 22) {
    if (*p++ == ' ') ++field;
  }
  if (field != 22) return std::nullopt;
  return ProcInfo{std::strtoull(p, nullptr, 10), state == 'Z' || state == 'X'};
}

// getpid() is a real system call (glibc stopped caching it); every
// operation needs it, so it is cached and refreshed in forked children.
std::atomic<int32_t> g_pid{0};
std::once_flag g_pid_once;

int32_t SelfPid() {
  std::call_once(g_pid_once, [] {
    g_pid.store(getpid());
    pthread_atfork(nullptr, nullptr, [] { g_pid.store(getpid()); });
  });
  return g_pid.load(std::memory_order_relaxed);
}

uint64_t SelfStartTime() {
  // Cached per pid: a forked child has its own.
  static thread_local int32_t cached_pid = 0;
  static thread_local uint64_t cached = 0;
  const int32_t pid = SelfPid();
  if (pid != cached_pid) {
    std::optional<ProcInfo> info = ReadProc(pid);
    cached = info ? info->start_time : 0;
    cached_pid = pid;
  }
  return cached;
}

bool Alive(int32_t pid, uint64_t start_time) {
  if (pid == SelfPid()) return true;
  std::optional<ProcInfo> info = ReadProc(pid);
  return info && !info->zombie && info->start_time == start_time;
}

long Futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* timeout) {
  // Not FUTEX_PRIVATE_FLAG: waiters and wakers are in different processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, timeout, nullptr, 0);
}

}  // namespace

// The region's lock: robust like a PTHREAD_MUTEX_ROBUST mutex (a process
// that dies holding it does not wedge the others), but cheap: one CAS to
// lock and one store to unlock, a short spin before sleeping on a shared
// futex, and a syscall on unlock only when someone sleeps. The owner word
// names the holder by pid and start time; a sleeper that wakes (at least
// every 10 ms) to find the owner dead takes the lock over, and the caller
// recounts. (The robust pthread mutex maintained a per-thread robust list in
// the shared line on every lock and unlock: ~10x the in-process cost.)
struct RegionMutex {
  std::atomic<uint64_t> owner;     // 0 free, else pid << 32 | start time low bits
  std::atomic<uint32_t> sleepers;
  std::atomic<uint32_t> wakeups;   // the futex word sleepers wait on
};

struct SharedLimiter::Region {
  uint64_t magic;
  uint32_t version;
  uint32_t size;
  std::atomic<uint32_t> ready;  // the creator sets it last
  std::atomic<uint32_t> wake;   // bumped on every change waiters care about
  uint32_t queued;              // queued waiters; may run high after a crash
                                // (costs a scan or a wake, never a grant) and
                                // is recounted whenever dead ones are reclaimed
  RegionMutex mu;
  int64_t capacity;
  int64_t in_use;               // = sum of live holders' permits; recounted
                                // when a process died holding the mutex
  uint64_t granted, rejected, timed_out, reclaimed;
  uint64_t next_ticket;
  Holder holders[kSharedHolders];
  Waiter waiters[kSharedWaiters];
};

namespace {

using Region = SharedLimiter::Region;

// The counters kept beside the slots (in-use, queued) can only disagree
// with the slots if a process died between two stores, which it can only do
// holding the lock: whoever takes the lock over from it recounts.
void Recount(Region* r) {
  int64_t in_use = 0;
  for (const Holder& h : r->holders) in_use += h.pid != 0 ? h.permits : 0;
  uint32_t queued = 0;
  for (const Waiter& w : r->waiters) queued += w.ticket != 0 ? 1 : 0;
  r->in_use = in_use;
  r->queued = queued;
}

uint64_t SelfTag() {
  return static_cast<uint64_t>(static_cast<uint32_t>(SelfPid())) << 32 |
         (SelfStartTime() & 0xFFFFFFFFu);
}

bool TagAlive(uint64_t tag) {
  const auto pid = static_cast<int32_t>(tag >> 32);
  if (pid == SelfPid()) return true;
  std::optional<ProcInfo> info = ReadProc(pid);
  return info && !info->zombie && (info->start_time & 0xFFFFFFFFu) == (tag & 0xFFFFFFFFu);
}

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Returns true if the lock was taken over from a dead owner.
bool LockRegion(RegionMutex* m) {
  const uint64_t me = SelfTag();
  for (int spin = 0;; ++spin) {
    uint64_t cur = m->owner.load(std::memory_order_relaxed);
    if (cur == 0 && m->owner.compare_exchange_weak(cur, me, std::memory_order_acquire)) return false;
    if (spin < 200) {
      Pause();
      continue;
    }
    if (cur != 0 && !TagAlive(cur)) {
      if (m->owner.compare_exchange_strong(cur, me, std::memory_order_acquire)) return true;
      continue;
    }
    // Announce, then re-check before sleeping: an unlock either sees us and
    // wakes, or we see it free.
    m->sleepers.fetch_add(1, std::memory_order_seq_cst);
    const uint32_t seen = m->wakeups.load(std::memory_order_seq_cst);
    if (m->owner.load(std::memory_order_seq_cst) != 0) {
      const timespec ts{0, 10'000'000};  // dead owners never unlock: look again in 10 ms
      Futex(&m->wakeups, FUTEX_WAIT, seen, &ts);
    }
    m->sleepers.fetch_sub(1, std::memory_order_relaxed);
    spin = 0;
  }
}

void UnlockRegion(RegionMutex* m) {
  m->owner.store(0, std::memory_order_seq_cst);
  if (m->sleepers.load(std::memory_order_seq_cst) != 0) {
    m->wakeups.fetch_add(1, std::memory_order_seq_cst);
    Futex(&m->wakeups, FUTEX_WAKE, 1, nullptr);
  }
}

// Holds the region's lock; a previous owner that died is forgiven and the
// counts are recounted.
class RegionLock {
 public:
  explicit RegionLock(Region* r) : r_(r) { Relock(); }
  ~RegionLock() { UnlockRegion(&r_->mu); }
  void Unlock() { UnlockRegion(&r_->mu); }
  void Relock() {
    if (LockRegion(&r_->mu)) Recount(r_);
  }

 private:
  Region* r_;
};

int64_t InUse(const Region* r) { return r->in_use; }

// Frees the slots of dead processes, giving their permits back.
bool Reclaim(Region* r) {
  bool changed = false;
  for (Holder& h : r->holders) {
    if (h.pid != 0 && !Alive(h.pid, h.start_time)) {
      r->reclaimed += static_cast<uint64_t>(h.permits);
      r->in_use -= h.permits;
      h.pid = 0;
      h.permits = 0;
      changed = true;
    }
  }
  uint32_t waiting = 0;
  for (Waiter& w : r->waiters) {
    if (w.ticket != 0 && !Alive(w.pid, w.start_time)) {
      w.ticket = 0;
      changed = true;
    }
    waiting += w.ticket != 0 ? 1 : 0;
  }
  r->queued = waiting;
  return changed;
}

Holder* OwnSlotScan(Region* r, bool allocate, int32_t pid, uint64_t start) {
  Holder* free_slot = nullptr;
  for (Holder& h : r->holders) {
    if (h.pid == pid && h.start_time == start) return &h;
    if (h.pid == 0 && free_slot == nullptr) free_slot = &h;
  }
  if (!allocate || free_slot == nullptr) return nullptr;
  free_slot->start_time = start;
  free_slot->permits = 0;
  free_slot->pid = pid;
  return free_slot;
}

// This process's holder slot; `hint` remembers where it was last time.
Holder* OwnSlot(Region* r, bool allocate, int* hint) {
  const int32_t pid = SelfPid();
  const uint64_t start = SelfStartTime();
  if (*hint >= 0 && r->holders[*hint].pid == pid && r->holders[*hint].start_time == start) {
    return &r->holders[*hint];
  }
  Holder* found = OwnSlotScan(r, allocate, pid, start);
  if (found != nullptr) *hint = static_cast<int>(found - r->holders);
  return found;
}


// The earliest live waiter's ticket, 0 if none.
uint64_t HeadTicket(const Region* r) {
  if (r->queued == 0) return 0;
  uint64_t head = 0;
  for (const Waiter& w : r->waiters) {
    if (w.ticket != 0 && (head == 0 || w.ticket < head)) head = w.ticket;
  }
  return head;
}

int64_t Waiting(const Region* r) {
  int64_t n = 0;
  for (const Waiter& w : r->waiters) n += w.ticket != 0 ? 1 : 0;
  return n;
}

void WakeAll(Region* r) {
  // Waiters read `wake` under the lock before sleeping, so with none queued
  // there is nobody to tell: skip even the shared-line write.
  if (r->queued == 0) return;
  r->wake.fetch_add(1, std::memory_order_release);
  Futex(&r->wake, FUTEX_WAKE, INT_MAX, nullptr);
}

// Grants n to this process if it fits; false if it does not, or if no holder
// slot is free (then the caller waits like for permits).
bool GrantLocked(Region* r, int64_t n, int* hint) {
  if (n > r->capacity - InUse(r)) return false;  // no overflow near INT64_MAX
  Holder* h = OwnSlot(r, true, hint);
  if (h == nullptr && Reclaim(r)) h = OwnSlot(r, true, hint);  // slots of dead processes
  if (h == nullptr) return false;
  h->permits += n;
  r->in_use += n;
  ++r->granted;
  return true;
}

// A handle's cached slot index, read at the start of a call and written
// back at the end (threads share the handle; the hint is only a hint).
struct HintSlot {
  explicit HintSlot(std::atomic<int>& a) : cached(a), v(a.load(std::memory_order_relaxed)) {}
  ~HintSlot() { cached.store(v, std::memory_order_relaxed); }
  std::atomic<int>& cached;
  int v;
};

}  // namespace

Status SharedLimiter::Open(std::string_view name, int64_t capacity, bool create,
                           MiUnique<SharedLimiter>* out) {
  if (Status s = CheckSharedName(name); !s.ok()) return s;
  const std::string path = RegionName(name);
  const size_t size = sizeof(Region);
  bool creator = false;
  int fd = -1;
  if (create) {
    fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    creator = fd >= 0;
    if (fd < 0 && errno != EEXIST) {
      return {Code::kInternal, "shm_open " + path + ": " + std::strerror(errno)};
    }
  }
  if (fd < 0) {
    fd = shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
      if (errno == ENOENT) return {Code::kNotFound, "no shared limiter named '" + std::string(name) + "'"};
      return {Code::kInternal, "shm_open " + path + ": " + std::strerror(errno)};
    }
  }
  if (creator && ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    close(fd);
    shm_unlink(path.c_str());
    return {Code::kInternal, std::string("ftruncate: ") + std::strerror(err)};
  }
  // A region someone else is creating may not have its size yet: wait a bit.
  struct stat st {};
  for (int i = 0; i < 200; ++i) {
    if (fstat(fd, &st) != 0 || st.st_size != 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (static_cast<size_t>(st.st_size) != size) {
    close(fd);
    return {Code::kBadRegion, "'" + path + "' is " + std::to_string(st.st_size) +
                                  " bytes, not a Berth shared limiter of this layout (" +
                                  std::to_string(size) + ")"};
  }
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) return {Code::kInternal, std::string("mmap: ") + std::strerror(errno)};
  Region* r = static_cast<Region*>(mem);
  if (creator) {
    std::memset(static_cast<void*>(r), 0, size);
    r->magic = kMagic;
    r->version = kLayoutVersion;
    r->size = static_cast<uint32_t>(size);
    r->capacity = capacity;
    r->in_use = 0;
    r->next_ticket = 1;  // the lock and counters start at zero (memset)
    r->ready.store(1, std::memory_order_release);
  } else {
    for (int i = 0; i < 200 && r->ready.load(std::memory_order_acquire) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (r->ready.load(std::memory_order_acquire) == 0 || r->magic != kMagic ||
        r->version != kLayoutVersion || r->size != size || r->capacity < 1) {
      munmap(mem, size);
      return {Code::kBadRegion, "'" + path + "' is not an initialised Berth shared limiter of this layout"};
    }
  }
  *out = MakeMiUnique<SharedLimiter>(Private{}, r, size);
  return {};
}

Status SharedLimiter::Unlink(std::string_view name) {
  if (Status s = CheckSharedName(name); !s.ok()) return s;
  if (shm_unlink(RegionName(name).c_str()) != 0) {
    if (errno == ENOENT) return {Code::kNotFound, "no shared limiter named '" + std::string(name) + "'"};
    return {Code::kInternal, std::string("shm_unlink: ") + std::strerror(errno)};
  }
  return {};
}

SharedLimiter::~SharedLimiter() {
  {
    std::lock_guard<std::mutex> lock(async_.mu);
    async_.stop = true;
    async_.cancel_current.store(true, std::memory_order_release);
  }
  async_.cv.notify_all();
  if (async_.thread.joinable()) {
    WakeWaiters();
    async_.thread.join();
  }
  // Grants nobody claimed would otherwise stay held until the process exits.
  int64_t unclaimed = 0;
  for (const auto& [ticket, n] : async_.unclaimed) unclaimed += n;
  if (unclaimed > 0) (void)Release(unclaimed);
  munmap(region_, size_);
}

void SharedLimiter::WakeWaiters() {
  region_->wake.fetch_add(1, std::memory_order_release);
  Futex(&region_->wake, FUTEX_WAKE, INT_MAX, nullptr);
}

Status SharedLimiter::Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token,
                              bool* granted_now, uint64_t* ticket) {
  std::unique_lock<std::mutex> lock(async_.mu);
  if (async_.queue.empty()) {  // nobody of ours waits: try at once
    Refusal why;
    if (Status s = TryAcquire(n, &why); !s.ok()) return s;
    if (why == Refusal::kNone) {
      *granted_now = true;
      *ticket = 0;
      return {};
    }
  } else if (n > Capacity()) {
    return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity"};
  }
  const uint64_t t = async_.next_ticket++;
  async_.queue.push_back(AsyncWaiter{t, n, std::move(notifier), token});
  if (!async_.thread.joinable()) async_.thread = std::thread([this] { AsyncLoop(); });
  lock.unlock();
  async_.cv.notify_one();
  *granted_now = false;
  *ticket = t;
  return {};
}

void SharedLimiter::AsyncLoop() {
  std::unique_lock<std::mutex> lock(async_.mu);
  for (;;) {
    async_.cv.wait(lock, [&] { return async_.stop || !async_.queue.empty(); });
    if (async_.stop) return;
    const AsyncWaiter w = async_.queue.front();
    async_.current = w.ticket;
    async_.cancel_current.store(false, std::memory_order_release);
    lock.unlock();
    bool acquired = false;
    const Status s = AcquireUntil(w.n, std::nullopt, &async_.cancel_current, &acquired);
    lock.lock();
    async_.current = 0;
    // A cancel took the ticket out of the queue already; otherwise it is
    // still at the front.
    const bool cancelled = async_.cancel_current.load(std::memory_order_acquire) ||
                           async_.queue.empty() || async_.queue.front().ticket != w.ticket;
    if (!cancelled) async_.queue.pop_front();
    if (acquired && cancelled) {
      lock.unlock();
      (void)Release(w.n);  // granted after the cancel: give it back
      lock.lock();
    } else if (acquired) {
      async_.unclaimed.emplace(w.ticket, w.n);
      w.notifier->Post(w.token);
    } else if (!cancelled && !s.ok()) {
      // The region refused (too many waiters): leave the ticket queued and
      // try again shortly rather than spin.
      async_.queue.push_front(w);
      async_.cv.wait_for(lock, kReclaimEvery);
    }
  }
}

bool SharedLimiter::Claim(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(async_.mu);
  return async_.unclaimed.erase(ticket) != 0;
}

CancelOutcome SharedLimiter::Cancel(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(async_.mu);
  if (auto it = async_.unclaimed.find(ticket); it != async_.unclaimed.end()) {
    const int64_t n = it->second;
    async_.unclaimed.erase(it);
    lock.unlock();
    (void)Release(n);
    return CancelOutcome::kWasGranted;
  }
  for (auto it = async_.queue.begin(); it != async_.queue.end(); ++it) {
    if (it->ticket != ticket) continue;
    async_.queue.erase(it);
    if (async_.current == ticket) {
      // The thread is waiting in the region for it: interrupt that wait. If
      // the grant lands first, the thread gives it back.
      async_.cancel_current.store(true, std::memory_order_release);
      lock.unlock();
      WakeWaiters();
    }
    return CancelOutcome::kWasWaiting;
  }
  return CancelOutcome::kUnknown;
}

Status SharedLimiter::TryAcquire(int64_t n, Refusal* refusal) {
  RegionLock lock(region_);
  HintSlot hint(slot_hint_);
  if (n > region_->capacity) {
    return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                        std::to_string(region_->capacity) + ")"};
  }
  for (int pass = 0; pass < 2; ++pass) {
    if (HeadTicket(region_) == 0 && GrantLocked(region_, n, &hint.v)) {
      *refusal = Refusal::kNone;
      return {};
    }
    if (pass == 0 && !Reclaim(region_)) break;  // nothing to recover: the answer stands
  }
  ++region_->rejected;
  *refusal = HeadTicket(region_) != 0 ? Refusal::kWaitersQueued : Refusal::kAtCapacity;
  return {};
}

Status SharedLimiter::Acquire(int64_t n, std::optional<Clock::time_point> deadline, bool* acquired) {
  return AcquireUntil(n, deadline, nullptr, acquired);
}

Status SharedLimiter::AcquireUntil(int64_t n, std::optional<Clock::time_point> deadline,
                                   const std::atomic<bool>* cancel, bool* acquired) {
  RegionLock lock(region_);
  HintSlot hint(slot_hint_);
  if (n > region_->capacity) {
    return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                        std::to_string(region_->capacity) + ")"};
  }
  if (HeadTicket(region_) == 0 && GrantLocked(region_, n, &hint.v)) {
    *acquired = true;
    return {};
  }
  // Queue up.
  Waiter* me = nullptr;
  for (int attempt = 0; me == nullptr; ++attempt) {
    for (Waiter& w : region_->waiters) {
      if (w.ticket == 0) {
        ++region_->queued;  // before the slot: a crash leaves it high, not low
        w.pid = SelfPid();
        w.start_time = SelfStartTime();
        w.n = n;
        w.ticket = region_->next_ticket++;
        me = &w;
        break;
      }
    }
    if (me == nullptr && (attempt > 0 || !Reclaim(region_))) {
      return {Code::kInternal, "too many waiters on the shared limiter (limit " +
                                   std::to_string(kSharedWaiters) + ")"};
    }
  }
  uint64_t ticket = me->ticket;
  for (;;) {
    if (HeadTicket(region_) == ticket && GrantLocked(region_, n, &hint.v)) {
      me->ticket = 0;
      --region_->queued;
      WakeAll(region_);  // the next waiter may fit too
      *acquired = true;
      return {};
    }
    const Clock::time_point now = Clock::now();
    const bool cancelled = cancel != nullptr && cancel->load(std::memory_order_acquire);
    if (cancelled || (deadline && now >= *deadline)) {
      me->ticket = 0;
      --region_->queued;
      if (!cancelled) ++region_->timed_out;
      WakeAll(region_);  // the head may have changed
      *acquired = false;
      return {};
    }
    // Sleep until something changes, at most kReclaimEvery (dead holders
    // never wake anyone), then look for dead processes.
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(kReclaimEvery);
    if (deadline) wait = std::min(wait, std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - now));
    const uint32_t seen = region_->wake.load(std::memory_order_acquire);
    lock.Unlock();
    timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000), static_cast<long>(wait.count() % 1'000'000'000)};
    Futex(&region_->wake, FUTEX_WAIT, seen, &ts);
    lock.Relock();
    if (me->ticket != ticket) {
      // Our slot was cleared as dead: impossible for a live process unless
      // its start time could not be read; queue again at the back.
      ++region_->queued;
      me->pid = SelfPid();
      me->start_time = SelfStartTime();
      me->n = n;
      me->ticket = region_->next_ticket++;
      ticket = me->ticket;
    }
    if (Reclaim(region_)) WakeAll(region_);
  }
}

Status SharedLimiter::Release(int64_t n) {
  RegionLock lock(region_);
  HintSlot hint(slot_hint_);
  Holder* h = OwnSlot(region_, false, &hint.v);
  const int64_t held = h != nullptr ? h->permits : 0;
  if (n > held) {
    return {Code::kInvalidArgument, "releasing " + std::to_string(n) + " permits but this process holds " +
                                        std::to_string(held)};
  }
  region_->in_use -= n;
  h->permits -= n;  // the slot stays this process's until it dies
  WakeAll(region_);
  return {};
}

Status SharedLimiter::SetCapacity(int64_t capacity) {
  RegionLock lock(region_);
  region_->capacity = capacity;
  WakeAll(region_);
  return {};
}

int64_t SharedLimiter::Capacity() {
  RegionLock lock(region_);
  return region_->capacity;
}

SharedLimiterStats SharedLimiter::Stats() {
  RegionLock lock(region_);
  if (Reclaim(region_)) WakeAll(region_);
  SharedLimiterStats s;
  s.capacity = region_->capacity;
  s.in_use = InUse(region_);
  s.waiting = Waiting(region_);
  for (const Holder& h : region_->holders) s.holders += h.pid != 0 && h.permits > 0 ? 1 : 0;
  s.granted = region_->granted;
  s.rejected = region_->rejected;
  s.timed_out = region_->timed_out;
  s.reclaimed = region_->reclaimed;
  return s;
}

}  // namespace berth
