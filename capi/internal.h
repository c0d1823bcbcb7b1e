// What the C ABI's capability files (capi/*.cc) share: the objects behind
// handles and their kinds, the status and last-error plumbing, Guard, the
// handle helpers, pointer+length validation and the FlatBuffers helpers.
// Internal: hidden like the rest of libberth, never installed.
#pragma once

#include <flatbuffers/flatbuffers.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "capi/berth.h"
#include "capi/handles.h"
#include "core/cache/object.h"
#include "core/common/alloc.h"
#include "core/common/status.h"
#include "core/selector/selector.h"

namespace berth::capi {

// The objects behind the handles. The C handle types (berth_engine, ...)
// stay incomplete here: a handle is a key into the HandleTable, looked up on
// every call and never dereferenced. Objects used by one file only are
// defined there.
struct EngineObject;       // engine_pool.cc
struct CacheObject;        // cache.cc
struct LimiterObject;      // limiter.h
struct NotifierObject;     // limiter.h
struct SharedLimiterObject;  // limiter.h
struct BucketObject;       // bucket.cc

// Bytes handed to the caller: a finished FlatBuffer, or plain text.
struct BufferObject {
  flatbuffers::DetachedBuffer fb;
  berth::String text;
  const uint8_t* data() const {
    return fb.data() != nullptr ? fb.data() : reinterpret_cast<const uint8_t*>(text.data());
  }
  size_t size() const { return fb.data() != nullptr ? fb.size() : text.size(); }
};

struct SelectorObject {
  berth::Selector selector;
};

// A reference to a cached object, and a list of them (object.cc reads them,
// cache.cc makes them).
struct ObjectHandleObject {
  berth::ObjectRef ref;
};
struct ObjectListObject {
  std::vector<berth::ObjectRef> objects;
};

// Fills the C view of an object's fields.
void ReadFields(const berth::Object& o, berth_object_fields* out) noexcept;

// Handle type -> object type, kind tag in the table, and name in messages.
// Kinds are internal (not part of the ABI) but must be distinct and non-zero.
template <class H>
struct Handle;
// kForkSafe: whether a forked child may use a handle its parent made (see
// "fork" in berth.h). Immutable objects (selectors, buffers) and the shared
// limiter (whose state is the shared region; its per-process part is
// rebuilt in the child) may; handles whose state is the parent's memory
// (engines, caches, limiters, buckets, notifiers) answer BERTH_ERR_FORKED.
#define BERTH_HANDLE_TYPE(H, Obj, k, fork_safe)                                \
  template <>                                                                  \
  struct Handle<H> {                                                           \
    using Object = Obj;                                                        \
    static constexpr uint8_t kKind = k;                                        \
    static constexpr const char* kName = #H;                                   \
    static constexpr bool kForkSafe = fork_safe;                               \
  };
BERTH_HANDLE_TYPE(berth_engine, EngineObject, 1, false)
BERTH_HANDLE_TYPE(berth_buffer, BufferObject, 2, true)
BERTH_HANDLE_TYPE(berth_selector, SelectorObject, 3, true)
BERTH_HANDLE_TYPE(berth_cache, CacheObject, 4, false)
BERTH_HANDLE_TYPE(berth_limiter, LimiterObject, 5, false)
BERTH_HANDLE_TYPE(berth_notifier, NotifierObject, 6, false)
BERTH_HANDLE_TYPE(berth_bucket, BucketObject, 7, false)
BERTH_HANDLE_TYPE(berth_shared_limiter, SharedLimiterObject, 8, true)
BERTH_HANDLE_TYPE(berth_object, ObjectHandleObject, 9, true)
BERTH_HANDLE_TYPE(berth_object_list, ObjectListObject, 10, true)
#undef BERTH_HANDLE_TYPE

// The per-thread last error (defined in common.cc). Every call clears it, so
// the hot path must be a cheap TLS access: a flag and a pointer in the
// initial-exec model (a few bytes of static TLS, no __tls_get_addr call;
// constinit: no TLS wrapper call either). The message itself lives in a heap
// string made on the thread's first error and freed at thread exit.
extern constinit thread_local bool t_has_error __attribute__((tls_model("initial-exec")));
extern constinit thread_local std::string* t_error __attribute__((tls_model("initial-exec")));

inline void ClearError() noexcept {
  if (t_has_error) {
    t_error->clear();
    t_has_error = false;
  }
}

// Records "fn: message" as the thread's last error and returns `status`.
berth_status Fail(const char* fn, berth_status status, std::string_view message);
berth_status Fail(const char* fn, const Status& s);

// Runs `body` (returning berth_status) with every exception turned into a status.
template <class F>
berth_status Guard(const char* fn, F&& body) noexcept {
  ClearError();
  // Memory this thread allocated for a pool or cache that another thread
  // dropped since can only be returned to the OS by this thread.
  berth::CollectIfReleased();
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(fn, BERTH_ERR_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return Fail(fn, BERTH_ERR_INTERNAL, e.what());
  } catch (...) {
    return Fail(fn, BERTH_ERR_INTERNAL, "unknown exception");
  }
}

// pointer+length -> string_view; NULL is allowed only with length 0.
inline bool View(const char* p, size_t n, std::string_view* out) {
  if (p == nullptr && n != 0) return false;
  *out = n == 0 ? std::string_view() : std::string_view(p, n);
  return true;
}

#define BERTH_REQUIRE(cond, fn, what)                                          \
  do {                                                                         \
    if (!(cond)) return Fail(fn, BERTH_ERR_INVALID_ARGUMENT, what);            \
  } while (0)

#define BERTH_VIEW(var, ptr, len, fn, what)                                    \
  std::string_view var;                                                        \
  BERTH_REQUIRE(View(ptr, len, &var), fn, what " is NULL with a non-zero length")

#define BERTH_CHECK(expr, fn)                                                  \
  do {                                                                         \
    if (Status s_ = (expr); !s_.ok()) return Fail(fn, s_);                     \
  } while (0)

// ---- handles ------------------------------------------------------------------

// The object of a live handle of type H usable in this process, or nullptr
// (NULL, freed, another type, not made by Berth, or made by the parent of a
// fork and not fork-safe).
template <class H>
typename Handle<H>::Object* Find(const H* h) noexcept {
  return static_cast<typename Handle<H>::Object*>(HandleTable::Get().Find(
      reinterpret_cast<uintptr_t>(h), Handle<H>::kKind, !Handle<H>::kForkSafe));
}

template <class H>
berth_status BadHandle(const char* fn, const char* param, const H* h) {
  if (h == nullptr) return Fail(fn, BERTH_ERR_INVALID_ARGUMENT, std::string(param) + " is NULL");
  if (HandleTable::Get().Forked(reinterpret_cast<uintptr_t>(h), Handle<H>::kKind)) {
    return Fail(fn, BERTH_ERR_FORKED,
                std::string(param) + " is a " + Handle<H>::kName +
                    " of the process this one was forked from; its state stays there: make a "
                    "new one in this process");
  }
  return Fail(fn, BERTH_ERR_BAD_HANDLE,
              std::string(param) + " is not a live " + Handle<H>::kName +
                  " (freed already, another type of handle, or not made by Berth)");
}

// Declares `var`, the object behind handle parameter `h`, or fails the call.
#define BERTH_HANDLE(var, h, fn)                                               \
  auto* const var = Find(h);                                                   \
  if (var == nullptr) return BadHandle(fn, #h, h)

// Hands a new object to the caller as a handle in *out.
template <class H>
berth_status Publish(const char* fn, H** out, berth::MiUnique<typename Handle<H>::Object> obj) {
  const uintptr_t h = HandleTable::Get().Open(Handle<H>::kKind, obj.get());
  if (h == 0) return Fail(fn, BERTH_ERR_NO_MEMORY, "no handle available (address range used up)");
  obj.release();
  *out = reinterpret_cast<H*>(h);
  return BERTH_OK;
}

// The body of every _free call: NULL is a no-op, a live handle is ended and
// its object destroyed, anything else is BERTH_ERR_BAD_HANDLE.
template <class H>
berth_status Destroy(const char* fn, const char* param, H* h) {
  return Guard(fn, [&]() -> berth_status {
    if (h == nullptr) return BERTH_OK;
    bool forked = false;
    void* obj = HandleTable::Get().Close(reinterpret_cast<uintptr_t>(h), Handle<H>::kKind, &forked);
    if (obj == nullptr) return BadHandle(fn, param, h);
    // A forked child's copy of a parent's object is left as it is: its locks
    // may have been held by threads that do not exist here. Its memory is
    // the child's copy of the parent's, never touched again.
    if (forked && !Handle<H>::kForkSafe) return BERTH_OK;
    berth::MiUnique<typename Handle<H>::Object> owned(static_cast<typename Handle<H>::Object*>(obj));
    return BERTH_OK;
  });
}

// A count argument (permits, capacity, burst): at least 1.
inline berth_status CheckCount(const char* fn, const char* what, int64_t n) {
  if (n < 1) return Fail(fn, BERTH_ERR_INVALID_ARGUMENT, std::string(what) + " must be >= 1");
  return BERTH_OK;
}

// ---- labels -------------------------------------------------------------------

using LabelVec = std::vector<berth::LabelPair, berth::Alloc<berth::LabelPair>>;

// Caller labels as views; false if a pointer is NULL with a length.
bool ReadLabels(const berth_label* labels, size_t n, LabelVec* out);

// ---- FlatBuffers ----------------------------------------------------------------

// FlatBuffers allocations for buffers handed to the caller go to mimalloc.
class MiAllocator final : public flatbuffers::Allocator {
 public:
  uint8_t* allocate(size_t size) override {
    void* p = berth::Malloc(size);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<uint8_t*>(p);
  }
  void deallocate(uint8_t* p, size_t) override { berth::Free(p); }
};
extern MiAllocator g_mi_allocator;  // stateless; shared by every builder (common.cc)

inline berth::MiUnique<BufferObject> Detach(flatbuffers::FlatBufferBuilder& fbb) {
  auto buf = berth::MakeMiUnique<BufferObject>();
  buf->fb = fbb.Release();
  return buf;
}

inline std::string_view Text(const flatbuffers::String* s) {
  return s == nullptr ? std::string_view() : std::string_view(s->c_str(), s->size());
}

// A caller's buffer as FlatBuffers wants it: aligned for its widest scalar.
// FlatBuffers reads scalars in place and its verifier checks alignment only
// relative to the buffer's start, so a buffer at an odd address would be
// read through misaligned pointers; such a buffer is copied first (found by
// fuzz_buffers).
class AlignedInput {
 public:
  AlignedInput(const uint8_t* buf, size_t len) : data_(buf) {
    if (reinterpret_cast<uintptr_t>(buf) % alignof(uint64_t) != 0 && len > 0) {
      copy_.assign(buf, buf + len);
      data_ = copy_.data();
    }
  }
  const uint8_t* data() const { return data_; }

 private:
  const uint8_t* data_;
  std::vector<uint8_t, berth::Alloc<uint8_t>> copy_;  // allocations are 16-aligned
};

// Checks a FlatBuffers input: size, file identifier, then the verifier.
template <class Root>
berth_status Verify(const char* fn, const uint8_t* buf, size_t len, const char* id,
                    const char* what) {
  if (len > BERTH_MAX_BUFFER_LEN) {
    return Fail(fn, BERTH_ERR_BAD_BUFFER, "buffer is larger than BERTH_MAX_BUFFER_LEN");
  }
  if (len < 8 || !flatbuffers::BufferHasIdentifier(buf, id)) {
    return Fail(fn, BERTH_ERR_BAD_BUFFER,
                std::string("not a FlatBuffers ") + what + ": file identifier " + id + " missing");
  }
  // Every table needs at least 8 bytes, so this bound never rejects a
  // well-formed buffer while still capping the verifier's work.
  flatbuffers::Verifier verifier(buf, len, 64, 1 + len / 8);
  if (!verifier.VerifyBuffer<Root>(id)) {
    return Fail(fn, BERTH_ERR_BAD_BUFFER, std::string(what) + " failed FlatBuffers verification");
  }
  return BERTH_OK;
}

}  // namespace berth::capi
