// Berth's own data lives on mimalloc, used through its explicit API so the
// host process keeps its allocator (we never override malloc/new).
//
// Sanitizer builds define BERTH_SYSTEM_ALLOCATOR: mimalloc is not
// instrumented, so ThreadSanitizer cannot see the ordering its free lists
// provide and AddressSanitizer cannot see its blocks; there everything goes
// through the (intercepted) system allocator instead.
#pragma once

#ifndef BERTH_SYSTEM_ALLOCATOR
#include <mimalloc.h>
#endif

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/common/hash.h"

namespace berth {

#ifdef BERTH_SYSTEM_ALLOCATOR
template <class T>
using Alloc = std::allocator<T>;
inline void* Malloc(size_t size) { return std::malloc(size); }
inline void Free(void* p) { std::free(p); }
#else
template <class T>
using Alloc = mi_stl_allocator<T>;
inline void* Malloc(size_t size) { return mi_malloc(size); }
inline void Free(void* p) { mi_free(p); }
#endif

using String = std::basic_string<char, std::char_traits<char>, Alloc<char>>;

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

// std::make_unique on mimalloc.
template <class T>
struct MiDelete {
  void operator()(T* p) const noexcept {
    Alloc<T> a;
    std::allocator_traits<Alloc<T>>::destroy(a, p);
    a.deallocate(p, 1);
  }
};
template <class T>
using MiUnique = std::unique_ptr<T, MiDelete<T>>;
template <class T, class... Args>
MiUnique<T> MakeMiUnique(Args&&... args) {
  Alloc<T> a;
  T* p = a.allocate(1);
  try {
    std::allocator_traits<Alloc<T>>::construct(a, p, std::forward<Args>(args)...);
  } catch (...) {
    a.deallocate(p, 1);
    throw;
  }
  return MiUnique<T>(p);
}

}  // namespace berth
