// Berth's own data lives on mimalloc, used through its explicit API so the
// host process keeps its allocator (we never override malloc/new).
//
// Homes, by lifetime:
//  - Alloc<T>, String, Malloc, MakeMiUnique: the calling thread's default
//    mimalloc heap. For what lives as long as a handle (engines, caches,
//    registry slots) and for short-lived buffers.
//  - BulkAlloc<T>, BulkString, BulkMalloc, MakeBulkUnique: the data that
//    grows with keys and objects (pool entries, cache objects and indexes).
//  - TombstoneAlloc<T>: a cache's tombstones, which outlive the objects they
//    record.
// Each of the last two goes to a per-thread heap in an exclusive mimalloc
// arena of its own, so no block of another lifetime shares a mimalloc
// segment with it. That matters because mimalloc 2.0 returns the free part
// of a segment that still holds a live block only on later activity in that
// segment (25 ms on, and only then), while a segment with nothing live goes
// back whole. So once a pool or a cache's objects are dropped,
// ReleaseFreedMemory() hands their memory back to the OS.
//
// Freeing any of them is Free (mi_free), from any thread.
//
// Sanitizer builds define BERTH_SYSTEM_ALLOCATOR: mimalloc is not
// instrumented, so ThreadSanitizer cannot see the ordering its free lists
// provide and AddressSanitizer cannot see its blocks; there everything goes
// through the (intercepted) system allocator instead, and releasing is a
// no-op (the sanitizers' allocators keep freed memory in quarantine anyway).
#pragma once

#ifndef BERTH_SYSTEM_ALLOCATOR
#include <mimalloc.h>
#endif

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "core/common/hash.h"

namespace berth {

// The arena-backed heaps.
enum class Heap : uint8_t { kBulk, kTombstones };
inline constexpr size_t kHeaps = 2;

// Below this, ReleaseFreedMemory does nothing: its forced collection visits
// every page of the thread's arena heaps and every cached segment, about the
// cost of freeing a few thousand keys.
inline constexpr size_t kReleaseMinBytes = size_t{1} << 20;

#ifdef BERTH_SYSTEM_ALLOCATOR
template <class T>
using Alloc = std::allocator<T>;
template <class T, Heap H>
using HeapAlloc = std::allocator<T>;
inline void* Malloc(size_t size) { return std::malloc(size); }
inline void* BulkMalloc(size_t size) { return std::malloc(size); }
inline void Free(void* p) { std::free(p); }
inline void ReleaseFreedMemory(size_t) {}
inline void CollectIfReleased() {}
inline uint64_t AllocationsOnThisThread() { return 0; }
#else
namespace alloc_internal {
// Blocks handed to this thread by every allocation path below.
extern __thread uint64_t t_allocations __attribute__((tls_model("initial-exec")));
}  // namespace alloc_internal

// How many blocks Berth's allocator has handed this thread so far (every
// path below counts: one increment of a thread-local). Tests use it to prove
// that a path allocates nothing; builds with the system allocator return 0.
inline uint64_t AllocationsOnThisThread() { return alloc_internal::t_allocations; }

inline void* Malloc(size_t size) {
  ++alloc_internal::t_allocations;
  return mi_malloc(size);
}
inline void Free(void* p) { mi_free(p); }

namespace alloc_internal {
// This thread's heap of each kind; null until its first allocation there,
// and when Berth has no arena for it (then the default heap serves).
extern __thread mi_heap_t* t_heaps[kHeaps] __attribute__((tls_model("initial-exec")));
// Bumped by every ReleaseFreedMemory; what this thread has caught up with.
extern std::atomic<uint64_t> g_release_epoch;
extern __thread uint64_t t_release_seen __attribute__((tls_model("initial-exec")));
mi_heap_t* HeapSlow(Heap h);
void CatchUp();
}  // namespace alloc_internal

template <Heap H>
inline void* HeapMalloc(size_t size) {
  mi_heap_t* heap = alloc_internal::t_heaps[static_cast<size_t>(H)];
  if (heap == nullptr) [[unlikely]] heap = alloc_internal::HeapSlow(H);
  ++alloc_internal::t_allocations;
  void* p = mi_heap_malloc(heap, size);
  if (p == nullptr) [[unlikely]] p = mi_malloc(size);  // the arena is full
  return p;
}
inline void* BulkMalloc(size_t size) { return HeapMalloc<Heap::kBulk>(size); }

// std::allocator over one of the functions above (Malloc, HeapMalloc<H>).
// Stateless: any two compare equal, so containers move and swap their
// blocks freely. Out of memory throws std::bad_alloc, which the C ABI turns
// into BERTH_ERR_NO_MEMORY (mi_stl_allocator would abort).
template <class T, void* (*Allocate)(size_t)>
struct BlockAlloc {
  using value_type = T;
  static_assert(alignof(T) <= alignof(std::max_align_t), "mimalloc aligns to 16");
  template <class U>
  struct rebind {
    using other = BlockAlloc<U, Allocate>;
  };
  BlockAlloc() noexcept = default;
  template <class U>
  BlockAlloc(const BlockAlloc<U, Allocate>&) noexcept {}
  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    void* p = Allocate(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) noexcept { mi_free(p); }
  friend bool operator==(const BlockAlloc&, const BlockAlloc&) noexcept { return true; }
};

// The thread's default mimalloc heap.
template <class T>
using Alloc = BlockAlloc<T, &Malloc>;
// The thread's arena heap of kind H.
template <class T, Heap H>
using HeapAlloc = BlockAlloc<T, &HeapMalloc<H>>;

// Call after dropping a large amount of arena-backed data (a pool, a
// cache's contents) on this thread: gives back to the OS what this thread's
// arena heaps hold free, and every empty segment mimalloc caches (process
// wide: mi_heap_collect with force). Blocks this thread freed that other
// threads allocated sit on those threads' free lists until they collect:
// each does at its next CollectIfReleased. `bytes` is roughly what was
// dropped; below kReleaseMinBytes this does nothing.
void ReleaseFreedMemory(size_t bytes);

// Collects this thread's arena heaps if some thread released memory since
// it last looked (blocks this thread allocated may have been freed there).
// Cheap when nothing happened: two loads. The C ABI calls it on entry.
inline void CollectIfReleased() {
  if (alloc_internal::t_release_seen !=
      alloc_internal::g_release_epoch.load(std::memory_order_relaxed)) [[unlikely]] {
    alloc_internal::CatchUp();
  }
}
#endif

template <class T>
using BulkAlloc = HeapAlloc<T, Heap::kBulk>;
template <class T>
using TombstoneAlloc = HeapAlloc<T, Heap::kTombstones>;

using String = std::basic_string<char, std::char_traits<char>, Alloc<char>>;
template <Heap H>
using HeapString = std::basic_string<char, std::char_traits<char>, HeapAlloc<char, H>>;
using BulkString = HeapString<Heap::kBulk>;

// Transparent hash/equality so maps keyed by String can be probed with a
// std::string_view without building a String.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return HashBytes(s); }
  size_t operator()(const String& s) const noexcept { return (*this)(std::string_view(s)); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};

// std::make_unique over an allocator: MakeMiUnique on the default heap,
// MakeBulkUnique on the bulk heap.
template <class T, class A>
struct AllocDelete {
  void operator()(T* p) const noexcept {
    A a;
    std::allocator_traits<A>::destroy(a, p);
    a.deallocate(p, 1);
  }
};
template <class T>
using MiUnique = std::unique_ptr<T, AllocDelete<T, Alloc<T>>>;
template <class T>
using BulkUnique = std::unique_ptr<T, AllocDelete<T, BulkAlloc<T>>>;
template <class T, class A, class... Args>
std::unique_ptr<T, AllocDelete<T, A>> MakeUniqueWith(Args&&... args) {
  A a;
  T* p = a.allocate(1);
  try {
    std::allocator_traits<A>::construct(a, p, std::forward<Args>(args)...);
  } catch (...) {
    a.deallocate(p, 1);
    throw;
  }
  return std::unique_ptr<T, AllocDelete<T, A>>(p);
}
template <class T, class... Args>
MiUnique<T> MakeMiUnique(Args&&... args) {
  return MakeUniqueWith<T, Alloc<T>>(std::forward<Args>(args)...);
}
template <class T, class... Args>
BulkUnique<T> MakeBulkUnique(Args&&... args) {
  return MakeUniqueWith<T, BulkAlloc<T>>(std::forward<Args>(args)...);
}

}  // namespace berth
