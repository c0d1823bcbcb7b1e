#include "core/cache/object.h"

#include <algorithm>
#include <iterator>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "core/common/alloc.h"
#include "core/common/text.h"
#include "core/pool/pool.h"
#include "core/selector/selector.h"

namespace berth {

Status CheckObject(std::string_view ns, std::string_view name, uint64_t rv,
                   std::span<const LabelPair> labels, size_t payload_len) {
  if (Status s = CheckKeyName(ns, name); !s.ok()) return s;
  if (rv == 0) return {Code::kInvalidArgument, "resource_version must be > 0"};
  if (labels.size() > kMaxLabels) {
    return {Code::kInvalidArgument, std::to_string(labels.size()) + " labels; the limit is " +
                                        std::to_string(kMaxLabels)};
  }
  if (payload_len > kMaxPayloadLen) {
    return {Code::kInvalidArgument, "payload is " + std::to_string(payload_len) +
                                        " bytes; the limit is " + std::to_string(kMaxPayloadLen)};
  }
  for (const LabelPair& l : labels) {
    if (Status s = ValidateLabelKey(l.key); !s.ok()) return s;
    if (Status s = ValidateLabelValue(l.value); !s.ok()) return s;
  }
  return {};
}

ObjectRef Object::Make(std::string_view ns, std::string_view name, uint64_t rv,
                       std::span<const LabelPair> labels, std::string_view payload) {
  // Sort by key; for a repeated key the last one given wins. Objects carry
  // a handful of labels: an insertion sort on the stack, stable, so equal
  // keys stay in the order given and the last of them is kept.
  LabelPair small[32];
  std::vector<LabelPair, Alloc<LabelPair>> large;
  LabelPair* sorted = small;
  if (labels.size() > std::size(small)) {
    large.resize(labels.size());
    sorted = large.data();
  }
  size_t n = 0;
  for (const LabelPair& l : labels) {
    size_t j = n++;
    while (j > 0 && l.key < sorted[j - 1].key) {
      sorted[j] = sorted[j - 1];
      --j;
    }
    sorted[j] = l;
  }
  size_t unique = 0;
  for (size_t i = 0; i < n; ++i) {
    if (unique > 0 && sorted[unique - 1].key == sorted[i].key) {
      sorted[unique - 1] = sorted[i];
    } else {
      sorted[unique++] = sorted[i];
    }
  }
  n = unique;

  size_t text = ns.size() + 1 + name.size();
  for (size_t i = 0; i < n; ++i) text += sorted[i].key.size() + sorted[i].value.size();
  const size_t size = sizeof(Object) + n * sizeof(Span) + text + payload.size();
  static_assert(alignof(Object) <= alignof(std::max_align_t));  // both allocators align to 16
  void* mem = BulkMalloc(size);
  if (mem == nullptr) throw std::bad_alloc();
  Object* o = new (mem) Object();
  o->ns_len_ = static_cast<uint32_t>(ns.size());
  o->name_len_ = static_cast<uint32_t>(name.size());
  o->n_labels_ = static_cast<uint32_t>(n);
  o->rv_ = rv;
  Span* spans = reinterpret_cast<Span*>(o + 1);
  char* out = reinterpret_cast<char*>(spans + n);
  char* const base = out;
  auto put = [&](std::string_view s) {
    if (s.empty()) return;  // s.data() may be null: memcpy must not see it
    std::memcpy(out, s.data(), s.size());
    out += s.size();
  };
  put(ns);
  *out++ = '\0';
  put(name);
  for (size_t i = 0; i < n; ++i) {
    const LabelPair& l = sorted[i];
    spans[i].key_off = static_cast<uint32_t>(out - base);
    spans[i].key_len = static_cast<uint32_t>(l.key.size());
    put(l.key);
    spans[i].value_off = static_cast<uint32_t>(out - base);
    spans[i].value_len = static_cast<uint32_t>(l.value.size());
    put(l.value);
  }
  o->payload_off_ = static_cast<uint64_t>(out - base);
  o->payload_len_ = payload.size();
  put(payload);
  return ObjectRef(o);
}

LabelPair Object::label(size_t i) const {
  const Span& s = spans()[i];
  return {{bytes() + s.key_off, s.key_len}, {bytes() + s.value_off, s.value_len}};
}

size_t Object::LabelIndex(std::string_view key) const {
  size_t lo = 0, hi = n_labels_;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const std::string_view k = label(mid).key;
    if (k < key) {
      lo = mid + 1;
    } else if (key < k) {
      hi = mid;
    } else {
      return mid;
    }
  }
  return n_labels_;
}

std::optional<std::string_view> Object::Get(std::string_view key) const {
  const size_t i = LabelIndex(key);
  if (i == n_labels_) return std::nullopt;
  return label(i).value;
}

void ObjectRef::Release() noexcept {
  if (p_ != nullptr && p_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    p_->~Object();
    Free(p_);
  }
  p_ = nullptr;
}

}  // namespace berth
