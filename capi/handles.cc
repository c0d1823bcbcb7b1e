#include "capi/handles.h"

#include <pthread.h>
#include <sys/mman.h>

#include <new>

namespace berth::capi {

namespace {
constexpr uintptr_t kAddrMask = (uintptr_t{1} << HandleTable::kGenShift) - 1;
constexpr uint32_t State(uint32_t gen, uint8_t kind) { return gen << 8 | kind; }
constexpr uint32_t GenOf(uint32_t state) { return (state >> 8) & HandleTable::kGenMask; }
constexpr uint8_t KindOf(uint32_t state) { return static_cast<uint8_t>(state & 0xff); }
}  // namespace

static_assert(sizeof(void*) == 8, "handles carry a generation in the top bits of a 64-bit word");

namespace {
// Which process this is, for handles inherited through fork: a counter
// bumped in the child of every fork (before the child runs anything). Not
// the pid: a grandchild can get its dead grandparent's pid, and would take
// the grandparent's handles for its own.
std::atomic<uint32_t> g_process{1};
void NextProcess() { g_process.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

uint32_t HandleTable::Process() noexcept { return g_process.load(std::memory_order_relaxed); }

HandleTable& HandleTable::Get() {
  static HandleTable* table = new HandleTable();  // leaked on purpose: see the header
  return *table;
}

HandleTable::HandleTable() {
  pthread_atfork(nullptr, nullptr, NextProcess);
  // Address space only: PROT_NONE pages cost no memory and count against no
  // commit limit until Commit makes them readable.
  void* p = mmap(nullptr, kReserveBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p != MAP_FAILED) base_ = static_cast<char*>(p);  // else every Open fails: NO_MEMORY
}

bool HandleTable::Commit(uint64_t index) noexcept {
  const size_t need = (index + 1) * kCellBytes;
  if (base_ == nullptr || need > kReserveBytes) return false;
  // Lock-free, so a fork can never leave it held: threads racing to grow
  // may make the same step readable twice, which is harmless.
  for (size_t have = committed_.load(std::memory_order_acquire); have < need;
       have = committed_.load(std::memory_order_acquire)) {
    if (mprotect(base_ + have, kCommitStep, PROT_READ | PROT_WRITE) != 0) return false;
    size_t expected = have;
    committed_.compare_exchange_strong(expected, have + kCommitStep, std::memory_order_acq_rel);
  }
  return true;
}

HandleTable::Cell* HandleTable::CellOf(uintptr_t h) const noexcept {
  const uintptr_t off = (h & kAddrMask) - reinterpret_cast<uintptr_t>(base_);
  if (off >= committed_.load(std::memory_order_acquire) || off % kCellBytes != 0) return nullptr;
  return reinterpret_cast<Cell*>(base_ + off);
}

uintptr_t HandleTable::Open(uint8_t kind, void* obj) noexcept {
  uint32_t index = 0;
  bool have = false;
  if (free_count_.load(std::memory_order_relaxed) > kQuarantine && free_.try_dequeue(index)) {
    free_count_.fetch_sub(1, std::memory_order_relaxed);
    have = true;
  } else {
    const uint64_t fresh = next_.fetch_add(1, std::memory_order_relaxed);
    if (Commit(fresh)) {
      index = static_cast<uint32_t>(fresh);
      have = true;
    } else if (free_.try_dequeue(index)) {  // range used up: reuse early rather than fail
      free_count_.fetch_sub(1, std::memory_order_relaxed);
      have = true;
    }
  }
  if (!have) return 0;
  Cell* cell = reinterpret_cast<Cell*>(base_ + size_t{index} * kCellBytes);
  const uint32_t gen = GenOf(cell->state.load(std::memory_order_relaxed));
  cell->obj.store(obj, std::memory_order_relaxed);
  cell->process.store(Process(), std::memory_order_relaxed);
  cell->state.store(State(gen, kind), std::memory_order_release);
  live_.fetch_add(1, std::memory_order_relaxed);
  return reinterpret_cast<uintptr_t>(cell) | uintptr_t{gen} << kGenShift;
}

void* HandleTable::Find(uintptr_t h, uint8_t kind, bool this_process) const noexcept {
  const Cell* cell = CellOf(h);
  if (cell == nullptr) return nullptr;
  const uint32_t state = cell->state.load(std::memory_order_acquire);
  if (state != State(static_cast<uint32_t>(h >> kGenShift), kind)) return nullptr;
  if (this_process && cell->process.load(std::memory_order_relaxed) != Process()) return nullptr;
  return cell->obj.load(std::memory_order_relaxed);
}

bool HandleTable::Forked(uintptr_t h, uint8_t kind) const noexcept {
  const Cell* cell = CellOf(h);
  if (cell == nullptr) return false;
  const uint32_t state = cell->state.load(std::memory_order_acquire);
  return state == State(static_cast<uint32_t>(h >> kGenShift), kind) &&
         cell->process.load(std::memory_order_relaxed) != Process();
}

void* HandleTable::Close(uintptr_t h, uint8_t kind, bool* forked) noexcept {
  Cell* cell = CellOf(h);
  if (cell == nullptr) return nullptr;
  uint32_t state = State(static_cast<uint32_t>(h >> kGenShift), kind);
  void* obj = cell->obj.load(std::memory_order_relaxed);
  *forked = cell->process.load(std::memory_order_relaxed) != Process();
  const uint32_t freed = State((GenOf(state) + 1) & kGenMask, 0);
  if (!cell->state.compare_exchange_strong(state, freed, std::memory_order_acq_rel)) {
    return nullptr;
  }
  live_.fetch_sub(1, std::memory_order_relaxed);
  const auto index = static_cast<uint32_t>((reinterpret_cast<char*>(cell) - base_) / kCellBytes);
  // An enqueue that cannot allocate loses the cell (it stays free, never
  // reused); the handle is still ended.
  if (free_.enqueue(index)) free_count_.fetch_add(1, std::memory_order_relaxed);
  return obj;
}

}  // namespace berth::capi
