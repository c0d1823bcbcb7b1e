#include "core/cache/object.h"

#include <mimalloc.h>

#include <algorithm>
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
  // Sort by key; for a repeated key the last one given wins.
  std::vector<std::pair<size_t, LabelPair>, Alloc<std::pair<size_t, LabelPair>>> sorted;
  sorted.reserve(labels.size());
  for (size_t i = 0; i < labels.size(); ++i) sorted.emplace_back(i, labels[i]);
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.second.key != b.second.key ? a.second.key < b.second.key : a.first < b.first;
  });
  size_t n = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (n > 0 && sorted[n - 1].second.key == sorted[i].second.key) {
      sorted[n - 1] = sorted[i];
    } else {
      sorted[n++] = sorted[i];
    }
  }
  sorted.resize(n);

  size_t text = ns.size() + 1 + name.size();
  for (const auto& [i, l] : sorted) text += l.key.size() + l.value.size();
  const size_t size = sizeof(Object) + n * sizeof(Span) + text + payload.size();
  void* mem = mi_malloc_aligned(size, alignof(Object));
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
    std::memcpy(out, s.data(), s.size());
    out += s.size();
  };
  put(ns);
  *out++ = '\0';
  put(name);
  for (size_t i = 0; i < n; ++i) {
    const LabelPair& l = sorted[i].second;
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

std::optional<std::string_view> Object::Get(std::string_view key) const {
  size_t lo = 0, hi = n_labels_;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const LabelPair l = label(mid);
    if (l.key < key) {
      lo = mid + 1;
    } else if (key < l.key) {
      hi = mid;
    } else {
      return l.value;
    }
  }
  return std::nullopt;
}

void ObjectRef::Release() noexcept {
  if (p_ != nullptr && p_->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    p_->~Object();
    mi_free(p_);
  }
  p_ = nullptr;
}

}  // namespace berth
