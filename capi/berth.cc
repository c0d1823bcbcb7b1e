// The C ABI over the core. Every entry point: clears the thread's last error,
// validates its arguments, calls the core inside Guard (so no exception ever
// crosses), and maps the core's Status to a berth_status one to one.
#define BERTH_BUILDING_LIBRARY 1
#include "capi/berth.h"

#include <flatbuffers/flatbuffers.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "berth_generated.h"
#include "capi/handles.h"
#include "core/cache/cache.h"
#include "core/cache/object.h"
#include "core/common/alloc.h"
#include "core/common/status.h"
#include "core/common/text.h"
#include "core/engine/engine.h"
#include "core/limit/bucket.h"
#include "core/limit/limiter.h"
#include "core/limit/notifier.h"
#include "core/limit/shared.h"
#include "core/pool/pool.h"
#include "core/selector/selector.h"

namespace {

using berth::capi::HandleTable;

// The objects behind the handles. The C handle types (berth_engine, ...)
// stay incomplete here: a handle is a key into the HandleTable, looked up on
// every call and never dereferenced.
struct EngineObject {
  berth::Engine engine;
};

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

struct CacheObject {
  explicit CacheObject(size_t tombstone_limit) : cache(tombstone_limit) {}
  berth::ObjectCache cache;
};

struct LimiterObject {
  explicit LimiterObject(int64_t capacity) : limiter(capacity) {}
  berth::ConcurrencyLimiter limiter;
};

struct NotifierObject {
  std::shared_ptr<berth::Notifier> notifier;
};

struct SharedLimiterObject {
  berth::MiUnique<berth::SharedLimiter> limiter;
};

struct BucketObject {
  BucketObject(double rate, int64_t burst) : bucket(rate, burst) {}
  berth::TokenBucket bucket;
};

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
#undef BERTH_HANDLE_TYPE

}  // namespace

namespace {

using berth::Code;
using berth::Status;

static_assert(BERTH_MAX_POOL_LEN == berth::kMaxPoolLen);
static_assert(BERTH_MAX_NAMESPACE_LEN == berth::kMaxNamespaceLen);
static_assert(BERTH_MAX_NAME_LEN == berth::kMaxNameLen);
static_assert(BERTH_MAX_NODE_LEN == berth::kMaxNodeLen);
static_assert(BERTH_POOL_PUT_BACK_WINDOW == berth::kPutBackWindow);
static_assert(static_cast<int>(Code::kInternal) == BERTH_ERR_INTERNAL);

// The per-thread last error. Every call clears it, so the hot path must be a
// cheap TLS access: a flag and a pointer in the initial-exec model (a few
// bytes of static TLS, no __tls_get_addr call). The message itself lives in
// a heap string made on the thread's first error and freed at thread exit.
thread_local bool t_has_error __attribute__((tls_model("initial-exec"))) = false;
thread_local std::string* t_error __attribute__((tls_model("initial-exec"))) = nullptr;
thread_local std::unique_ptr<std::string> t_error_owner;  // touched on first error only

void ClearError() noexcept {
  if (t_has_error) {
    t_error->clear();
    t_has_error = false;
  }
}

berth_status Fail(const char* fn, berth_status status, std::string_view message) {
  try {
    if (t_error == nullptr) {
      t_error_owner = std::make_unique<std::string>();
      t_error = t_error_owner.get();
    }
    t_error->assign(fn);
    t_error->append(": ");
    // Messages may quote the caller's input; they stay valid UTF-8 without
    // NUL so every binding can decode them and C can read them as a string.
    t_error->append(berth::Printable(message));
    t_has_error = true;
  } catch (...) {
    // Out of memory while reporting; the status still tells.
  }
  return status;
}

berth_status Fail(const char* fn, const Status& s) {
  return Fail(fn, static_cast<berth_status>(s.code()), s.message());
}

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
bool View(const char* p, size_t n, std::string_view* out) {
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

berth_status UnknownPool(const char* fn, std::string_view pool) {
  return Fail(fn, BERTH_ERR_NOT_FOUND, "unknown pool '" + std::string(pool) + "'");
}

// The shared prologue of calls that read one existing pool into `out`:
// checks out, engine and the pool name; on success stores the engine's
// object in *eng and the name in *p.
berth_status ReadArgs(const char* fn, const void* out, const char* out_name,
                      const berth_engine* engine, const char* pool, size_t pool_len,
                      EngineObject** eng, std::string_view* p) {
  if (out == nullptr) return Fail(fn, BERTH_ERR_INVALID_ARGUMENT, std::string(out_name) + " is NULL");
  *eng = Find(engine);
  if (*eng == nullptr) return BadHandle(fn, "engine", engine);
  BERTH_REQUIRE(View(pool, pool_len, p), fn, "pool is NULL with a non-zero length");
  BERTH_CHECK(berth::CheckPoolName(*p), fn);
  return BERTH_OK;
}

void CopyOut(const berth::HandOut& h, berth_pool_key* out) {
  out->seq = h.seq;
  out->token = h.token;
  out->ready = h.ready ? 1 : 0;
  std::memset(out->reserved_, 0, sizeof out->reserved_);
  out->namespace_len = h.ns.len;
  out->name_len = h.name.len;
  out->node_len = h.node.len;
  std::memcpy(out->namespace_, h.ns.data, h.ns.len);
  std::memcpy(out->name, h.name.data, h.name.len);
  std::memcpy(out->node, h.node.data, h.node.len);
}

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
MiAllocator g_mi_allocator;  // stateless; shared by every builder

berth::MiUnique<BufferObject> Detach(flatbuffers::FlatBufferBuilder& fbb) {
  auto buf = berth::MakeMiUnique<BufferObject>();
  buf->fb = fbb.Release();
  return buf;
}

static_assert(static_cast<int>(Code::kNotSynced) == BERTH_ERR_NOT_SYNCED);
static_assert(static_cast<int>(Code::kBadSelector) == BERTH_ERR_BAD_SELECTOR);
static_assert(static_cast<int>(Code::kTimeout) == BERTH_ERR_TIMEOUT);
static_assert(static_cast<int>(Code::kBadRegion) == BERTH_ERR_BAD_REGION);
static_assert(BERTH_MAX_PAYLOAD_LEN == berth::kMaxPayloadLen);
static_assert(BERTH_MAX_LABELS == berth::kMaxLabels);

std::string_view Text(const flatbuffers::String* s) {
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

using LabelVec = std::vector<berth::LabelPair, berth::Alloc<berth::LabelPair>>;

// Caller labels as views; false if a pointer is NULL with a length.
bool ReadLabels(const berth_label* labels, size_t n, LabelVec* out) {
  if (labels == nullptr && n != 0) return false;
  out->reserve(n);
  for (size_t i = 0; i < n; ++i) {
    berth::LabelPair l;
    if (!View(labels[i].key, labels[i].key_len, &l.key) ||
        !View(labels[i].value, labels[i].value_len, &l.value)) {
      return false;
    }
    out->push_back(l);
  }
  return true;
}

// A label source for Selector::Matches over caller labels: sorted by key,
// the last of a repeated key wins.
class LabelLookup {
 public:
  explicit LabelLookup(LabelVec labels) : labels_(std::move(labels)) {
    std::stable_sort(labels_.begin(), labels_.end(),
                     [](const auto& a, const auto& b) { return a.key < b.key; });
  }
  std::optional<std::string_view> Get(std::string_view key) const {
    auto it = std::upper_bound(labels_.begin(), labels_.end(), key,
                               [](std::string_view k, const auto& l) { return k < l.key; });
    if (it == labels_.begin() || (it - 1)->key != key) return std::nullopt;
    return (it - 1)->value;  // the last one given
  }

 private:
  LabelVec labels_;
};

// A FlatBuffers Object, validated and copied into a cache object.
Status ReadObject(const berth::fb::Object* o, berth::ObjectRef* out) {
  LabelVec labels;
  if (const auto* ls = o->labels(); ls != nullptr) {
    labels.reserve(ls->size());
    for (const berth::fb::Label* l : *ls) labels.push_back({Text(l->key()), Text(l->value())});
  }
  std::string_view payload;
  if (const auto* p = o->payload(); p != nullptr) {
    payload = std::string_view(reinterpret_cast<const char*>(p->data()), p->size());
  }
  const std::string_view ns = Text(o->namespace_()), name = Text(o->name());
  if (Status s = berth::CheckObject(ns, name, o->resource_version(), labels, payload.size());
      !s.ok()) {
    return s;
  }
  *out = berth::Object::Make(ns, name, o->resource_version(), labels, payload);
  return {};
}

berth_status Indexed(const char* fn, const char* what, size_t i, const Status& s) {
  return Fail(fn, static_cast<berth_status>(s.code()),
              std::string(what) + " " + std::to_string(i) + ": " + s.message());
}

berth::MiUnique<BufferObject> ObjectListBuffer(const std::vector<berth::ObjectRef>& objects, uint64_t rv) {
  size_t bytes = 256;
  for (const auto& o : objects) bytes += 128 + o->key().size() + o->payload().size() + o->label_count() * 48;
  flatbuffers::FlatBufferBuilder fbb(bytes, &g_mi_allocator);
  std::vector<flatbuffers::Offset<berth::fb::Object>,
              berth::Alloc<flatbuffers::Offset<berth::fb::Object>>>
      offsets;
  std::vector<flatbuffers::Offset<berth::fb::Label>, berth::Alloc<flatbuffers::Offset<berth::fb::Label>>>
      labels;
  offsets.reserve(objects.size());
  for (const berth::ObjectRef& o : objects) {
    labels.clear();
    for (size_t i = 0; i < o->label_count(); ++i) {
      const berth::LabelPair l = o->label(i);
      // Plain strings: deduplicating (CreateSharedString) costs a set insert
      // per string, which was most of building a listing.
      auto k = fbb.CreateString(l.key.data(), l.key.size());
      auto v = fbb.CreateString(l.value.data(), l.value.size());
      labels.push_back(berth::fb::CreateLabel(fbb, k, v));
    }
    auto label_vec = fbb.CreateVector(labels.data(), labels.size());
    auto payload = fbb.CreateVector(reinterpret_cast<const uint8_t*>(o->payload().data()),
                                    o->payload().size());
    auto ns = fbb.CreateString(o->ns().data(), o->ns().size());
    auto name = fbb.CreateString(o->name().data(), o->name().size());
    offsets.push_back(berth::fb::CreateObject(fbb, ns, name, o->rv(), label_vec, payload));
  }
  auto vec = fbb.CreateVector(offsets.data(), offsets.size());
  fbb.Finish(berth::fb::CreateObjectList(fbb, rv, vec), BERTH_FB_OBJECT_LIST_ID);
  return Detach(fbb);
}

int64_t Now(int64_t now_ns) { return now_ns < 0 ? berth_clock_now_ns() : now_ns; }

// timeout_ns < 0, or too far away to add to the clock (> 2^62 ns, ~146
// years), means no deadline.
template <class Clock>
std::optional<typename Clock::time_point> DeadlineAfter(int64_t timeout_ns) {
  if (timeout_ns < 0 || timeout_ns > (int64_t{1} << 62)) return std::nullopt;
  return Clock::now() + std::chrono::nanoseconds(timeout_ns);
}

bool ValidRate(double rate) { return rate > 0 && !std::isnan(rate); }

berth_status CheckCount(const char* fn, const char* what, int64_t n) {
  if (n < 1) return Fail(fn, BERTH_ERR_INVALID_ARGUMENT, std::string(what) + " must be >= 1");
  return BERTH_OK;
}

berth_status CheckTokens(const char* fn, const BucketObject* bk, int64_t n, int64_t now) {
  if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
  const int64_t burst = bk->bucket.Stats(now).burst;
  if (n > burst) {
    return Fail(fn, BERTH_ERR_INVALID_ARGUMENT,
                "n (" + std::to_string(n) + ") exceeds the burst (" + std::to_string(burst) + ")");
  }
  return BERTH_OK;
}

int CancelCode(berth::CancelOutcome c) {
  switch (c) {
    case berth::CancelOutcome::kWasWaiting: return BERTH_CANCEL_WAS_WAITING;
    case berth::CancelOutcome::kWasGranted: return BERTH_CANCEL_WAS_GRANTED;
    case berth::CancelOutcome::kUnknown: break;
  }
  return BERTH_CANCEL_UNKNOWN;
}

// The in-process and the shared limiter take the same calls; these carry
// each call's checks once. H is the handle type (berth_limiter or
// berth_shared_limiter); Core() gives the berth:: limiter behind it.
berth::ConcurrencyLimiter* Core(LimiterObject* o) { return &o->limiter; }
berth::SharedLimiter* Core(SharedLimiterObject* o) { return o->limiter.get(); }

template <class H>
berth_status LimiterAcquire(const char* fn, H* limiter, int64_t n, int64_t timeout_ns) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    auto* lim = Core(lo);
    const auto deadline = DeadlineAfter<typename std::remove_pointer_t<decltype(lim)>::Clock>(timeout_ns);
    bool acquired = false;
    BERTH_CHECK(lim->Acquire(n, deadline, &acquired), fn);
    if (!acquired) {
      return Fail(fn, BERTH_ERR_TIMEOUT, "no permits within " + std::to_string(timeout_ns) + " ns");
    }
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterAcquireAsync(const char* fn, int* out_granted_now, uint64_t* out_ticket,
                                 H* limiter, int64_t n, berth_notifier* notifier, uint64_t token) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_granted_now != nullptr, fn, "out_granted_now is NULL");
    BERTH_REQUIRE(out_ticket != nullptr, fn, "out_ticket is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    BERTH_HANDLE(ntf, notifier, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    bool now = false;
    uint64_t ticket = 0;
    BERTH_CHECK(Core(lo)->Enqueue(n, ntf->notifier, token, &now, &ticket), fn);
    *out_granted_now = now ? 1 : 0;
    *out_ticket = ticket;
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterClaim(const char* fn, int* out_claimed, H* limiter, uint64_t ticket) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_claimed != nullptr, fn, "out_claimed is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    *out_claimed = Core(lo)->Claim(ticket) ? 1 : 0;
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterCancel(const char* fn, int* out_outcome, H* limiter, uint64_t ticket) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    const int outcome = CancelCode(Core(lo)->Cancel(ticket));  // cancels even without out_outcome
    if (out_outcome != nullptr) *out_outcome = outcome;
    return BERTH_OK;
  });
}

template <class H>
berth_status LimiterRelease(const char* fn, H* limiter, int64_t n) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    BERTH_CHECK(Core(lo)->Release(n), fn);
    return BERTH_OK;
  });
}

using PopFn = bool (berth::WarmPool::*)(berth::HandOut*);

berth_status Pop(const char* fn, PopFn pop, berth_pool_key* out_key, berth_engine* engine,
                 const char* pool, size_t pool_len) {
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_key, "out_key", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    berth::HandOut h;
    bool got = false;
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) { got = (wp.*pop)(&h); })) {
      return UnknownPool(fn, p);
    }
    if (!got) return BERTH_EMPTY;
    CopyOut(h, out_key);
    return BERTH_OK;
  });
}

// add and update take the same arguments; `upsert` picks the semantics.
berth_status AddOrUpdate(const char* fn, bool upsert, int* out_flag, berth_engine* engine,
                         const char* pool, size_t pool_len, const char* namespace_,
                         size_t namespace_len, const char* name, size_t name_len,
                         const char* node, size_t node_len, int ready) {
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_VIEW(nd, node, node_len, fn, "node");
    BERTH_REQUIRE(ready == 0 || ready == 1, fn, "ready must be 0 or 1");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    const berth::KeyView key{ns, nm, nd, ready == 1};
    BERTH_CHECK(berth::CheckKey(key), fn);
    bool flag = false;
    eng->engine.pools.With(p, upsert, [&](berth::WarmPool& wp) {
      flag = upsert ? wp.Add(key) : wp.Update(key);
    });
    if (out_flag != nullptr) *out_flag = flag ? 1 : 0;
    return BERTH_OK;
  });
}

}  // namespace

extern "C" {

uint32_t berth_abi_version(void) { return BERTH_ABI_VERSION; }

const char* berth_status_name(berth_status status) {
  switch (status) {
    case BERTH_OK: return "BERTH_OK";
    case BERTH_EMPTY: return "BERTH_EMPTY";
    case BERTH_ERR_INVALID_ARGUMENT: return "BERTH_ERR_INVALID_ARGUMENT";
    case BERTH_ERR_INVALID_NAME: return "BERTH_ERR_INVALID_NAME";
    case BERTH_ERR_NOT_FOUND: return "BERTH_ERR_NOT_FOUND";
    case BERTH_ERR_BAD_BUFFER: return "BERTH_ERR_BAD_BUFFER";
    case BERTH_ERR_NO_MEMORY: return "BERTH_ERR_NO_MEMORY";
    case BERTH_ERR_INTERNAL: return "BERTH_ERR_INTERNAL";
    case BERTH_ERR_NOT_SYNCED: return "BERTH_ERR_NOT_SYNCED";
    case BERTH_ERR_BAD_SELECTOR: return "BERTH_ERR_BAD_SELECTOR";
    case BERTH_ERR_TIMEOUT: return "BERTH_ERR_TIMEOUT";
    case BERTH_ERR_BAD_REGION: return "BERTH_ERR_BAD_REGION";
    case BERTH_ERR_BAD_HANDLE: return "BERTH_ERR_BAD_HANDLE";
    case BERTH_ERR_FORKED: return "BERTH_ERR_FORKED";
    default: return "BERTH_UNKNOWN_STATUS";
  }
}

const char* berth_last_error(size_t* out_len) {
  const bool has = t_has_error;
  if (out_len != nullptr) *out_len = has ? t_error->size() : 0;
  return has ? t_error->c_str() : "";
}

berth_status berth_engine_new(berth_engine** out_engine) {
  static const char* fn = "berth_engine_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_engine != nullptr, fn, "out_engine is NULL");
    return Publish(fn, out_engine, berth::MakeMiUnique<EngineObject>());
  });
}

berth_status berth_engine_free(berth_engine* engine) { return Destroy("berth_engine_free", "engine", engine); }

berth_status berth_pool_add(int* out_inserted, berth_engine* engine, const char* pool,
                            size_t pool_len, const char* namespace_, size_t namespace_len,
                            const char* name, size_t name_len, const char* node, size_t node_len,
                            int ready) {
  return AddOrUpdate("berth_pool_add", true, out_inserted, engine, pool, pool_len, namespace_,
                     namespace_len, name, name_len, node, node_len, ready);
}

berth_status berth_pool_update(int* out_updated, berth_engine* engine, const char* pool,
                               size_t pool_len, const char* namespace_, size_t namespace_len,
                               const char* name, size_t name_len, const char* node,
                               size_t node_len, int ready) {
  return AddOrUpdate("berth_pool_update", false, out_updated, engine, pool, pool_len, namespace_,
                     namespace_len, name, name_len, node, node_len, ready);
}

berth_status berth_pool_add_batch(size_t* out_inserted, berth_engine* engine, const char* pool,
                                  size_t pool_len, const uint8_t* buf, size_t buf_len) {
  static const char* fn = "berth_pool_add_batch";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_REQUIRE(buf != nullptr || buf_len == 0, fn, "buf is NULL with a non-zero length");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    const AlignedInput in(buf, buf_len);
    if (berth_status st = Verify<berth::fb::PoolKeyBatch>(fn, in.data(), buf_len,
                                                          BERTH_FB_POOL_KEY_BATCH_ID, "PoolKeyBatch");
        st != BERTH_OK) {
      return st;
    }
    const auto* batch = flatbuffers::GetRoot<berth::fb::PoolKeyBatch>(in.data());
    std::vector<berth::KeyView, berth::Alloc<berth::KeyView>> keys;
    if (const auto* list = batch->keys(); list != nullptr) {
      keys.reserve(list->size());
      for (flatbuffers::uoffset_t i = 0; i < list->size(); ++i) {
        const berth::fb::PoolKey* k = list->Get(i);
        berth::KeyView key{Text(k->namespace_()), Text(k->name()), Text(k->node()), k->ready()};
        if (Status s = berth::CheckKey(key); !s.ok()) {
          return Fail(fn, static_cast<berth_status>(s.code()),
                      "key " + std::to_string(i) + ": " + s.message());
        }
        keys.push_back(key);
      }
    }
    size_t inserted = 0;
    eng->engine.pools.With(p, true, [&](berth::WarmPool& wp) {
      for (const auto& key : keys) inserted += wp.Add(key) ? 1 : 0;
    });
    if (out_inserted != nullptr) *out_inserted = inserted;
    return BERTH_OK;
  });
}

berth_status berth_pool_remove(int* out_removed, berth_engine* engine, const char* pool,
                               size_t pool_len, const char* namespace_, size_t namespace_len,
                               const char* name, size_t name_len) {
  static const char* fn = "berth_pool_remove";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    bool removed = false;
    eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) { removed = wp.Remove(ns, nm); });
    if (out_removed != nullptr) *out_removed = removed ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_pool_remove_pool(int* out_removed, berth_engine* engine, const char* pool,
                                    size_t pool_len) {
  static const char* fn = "berth_pool_remove_pool";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    const bool removed = eng->engine.pools.Remove(p);
    if (out_removed != nullptr) *out_removed = removed ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_pool_pop_fifo(berth_pool_key* out_key, berth_engine* engine, const char* pool,
                                 size_t pool_len) {
  return Pop("berth_pool_pop_fifo", &berth::WarmPool::PopFifo, out_key, engine, pool, pool_len);
}

berth_status berth_pool_pop_spread(berth_pool_key* out_key, berth_engine* engine,
                                   const char* pool, size_t pool_len) {
  return Pop("berth_pool_pop_spread", &berth::WarmPool::PopSpread, out_key, engine, pool,
             pool_len);
}

berth_status berth_pool_put_back(int* out_restored, berth_engine* engine, const char* pool,
                                 size_t pool_len, const char* namespace_, size_t namespace_len,
                                 const char* name, size_t name_len, uint64_t token) {
  static const char* fn = "berth_pool_put_back";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(eng, engine, fn);
    BERTH_VIEW(p, pool, pool_len, fn, "pool");
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckPoolName(p), fn);
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    bool restored = false;
    if (!eng->engine.pools.With(
            p, false, [&](berth::WarmPool& wp) { restored = wp.PutBack(ns, nm, token); })) {
      return UnknownPool(fn, p);
    }
    if (out_restored != nullptr) *out_restored = restored ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_pool_get_stats(berth_pool_stats* out_stats, berth_engine* engine,
                              const char* pool, size_t pool_len) {
  static const char* fn = "berth_pool_get_stats";
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_stats, "out_stats", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    berth::PoolStats s;
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) { s = wp.Stats(); })) {
      return UnknownPool(fn, p);
    }
    *out_stats = berth_pool_stats{s.keys, s.ready_keys, s.scheduled_keys, s.nodes,
                                  s.put_back_records};
    return BERTH_OK;
  });
}

berth_status berth_pool_snapshot(berth_buffer** out_buffer, berth_engine* engine,
                                 const char* pool, size_t pool_len) {
  static const char* fn = "berth_pool_snapshot";
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_buffer, "out_buffer", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    // Copy under the pool's lock into one flat arena (cheap), then build the
    // FlatBuffer outside it, so the critical section stays a memcpy per key.
    struct Rec {
      uint32_t ns_off, ns_len, name_off, name_len, node_off, node_len;
      bool ready;
      uint64_t seq;
    };
    std::vector<Rec, berth::Alloc<Rec>> recs;
    berth::String arena;
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) {
          recs.reserve(wp.Stats().keys);
          wp.ForEachKey([&](const berth::KeyInfo& k) {
            Rec r{};
            auto put = [&](std::string_view s, uint32_t* off, uint32_t* len) {
              *off = static_cast<uint32_t>(arena.size());
              *len = static_cast<uint32_t>(s.size());
              arena.append(s);
            };
            put(k.ns, &r.ns_off, &r.ns_len);
            put(k.name, &r.name_off, &r.name_len);
            put(k.node, &r.node_off, &r.node_len);
            r.ready = k.ready;
            r.seq = k.seq;
            recs.push_back(r);
          });
        })) {
      return UnknownPool(fn, p);
    }
    flatbuffers::FlatBufferBuilder fbb(1024 + arena.size() * 2 + recs.size() * 48,
                                       &g_mi_allocator);
    std::vector<flatbuffers::Offset<berth::fb::PoolKey>,
                berth::Alloc<flatbuffers::Offset<berth::fb::PoolKey>>>
        offsets;
    offsets.reserve(recs.size());
    for (const Rec& r : recs) {
      auto ns = fbb.CreateSharedString(arena.data() + r.ns_off, r.ns_len);
      auto name = fbb.CreateString(arena.data() + r.name_off, r.name_len);
      auto node = fbb.CreateSharedString(arena.data() + r.node_off, r.node_len);
      offsets.push_back(berth::fb::CreatePoolKey(fbb, ns, name, node, r.ready, r.seq));
    }
    auto keys = fbb.CreateVector(offsets.data(), offsets.size());
    auto pool_name = fbb.CreateString(p.data(), p.size());
    fbb.Finish(berth::fb::CreatePoolSnapshot(fbb, pool_name, keys), BERTH_FB_POOL_SNAPSHOT_ID);
    return Publish(fn, out_buffer, Detach(fbb));
  });
}

berth_status berth_pool_node_stats(berth_buffer** out_buffer, berth_engine* engine,
                                   const char* pool, size_t pool_len) {
  static const char* fn = "berth_pool_node_stats";
  return Guard(fn, [&]() -> berth_status {
    EngineObject* eng = nullptr;
    std::string_view p;
    if (berth_status s = ReadArgs(fn, out_buffer, "out_buffer", engine, pool, pool_len, &eng, &p); s != BERTH_OK) return s;
    flatbuffers::FlatBufferBuilder fbb(1024, &g_mi_allocator);
    std::vector<flatbuffers::Offset<berth::fb::NodeStat>,
                berth::Alloc<flatbuffers::Offset<berth::fb::NodeStat>>>
        offsets;
    // O(M) under the lock: there are few nodes, and the builder copies each
    // name once.
    if (!eng->engine.pools.With(p, false, [&](berth::WarmPool& wp) {
          wp.ForEachNode([&](const berth::NodeInfo& n) {
            auto name = fbb.CreateString(n.node.data(), n.node.size());
            offsets.push_back(berth::fb::CreateNodeStat(fbb, name, n.keys, n.ready_keys));
          });
        })) {
      return UnknownPool(fn, p);
    }
    auto nodes = fbb.CreateVector(offsets.data(), offsets.size());
    auto pool_name = fbb.CreateString(p.data(), p.size());
    fbb.Finish(berth::fb::CreatePoolNodeStats(fbb, pool_name, nodes), BERTH_FB_POOL_NODE_STATS_ID);
    return Publish(fn, out_buffer, Detach(fbb));
  });
}

// ---- label selectors ----------------------------------------------------------

berth_status berth_selector_parse(berth_selector** out_selector, const char* text,
                                  size_t text_len) {
  static const char* fn = "berth_selector_parse";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_selector != nullptr, fn, "out_selector is NULL");
    BERTH_VIEW(t, text, text_len, fn, "text");
    auto obj = berth::MakeMiUnique<SelectorObject>();
    BERTH_CHECK(berth::Selector::Parse(t, &obj->selector), fn);
    return Publish(fn, out_selector, std::move(obj));
  });
}

berth_status berth_selector_free(berth_selector* selector) { return Destroy("berth_selector_free", "selector", selector); }

berth_status berth_selector_string(berth_buffer** out_buffer, const berth_selector* selector) {
  static const char* fn = "berth_selector_string";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    BERTH_HANDLE(sel, selector, fn);
    auto buf = berth::MakeMiUnique<BufferObject>();
    const std::string text = sel->selector.String();
    buf->text.assign(text.data(), text.size());
    return Publish(fn, out_buffer, std::move(buf));
  });
}

berth_status berth_selector_matches(int* out_matches, const berth_selector* selector,
                                    const berth_label* labels, size_t n_labels) {
  static const char* fn = "berth_selector_matches";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_matches != nullptr, fn, "out_matches is NULL");
    BERTH_HANDLE(sel, selector, fn);
    LabelVec ls;
    BERTH_REQUIRE(ReadLabels(labels, n_labels, &ls), fn,
                  "labels is NULL with n_labels > 0, or a key/value is NULL with a length");
    *out_matches = sel->selector.Matches(LabelLookup(std::move(ls))) ? 1 : 0;
    return BERTH_OK;
  });
}

// ---- object cache ----------------------------------------------------------------

berth_status berth_cache_new(berth_cache** out_cache, const berth_cache_options* options) {
  static const char* fn = "berth_cache_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_cache != nullptr, fn, "out_cache is NULL");
    size_t limit = berth::kDefaultTombstoneLimit;
    if (options != nullptr && options->tombstone_limit != 0) limit = options->tombstone_limit;
    return Publish(fn, out_cache, berth::MakeMiUnique<CacheObject>(limit));
  });
}

berth_status berth_cache_free(berth_cache* cache) { return Destroy("berth_cache_free", "cache", cache); }

berth_status berth_cache_upsert(int* out_applied, berth_cache* cache, const char* namespace_,
                                size_t namespace_len, const char* name, size_t name_len,
                                uint64_t resource_version, const berth_label* labels,
                                size_t n_labels, const uint8_t* payload, size_t payload_len) {
  static const char* fn = "berth_cache_upsert";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_VIEW(body, reinterpret_cast<const char*>(payload), payload_len, fn, "payload");
    LabelVec ls;
    BERTH_REQUIRE(ReadLabels(labels, n_labels, &ls), fn,
                  "labels is NULL with n_labels > 0, or a key/value is NULL with a length");
    BERTH_CHECK(berth::CheckObject(ns, nm, resource_version, ls, body.size()), fn);
    // Built before the cache's lock is taken: the lock covers only the index.
    const bool applied = oc->cache.Upsert(berth::Object::Make(ns, nm, resource_version, ls, body));
    if (out_applied != nullptr) *out_applied = applied ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_cache_delete(int* out_applied, berth_cache* cache, const char* namespace_,
                                size_t namespace_len, const char* name, size_t name_len,
                                uint64_t resource_version) {
  static const char* fn = "berth_cache_delete";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    const bool applied = oc->cache.Delete(ns, nm, resource_version);
    if (out_applied != nullptr) *out_applied = applied ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_cache_apply(size_t* out_applied, berth_cache* cache, const uint8_t* buf,
                               size_t buf_len) {
  static const char* fn = "berth_cache_apply";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_REQUIRE(buf != nullptr || buf_len == 0, fn, "buf is NULL with a non-zero length");
    const AlignedInput in(buf, buf_len);
    if (berth_status st = Verify<berth::fb::EventBatch>(fn, in.data(), buf_len, BERTH_FB_EVENT_BATCH_ID,
                                                        "EventBatch");
        st != BERTH_OK) {
      return st;
    }
    const auto* batch = flatbuffers::GetRoot<berth::fb::EventBatch>(in.data());
    std::vector<berth::CacheEvent, berth::Alloc<berth::CacheEvent>> events;
    if (const auto* list = batch->events(); list != nullptr) {
      events.reserve(list->size());
      for (flatbuffers::uoffset_t i = 0; i < list->size(); ++i) {
        const berth::fb::Event* e = list->Get(i);
        const berth::fb::Object* o = e->object();
        if (o == nullptr) {
          return Indexed(fn, "event", i, {Code::kInvalidArgument, "object is missing"});
        }
        berth::CacheEvent ce;
        switch (e->type()) {
          case berth::fb::EventType::Added:
          case berth::fb::EventType::Modified: {
            ce.type = berth::CacheEvent::Type::kUpsert;
            if (Status s = ReadObject(o, &ce.object); !s.ok()) return Indexed(fn, "event", i, s);
            break;
          }
          case berth::fb::EventType::Deleted: {
            ce.type = berth::CacheEvent::Type::kDelete;
            ce.ns = Text(o->namespace_());
            ce.name = Text(o->name());
            ce.rv = o->resource_version();
            if (Status s = berth::CheckKeyName(ce.ns, ce.name); !s.ok()) {
              return Indexed(fn, "event", i, s);
            }
            break;
          }
          default:
            return Indexed(fn, "event", i,
                           {Code::kInvalidArgument,
                            "unknown event type " + std::to_string(static_cast<int>(e->type()))});
        }
        events.push_back(std::move(ce));
      }
    }
    const size_t applied = oc->cache.Apply(events);
    if (out_applied != nullptr) *out_applied = applied;
    return BERTH_OK;
  });
}

berth_status berth_cache_replace(berth_cache* cache, const uint8_t* buf, size_t buf_len) {
  static const char* fn = "berth_cache_replace";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(oc, cache, fn);
    BERTH_REQUIRE(buf != nullptr || buf_len == 0, fn, "buf is NULL with a non-zero length");
    const AlignedInput in(buf, buf_len);
    if (berth_status st = Verify<berth::fb::ObjectList>(fn, in.data(), buf_len, BERTH_FB_OBJECT_LIST_ID,
                                                        "ObjectList");
        st != BERTH_OK) {
      return st;
    }
    const auto* list = flatbuffers::GetRoot<berth::fb::ObjectList>(in.data());
    std::vector<berth::ObjectRef> objects;
    if (const auto* objs = list->objects(); objs != nullptr) {
      objects.reserve(objs->size());
      for (flatbuffers::uoffset_t i = 0; i < objs->size(); ++i) {
        berth::ObjectRef o;
        if (Status s = ReadObject(objs->Get(i), &o); !s.ok()) return Indexed(fn, "object", i, s);
        objects.push_back(std::move(o));
      }
    }
    oc->cache.Replace(objects, list->resource_version());
    return BERTH_OK;
  });
}

berth_status berth_cache_list(berth_buffer** out_buffer, const berth_cache* cache,
                              const char* namespace_, size_t namespace_len,
                              const berth_selector* selector) {
  static const char* fn = "berth_cache_list";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_CHECK(berth::CheckName("namespace", ns, berth::kMaxNamespaceLen, true), fn);
    const berth::Selector* sel = nullptr;  // NULL selector: everything
    if (selector != nullptr) {
      const SelectorObject* so = Find(selector);
      if (so == nullptr) return BadHandle(fn, "selector", selector);
      sel = &so->selector;
    }
    std::vector<berth::ObjectRef> objects;
    uint64_t rv = 0;
    BERTH_CHECK(oc->cache.List(ns, sel, &objects, &rv), fn);
    return Publish(fn, out_buffer, ObjectListBuffer(objects, rv));
  });
}

berth_status berth_cache_get(berth_buffer** out_buffer, const berth_cache* cache,
                             const char* namespace_, size_t namespace_len, const char* name,
                             size_t name_len) {
  static const char* fn = "berth_cache_get";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_buffer != nullptr, fn, "out_buffer is NULL");
    BERTH_HANDLE(oc, cache, fn);
    BERTH_VIEW(ns, namespace_, namespace_len, fn, "namespace_");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::CheckKeyName(ns, nm), fn);
    berth::ObjectRef o;
    uint64_t rv = 0;
    BERTH_CHECK(oc->cache.Get(ns, nm, &o, &rv), fn);
    if (!o) return BERTH_EMPTY;
    return Publish(fn, out_buffer, ObjectListBuffer({o}, rv));
  });
}

berth_status berth_cache_get_stats(berth_cache_stats* out_stats, const berth_cache* cache) {
  static const char* fn = "berth_cache_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(oc, cache, fn);
    const berth::CacheStats s = oc->cache.Stats();
    *out_stats = berth_cache_stats{};
    out_stats->objects = s.objects;
    out_stats->tombstones = s.tombstones;
    out_stats->resource_version = s.resource_version;
    out_stats->applied = s.applied;
    out_stats->ignored = s.ignored;
    out_stats->synced = s.synced ? 1 : 0;
    return BERTH_OK;
  });
}

// ---- concurrency limiter -----------------------------------------------------------

berth_status berth_limiter_new(berth_limiter** out_limiter, int64_t capacity) {
  static const char* fn = "berth_limiter_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_limiter != nullptr, fn, "out_limiter is NULL");
    if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    return Publish(fn, out_limiter, berth::MakeMiUnique<LimiterObject>(capacity));
  });
}

berth_status berth_limiter_free(berth_limiter* limiter) { return Destroy("berth_limiter_free", "limiter", limiter); }

berth_status berth_limiter_try_acquire(int* out_refusal, berth_limiter* limiter, int64_t n) {
  static const char* fn = "berth_limiter_try_acquire";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_refusal != nullptr, fn, "out_refusal is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    berth::Refusal why = berth::Refusal::kNone;
    BERTH_CHECK(lo->limiter.TryAcquireChecked(n, &why), fn);
    switch (why) {
      case berth::Refusal::kNone: *out_refusal = BERTH_LIMIT_GRANTED; break;
      case berth::Refusal::kAtCapacity: *out_refusal = BERTH_LIMIT_AT_CAPACITY; break;
      case berth::Refusal::kWaitersQueued: *out_refusal = BERTH_LIMIT_WAITERS_QUEUED; break;
    }
    return BERTH_OK;
  });
}

berth_status berth_limiter_acquire(berth_limiter* limiter, int64_t n, int64_t timeout_ns) {
  return LimiterAcquire("berth_limiter_acquire", limiter, n, timeout_ns);
}

berth_status berth_limiter_acquire_async(int* out_granted_now, uint64_t* out_ticket,
                                         berth_limiter* limiter, int64_t n,
                                         berth_notifier* notifier, uint64_t token) {
  return LimiterAcquireAsync("berth_limiter_acquire_async", out_granted_now, out_ticket,
                             limiter, n, notifier, token);
}

berth_status berth_limiter_claim(int* out_claimed, berth_limiter* limiter, uint64_t ticket) {
  return LimiterClaim("berth_limiter_claim", out_claimed, limiter, ticket);
}

berth_status berth_limiter_cancel(int* out_outcome, berth_limiter* limiter, uint64_t ticket) {
  return LimiterCancel("berth_limiter_cancel", out_outcome, limiter, ticket);
}

berth_status berth_limiter_release(berth_limiter* limiter, int64_t n) {
  return LimiterRelease("berth_limiter_release", limiter, n);
}

berth_status berth_limiter_set_capacity(berth_limiter* limiter, int64_t capacity) {
  static const char* fn = "berth_limiter_set_capacity";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    lo->limiter.SetCapacity(capacity);
    return BERTH_OK;
  });
}

berth_status berth_limiter_get_stats(berth_limiter_stats* out_stats, const berth_limiter* limiter) {
  static const char* fn = "berth_limiter_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    const berth::LimiterStats s = lo->limiter.Stats();
    *out_stats = berth_limiter_stats{s.capacity, s.in_use,  s.waiting,  s.waiting_permits,
                                     s.granted,  s.rejected, s.timed_out, s.cancelled};
    return BERTH_OK;
  });
}

berth_status berth_notifier_new(berth_notifier** out_notifier) {
  static const char* fn = "berth_notifier_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_notifier != nullptr, fn, "out_notifier is NULL");
    auto n = berth::MakeMiUnique<NotifierObject>();
    BERTH_CHECK(berth::Notifier::Make(&n->notifier), fn);
    return Publish(fn, out_notifier, std::move(n));
  });
}

berth_status berth_notifier_free(berth_notifier* notifier) { return Destroy("berth_notifier_free", "notifier", notifier); }

berth_status berth_notifier_fd(int* out_fd, const berth_notifier* notifier) {
  static const char* fn = "berth_notifier_fd";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_fd != nullptr, fn, "out_fd is NULL");
    BERTH_HANDLE(ntf, notifier, fn);
    *out_fd = ntf->notifier->fd();
    return BERTH_OK;
  });
}

berth_status berth_notifier_drain(size_t* out_count, berth_notifier* notifier, uint64_t* tokens,
                                  size_t cap) {
  static const char* fn = "berth_notifier_drain";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_count != nullptr, fn, "out_count is NULL");
    BERTH_HANDLE(ntf, notifier, fn);
    BERTH_REQUIRE(tokens != nullptr || cap == 0, fn, "tokens is NULL with cap > 0");
    *out_count = cap == 0 ? 0 : ntf->notifier->Drain(tokens, cap);
    return BERTH_OK;
  });
}

// ---- shared limiter ------------------------------------------------------------------

berth_status berth_shared_limiter_open(berth_shared_limiter** out_limiter, const char* name,
                                       size_t name_len, int64_t capacity, int create) {
  static const char* fn = "berth_shared_limiter_open";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_limiter != nullptr, fn, "out_limiter is NULL");
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_REQUIRE(create == 0 || create == 1, fn, "create must be 0 or 1");
    if (create == 1) {
      if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    }
    auto handle = berth::MakeMiUnique<SharedLimiterObject>();
    BERTH_CHECK(berth::SharedLimiter::Open(nm, capacity, create == 1, &handle->limiter), fn);
    return Publish(fn, out_limiter, std::move(handle));
  });
}

berth_status berth_shared_limiter_close(berth_shared_limiter* limiter) { return Destroy("berth_shared_limiter_close", "limiter", limiter); }

berth_status berth_shared_limiter_unlink(const char* name, size_t name_len) {
  static const char* fn = "berth_shared_limiter_unlink";
  return Guard(fn, [&]() -> berth_status {
    BERTH_VIEW(nm, name, name_len, fn, "name");
    BERTH_CHECK(berth::SharedLimiter::Unlink(nm), fn);
    return BERTH_OK;
  });
}

berth_status berth_shared_limiter_try_acquire(int* out_refusal, berth_shared_limiter* limiter,
                                              int64_t n) {
  static const char* fn = "berth_shared_limiter_try_acquire";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_refusal != nullptr, fn, "out_refusal is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "n", n); st != BERTH_OK) return st;
    berth::Refusal why = berth::Refusal::kNone;
    BERTH_CHECK(lo->limiter->TryAcquire(n, &why), fn);
    *out_refusal = why == berth::Refusal::kNone         ? BERTH_LIMIT_GRANTED
                   : why == berth::Refusal::kAtCapacity ? BERTH_LIMIT_AT_CAPACITY
                                                        : BERTH_LIMIT_WAITERS_QUEUED;
    return BERTH_OK;
  });
}

berth_status berth_shared_limiter_acquire(berth_shared_limiter* limiter, int64_t n,
                                          int64_t timeout_ns) {
  return LimiterAcquire("berth_shared_limiter_acquire", limiter, n,
                        timeout_ns);
}

berth_status berth_shared_limiter_acquire_async(int* out_granted_now, uint64_t* out_ticket,
                                                berth_shared_limiter* limiter, int64_t n,
                                                berth_notifier* notifier, uint64_t token) {
  return LimiterAcquireAsync("berth_shared_limiter_acquire_async", out_granted_now, out_ticket,
                             limiter, n, notifier, token);
}

berth_status berth_shared_limiter_claim(int* out_claimed, berth_shared_limiter* limiter,
                                        uint64_t ticket) {
  return LimiterClaim("berth_shared_limiter_claim", out_claimed,
                      limiter, ticket);
}

berth_status berth_shared_limiter_cancel(int* out_outcome, berth_shared_limiter* limiter,
                                         uint64_t ticket) {
  return LimiterCancel("berth_shared_limiter_cancel", out_outcome,
                       limiter, ticket);
}

berth_status berth_shared_limiter_release(berth_shared_limiter* limiter, int64_t n) {
  return LimiterRelease("berth_shared_limiter_release", limiter, n);
}

berth_status berth_shared_limiter_set_capacity(berth_shared_limiter* limiter, int64_t capacity) {
  static const char* fn = "berth_shared_limiter_set_capacity";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(lo, limiter, fn);
    if (berth_status st = CheckCount(fn, "capacity", capacity); st != BERTH_OK) return st;
    BERTH_CHECK(lo->limiter->SetCapacity(capacity), fn);
    return BERTH_OK;
  });
}

berth_status berth_shared_limiter_get_stats(berth_shared_limiter_stats* out_stats,
                                            berth_shared_limiter* limiter) {
  static const char* fn = "berth_shared_limiter_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(lo, limiter, fn);
    berth::SharedLimiterStats s;
    BERTH_CHECK(lo->limiter->Stats(&s), fn);
    *out_stats = berth_shared_limiter_stats{s.capacity, s.in_use,   s.waiting,   s.holders,
                                            s.granted,  s.rejected, s.timed_out, s.reclaimed};
    return BERTH_OK;
  });
}

// ---- token bucket ----------------------------------------------------------------------

int64_t berth_clock_now_ns(void) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

berth_status berth_bucket_new(berth_bucket** out_bucket, double rate, int64_t burst) {
  static const char* fn = "berth_bucket_new";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_bucket != nullptr, fn, "out_bucket is NULL");
    BERTH_CHECK(berth::TokenBucket::CheckRate(rate), fn);
    if (berth_status st = CheckCount(fn, "burst", burst); st != BERTH_OK) return st;
    return Publish(fn, out_bucket, berth::MakeMiUnique<BucketObject>(rate, burst));
  });
}

berth_status berth_bucket_free(berth_bucket* bucket) { return Destroy("berth_bucket_free", "bucket", bucket); }


berth_status berth_bucket_allow(int* out_allowed, berth_bucket* bucket, int64_t n, int64_t now_ns) {
  static const char* fn = "berth_bucket_allow";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_allowed != nullptr, fn, "out_allowed is NULL");
    BERTH_HANDLE(bk, bucket, fn);
    const int64_t now = Now(now_ns);
    if (berth_status st = CheckTokens(fn, bk, n, now); st != BERTH_OK) return st;
    *out_allowed = bk->bucket.Allow(n, now) ? 1 : 0;
    return BERTH_OK;
  });
}

berth_status berth_bucket_reserve(berth_reservation* out_reservation, berth_bucket* bucket,
                                  int64_t n, int64_t now_ns) {
  static const char* fn = "berth_bucket_reserve";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_reservation != nullptr, fn, "out_reservation is NULL");
    BERTH_HANDLE(bk, bucket, fn);
    const int64_t now = Now(now_ns);
    if (berth_status st = CheckTokens(fn, bk, n, now); st != BERTH_OK) return st;
    const berth::Reservation r = bk->bucket.Reserve(n, now);
    if (!r.ok) {  // kOverBurst: the burst shrank since the check
      return Fail(fn, BERTH_ERR_INVALID_ARGUMENT,
                  r.refusal == berth::ReserveRefusal::kTooLate
                      ? "the time to act would be after INT64_MAX ns (the tokens owed take too "
                        "long at this rate); nothing was taken"
                      : "n exceeds the burst");
    }
    // time_to_act >= now >= 0: the difference fits.
    *out_reservation = berth_reservation{r.time_to_act, r.time_to_act - now, r.tokens, r.rate};
    return BERTH_OK;
  });
}

berth_status berth_bucket_cancel(berth_bucket* bucket, berth_reservation* reservation,
                                 int64_t now_ns) {
  static const char* fn = "berth_bucket_cancel";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(bk, bucket, fn);
    BERTH_REQUIRE(reservation != nullptr, fn, "reservation is NULL");
    berth::Reservation r;
    r.ok = reservation->tokens > 0;
    r.tokens = reservation->tokens;
    r.time_to_act = reservation->time_to_act_ns;
    r.rate = reservation->rate;
    BERTH_REQUIRE(!r.ok || ValidRate(r.rate), fn, "reservation has an invalid rate");
    bk->bucket.Cancel(r, Now(now_ns));
    reservation->tokens = 0;  // a second cancel gives nothing back
    return BERTH_OK;
  });
}

berth_status berth_bucket_set_rate(berth_bucket* bucket, double rate, int64_t now_ns) {
  static const char* fn = "berth_bucket_set_rate";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(bk, bucket, fn);
    BERTH_CHECK(berth::TokenBucket::CheckRate(rate), fn);
    bk->bucket.SetRate(rate, Now(now_ns));
    return BERTH_OK;
  });
}

berth_status berth_bucket_set_burst(berth_bucket* bucket, int64_t burst, int64_t now_ns) {
  static const char* fn = "berth_bucket_set_burst";
  return Guard(fn, [&]() -> berth_status {
    BERTH_HANDLE(bk, bucket, fn);
    if (berth_status st = CheckCount(fn, "burst", burst); st != BERTH_OK) return st;
    bk->bucket.SetBurst(burst, Now(now_ns));
    return BERTH_OK;
  });
}

berth_status berth_bucket_get_stats(berth_bucket_stats* out_stats, const berth_bucket* bucket,
                                    int64_t now_ns) {
  static const char* fn = "berth_bucket_get_stats";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_stats != nullptr, fn, "out_stats is NULL");
    BERTH_HANDLE(bk, bucket, fn);
    const berth::BucketStats s = bk->bucket.Stats(Now(now_ns));
    *out_stats = berth_bucket_stats{s.rate, s.burst, s.tokens};
    return BERTH_OK;
  });
}

berth_status berth_buffer_data(const uint8_t** out_data, size_t* out_len,
                               const berth_buffer* buffer) {
  static const char* fn = "berth_buffer_data";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_data != nullptr, fn, "out_data is NULL");
    BERTH_REQUIRE(out_len != nullptr, fn, "out_len is NULL");
    BERTH_HANDLE(bf, buffer, fn);
    *out_data = bf->data();
    *out_len = bf->size();
    return BERTH_OK;
  });
}

berth_status berth_buffer_free(berth_buffer* buffer) { return Destroy("berth_buffer_free", "buffer", buffer); }

}  // extern "C"
