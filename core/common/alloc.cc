#include "core/common/alloc.h"

#ifndef BERTH_SYSTEM_ALLOCATOR

namespace berth {
namespace alloc_internal {

__thread mi_heap_t* t_heaps[kHeaps] __attribute__((tls_model("initial-exec"))) = {};
std::atomic<uint64_t> g_release_epoch{0};
__thread uint64_t t_release_seen __attribute__((tls_model("initial-exec"))) = 0;
__thread uint64_t t_allocations __attribute__((tls_model("initial-exec"))) = 0;

namespace {

// Address space only: mimalloc commits arena memory as it hands it out and
// decommits (MADV_DONTNEED) what comes back. If none of these sizes can be
// reserved (a tight RLIMIT_AS, or mimalloc's 64 arenas taken), that kind of
// data goes to the default heap; if an arena fills up, HeapMalloc falls
// back to the default heap for the excess. Either way Berth keeps working
// and only returns memory as well as the default heap lets it.
constexpr size_t kArenaSizes[] = {size_t{64} << 30, size_t{16} << 30, size_t{4} << 30,
                                  size_t{1} << 30};

// mi_arena_id_t 0 is mimalloc's "no arena".
mi_arena_id_t Reserve() {
  for (size_t size : kArenaSizes) {
    mi_arena_id_t id = 0;
    // Exclusive: only heaps made in it allocate there, so Berth's blocks of
    // another kind (default-heap ones) never land in it.
    if (mi_reserve_os_memory_ex(size, /*commit=*/false, /*allow_large=*/false,
                                /*exclusive=*/true, &id) == 0) {
      return id;
    }
  }
  return 0;
}

mi_arena_id_t ArenaFor(Heap h) {
  static const mi_arena_id_t arenas[kHeaps] = {Reserve(), Reserve()};
  return arenas[static_cast<size_t>(h)];
}

enum class State : uint8_t { kNone, kLive, kGone };
__thread State t_states[kHeaps] __attribute__((tls_model("initial-exec"))) = {};

// Deletes the thread's arena heaps when the thread ends, before mimalloc's
// own thread teardown (C++ thread_local destructors run before pthread key
// destructors). Blocks still live in them move to the thread's default heap
// (mi_heap_delete), where any thread can still free them. An allocation
// after this (from a later thread_local destructor) uses the default heap.
struct HeapsOwner {
  ~HeapsOwner() {
    for (size_t i = 0; i < kHeaps; ++i) {
      if (t_states[i] != State::kLive) continue;
      mi_heap_collect(t_heaps[i], true);  // blocks others freed: back to the OS now
      mi_heap_delete(t_heaps[i]);
      t_heaps[i] = nullptr;
      t_states[i] = State::kGone;
    }
  }
};

}  // namespace

mi_heap_t* HeapSlow(Heap h) {
  const size_t i = static_cast<size_t>(h);
  if (t_states[i] == State::kNone) {
    const mi_arena_id_t arena = ArenaFor(h);
    mi_heap_t* heap = arena != 0 ? mi_heap_new_in_arena(arena) : nullptr;
    if (heap == nullptr) {
      t_states[i] = State::kGone;
    } else {
      static thread_local HeapsOwner owner;  // registers the thread-exit hook
      (void)owner;
      t_heaps[i] = heap;
      t_states[i] = State::kLive;
      return heap;
    }
  }
  // No arena heap of this kind on this thread: the thread's default heap of
  // Berth's own mimalloc (compiled into libberth, invisible to the host).
  return mi_heap_get_default();
}

void CatchUp() {
  t_release_seen = g_release_epoch.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kHeaps; ++i) {
    if (t_states[i] == State::kLive) mi_heap_collect(t_heaps[i], true);
  }
}

}  // namespace alloc_internal

void ReleaseFreedMemory(size_t bytes) {
  if (bytes < kReleaseMinBytes) return;
  using namespace alloc_internal;
  // Others catch up at their next CollectIfReleased; this thread now.
  g_release_epoch.fetch_add(1, std::memory_order_relaxed);
  CatchUp();
  // Even a thread without arena heaps collects one: the collection also
  // returns the empty segments mimalloc caches, whoever freed them. (With
  // no arena at all this is the default heap, where the data went.)
  if (t_states[static_cast<size_t>(Heap::kBulk)] != State::kLive) {
    mi_heap_collect(HeapSlow(Heap::kBulk), true);
  }
}

}  // namespace berth

#endif  // BERTH_SYSTEM_ALLOCATOR
