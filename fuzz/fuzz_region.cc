// The shared limiter's region is a file any process of the same user can
// write. This target writes it, and runs every operation on what it wrote.
//
// The first byte picks how the region is made:
//  - raw (1 in 4): the fuzzer creates /dev/shm/berth.<name> itself, of the
//    right size or not, with a mode that may let others write it, holding
//    the input's bytes (after a valid header copied from a real region, or
//    not), and Berth opens it;
//  - damage (the rest): berth_shared_limiter_open creates it with a capacity
//    from the input, and edits chosen by the input overwrite it between
//    operations: random bytes anywhere, small numbers in the counters, the
//    slots and the waiters, a dead owner in the lock word, or an older copy
//    of a stretch of it (a replay).
// Then, as the input says: try_acquire, acquire (at most 1 ms), a second
// handle with acquire_async, claim, cancel and its notifier, release,
// set_capacity, get_stats, unlink, close.
//
// Checks: no crash or sanitizer report; statuses only among the documented
// ones (BERTH_ERR_BAD_REGION for every refusal of the region); and never an
// over-grant: this process never holds more permits, nor does the region
// report more in use, than the largest capacity the region had while it was
// valid. That last check does not apply where Berth obeys damage by design:
// a replayed stretch carries check words Berth wrote itself (a consistent
// older state), and a dead owner in the lock word makes the next caller take
// the lock over and reseal the values in range (the recovery from a process
// that died mid-update). The random bytes are the input XOR a keystream, so
// libFuzzer, which copies the operands of failed comparisons into inputs,
// cannot forge a check word.
//
// Edits never race a call: this thread makes them between calls, and the
// asynchronous waits (whose thread lives in the region) run on a second
// handle that is closed, its thread joined, before the next edit. The lock
// word is never left naming this process's own live slot, which would be a
// 2 s wait (kLockPatience) for every call, and the ready flag never 0 (a 1 s
// wait for every open).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/limit/shared.h"
#include "fuzz/fuzz.h"

namespace {

using berth_fuzz::Checked;
using berth_fuzz::Expect;
using berth_fuzz::Input;
using berth_fuzz::OneOf;

const berth::SharedLimiter::Layout kLayout = berth::SharedLimiter::LayoutForTesting();
constexpr int kMaxOps = 48;
constexpr int kMaxWaits = 6;  // blocking waits and sleeps per input, <= 1 ms each

std::string g_name;                  // this process's region
std::vector<uint8_t> g_valid;        // a valid region's bytes, for raw headers

uint8_t Key(size_t i) { return static_cast<uint8_t>(0xA5 ^ (i * 73) ^ (i >> 8)); }

template <class T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class T>
void Store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

class Run {
 public:
  explicit Run(Input& in) : in_(in) {}

  void Go() {
    OneOf(berth_shared_limiter_unlink(g_name.data(), g_name.size()), {BERTH_OK, BERTH_ERR_NOT_FOUND});
    Expect(Checked(berth_notifier_new(&notifier_)) == BERTH_OK);
    const bool made = in_.byte() % 4 == 0 ? MakeRaw() : MakeValid();
    if (made) {
      for (int ops = 0; in_.more() && ops < kMaxOps; ++ops) Step();
      Finish();
    }
    if (mem_ != nullptr) munmap(mem_, kLayout.size);
    if (fd_ >= 0) close(fd_);  // after every handle: closing it drops the process's record locks
    if (linked_) OneOf(berth_shared_limiter_unlink(g_name.data(), g_name.size()), {BERTH_OK});
    Expect(Checked(berth_notifier_free(notifier_)) == BERTH_OK);
  }

 private:
  // ---- making the region ---------------------------------------------------

  bool MakeValid() {
    cap_ = 1 + in_.byte() % 8;
    Expect(Checked(berth_shared_limiter_open(&l_, g_name.data(), g_name.size(), cap_, 1)) == BERTH_OK);
    linked_ = true;
    checkable_ = true;
    cap_max_ = cap_;
    const std::string path = "/dev/shm/berth." + g_name;
    fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
    Expect(fd_ >= 0);
    Map();
    for (int i = 0; i < berth::kSharedProcesses; ++i) {  // this process's slot: the only one taken
      const uint32_t epoch = Load<uint32_t>(mem_ + kLayout.slots + i * kLayout.slot_size);
      if (epoch != 0) {
        slot_ = i;
        epoch_ = epoch;
        break;
      }
    }
    Expect(slot_ >= 0);
    before_.assign(mem_, mem_ + kLayout.size);
    return true;
  }

  bool MakeRaw() {
    const uint8_t how = in_.byte();
    static const size_t sizes[] = {kLayout.size, kLayout.size, kLayout.size - 8, kLayout.size + 8, 64};
    const size_t size = sizes[how % 5];
    const mode_t mode = how & 0x20 ? 0620 : how & 0x40 ? 0602 : 0600;
    std::vector<uint8_t> bytes(size, 0);
    size_t at = 0;
    if (how & 0x80) {  // a valid header: the rest is checked
      at = std::min(size, kLayout.ready);
      std::copy(g_valid.begin(), g_valid.begin() + static_cast<long>(at), bytes.begin());
    }
    for (; at < size && in_.more(); ++at) bytes[at] = in_.byte();
    if (size > kLayout.ready + 4 && Load<uint32_t>(&bytes[kLayout.ready]) == 0) Store<uint32_t>(&bytes[kLayout.ready], 1);
    // Berth takes slot 0 with the next epoch: the lock word must not name it.
    if (size >= kLayout.size) {
      uint32_t next = Load<uint32_t>(&bytes[kLayout.slots]) + 1;
      if (next == 0) next = 1;
      if (Load<uint64_t>(&bytes[kLayout.lock_owner]) == (uint64_t{next} << 32 | 1)) {
        Store<uint64_t>(&bytes[kLayout.lock_owner], 0);
      }
    }
    const std::string shm = "/berth." + g_name;
    fd_ = shm_open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    Expect(fd_ >= 0 && fchmod(fd_, mode) == 0 && ftruncate(fd_, static_cast<off_t>(size)) == 0);
    Expect(pwrite(fd_, bytes.data(), size, 0) == static_cast<ssize_t>(size));
    linked_ = true;
    const berth_status s = Region(berth_shared_limiter_open(&l_, g_name.data(), g_name.size(), 1 + how % 3, how % 2),
                                 {BERTH_OK, BERTH_ERR_BAD_REGION});
    Expect(s == BERTH_ERR_BAD_REGION || (size == kLayout.size && mode == 0600));
    if (s != BERTH_OK) return false;
    Map();
    slot_ = 0;  // the first slot whose lock was free
    epoch_ = Load<uint32_t>(mem_ + kLayout.slots);
    cap_ = 1 + how % 3;  // a guess: the region says what it is
    return true;
  }

  void Map() {
    void* m = mmap(nullptr, kLayout.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    Expect(m != MAP_FAILED);
    mem_ = static_cast<uint8_t*>(m);
  }

  // ---- edits ---------------------------------------------------------------

  // An 8-byte word of one of the checked structures.
  size_t Word(uint8_t b) {
    const uint8_t w = in_.byte();
    switch (b % 5) {
      case 0: return kLayout.capacity + 8 * (w % 2);
      case 1: return kLayout.in_use + 8 * (w % 4);
      case 2: return kLayout.slots + slot_ * kLayout.slot_size + 8 * (w % (kLayout.slot_size / 8));
      case 3: return kLayout.slots + (w % berth::kSharedProcesses) * kLayout.slot_size + 8 * (w / 128);
      default: return kLayout.waiters + (w % 4) * kLayout.waiter_size + 8 * (w / 64 % (kLayout.waiter_size / 8));
    }
  }

  void Edit() {
    const uint8_t b = in_.byte();
    const std::vector<uint8_t> was(mem_, mem_ + kLayout.size);
    switch (b % 6) {
      case 0:
      case 1: {  // random bytes anywhere
        const size_t at = (size_t{in_.byte()} << 8 | in_.byte()) % kLayout.size;
        const size_t len = std::min<size_t>(1 + b / 8 % 16, kLayout.size - at);
        for (size_t i = at; i < at + len; ++i) mem_[i] = in_.byte() ^ Key(i);
        break;
      }
      case 2:  // a small number in a counter, slot or waiter
        Store<int64_t>(mem_ + Word(b / 8), static_cast<int8_t>(in_.byte()));
        break;
      case 3: {  // another slot, alive or not, owns the lock
        const uint64_t slot = 1 + in_.byte() % berth::kSharedProcesses;
        Store<uint64_t>(mem_ + kLayout.lock_owner, b & 0x80 ? 0 : uint64_t{in_.byte()} << 32 | slot);
        break;
      }
      case 4: {  // a replay: a stretch as it was when this input began
        if (before_.empty()) break;
        const size_t at = Word(b / 8) & ~size_t{7};
        std::copy(before_.begin() + static_cast<long>(at), before_.begin() + static_cast<long>(at + 16), mem_ + at);
        replayed_ |= !std::equal(was.begin() + static_cast<long>(at), was.begin() + static_cast<long>(at + 16), mem_ + at);
        break;
      }
      default: {  // the header
        const size_t at = in_.byte() % kLayout.ready;
        mem_[at] ^= static_cast<uint8_t>(1 + in_.byte() % 255);
        break;
      }
    }
    // Never a wait by construction (see the top).
    if (Load<uint32_t>(mem_ + kLayout.ready) == 0) Store<uint32_t>(mem_ + kLayout.ready, 1);
    if (slot_ >= 0 && Load<uint64_t>(mem_ + kLayout.lock_owner) == (uint64_t{epoch_} << 32 | (slot_ + 1)) &&
        Load<uint32_t>(mem_ + kLayout.slots + slot_ * kLayout.slot_size) == epoch_) {
      Store<uint64_t>(mem_ + kLayout.lock_owner, 0);
    }
    owner_set_ |= Load<uint64_t>(mem_ + kLayout.lock_owner) != 0;
    values_set_ |= !std::equal(was.begin() + static_cast<long>(kLayout.capacity), was.end(), mem_ + kLayout.capacity);
  }

  // A region call's status. While only this thread calls, the region's
  // lock can be held by nobody alive: giving up on it after kLockPatience
  // means a call left it held, or an edit left this process's own live slot
  // in the lock word (then every input would wait 2 s).
  berth_status Region(berth_status s, std::initializer_list<berth_status> allowed) {
    OneOf(s, allowed);
    if (s == BERTH_ERR_BAD_REGION && !async_) Expect(std::strstr(berth_last_error(nullptr), "held for over") == nullptr);
    return s;
  }

  // Whether an over-grant would be a bug (see the top).
  bool Checkable() const { return checkable_ && !replayed_ && !(owner_set_ && values_set_); }

  void Granted(int64_t n) {
    if (__builtin_add_overflow(held_, n, &held_)) held_ = INT64_MAX;  // only where obeying damage
    if (Checkable()) Expect(held_ <= cap_max_);
  }

  // ---- operations ----------------------------------------------------------

  void Step() {
    switch (in_.byte() % 10) {
      case 0:
      case 9: Edit(); break;
      case 1: TryAcquire(l_); break;
      case 2: {
        const int64_t n = Permits();
        const uint8_t t = in_.byte();
        const int64_t timeout = waits_++ >= kMaxWaits || t % 3 == 0 ? 0 : t % 3 == 1 ? 1'000 : 1'000'000;
        const berth_status s = Region(berth_shared_limiter_acquire(l_, n, timeout),
                                     {BERTH_OK, BERTH_ERR_TIMEOUT, BERTH_ERR_INVALID_ARGUMENT, BERTH_ERR_BAD_REGION,
                                      BERTH_ERR_INTERNAL});  // internal: the waiter slots are full
        if (s == BERTH_OK) Granted(n);
        break;
      }
      case 3: Release(l_); break;
      case 4: {
        const uint8_t b = in_.byte();
        const int64_t c = b % 16 == 15 ? INT64_MAX : b % 10;
        const berth_status s = Region(berth_shared_limiter_set_capacity(l_, c),
                                     {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT, BERTH_ERR_BAD_REGION});
        Expect((s == BERTH_ERR_INVALID_ARGUMENT) == (c < 1));
        if (s == BERTH_OK) cap_max_ = std::max(cap_max_, c);
        break;
      }
      case 5: Stats(l_); break;
      case 6: Async(); break;
      case 7: SecondHandle(); break;
      default: {
        const berth_status s = OneOf(berth_shared_limiter_unlink(g_name.data(), g_name.size()),
                                     {BERTH_OK, BERTH_ERR_NOT_FOUND});
        Expect((s == BERTH_OK) == linked_);
        linked_ = false;  // the open handles keep using the region
        break;
      }
    }
  }

  int64_t Permits() {
    const uint8_t b = in_.byte();
    return b % 32 == 31 ? INT64_MAX : b % (cap_ + 2);
  }

  void TryAcquire(berth_shared_limiter* l) {
    const int64_t n = Permits();
    int why = -1;
    const berth_status s = Region(berth_shared_limiter_try_acquire(&why, l, n),
                                 {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT, BERTH_ERR_BAD_REGION});
    if (n < 1) Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    if (s != BERTH_OK) return;
    Expect(why >= BERTH_LIMIT_GRANTED && why <= BERTH_LIMIT_WAITERS_QUEUED);
    if (why == BERTH_LIMIT_GRANTED) Granted(n);
  }

  void Release(berth_shared_limiter* l) {
    const uint8_t b = in_.byte();
    const int64_t n = held_ > INT64_MAX - 16 ? b : b % 16 == 15 ? held_ + 1 + b / 16 : b % (held_ + 1);
    const berth_status s =
        Region(berth_shared_limiter_release(l, n), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT, BERTH_ERR_BAD_REGION});
    if (n < 1) Expect(s == BERTH_ERR_INVALID_ARGUMENT);
    // A region obeyed when it should not have been may hold less for this
    // process than it was given: then more than it holds fails.
    if (s == BERTH_OK) {
      if (Checkable()) Expect(n <= held_);
      held_ = std::max<int64_t>(0, held_ - n);
    }
  }

  void Stats(berth_shared_limiter* l) {
    berth_shared_limiter_stats st{};
    if (Region(berth_shared_limiter_get_stats(&st, l), {BERTH_OK, BERTH_ERR_BAD_REGION}) != BERTH_OK) return;
    Expect(st.capacity >= 1 && st.in_use >= 0 && st.waiting >= 0 && st.waiting <= berth::kSharedWaiters &&
           st.holders >= 0 && st.holders <= berth::kSharedProcesses);
    if (Checkable()) Expect(st.capacity <= cap_max_ && st.in_use <= cap_max_);
  }

  // A second handle: permits are the process's, whichever handle took them.
  // Opening may find the region refused, or (after unlink) gone.
  berth_shared_limiter* OpenSecond() {
    berth_shared_limiter* h = nullptr;
    const int create = linked_ ? in_.byte() % 2 : 0;  // after unlink, create would make another region
    const berth_status s = Region(berth_shared_limiter_open(&h, g_name.data(), g_name.size(), 1 + cap_, create),
                                 {BERTH_OK, BERTH_ERR_BAD_REGION, BERTH_ERR_NOT_FOUND});
    Expect(s != BERTH_ERR_NOT_FOUND || !linked_);
    return s == BERTH_OK ? h : nullptr;
  }

  void SecondHandle() {
    berth_shared_limiter* h = OpenSecond();
    if (h == nullptr) return;
    TryAcquire(h);
    Stats(h);
    Release(h);
    Expect(Checked(berth_shared_limiter_close(h)) == BERTH_OK);  // not the last: nothing goes back
  }

  // Asynchronous waits on a second handle, whose thread is joined by the
  // close (unclaimed grants go back) before anything else writes the region.
  void Async() {
    berth_shared_limiter* h = OpenSecond();
    if (h == nullptr) return;
    struct Ticket {
      uint64_t ticket;
      int64_t n;
    };
    std::vector<Ticket> open;
    async_ = true;  // from the first acquire_async, the handle's thread calls too
    for (int k = 1 + in_.byte() % 6; k > 0; --k) {
      const uint8_t b = in_.byte();
      switch (b % 5) {
        case 0:
        case 1: {
          const int64_t n = Permits();
          int now = -1;
          uint64_t ticket = 0;
          const uint64_t token = ++next_token_;
          const berth_status s = Region(berth_shared_limiter_acquire_async(&now, &ticket, h, n, notifier_, token),
                                       {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT, BERTH_ERR_BAD_REGION});
          if (s != BERTH_OK) break;
          Expect((now == 1) == (ticket == 0));
          if (now == 1) {
            Granted(n);
          } else {
            open.push_back({ticket, n});
            tokens_.insert(token);
          }
          break;
        }
        case 2: {
          if (open.empty()) break;
          const size_t i = b / 8 % open.size();
          int claimed = -1;
          Expect(Checked(berth_shared_limiter_claim(&claimed, h, open[i].ticket)) == BERTH_OK);
          if (claimed == 1) {
            Granted(open[i].n);
            open.erase(open.begin() + static_cast<long>(i));
          }
          break;
        }
        case 3: {
          if (open.empty()) break;
          const size_t i = b / 8 % open.size();
          int outcome = -1;
          Expect(Checked(berth_shared_limiter_cancel(&outcome, h, open[i].ticket)) == BERTH_OK);
          Expect(outcome == BERTH_CANCEL_WAS_WAITING || outcome == BERTH_CANCEL_WAS_GRANTED);
          open.erase(open.begin() + static_cast<long>(i));
          break;
        }
        default: {  // let the thread work, and take what it posted
          if (waits_++ < kMaxWaits) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          uint64_t got[8];
          size_t count = 0;
          do {
            Expect(Checked(berth_notifier_drain(&count, notifier_, got, 8)) == BERTH_OK);
            for (size_t i = 0; i < count; ++i) Expect(tokens_.erase(got[i]) == 1);  // ours, and once
          } while (count == 8);
          break;
        }
      }
    }
    Expect(Checked(berth_shared_limiter_close(h)) == BERTH_OK);  // joins the thread
    async_ = false;
  }

  // Give back what this process holds; on a region untouched by any edit,
  // that leaves it empty.
  void Finish() {
    if (held_ > 0) {
      const berth_status s = Region(berth_shared_limiter_release(l_, held_),
                                   {BERTH_OK, BERTH_ERR_BAD_REGION, BERTH_ERR_INVALID_ARGUMENT});
      if (Checkable() && !values_set_) Expect(s != BERTH_ERR_INVALID_ARGUMENT);
    }
    if (checkable_ && !values_set_ && !owner_set_ && !replayed_ && Unchanged()) {
      berth_shared_limiter_stats st{};
      Expect(Checked(berth_shared_limiter_get_stats(&st, l_)) == BERTH_OK);
      Expect(st.in_use == 0 && st.waiting == 0 && st.holders == 0);
    }
    Expect(Checked(berth_shared_limiter_close(l_)) == BERTH_OK);
    Expect(Checked(berth_shared_limiter_close(l_)) == BERTH_ERR_BAD_HANDLE);
  }

  // No edit touched the header either.
  bool Unchanged() const { return std::equal(before_.begin(), before_.begin() + static_cast<long>(kLayout.capacity), mem_); }

  Input& in_;
  berth_shared_limiter* l_ = nullptr;
  berth_notifier* notifier_ = nullptr;
  int fd_ = -1;
  uint8_t* mem_ = nullptr;
  bool linked_ = false;
  int slot_ = -1;
  uint32_t epoch_ = 0;
  std::vector<uint8_t> before_;  // the region as Berth made it (damage mode)
  int64_t cap_ = 1;
  int64_t cap_max_ = 0;  // the largest capacity while valid
  int64_t held_ = 0;     // granted to this process, not released
  int waits_ = 0;
  uint64_t next_token_ = 0;
  std::set<uint64_t> tokens_;  // posted by grants, not drained yet
  bool checkable_ = false;     // a region Berth made (not raw bytes)
  bool replayed_ = false, owner_set_ = false, values_set_ = false;
  bool async_ = false;  // a second thread may be in the region
};

}  // namespace

// A valid region's bytes, for raw regions with a valid header.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_name = "fuzz_region." + std::to_string(getpid());
  const std::string shape = g_name + ".shape";
  berth_shared_limiter_unlink(shape.data(), shape.size());
  berth_shared_limiter* l = nullptr;
  Expect(berth_shared_limiter_open(&l, shape.data(), shape.size(), 4, 1) == BERTH_OK);
  const std::string path = "/dev/shm/berth." + shape;
  g_valid.resize(kLayout.size);
  // Read once the handle is closed: closing an fd of the file while the
  // process is attached would drop its slot lock.
  Expect(berth_shared_limiter_close(l) == BERTH_OK);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  Expect(fd >= 0 && pread(fd, g_valid.data(), g_valid.size(), 0) == static_cast<ssize_t>(g_valid.size()));
  close(fd);
  Expect(berth_shared_limiter_unlink(shape.data(), shape.size()) == BERTH_OK);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Run(in).Go();
  return 0;
}
