#pragma once

// FlatBuffers helpers: reading the buffers libberth returns and bounding the
// batches the binding builds. Only the files that read or build FlatBuffers
// (pool.cc, cache.cc, cache_write.cc) include this, and with it
// berth_generated.h.

#include <limits>
#include <string>

#include "berth_generated.h"
#include "common.h"

namespace berth_py {

inline PyObject* fb_str(const flatbuffers::String* s) {
  return s ? decode(s->c_str(), s->size()) : decode("", 0);
}

template <class Root>
bool verify(const uint8_t* data, size_t size, const char* identifier) {
  if (data == nullptr) return false;
  // The default table limit (1e6) would reject snapshots of large pools.
  flatbuffers::Verifier v(data, size, /*max_depth=*/64,
                          /*max_tables=*/std::numeric_limits<flatbuffers::uoffset_t>::max());
  return v.VerifyBuffer<Root>(identifier);
}

template <class Root>
const Root* verified_root(const Buffer& buf, const char* identifier, const char* what) {
  if (!verify<Root>(buf.data, buf.size, identifier)) raise_bad_output(what);
  return flatbuffers::GetRoot<Root>(buf.data);
}

// Bytes of a finished batch beyond its strings and payloads, per item: the
// vector slot, vtables and table headers. Keeps batches under
// BERTH_MAX_BUFFER_LEN (FlatBufferBuilder itself cannot grow past 2 GiB).
inline constexpr size_t kPerItemOverhead = 64;

inline void check_batch_room(const flatbuffers::FlatBufferBuilder& fbb, size_t extra, size_t items,
                      const Arg& at) {
  const size_t need = fbb.GetSize() + extra + kPerItemOverhead * (items + 1);
  if (need > BERTH_MAX_BUFFER_LEN) {
    raise_status(BERTH_ERR_BAD_BUFFER,
                 "batch would exceed BERTH_MAX_BUFFER_LEN bytes at " + std::string(at.batch) +
                     "[" + std::to_string(at.index) + "]; split it into smaller batches");
  }
}

}  // namespace berth_py
