// The C ABI of cached objects handed out by reference (berth_object_*,
// berth_object_list_*). The cache calls that make them are in cache.cc.
#include "capi/internal.h"

namespace berth::capi {

void ReadFields(const berth::Object& o, berth_object_fields* out) noexcept {
  const std::string_view ns = o.ns(), name = o.name(), payload = o.payload();
  out->namespace_ = ns.data();
  out->namespace_len = ns.size();
  out->name = name.data();
  out->name_len = name.size();
  out->resource_version = o.rv();
  // The object's bytes are never empty (the name is), so this is never NULL.
  out->payload = reinterpret_cast<const uint8_t*>(payload.data());
  out->payload_len = payload.size();
  out->n_labels = o.label_count();
}

}  // namespace berth::capi

using namespace berth::capi;

extern "C" {

berth_status berth_object_get_fields(berth_object_fields* out_fields, const berth_object* object) {
  static const char* fn = "berth_object_get_fields";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_fields != nullptr, fn, "out_fields is NULL");
    BERTH_HANDLE(oh, object, fn);
    ReadFields(*oh->ref, out_fields);
    return BERTH_OK;
  });
}

berth_status berth_object_labels(berth_label* out_labels, size_t capacity, size_t* out_n,
                                 const berth_object* object) {
  static const char* fn = "berth_object_labels";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_n != nullptr, fn, "out_n is NULL");
    BERTH_REQUIRE(out_labels != nullptr || capacity == 0, fn,
                  "out_labels is NULL with a non-zero capacity");
    BERTH_HANDLE(oh, object, fn);
    const berth::Object& o = *oh->ref;
    const size_t n = o.label_count();
    for (size_t i = 0; i < n && i < capacity; ++i) {
      const berth::LabelPair l = o.label(i);
      out_labels[i] = berth_label{l.key.data(), l.key.size(), l.value.data(), l.value.size()};
    }
    *out_n = n;
    return BERTH_OK;
  });
}

berth_status berth_object_free(berth_object* object) {
  return Destroy("berth_object_free", "object", object);
}

berth_status berth_object_list_size(size_t* out_size, const berth_object_list* list) {
  static const char* fn = "berth_object_list_size";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_size != nullptr, fn, "out_size is NULL");
    BERTH_HANDLE(ol, list, fn);
    *out_size = ol->objects.size();
    return BERTH_OK;
  });
}

berth_status berth_object_list_get(berth_object** out_object, berth_object_fields* out_fields,
                                   const berth_object_list* list, size_t index) {
  static const char* fn = "berth_object_list_get";
  return Guard(fn, [&]() -> berth_status {
    BERTH_REQUIRE(out_object != nullptr || out_fields != nullptr, fn,
                  "out_object and out_fields are both NULL");
    BERTH_HANDLE(ol, list, fn);
    if (index >= ol->objects.size()) {
      return Fail(fn, BERTH_ERR_INVALID_ARGUMENT,
                  "index " + std::to_string(index) + " is out of range (the list holds " +
                      std::to_string(ol->objects.size()) + " objects)");
    }
    // The list keeps the object alive whatever the caller does with the
    // new handle, so the order of the two outputs does not matter.
    const berth::ObjectRef& ref = ol->objects[index];
    if (out_object != nullptr) {
      auto oh = berth::MakeMiUnique<ObjectHandleObject>();
      oh->ref = ref;
      if (berth_status st = Publish(fn, out_object, std::move(oh)); st != BERTH_OK) return st;
    }
    if (out_fields != nullptr) ReadFields(*ref, out_fields);
    return BERTH_OK;
  });
}

berth_status berth_object_list_free(berth_object_list* list) {
  return Destroy("berth_object_list_free", "list", list);
}

}  // extern "C"
