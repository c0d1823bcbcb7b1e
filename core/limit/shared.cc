#include "core/limit/shared.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace berth {

namespace {

constexpr uint64_t kMagic = 0x4C485348'54524542ull;  // "BERTHSHL"
constexpr uint32_t kLayoutVersion = 3;
constexpr auto kReclaimEvery = std::chrono::milliseconds(50);

// A keyed mix of words (splitmix64's finaliser over a running sum): the check
// words of the region. Not a defence against an adversary of the same user
// (who can write anything); it makes bytes written by something else, or a
// region of another layout, fail the check instead of being obeyed.
constexpr uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h ^= h >> 30;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 27;
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}
template <class... V>
constexpr uint64_t Seal(uint64_t tag, V... v) {
  uint64_t h = Mix(kMagic, tag);
  ((h = Mix(h, static_cast<uint64_t>(v))), ...);
  return h;
}

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

// Which process this is, as far as state inherited through fork goes: a
// counter bumped in the child of every fork. Per-process state (this
// process's slot, its asynchronous waits) records the value it was made
// under; a different value means a forked descendant, which starts its own.
// Not the pid: a grandchild can get its dead grandparent's pid (pid reuse,
// quick in a container's small pid space) and would take the grandparent's
// slot for its own without holding the slot's lock. A descendant's value is
// always larger than every ancestor's, and only ancestors' values are in its
// memory.
std::atomic<uint32_t> g_process{0};
std::once_flag g_process_once;

uint32_t SelfProcess() {
  std::call_once(g_process_once, [] {
    g_process.store(1);
    pthread_atfork(nullptr, nullptr, [] { g_process.fetch_add(1); });
  });
  return g_process.load(std::memory_order_relaxed);
}

long Futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* timeout) {
  // Not FUTEX_PRIVATE_FLAG: waiters and wakers are in different processes.
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, timeout, nullptr, 0);
}

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Slot i's liveness lock: byte i of the region file (advisory; it does not
// affect reads or writes of the mapping). POSIX record locks belong to the
// process, are not inherited by fork, and are dropped by the kernel when the
// process exits however it exits.
struct flock SlotByte(short type, int i) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = i;
  fl.l_len = 1;
  return fl;
}

bool LockSlotByte(int fd, int i) {
  struct flock fl = SlotByte(F_WRLCK, i);
  return fcntl(fd, F_SETLK, &fl) == 0;
}

void UnlockSlotByte(int fd, int i) {
  struct flock fl = SlotByte(F_UNLCK, i);
  (void)fcntl(fd, F_SETLK, &fl);
}

// Whether another process holds slot i's lock. A failing query counts as
// held: when in doubt nothing is reclaimed (a stuck permit, never an extra
// one).
bool OtherHoldsSlotByte(int fd, int i) {
  struct flock fl = SlotByte(F_WRLCK, i);
  if (fcntl(fd, F_GETLK, &fl) != 0) return true;
  return fl.l_type != F_UNLCK;
}

}  // namespace

// ---------------------------------------------------------------------------
// The shared layout
// ---------------------------------------------------------------------------

struct Slot {                    // one per process with the region open
  std::atomic<uint32_t> epoch;   // bumped by each process that takes the slot
  uint32_t reserved;
  int64_t permits;               // held by the slot's process
  uint64_t check;                // Seal(index, permits)
};

struct Waiter {
  uint64_t ticket;  // 0: free; smaller is earlier
  uint32_t slot;    // the waiting process's slot and epoch
  uint32_t epoch;
  int64_t n;
  uint64_t check;   // Seal(ticket, slot, epoch, n)
};

// The region's lock: robust like a PTHREAD_MUTEX_ROBUST mutex (a process
// that dies holding it does not wedge the others), but cheap: one CAS to
// lock and one store to unlock, a short spin before sleeping on a shared
// futex, and a syscall on unlock only when someone sleeps. The owner word
// is the owner's slot and epoch; a sleeper that wakes (at least every
// 10 ms) to find that slot's lock free or its epoch moved on takes the lock
// over, and recounts.
struct RegionMutex {
  std::atomic<uint64_t> owner;     // 0 free, else epoch << 32 | (slot + 1)
  std::atomic<uint32_t> sleepers;
  std::atomic<uint32_t> wakeups;   // the futex word sleepers wait on
};

struct SharedLimiter::Region {
  // Written once by the creator.
  uint64_t magic;
  uint32_t version;
  uint32_t size;
  uint32_t slots;
  uint32_t waiters;
  uint64_t header_check;         // Seal(1, magic, version, size, slots, waiters)
  std::atomic<uint32_t> ready;   // the creator sets it last
  std::atomic<uint32_t> wake;    // bumped on every change waiters care about
  RegionMutex mu;
  // Under mu.
  int64_t capacity;
  uint64_t capacity_check;       // Seal(2, capacity): written only by a capacity change
  int64_t in_use;                // = sum of the slots' permits
  uint64_t queued;               // = waiters with a ticket
  uint64_t next_ticket;
  uint64_t counts_check;         // Seal(3, in_use, queued, next_ticket)
  uint64_t granted, rejected, timed_out, reclaimed;  // statistics only
  Slot slot[kSharedProcesses];
  Waiter waiter[kSharedWaiters];
};

namespace {

using Region = SharedLimiter::Region;

constexpr uint64_t HeaderCheck() {
  return Seal(1, kMagic, kLayoutVersion, sizeof(Region), kSharedProcesses, kSharedWaiters);
}
uint64_t SlotCheck(int i, int64_t permits) { return Seal(4, i, permits); }
uint64_t WaiterCheck(const Waiter& w) { return Seal(5, w.ticket, w.slot, w.epoch, w.n); }

void SealCounts(Region* r) { r->counts_check = Seal(3, r->in_use, r->queued, r->next_ticket); }
void SealSlot(Region* r, int i) { r->slot[i].check = SlotCheck(i, r->slot[i].permits); }
void SealWaiter(Waiter& w) { w.check = WaiterCheck(w); }

}  // namespace

// A process's membership of one region: the fd its slot lock is held
// through, and the slot. One per (process, region file), shared by all the
// process's handles on it. POSIX record locks have one trap: closing ANY fd
// of the file drops all of the process's locks on it, so every fd Berth
// opens on an attached file stays open until the process leaves it.
struct SharedLimiter::Attachment {
  dev_t dev = 0;
  ino_t ino = 0;
  int fd = -1;
  std::vector<int, Alloc<int>> spare;  // other fds opened on the file meanwhile
  int refs = 0;                         // handles of this process
  std::atomic<uint32_t> process{0};     // the process holding `slot` (SelfProcess(); 0: none)
  int slot = -1;
  uint32_t epoch = 0;
  // Tickets of this process's waits that ended without the region's lock
  // (it was stuck), so their entries are still queued: the next call that
  // holds the lock removes them. Lock-free (a fork may happen anywhere).
  static constexpr int kAbandoned = 16;
  std::atomic<int> abandoned_count{0};
  std::atomic<uint64_t> abandoned[kAbandoned] = {};
};

namespace {

using Attachment = SharedLimiter::Attachment;

// The process's attachments. Process-wide by nature (record locks are per
// process); made on first use and never destroyed. Its mutex is held across
// fork (atfork), so a child never inherits it locked.
struct AttachTable {
  std::mutex mu;
  std::vector<Attachment*, Alloc<Attachment*>> list;

  static AttachTable& Get() {
    static AttachTable* table = [] {
      auto* t = new AttachTable();  // leaked on purpose: handles may outlive static destruction
      pthread_atfork([] { Get().mu.lock(); }, [] { Get().mu.unlock(); },
                     [] { Get().mu.unlock(); });
      return t;
    }();
    return *table;
  }

  Attachment* Find(dev_t dev, ino_t ino) {
    for (Attachment* a : list) {
      if (a->dev == dev && a->ino == ino) return a;
    }
    return nullptr;
  }

  // An fd on a file this process may be attached to: closing it would drop
  // the attachment's locks, so it is kept with the attachment instead.
  void Dispose(int fd) {
    struct stat st {};
    if (fstat(fd, &st) == 0) {
      if (Attachment* a = Find(st.st_dev, st.st_ino)) {
        a->spare.push_back(fd);
        return;
      }
    }
    close(fd);
  }
};

// Who is calling: this process's slot in the region.
struct Me {
  int slot;
  uint32_t epoch;
  int fd;
  uint64_t tag() const { return static_cast<uint64_t>(epoch) << 32 | static_cast<uint64_t>(slot + 1); }
};

bool SlotAlive(const Region* r, const Me& me, uint32_t slot, uint32_t epoch) {
  if (slot >= static_cast<uint32_t>(kSharedProcesses)) return false;
  if (r->slot[slot].epoch.load(std::memory_order_relaxed) != epoch) return false;
  if (static_cast<int>(slot) == me.slot) return epoch == me.epoch;
  return OtherHoldsSlotByte(me.fd, static_cast<int>(slot));
}

bool TagAlive(const Region* r, const Me& me, uint64_t tag) {
  const uint64_t low = tag & 0xFFFFFFFFu;
  if (low == 0) return false;
  return SlotAlive(r, me, static_cast<uint32_t>(low - 1), static_cast<uint32_t>(tag >> 32));
}

enum class Locked { kYes, kTookOver, kStuck };

Locked LockRegion(Region* r, const Me& me) {
  RegionMutex* m = &r->mu;
  const uint64_t tag = me.tag();
  std::optional<SharedLimiter::Clock::time_point> give_up;
  for (int spin = 0;; ++spin) {
    uint64_t cur = m->owner.load(std::memory_order_relaxed);
    if (cur == 0 && m->owner.compare_exchange_weak(cur, tag, std::memory_order_acquire)) {
      return Locked::kYes;
    }
    if (spin < 200) {
      Pause();
      continue;
    }
    if (cur != 0 && !TagAlive(r, me, cur)) {
      if (m->owner.compare_exchange_strong(cur, tag, std::memory_order_acquire)) return Locked::kTookOver;
      continue;
    }
    const auto now = SharedLimiter::Clock::now();
    if (!give_up) give_up = now + kLockPatience;
    if (now >= *give_up) return Locked::kStuck;
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

// The header check word of a region found damaged: every process's next
// call on it fails the header check, so damage found by one (in a full check)
// is refused by all, not only by the one that looked.
constexpr uint64_t kPoisoned = ~HeaderCheck();

Status Damaged(Region* r, const std::string& path, const std::string& what) {
  r->header_check = kPoisoned;
  return {Code::kBadRegion, "'" + path + "' is damaged (" + what +
                                "): refusing to use it; unlink and recreate it"};
}

// The header: written once, checked on every call.
Status CheckHeader(const Region* r, const std::string& path) {
  if (r->magic == kMagic && r->header_check == kPoisoned) {
    return {Code::kBadRegion, "'" + path + "' was found damaged: refusing to use it; unlink and recreate it"};
  }
  if (r->magic != kMagic || r->version != kLayoutVersion || r->size != sizeof(Region) ||
      r->slots != static_cast<uint32_t>(kSharedProcesses) ||
      r->waiters != static_cast<uint32_t>(kSharedWaiters) || r->header_check != HeaderCheck()) {
    return {Code::kBadRegion, "'" + path + "' is not a Berth shared limiter of this layout"};
  }
  return {};
}

// What every call relies on: the header, the capacity, the counts and the
// caller's own slot. O(1).
Status CheckCounts(Region* r, const Me& me, const std::string& path) {
  if (Status s = CheckHeader(r, path); !s.ok()) return s;
  if (r->capacity < 1 || r->capacity_check != Seal(2, r->capacity)) {
    return Damaged(r, path, "capacity fails its check");
  }
  if (r->in_use < 0 || r->queued > static_cast<uint64_t>(kSharedWaiters) || r->next_ticket == 0 ||
      r->counts_check != Seal(3, r->in_use, r->queued, r->next_ticket)) {
    return Damaged(r, path, "the counts fail their check");
  }
  const Slot& mine = r->slot[me.slot];
  if (mine.epoch.load(std::memory_order_relaxed) != me.epoch) {
    return Damaged(r, path, "this process's slot " + std::to_string(me.slot) + " was taken over");
  }
  if (mine.permits < 0 || mine.check != SlotCheck(me.slot, mine.permits)) {
    return Damaged(r, path, "this process's slot fails its check");
  }
  return {};
}

// The whole region: every slot and waiter, and the counts against them.
// O(slots + waiters). After taking the lock over from a dead owner
// (`took_over`, with the caller `me`), that owner may have died between a
// value and its check word; but it only ever wrote its own slot and waiters
// and those of dead processes. So a slot or waiter failing its check is
// forgiven (its permits dropped, the waiter removed) only if its process is
// dead; failing on a live process's, it is damage. Then the counts are
// rebuilt. The capacity is never resealed. With `joining`, the caller's own
// slot is still its dead predecessor's.
Status CheckAll(Region* r, const std::string& path, const Me* took_over, bool joining = false) {
  int64_t in_use = 0;
  for (int i = 0; i < kSharedProcesses; ++i) {
    Slot& s = r->slot[i];
    if (s.permits < 0 || s.check != SlotCheck(i, s.permits)) {
      // Joining, the caller's slot still holds what its dead predecessor left.
      const bool dead = took_over != nullptr &&
                        (i == took_over->slot ? joining : !OtherHoldsSlotByte(took_over->fd, i));
      if (!dead) return Damaged(r, path, "slot " + std::to_string(i) + " fails its check");
      s.permits = 0;  // its process is gone: whatever it held comes back
      SealSlot(r, i);
    }
    if (__builtin_add_overflow(in_use, s.permits, &in_use)) return Damaged(r, path, "permits overflow");
  }
  uint64_t queued = 0, last_ticket = 0;
  for (Waiter& w : r->waiter) {
    if (w.ticket == 0) continue;
    if (w.slot >= static_cast<uint32_t>(kSharedProcesses) || w.n < 1 || w.check != WaiterCheck(w)) {
      if (took_over == nullptr || SlotAlive(r, *took_over, w.slot, w.epoch)) {
        return Damaged(r, path, "a waiter fails its check");
      }
      w.ticket = 0;  // a dead process's
      continue;
    }
    ++queued;
    last_ticket = std::max(last_ticket, w.ticket);
  }
  if (took_over != nullptr) {
    r->in_use = in_use;
    r->queued = queued;
    if (r->next_ticket <= last_ticket) r->next_ticket = last_ticket + 1;
    if (r->next_ticket == 0) return Damaged(r, path, "tickets overflow");
    SealCounts(r);
  } else if (r->in_use != in_use || r->queued != queued || r->next_ticket <= last_ticket) {
    return Damaged(r, path, "the counts disagree with the slots");
  }
  return {};
}

// Frees dead processes' slots (giving their permits back) and waiters.
bool Reclaim(Region* r, const Me& me) {
  bool changed = false;
  for (int i = 0; i < kSharedProcesses; ++i) {
    Slot& s = r->slot[i];
    // A slot failing its check is left for CheckAll to report, not laundered.
    if (s.permits > 0 && i != me.slot && s.check == SlotCheck(i, s.permits) &&
        !OtherHoldsSlotByte(me.fd, i)) {
      r->reclaimed += static_cast<uint64_t>(s.permits);
      r->in_use -= s.permits;
      s.permits = 0;
      SealSlot(r, i);
      changed = true;
    }
  }
  for (Waiter& w : r->waiter) {
    if (w.ticket != 0 && !SlotAlive(r, me, w.slot, w.epoch)) {
      w.ticket = 0;
      --r->queued;
      changed = true;
    }
  }
  if (changed) SealCounts(r);
  return changed;
}

// The earliest waiter's ticket, 0 if none.
uint64_t HeadTicket(const Region* r) {
  if (r->queued == 0) return 0;
  uint64_t head = 0;
  for (const Waiter& w : r->waiter) {
    if (w.ticket != 0 && (head == 0 || w.ticket < head)) head = w.ticket;
  }
  return head;
}

void WakeAll(Region* r) {
  // Waiters read `wake` under the lock before sleeping, so with none queued
  // there is nobody to tell: skip even the shared-line write.
  if (r->queued == 0) return;
  r->wake.fetch_add(1, std::memory_order_release);
  Futex(&r->wake, FUTEX_WAKE, INT_MAX, nullptr);
}

// Moves n permits to (n > 0) or from (n < 0) slot i.
void AddPermits(Region* r, int i, int64_t n) {
  r->slot[i].permits += n;
  SealSlot(r, i);
  r->in_use += n;
  SealCounts(r);
}

// Grants n to the caller if it fits (no overflow: 0 <= in_use, capacity >= 1).
bool GrantLocked(Region* r, const Me& me, int64_t n) {
  if (n > r->capacity - r->in_use) return false;
  AddPermits(r, me.slot, n);
  ++r->granted;
  return true;
}

Status TooLarge(int64_t n, int64_t capacity) {
  return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                      std::to_string(capacity) + ")"};
}

Status Stuck(const std::string& path) {
  return {Code::kBadRegion, "the lock of '" + path + "' has been held for over " +
                                std::to_string(kLockPatience.count()) +
                                " ms by a live process: it is stopped, or the region was written "
                                "by something else"};
}

// Takes a free slot for this process: the first whose byte lock it can get.
// Then, under the region's lock, whatever the slot's previous process left
// (it is dead: its lock was free) is reclaimed. The table's mutex is held.
Status Join(Region* r, Attachment* a, const std::string& path) {
  int slot = -1;
  for (int i = 0; i < kSharedProcesses && slot < 0; ++i) {
    if (LockSlotByte(a->fd, i)) slot = i;
  }
  if (slot < 0) {
    return {Code::kInternal, "'" + path + "' is open in " + std::to_string(kSharedProcesses) +
                                 " processes already (the limit)"};
  }
  uint32_t epoch = r->slot[slot].epoch.load(std::memory_order_relaxed) + 1;
  if (epoch == 0) epoch = 1;
  r->slot[slot].epoch.store(epoch, std::memory_order_relaxed);
  const Me me{slot, epoch, a->fd};
  const Locked l = LockRegion(r, me);
  Status s = l == Locked::kStuck ? Stuck(path) : CheckHeader(r, path);
  if (s.ok() && l == Locked::kTookOver) s = CheckAll(r, path, &me, true);
  Slot& mine = r->slot[slot];
  if (s.ok() && (mine.permits < 0 || mine.permits > r->in_use ||
                 mine.check != SlotCheck(slot, mine.permits))) {
    s = Damaged(r, path, "slot " + std::to_string(slot) + " fails its check");
  }
  if (s.ok()) {
    if (mine.permits != 0) {  // left by the slot's previous process, now dead
      r->reclaimed += static_cast<uint64_t>(mine.permits);
      r->in_use -= mine.permits;
      mine.permits = 0;
      SealSlot(r, slot);
    }
    for (Waiter& w : r->waiter) {
      if (w.ticket != 0 && w.slot == static_cast<uint32_t>(slot)) {
        w.ticket = 0;
        --r->queued;
      }
    }
    SealCounts(r);
    s = CheckCounts(r, me, path);
  }
  if (l != Locked::kStuck) UnlockRegion(&r->mu);
  if (!s.ok()) {
    UnlockSlotByte(a->fd, slot);
    return s;
  }
  a->slot = slot;
  a->epoch = epoch;
  for (auto& t : a->abandoned) t.store(0, std::memory_order_relaxed);  // the predecessor's
  a->abandoned_count.store(0, std::memory_order_relaxed);
  a->process.store(SelfProcess(), std::memory_order_release);
  return {};
}

// Leaves the region: gives back what the process still holds, then drops
// the slot (closing the fds drops its lock). The table's mutex is held.
void Leave(Region* r, Attachment* a, const std::string& path) {
  if (a->process.load(std::memory_order_relaxed) == SelfProcess()) {
    const Me me{a->slot, a->epoch, a->fd};
    const Locked l = LockRegion(r, me);
    if (l != Locked::kStuck) {
      if (l == Locked::kTookOver) (void)CheckAll(r, path, &me);
      if (CheckCounts(r, me, path).ok()) {
        const int64_t held = r->slot[me.slot].permits;
        if (held > 0 && held <= r->in_use) {
          AddPermits(r, me.slot, -held);
          r->wake.fetch_add(1, std::memory_order_release);
          Futex(&r->wake, FUTEX_WAKE, INT_MAX, nullptr);
        }
      }
      UnlockRegion(&r->mu);
    }
  }
  // In a forked child that never used the handle there is no lock of this
  // process to drop; closing its copies of the fds leaves the parent's alone.
  close(a->fd);
  for (int fd : a->spare) close(fd);
}

}  // namespace

// One call's access to the region: who this process is (joining first in a
// new process), the region's lock (bounded; recounting after a dead owner)
// and the O(1) checks. The lock is released by the destructor.
class SharedLimiter::Session {
 public:
  explicit Session(SharedLimiter* l) : l_(l), r_(l->region_) {}
  ~Session() {
    if (locked_) UnlockRegion(&r_->mu);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Status Begin() {
    Attachment* a = l_->att_;
    if (a->process.load(std::memory_order_acquire) != SelfProcess()) {
      AttachTable& t = AttachTable::Get();
      std::lock_guard<std::mutex> lock(t.mu);
      if (a->process.load(std::memory_order_relaxed) != SelfProcess()) {
        if (Status s = Join(r_, a, l_->path_); !s.ok()) return s;
      }
    }
    me_ = Me{a->slot, a->epoch, a->fd};
    return Relock();
  }
  Status Relock() {
    const Locked l = LockRegion(r_, me_);
    if (l == Locked::kStuck) return Stuck(l_->path_);
    locked_ = true;
    if (l == Locked::kTookOver) {
      if (Status s = CheckAll(r_, l_->path_, &me_); !s.ok()) return s;
    }
    if (Status s = CheckCounts(r_, me_, l_->path_); !s.ok()) return s;
    if (l_->att_->abandoned_count.load(std::memory_order_acquire) != 0) DropAbandoned();
    return {};
  }
  // A wait of this process that gave up without the lock (Relock failed):
  // its entry is removed by the next call that has it.
  void Abandon(uint64_t ticket) {
    Attachment* a = l_->att_;
    for (auto& t : a->abandoned) {
      uint64_t zero = 0;
      if (t.compare_exchange_strong(zero, ticket, std::memory_order_acq_rel)) {
        a->abandoned_count.fetch_add(1, std::memory_order_release);
        return;
      }
    }
    // All kAbandoned entries in use: this one stays queued until the
    // process leaves the region (every wait behind it waits too).
  }
  void Unlock() {
    UnlockRegion(&r_->mu);
    locked_ = false;
  }
  const Me& me() const { return me_; }

 private:
  void DropAbandoned() {
    Attachment* a = l_->att_;
    for (auto& t : a->abandoned) {
      uint64_t ticket = t.exchange(0, std::memory_order_acq_rel);
      if (ticket == 0) continue;
      a->abandoned_count.fetch_sub(1, std::memory_order_acq_rel);
      for (Waiter& w : r_->waiter) {
        if (w.ticket == ticket && w.slot == static_cast<uint32_t>(me_.slot) && w.epoch == me_.epoch) {
          w.ticket = 0;
          --r_->queued;
          SealCounts(r_);
          WakeAll(r_);
          break;
        }
      }
    }
  }

  SharedLimiter* l_;
  Region* r_;
  Me me_{};
  bool locked_ = false;
};

SharedLimiter::SharedLimiter(Private, Region* region, size_t size, Attachment* att, std::string path)
    : region_(region), size_(size), att_(att), path_(std::move(path)) {
  Alloc<Async> alloc;
  Async* a = alloc.allocate(1);
  new (a) Async(SelfProcess());
  async_.store(a, std::memory_order_release);
}

Status SharedLimiter::Open(std::string_view name, int64_t capacity, bool create,
                           MiUnique<SharedLimiter>* out) {
  if (Status s = CheckSharedName(name); !s.ok()) return s;
  const std::string path = RegionName(name);
  const size_t size = sizeof(Region);
  AttachTable& table = AttachTable::Get();
  std::lock_guard<std::mutex> lock(table.mu);
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
    fd = shm_open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0) {
      if (errno == ENOENT) return {Code::kNotFound, "no shared limiter named '" + std::string(name) + "'"};
      return {Code::kInternal, "shm_open " + path + ": " + std::strerror(errno)};
    }
  }
  auto refuse = [&](Status s) {
    table.Dispose(fd);
    return s;
  };
  if (creator && ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    close(fd);
    shm_unlink(path.c_str());
    return {Code::kInternal, std::string("ftruncate: ") + std::strerror(err)};
  }
  // Who may have written it: only this user, and nobody else may write it.
  struct stat st {};
  if (fstat(fd, &st) != 0) return refuse({Code::kInternal, std::string("fstat: ") + std::strerror(errno)});
  if (!S_ISREG(st.st_mode)) return refuse({Code::kBadRegion, "'" + path + "' is not a regular file"});
  if (st.st_uid != geteuid()) {
    return refuse({Code::kBadRegion, "'" + path + "' belongs to uid " + std::to_string(st.st_uid) +
                                         ", not to this process's uid " + std::to_string(geteuid()) +
                                         ": refusing a region another user controls"});
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return refuse({Code::kBadRegion, "'" + path + "' is writable by group or others (mode " + mode +
                                         "): refusing a region another user could have written"});
  }
  // A region someone else is creating may not have its size yet: wait a bit.
  for (int i = 0; i < 200 && st.st_size == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (fstat(fd, &st) != 0) break;
  }
  if (static_cast<size_t>(st.st_size) != size) {
    return refuse({Code::kBadRegion, "'" + path + "' is " + std::to_string(st.st_size) +
                                         " bytes, not a Berth shared limiter of this layout (" +
                                         std::to_string(size) + ")"});
  }
  void* mem = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) return refuse({Code::kInternal, std::string("mmap: ") + std::strerror(errno)});
  Region* r = static_cast<Region*>(mem);
  if (creator) {
    std::memset(static_cast<void*>(r), 0, size);
    r->magic = kMagic;
    r->version = kLayoutVersion;
    r->size = static_cast<uint32_t>(size);
    r->slots = kSharedProcesses;
    r->waiters = kSharedWaiters;
    r->header_check = HeaderCheck();
    r->capacity = capacity;
    r->capacity_check = Seal(2, capacity);
    r->next_ticket = 1;  // the lock, counts and slots start at zero (memset)
    SealCounts(r);
    for (int i = 0; i < kSharedProcesses; ++i) SealSlot(r, i);
    r->ready.store(1, std::memory_order_release);
  } else {
    for (int i = 0; i < 200 && r->ready.load(std::memory_order_acquire) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    Status s = r->ready.load(std::memory_order_acquire) == 0
                   ? Status{Code::kBadRegion, "'" + path + "' was never initialised"}
                   : CheckHeader(r, path);
    if (!s.ok()) {
      munmap(mem, size);
      return refuse(std::move(s));
    }
  }
  // This process's attachment to the file: an existing one keeps its fd
  // (and lock), this fd joins its spares; a new one takes a slot.
  Attachment* a = table.Find(st.st_dev, st.st_ino);
  if (a != nullptr) {
    a->spare.push_back(fd);
  } else {
    Alloc<Attachment> alloc;
    a = alloc.allocate(1);
    new (a) Attachment();
    a->dev = st.st_dev;
    a->ino = st.st_ino;
    a->fd = fd;
    table.list.push_back(a);
  }
  if (a->process.load(std::memory_order_relaxed) != SelfProcess()) {
    if (Status s = Join(r, a, path); !s.ok()) {
      munmap(mem, size);
      if (a->refs == 0) {
        table.list.pop_back();
        close(a->fd);
        for (int f : a->spare) close(f);
        a->~Attachment();
        Alloc<Attachment>().deallocate(a, 1);
      }
      return s;
    }
  }
  ++a->refs;
  *out = MakeMiUnique<SharedLimiter>(Private{}, r, size, a, path);
  return {};
}

SharedLimiter::Layout SharedLimiter::LayoutForTesting() {
  return Layout{sizeof(Region),       offsetof(Region, mu) + offsetof(RegionMutex, owner),
                offsetof(Region, capacity), offsetof(Region, in_use),
                offsetof(Region, slot),     sizeof(Slot),
                offsetof(Region, ready),    offsetof(Region, waiter),
                sizeof(Waiter)};
}

Status SharedLimiter::Unlink(std::string_view name) {
  if (Status s = CheckSharedName(name); !s.ok()) return s;
  if (shm_unlink(RegionName(name).c_str()) != 0) {
    if (errno == ENOENT) return {Code::kNotFound, "no shared limiter named '" + std::string(name) + "'"};
    return {Code::kInternal, std::string("shm_unlink: ") + std::strerror(errno)};
  }
  return {};
}

SharedLimiter::Async& SharedLimiter::Local() {
  Async* a = async_.load(std::memory_order_acquire);
  const uint32_t self = SelfProcess();
  while (a->process != self) {
    Alloc<Async> alloc;
    Async* fresh = alloc.allocate(1);
    new (fresh) Async(self);
    if (async_.compare_exchange_strong(a, fresh, std::memory_order_acq_rel)) return *fresh;
    fresh->~Async();
    alloc.deallocate(fresh, 1);
  }
  return *a;
}

SharedLimiter::~SharedLimiter() {
  Async* a = async_.load(std::memory_order_acquire);
  if (a->process == SelfProcess()) {
    {
      std::lock_guard<std::mutex> lock(a->mu);
      a->stop = true;
      a->cancel_current.store(true, std::memory_order_release);
    }
    a->cv.notify_all();
    if (a->thread.joinable()) {
      WakeWaiters();
      a->thread.join();
    }
    // Grants nobody claimed would otherwise stay held until the process exits.
    int64_t unclaimed = 0;
    for (const auto& [ticket, n] : a->unclaimed) unclaimed += n;
    if (unclaimed > 0) (void)Release(unclaimed);
    a->~Async();
    Alloc<Async>().deallocate(a, 1);
  }
  // Else a forked child's copy of the parent's: left alone (see Local()).
  {
    AttachTable& t = AttachTable::Get();
    std::lock_guard<std::mutex> lock(t.mu);
    if (--att_->refs == 0) {
      Leave(region_, att_, path_);
      for (auto it = t.list.begin(); it != t.list.end(); ++it) {
        if (*it == att_) {
          t.list.erase(it);
          break;
        }
      }
      att_->~Attachment();
      Alloc<Attachment>().deallocate(att_, 1);
    }
  }
  munmap(region_, size_);
}

void SharedLimiter::WakeWaiters() {
  region_->wake.fetch_add(1, std::memory_order_release);
  Futex(&region_->wake, FUTEX_WAKE, INT_MAX, nullptr);
}

Status SharedLimiter::Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token,
                              bool* granted_now, uint64_t* ticket) {
  Async& a = Local();
  std::unique_lock<std::mutex> lock(a.mu);
  if (a.queue.empty()) {  // nobody of ours waits: try at once
    Refusal why;
    if (Status s = TryAcquire(n, &why); !s.ok()) return s;
    if (why == Refusal::kNone) {
      *granted_now = true;
      *ticket = 0;
      return {};
    }
  } else {
    Session session(this);
    if (Status s = session.Begin(); !s.ok()) return s;
    if (n > region_->capacity) return TooLarge(n, region_->capacity);
  }
  const uint64_t t = a.next_ticket++;
  a.queue.push_back(AsyncWaiter{t, n, std::move(notifier), token});
  if (!a.thread.joinable()) a.thread = std::thread([this, &a] { AsyncLoop(a); });
  lock.unlock();
  a.cv.notify_one();
  *granted_now = false;
  *ticket = t;
  return {};
}

void SharedLimiter::AsyncLoop(Async& a) {
  std::unique_lock<std::mutex> lock(a.mu);
  for (;;) {
    a.cv.wait(lock, [&] { return a.stop || !a.queue.empty(); });
    if (a.stop) return;
    const AsyncWaiter w = a.queue.front();
    a.current = w.ticket;
    a.cancel_current.store(false, std::memory_order_release);
    lock.unlock();
    bool acquired = false;
    const Status s = AcquireUntil(w.n, std::nullopt, &a.cancel_current, &acquired);
    lock.lock();
    a.current = 0;
    // A cancel took the ticket out of the queue already; otherwise it is
    // still at the front.
    const bool cancelled = a.cancel_current.load(std::memory_order_acquire) || a.queue.empty() ||
                           a.queue.front().ticket != w.ticket;
    if (!cancelled) a.queue.pop_front();
    if (acquired && cancelled) {
      lock.unlock();
      (void)Release(w.n);  // granted after the cancel: give it back
      lock.lock();
    } else if (acquired) {
      a.unclaimed.emplace(w.ticket, w.n);
      w.notifier->Post(w.token);
    } else if (!cancelled && !s.ok()) {
      // The region refused (too many waiters, damaged, stuck): leave the
      // ticket queued and try again shortly rather than spin.
      a.queue.push_front(w);
      a.cv.wait_for(lock, kReclaimEvery);
    }
  }
}

bool SharedLimiter::Claim(uint64_t ticket) {
  Async& a = Local();
  std::lock_guard<std::mutex> lock(a.mu);
  return a.unclaimed.erase(ticket) != 0;
}

CancelOutcome SharedLimiter::Cancel(uint64_t ticket) {
  Async& a = Local();
  std::unique_lock<std::mutex> lock(a.mu);
  if (auto it = a.unclaimed.find(ticket); it != a.unclaimed.end()) {
    const int64_t n = it->second;
    a.unclaimed.erase(it);
    lock.unlock();
    (void)Release(n);
    return CancelOutcome::kWasGranted;
  }
  for (auto it = a.queue.begin(); it != a.queue.end(); ++it) {
    if (it->ticket != ticket) continue;
    a.queue.erase(it);
    if (a.current == ticket) {
      // The thread is waiting in the region for it: interrupt that wait. If
      // the grant lands first, the thread gives it back.
      a.cancel_current.store(true, std::memory_order_release);
      lock.unlock();
      WakeWaiters();
    }
    return CancelOutcome::kWasWaiting;
  }
  return CancelOutcome::kUnknown;
}

Status SharedLimiter::TryAcquire(int64_t n, Refusal* refusal) {
  Session session(this);
  if (Status s = session.Begin(); !s.ok()) return s;
  Region* r = region_;
  if (n > r->capacity) return TooLarge(n, r->capacity);
  for (int pass = 0; pass < 2; ++pass) {
    if (HeadTicket(r) == 0 && GrantLocked(r, session.me(), n)) {
      *refusal = Refusal::kNone;
      return {};
    }
    if (pass == 0 && !Reclaim(r, session.me())) break;  // nothing to recover: the answer stands
  }
  ++r->rejected;
  *refusal = HeadTicket(r) != 0 ? Refusal::kWaitersQueued : Refusal::kAtCapacity;
  return {};
}

Status SharedLimiter::Acquire(int64_t n, std::optional<Clock::time_point> deadline, bool* acquired) {
  return AcquireUntil(n, deadline, nullptr, acquired);
}

Status SharedLimiter::AcquireUntil(int64_t n, std::optional<Clock::time_point> deadline,
                                   const std::atomic<bool>* cancel, bool* acquired) {
  Session session(this);
  if (Status s = session.Begin(); !s.ok()) return s;
  Region* r = region_;
  const Me& me = session.me();
  if (n > r->capacity) return TooLarge(n, r->capacity);
  if (HeadTicket(r) == 0 && GrantLocked(r, me, n)) {
    *acquired = true;
    return {};
  }
  // Queue up.
  auto enqueue = [&]() -> Waiter* {
    for (Waiter& w : r->waiter) {
      if (w.ticket != 0) continue;
      w.slot = static_cast<uint32_t>(me.slot);
      w.epoch = me.epoch;
      w.n = n;
      w.ticket = r->next_ticket++;
      SealWaiter(w);
      ++r->queued;
      SealCounts(r);
      return &w;
    }
    return nullptr;
  };
  Waiter* mine = enqueue();
  if (mine == nullptr && Reclaim(r, me)) mine = enqueue();
  if (mine == nullptr) {
    return {Code::kInternal, "too many waiters on the shared limiter (limit " +
                                 std::to_string(kSharedWaiters) + ")"};
  }
  uint64_t ticket = mine->ticket;
  auto leave_queue = [&] {
    mine->ticket = 0;
    --r->queued;
    SealCounts(r);
    WakeAll(r);  // the head may have changed, or the next waiter may fit too
  };
  for (;;) {
    if (HeadTicket(r) == ticket && GrantLocked(r, me, n)) {
      leave_queue();
      *acquired = true;
      return {};
    }
    const Clock::time_point now = Clock::now();
    const bool cancelled = cancel != nullptr && cancel->load(std::memory_order_acquire);
    if (cancelled || (deadline && now >= *deadline)) {
      if (!cancelled) ++r->timed_out;
      leave_queue();
      *acquired = false;
      return {};
    }
    // Sleep until something changes, at most kReclaimEvery (dead holders
    // never wake anyone), then look for dead processes.
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(kReclaimEvery);
    if (deadline) wait = std::min(wait, std::chrono::duration_cast<std::chrono::nanoseconds>(*deadline - now));
    const uint32_t seen = r->wake.load(std::memory_order_acquire);
    session.Unlock();
    timespec ts{static_cast<time_t>(wait.count() / 1'000'000'000), static_cast<long>(wait.count() % 1'000'000'000)};
    Futex(&r->wake, FUTEX_WAIT, seen, &ts);
    if (Status s = session.Relock(); !s.ok()) {
      session.Abandon(ticket);  // its entry must not stay at the head of the queue
      return s;
    }
    if (mine->ticket != ticket || mine->check != WaiterCheck(*mine)) {
      return Damaged(region_, path_, "this process's waiter was overwritten");
    }
    if (Reclaim(r, me)) WakeAll(r);
  }
}

Status SharedLimiter::Release(int64_t n) {
  Session session(this);
  if (Status s = session.Begin(); !s.ok()) return s;
  Region* r = region_;
  const int64_t held = r->slot[session.me().slot].permits;
  if (n > held) {
    return {Code::kInvalidArgument, "releasing " + std::to_string(n) + " permits but this process holds " +
                                        std::to_string(held)};
  }
  if (held > r->in_use) return Damaged(region_, path_, "in-use is below this process's permits");
  AddPermits(r, session.me().slot, -n);
  WakeAll(r);
  return {};
}

Status SharedLimiter::SetCapacity(int64_t capacity) {
  Session session(this);
  if (Status s = session.Begin(); !s.ok()) return s;
  region_->capacity = capacity;
  region_->capacity_check = Seal(2, capacity);
  WakeAll(region_);
  return {};
}

Status SharedLimiter::Stats(SharedLimiterStats* out) {
  Session session(this);
  if (Status s = session.Begin(); !s.ok()) return s;
  Region* r = region_;
  if (Status s = CheckAll(r, path_, nullptr); !s.ok()) return s;
  if (Reclaim(r, session.me())) WakeAll(r);
  SharedLimiterStats s;
  s.capacity = r->capacity;
  s.in_use = r->in_use;
  s.waiting = static_cast<int64_t>(r->queued);
  for (const Slot& h : r->slot) s.holders += h.permits > 0 ? 1 : 0;
  s.granted = r->granted;
  s.rejected = r->rejected;
  s.timed_out = r->timed_out;
  s.reclaimed = r->reclaimed;
  *out = s;
  return {};
}

}  // namespace berth
