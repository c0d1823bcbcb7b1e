// The C ABI's shared plumbing (declared in capi/internal.h): the per-thread
// last error and Fail, caller labels, the FlatBuffers allocator; and the
// calls that belong to no one capability: version, status names, last error,
// clock, buffers.
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "capi/internal.h"
#include "core/common/text.h"

namespace berth::capi {

using berth::Code;

static_assert(static_cast<int>(Code::kInternal) == BERTH_ERR_INTERNAL);
static_assert(static_cast<int>(Code::kNotSynced) == BERTH_ERR_NOT_SYNCED);
static_assert(static_cast<int>(Code::kBadSelector) == BERTH_ERR_BAD_SELECTOR);
static_assert(static_cast<int>(Code::kTimeout) == BERTH_ERR_TIMEOUT);
static_assert(static_cast<int>(Code::kBadRegion) == BERTH_ERR_BAD_REGION);

constinit thread_local bool t_has_error __attribute__((tls_model("initial-exec"))) = false;
constinit thread_local std::string* t_error __attribute__((tls_model("initial-exec"))) = nullptr;
namespace {
thread_local std::unique_ptr<std::string> t_error_owner;  // touched on first error only
}  // namespace

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

MiAllocator g_mi_allocator;

}  // namespace berth::capi

using namespace berth::capi;

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

int64_t berth_clock_now_ns(void) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
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
