// Object: one cached Kubernetes object (namespace, name, resourceVersion,
// labels, opaque payload), immutable once made and shared by reference count
// between the cache and its readers. One allocation, on the bulk heap
// (core/common/alloc.h), holds everything.
// Thread-safe to read; ObjectRef copies are atomic reference-count updates.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "core/common/status.h"

namespace berth {

inline constexpr size_t kMaxPayloadLen = size_t{64} << 20;
inline constexpr size_t kMaxLabels = 256;

struct LabelPair {
  std::string_view key;
  std::string_view value;
};

// Validates what an upsert carries: names (as pool keys), resourceVersion
// > 0, label count and every key and value as Kubernetes validates them,
// payload size.
Status CheckObject(std::string_view ns, std::string_view name, uint64_t rv,
                   std::span<const LabelPair> labels, size_t payload_len);

class ObjectRef;

class Object {
 public:
  // Labels in any order; a key given twice keeps its last value.
  static ObjectRef Make(std::string_view ns, std::string_view name, uint64_t rv,
                        std::span<const LabelPair> labels, std::string_view payload);

  // "ns\0name": the cache's key for this object.
  std::string_view key() const { return {bytes(), ns_len_ + 1 + name_len_}; }
  std::string_view ns() const { return {bytes(), ns_len_}; }
  std::string_view name() const { return {bytes() + ns_len_ + 1, name_len_}; }
  uint64_t rv() const { return rv_; }
  std::string_view payload() const { return {bytes() + payload_off_, payload_len_}; }
  size_t label_count() const { return n_labels_; }
  LabelPair label(size_t i) const;  // sorted by key
  // Binary search; the label source of Selector::Matches.
  std::optional<std::string_view> Get(std::string_view key) const;
  // The index of the label with this key, or label_count() if absent.
  size_t LabelIndex(std::string_view key) const;
  // The size of its one allocation.
  size_t footprint() const {
    return sizeof(Object) + n_labels_ * sizeof(Span) + payload_off_ + payload_len_;
  }

 private:
  friend class ObjectRef;
  struct Span {
    uint32_t key_off, key_len, value_off, value_len;
  };
  Object() = default;
  const Span* spans() const { return reinterpret_cast<const Span*>(this + 1); }
  const char* bytes() const { return reinterpret_cast<const char*>(spans() + n_labels_); }

  mutable std::atomic<uint32_t> refs_{1};
  uint32_t ns_len_ = 0;
  uint32_t name_len_ = 0;
  uint32_t n_labels_ = 0;
  uint64_t rv_ = 0;
  uint64_t payload_off_ = 0;
  uint64_t payload_len_ = 0;
  // followed by Span[n_labels_], then the bytes: key, label text, payload
};

// A counted reference to an Object.
class ObjectRef {
 public:
  ObjectRef() = default;
  ObjectRef(const ObjectRef& o) : p_(o.p_) {
    if (p_ != nullptr) p_->refs_.fetch_add(1, std::memory_order_relaxed);
  }
  ObjectRef(ObjectRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  ObjectRef& operator=(ObjectRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~ObjectRef() { Release(); }
  // A new reference to an object another reference keeps alive.
  static ObjectRef Share(const Object* p) {
    if (p != nullptr) p->refs_.fetch_add(1, std::memory_order_relaxed);
    return ObjectRef(const_cast<Object*>(p));
  }
  const Object* get() const { return p_; }
  const Object* operator->() const { return p_; }
  const Object& operator*() const { return *p_; }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  friend class Object;
  explicit ObjectRef(Object* p) : p_(p) {}
  void Release() noexcept;
  Object* p_ = nullptr;
};

}  // namespace berth
