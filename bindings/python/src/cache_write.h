#pragma once

// The write side of Cache: the FlatBuffers batches Cache.apply and
// Cache.replace hand to berth_cache_apply / berth_cache_replace, built from
// the caller's Python objects (cache_write.cc). cache.cc keeps the read side
// (ObjectList, ObjectView, list, get) and calls in here.
//
// Building gives the GIL up between chunks of objects: with the GIL it only
// reads each chunk's fields (pointers into str / bytes objects it holds a
// reference to, or into a buffer export); the FlatBuffers writing, where the
// bytes are copied, runs without it. So a relist of 100k objects never holds
// the GIL for more than a chunk's reading (tens of microseconds), and other
// threads (an asyncio loop) run meanwhile.

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "flatbuf.h"

namespace berth_py {

struct LabelView {
  std::string_view key, value;
};

// One object as the writer takes it: plain fields, no Python objects.
struct ObjectFields {
  std::string_view ns, name;
  uint64_t resource_version = 0;
  std::span<const LabelView> labels;
  std::span<const uint8_t> payload;
};

// Writes one berth.fb.Object table. An empty namespace, label value or
// payload is left absent (Berth reads absent as empty); the name is always
// written, so that an empty one is reported as an invalid name, with its
// index. `scratch` is reused between objects. No Python API: runs without
// the GIL.
flatbuffers::Offset<berth::fb::Object> write_object(
    flatbuffers::FlatBufferBuilder& fbb, const ObjectFields& o,
    std::vector<flatbuffers::Offset<berth::fb::Label>>& scratch);

// An ObjectView's fields, read from its list's bytes (no decoding): fills
// *out except out->labels and appends the labels to *labels (the caller
// takes the range: the vector may still grow). The views stay valid while
// the ObjectView is referenced. Defined in cache.cc, which owns the
// ObjectView's layout. GIL held.
void read_object_view(PyObject* view, ObjectFields* out, std::vector<LabelView>* labels);

// A finished batch (its bytes: GetBufferPointer(), GetSize()).
using Batch = std::unique_ptr<flatbuffers::FlatBufferBuilder>;

// The berth.fb.ObjectList of Cache.replace(objects, resource_version): each
// object a berth.Object, a (namespace, name, resource_version[, labels[,
// payload]]) tuple or list, an ObjectView, or any object with those
// attributes. Raises (GIL held) as Cache.replace documents, naming the
// index. `stop` is None or an object with is_set() (a threading.Event),
// polled between chunks: once it is set, building stops and nullptr is
// returned. Called with the GIL held; releases it between chunks.
Batch build_object_list(PyObject* objects, uint64_t resource_version, PyObject* stop);

// The berth.fb.EventBatch of Cache.apply(events): one Event, or an iterable
// of Events / (type, namespace, name, resource_version[, labels[, payload]])
// tuples. As build_object_list, without a stop.
Batch build_event_batch(PyObject* events);

}  // namespace berth_py
