// The write side of Cache (see cache_write.h): Python objects to the
// FlatBuffers batches of berth_cache_apply and berth_cache_replace.
//
// A batch is built chunk by chunk. With the GIL held, a chunk of up to
// kChunkItems items is read into plain fields (Pending): string views into
// str objects (their UTF-8 form), payload pointers into bytes objects or
// buffer exports, label views; the chunk holds a reference to every object
// those pointers depend on (the item, or the label strs of a dict, which
// another thread may change once the GIL is given up), and keeps buffer
// exports open (so a bytearray cannot be resized under us). Then, without
// the GIL, the chunk is written into the FlatBufferBuilder (the copies: a
// 1 KB payload is most of an object's cost). Then, with the GIL again, the
// chunk's references are dropped. An iterable another thread changes
// meanwhile gives whatever its iterator yields (the caller's race), never a
// dangling pointer.
//
// Measured (100k objects with 1 KB payloads and 3 labels, on a loaded
// 2-core VM): reading takes 0.3-0.4 us per object, so a chunk holds the GIL
// for 70-110 us on average, ~30-45 ms of a ~170 ms build in all (the rest,
// writing, runs without it); see bench_cache.py's cache_replace_python*
// records for replace as a whole.

#include "cache_write.h"

#include <sys/mman.h>

#include <algorithm>
#include <deque>
#include <new>
#include <string>

namespace berth_py {
namespace {

using FbString = flatbuffers::Offset<flatbuffers::String>;
using FbLabel = flatbuffers::Offset<berth::fb::Label>;

// What is read with the GIL held before it is given up: bounds the longest
// GIL hold of a build (labels bound it for objects with many labels).
constexpr size_t kChunkItems = 256;
constexpr size_t kChunkLabels = 4096;
// A chunk that is not full and below this many bytes (a small apply) is
// written with the GIL held: giving it up would cost more than it saves.
constexpr size_t kReleaseMinBytes = 32 * 1024;

// Bytes an item adds to a finished batch beyond its strings and payload, at
// most: its table and vector slots (kPerItemOverhead, flatbuf.h), a header
// and padding per string or vector, an Event table; per label, its table,
// slot, two string headers and padding.
constexpr size_t kItemBytes = kPerItemOverhead + 3 * 8 + 32;
constexpr size_t kLabelBytes = 48;

constexpr int kNoEvent = -1;  // an object of an ObjectList
constexpr int kDeleted = static_cast<int>(berth::fb::EventType::Deleted);

// One item, read: views into objects the chunk keeps alive.
struct Pending {
  std::string_view ns, name;
  uint64_t rv;
  uint32_t label_begin, label_count;
  const uint8_t* payload;
  size_t payload_len;
  int type;  // berth.fb.EventType, or kNoEvent
};

// UTF-8 of a str argument; the compact ASCII case (almost every Kubernetes
// name) without a call.
inline std::string_view text(PyObject* obj, const Arg& at) {
  if (PyUnicode_CheckExact(obj) && PyUnicode_IS_COMPACT_ASCII(obj)) {
    return {static_cast<const char*>(PyUnicode_DATA(obj)),
            static_cast<size_t>(PyUnicode_GET_LENGTH(obj))};
  }
  const Utf8 u = utf8(obj, at);
  return {u.data, u.size};
}

// berth.fb.EventType from an EventType/int, or a watch event's type string.
berth::fb::EventType event_type(PyObject* obj, const Arg& at) {
  static const char* const kNames[3] = {"ADDED", "MODIFIED", "DELETED"};
  if (PyUnicode_Check(obj)) {
    for (int i = 0; i < 3; ++i) {
      if (PyUnicode_CompareWithASCIIString(obj, kNames[i]) == 0) {
        return static_cast<berth::fb::EventType>(i);
      }
    }
  } else if (PyLong_Check(obj) && !PyBool_Check(obj)) {
    const long v = PyLong_AsLong(obj);
    if (v == -1 && PyErr_Occurred()) PyErr_Clear();
    if (v >= 0 && v <= 2) return static_cast<berth::fb::EventType>(v);
  } else {
    raise_type(at.str(), "a berth.EventType, int or str", obj);
  }
  auto r = py::reinterpret_steal<py::object>(PyObject_Repr(obj));
  raise_status(BERTH_ERR_INVALID_ARGUMENT,
               at.str() + " must be ADDED (0), MODIFIED (1) or DELETED (2), not " +
                   (r ? py::str(r).cast<std::string>() : std::string("?")));
}

// A list given as an item is copied to a tuple first: reading an object can
// run Python code (a custom mapping's items()), which could change the list.
// Returns a new reference.
PyObject* item_fields(PyObject* item) {
  if (PyTuple_Check(item)) return Py_NewRef(item);
  PyObject* t = PyList_AsTuple(item);
  if (!t) throw py::error_already_set();
  return t;
}

// The attributes an object passed to replace() may have, interned once.
PyObject* attr_name(int i) {
  static PyObject* names[5] = {};
  static const char* const kAttrs[5] = {"namespace", "name", "resource_version", "labels",
                                        "payload"};
  if (!names[i]) {
    names[i] = PyUnicode_InternFromString(kAttrs[i]);  // leaked on purpose, as g's objects
    if (!names[i]) throw py::error_already_set();
  }
  return names[i];
}

// The builder's memory. A large batch gets its own anonymous mapping with
// transparent huge pages asked for (MADV_HUGEPAGE; honoured where THP is
// "madvise" or "always"): a 120 MB relist is then ~60 page faults instead of
// ~30000, which were most of writing it. Freed (unmapped) with the batch.
// Stateless, hence one instance for every builder and thread.
class BatchAllocator final : public flatbuffers::Allocator {
 public:
  uint8_t* allocate(size_t size) override {
    if (size < kMapMin) return new uint8_t[size];
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    (void)madvise(p, size, MADV_HUGEPAGE);  // a hint: without THP, plain pages
    return static_cast<uint8_t*>(p);
  }
  void deallocate(uint8_t* p, size_t size) override {
    if (size < kMapMin) {
      delete[] p;
    } else {
      munmap(p, size);
    }
  }

 private:
  static constexpr size_t kMapMin = size_t{4} << 20;
};
BatchAllocator g_batch_allocator;

// Builds one batch: read() items into the chunk (GIL held), flush() it into
// the builder (GIL given up when the chunk is large), finish().
class Writer {
 public:
  Writer(bool events, Py_ssize_t hint) : events_(events), hint_(std::max<Py_ssize_t>(hint, 0)) {}

  ~Writer() { drop_chunk(); }  // GIL held
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  bool chunk_full() const {
    return chunk_.size() >= kChunkItems || labels_.size() >= kChunkLabels;
  }

  // objects[index] of replace().
  void read_object(PyObject* it, Py_ssize_t index) {
    const Arg at{"", index, "objects"};
    if (Py_TYPE(it) == g.object_view) {
      // Straight from another list's bytes: nothing to decode.
      ObjectFields f;
      const size_t begin = labels_.size();
      read_object_view(it, &f, &labels_);
      hold(Py_NewRef(it));
      add(at, f.ns, f.name, f.resource_version, begin, f.payload.data(), f.payload.size(),
          kNoEvent);
    } else if (PyTuple_Check(it) || PyList_Check(it)) {
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(it);
      if (n < 3 || n > 5) {
        throw py::type_error("objects[" + std::to_string(index) +
                             "] must be a berth.Object or a (namespace, name, resource_version[, "
                             "labels[, payload]]) tuple, not a sequence of " +
                             std::to_string(n) + " items");
      }
      PyObject* fields = hold(item_fields(it));
      PyObject* const* f = &PyTuple_GET_ITEM(fields, 0);
      read_fields(at, f[0], f[1], f[2], n > 3 ? f[3] : nullptr, n > 4 ? f[4] : nullptr,
                  kNoEvent);
    } else {
      // Any object with the attributes; labels and payload are optional.
      PyObject* attrs[5] = {};
      for (int i = 0; i < 5; ++i) {
        PyObject* v = or_park([&] { return PyObject_GetAttr(it, attr_name(i)); });
        if (!v) {
          if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
          PyErr_Clear();
          if (i < 3) {
            throw py::type_error("objects[" + std::to_string(index) +
                                 "] must be a berth.Object, a (namespace, name, "
                                 "resource_version[, labels[, payload]]) tuple or an object "
                                 "with those attributes, not " + Py_TYPE(it)->tp_name);
          }
          continue;
        }
        attrs[i] = hold(v);
      }
      read_fields(at, attrs[0], attrs[1], attrs[2], attrs[3], attrs[4], kNoEvent);
    }
  }

  // events[index] of apply().
  void read_event(PyObject* item, Py_ssize_t index) {
    const Arg at{"", index, "events"};
    const Py_ssize_t n =
        PyTuple_Check(item) || PyList_Check(item) ? PySequence_Fast_GET_SIZE(item) : -1;
    if (n < 4 || n > 6) {
      throw py::type_error("events[" + std::to_string(index) +
                           "] must be a berth.Event or a (type, namespace, name, "
                           "resource_version[, labels[, payload]]) tuple, not " +
                           (n < 0 ? std::string(Py_TYPE(item)->tp_name)
                                  : "a sequence of " + std::to_string(n) + " items"));
    }
    PyObject* fields = hold(item_fields(item));
    PyObject* const* f = &PyTuple_GET_ITEM(fields, 0);
    const int type = static_cast<int>(event_type(f[0], at.with("type")));
    // A delete uses only namespace, name and resource_version.
    const bool deleted = type == kDeleted;
    read_fields(at, f[1], f[2], f[3], !deleted && n > 4 ? f[4] : nullptr,
                !deleted && n > 5 ? f[5] : nullptr, type);
  }

  // Writes the chunk into the builder and drops its references. GIL held on
  // entry and return; given up while writing a large chunk.
  void flush() {
    if (chunk_.empty()) return;
    if (!fbb_) {
      // Sized from the first chunk for the whole batch (the length hint), so
      // that a large batch is not copied as the builder grows: a guess past
      // the end costs only address space (the builder writes from the end
      // down, and untouched pages are never faulted in).
      // (A batch cannot hold more items than fit BERTH_MAX_BUFFER_LEN: a
      // larger length hint is not believed.)
      const size_t items = std::min(std::max(static_cast<size_t>(hint_), chunk_.size()),
                                    size_t{BERTH_MAX_BUFFER_LEN} / kItemBytes);
      const double per_item = static_cast<double>(chunk_bytes_) / static_cast<double>(chunk_.size());
      const double guess = per_item * static_cast<double>(items) + 4.0 * static_cast<double>(items) + 1024;
      const double cap = static_cast<double>(BERTH_MAX_BUFFER_LEN) + (1 << 16);
      fbb_ = std::make_unique<flatbuffers::FlatBufferBuilder>(static_cast<size_t>(std::min(guess, cap)),
                                                             &g_batch_allocator);
      (events_ ? event_offsets_.reserve(items) : object_offsets_.reserve(items));
    }
    // Every full chunk gives the GIL up, however small its objects: that
    // bounds the longest hold of a large batch.
    without_gil_if(chunk_full() || chunk_bytes_ >= kReleaseMinBytes, [&] { write_chunk(); });
    drop_chunk();
  }

  // The finished batch (GIL held; flush() first). The root vector of a
  // large batch (400 KB for 100k objects) is written without the GIL.
  Batch finish_object_list(uint64_t rv) {
    ensure_builder();
    without_gil_if(object_offsets_.size() * 4 >= kReleaseMinBytes, [&] {
      auto vec = fbb_->CreateVector(object_offsets_);
      fbb_->Finish(berth::fb::CreateObjectList(*fbb_, rv, vec), BERTH_FB_OBJECT_LIST_ID);
    });
    return std::move(fbb_);
  }

  Batch finish_event_batch() {
    ensure_builder();
    without_gil_if(event_offsets_.size() * 4 >= kReleaseMinBytes, [&] {
      auto vec = fbb_->CreateVector(event_offsets_);
      fbb_->Finish(berth::fb::CreateEventBatch(*fbb_, vec), BERTH_FB_EVENT_BATCH_ID);
    });
    return std::move(fbb_);
  }

 private:
  // Runs fn() (no Python API) without the GIL if `release`; an exception
  // (bad_alloc) takes the GIL back as it leaves.
  template <class Fn>
  static void without_gil_if(bool release, Fn&& fn) {
    if (release) {
      NoGil nogil;
      fn();
    } else {
      fn();
    }
  }

  void ensure_builder() {
    if (!fbb_) fbb_ = std::make_unique<flatbuffers::FlatBufferBuilder>(1024, &g_batch_allocator);
  }

  // Keeps a new reference until the chunk is dropped; returns it.
  PyObject* hold(PyObject* owned) {
    refs_.push_back(owned);
    return owned;
  }

  void read_fields(const Arg& at, PyObject* ns_obj, PyObject* name_obj, PyObject* rv_obj,
                   PyObject* labels_obj, PyObject* payload_obj, int type) {
    const std::string_view ns = text(ns_obj, at.with("namespace"));
    const std::string_view name = text(name_obj, at.with("name"));
    const uint64_t rv = as_u64(rv_obj, at.with("resource_version"));
    const size_t begin = labels_.size();
    if (labels_obj && labels_obj != Py_None) read_labels(labels_obj, at.with("labels"));
    const uint8_t* payload = nullptr;
    size_t payload_len = 0;
    if (payload_obj && payload_obj != Py_None) {
      if (PyBytes_CheckExact(payload_obj)) {
        // Immutable, and alive as long as the item (or attribute) held.
        payload = reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(payload_obj));
        payload_len = static_cast<size_t>(PyBytes_GET_SIZE(payload_obj));
      } else {
        const Arg pat = at.with("payload");
        if (!PyObject_CheckBuffer(payload_obj)) raise_type(pat.str(), "a bytes-like object", payload_obj);
        Py_buffer& view = exports_.emplace_back();
        if (or_park([&] { return PyObject_GetBuffer(payload_obj, &view, PyBUF_SIMPLE); }) != 0) {
          exports_.pop_back();
          throw py::error_already_set();
        }
        payload = static_cast<const uint8_t*>(view.buf);
        payload_len = static_cast<size_t>(view.len);
      }
    }
    add(at, ns, name, rv, begin, payload, payload_len, type);
  }

  void read_labels(PyObject* mapping, const Arg& at) {
    if (PyDict_CheckExact(mapping) && PyDict_GET_SIZE(mapping) == 0) return;
    // The default labels of Object and Event: an empty mappingproxy.
    if (Py_TYPE(mapping) == &PyDictProxy_Type && PyObject_Size(mapping) == 0) return;
    for_each_label(mapping, at, [&](PyObject* k, Utf8 ku, PyObject* v, Utf8 vu) {
      // A dict can change once the GIL is given up: hold its strs.
      hold(Py_NewRef(k));
      hold(Py_NewRef(v));
      labels_.push_back({{ku.data, ku.size}, {vu.data, vu.size}});
    });
  }

  void add(const Arg& at, std::string_view ns, std::string_view name, uint64_t rv, size_t begin,
           const uint8_t* payload, size_t payload_len, int type) {
    size_t bytes = kItemBytes + ns.size() + name.size() + payload_len;
    for (size_t i = begin; i < labels_.size(); ++i) {
      bytes += kLabelBytes + labels_[i].key.size() + labels_[i].value.size();
    }
    // The builder cannot grow past 2 GiB; Berth takes at most
    // BERTH_MAX_BUFFER_LEN.
    if (batch_bytes_ + chunk_bytes_ + bytes > BERTH_MAX_BUFFER_LEN) {
      raise_status(BERTH_ERR_BAD_BUFFER,
                   "batch would exceed BERTH_MAX_BUFFER_LEN bytes at " + std::string(at.batch) +
                       "[" + std::to_string(at.index) + "]; split it into smaller batches");
    }
    chunk_bytes_ += bytes;
    chunk_.push_back(Pending{ns, name, rv, static_cast<uint32_t>(begin),
                             static_cast<uint32_t>(labels_.size() - begin), payload, payload_len,
                             type});
  }

  // No Python API: may run without the GIL.
  void write_chunk() {
    flatbuffers::FlatBufferBuilder& fbb = *fbb_;
    for (const Pending& p : chunk_) {
      const ObjectFields f{p.ns, p.name, p.rv,
                           std::span<const LabelView>(labels_.data() + p.label_begin, p.label_count),
                           std::span<const uint8_t>(p.payload, p.payload_len)};
      const auto obj = write_object(fbb, f, label_scratch_);
      if (p.type == kNoEvent) {
        object_offsets_.push_back(obj);
      } else {
        event_offsets_.push_back(
            berth::fb::CreateEvent(fbb, static_cast<berth::fb::EventType>(p.type), obj));
      }
    }
    batch_bytes_ += chunk_bytes_;
  }

  // GIL held.
  void drop_chunk() {
    for (PyObject* r : refs_) Py_DECREF(r);
    for (Py_buffer& v : exports_) PyBuffer_Release(&v);
    refs_.clear();
    exports_.clear();
    chunk_.clear();
    labels_.clear();
    chunk_bytes_ = 0;
  }

  const bool events_;
  const Py_ssize_t hint_;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> fbb_;  // made at the first flush
  std::vector<flatbuffers::Offset<berth::fb::Object>> object_offsets_;
  std::vector<flatbuffers::Offset<berth::fb::Event>> event_offsets_;
  std::vector<FbLabel> label_scratch_;
  size_t batch_bytes_ = 0;  // upper bound of what the flushed chunks wrote
  // The chunk being read.
  std::vector<Pending> chunk_;
  std::vector<LabelView> labels_;
  std::vector<PyObject*> refs_;   // owned
  std::deque<Py_buffer> exports_;  // open; a deque never moves them
  size_t chunk_bytes_ = 0;
};

// True if stop.is_set() (stop may be None).
bool stop_requested(PyObject* stop) {
  if (stop == nullptr || stop == Py_None) return false;
  static PyObject* is_set = PyUnicode_InternFromString("is_set");  // leaked, as g's objects
  if (!is_set) throw py::error_already_set();
  PyObject* r = or_park([&] { return PyObject_CallMethodNoArgs(stop, is_set); });
  if (!r) throw py::error_already_set();
  const int truth = PyObject_IsTrue(r);
  Py_DECREF(r);
  if (truth < 0) throw py::error_already_set();
  return truth != 0;
}

}  // namespace

flatbuffers::Offset<berth::fb::Object> write_object(flatbuffers::FlatBufferBuilder& fbb,
                                                    const ObjectFields& o,
                                                    std::vector<FbLabel>& scratch) {
  // Plain strings: deduplicating (CreateSharedString) would cost a set insert
  // per string.
  const FbString ons = o.ns.empty() ? FbString() : fbb.CreateString(o.ns.data(), o.ns.size());
  const FbString oname = fbb.CreateString(o.name.data(), o.name.size());
  flatbuffers::Offset<flatbuffers::Vector<FbLabel>> olabels;
  if (!o.labels.empty()) {
    scratch.clear();
    for (const LabelView& l : o.labels) {
      const FbString ok = fbb.CreateString(l.key.data(), l.key.size());
      const FbString ov = l.value.empty() ? FbString() : fbb.CreateString(l.value.data(), l.value.size());
      scratch.push_back(berth::fb::CreateLabel(fbb, ok, ov));
    }
    olabels = fbb.CreateVector(scratch);
  }
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> opayload;
  if (!o.payload.empty()) opayload = fbb.CreateVector(o.payload.data(), o.payload.size());
  return berth::fb::CreateObject(fbb, ons, oname, o.resource_version, olabels, opayload);
}

Batch build_object_list(PyObject* objs, uint64_t resource_version, PyObject* stop) {
  if (PyUnicode_Check(objs) || PyBytes_Check(objs)) raise_type("objects", "an iterable of objects", objs);
  const Py_ssize_t hint = or_park([&] { return PyObject_LengthHint(objs, 0); });
  if (hint < 0) throw py::error_already_set();
  auto iter = py::reinterpret_steal<py::object>(or_park([&] { return PyObject_GetIter(objs); }));
  if (!iter) throw py::error_already_set();
  Writer w(/*events=*/false, hint);
  Py_ssize_t index = 0;
  if (stop_requested(stop)) return nullptr;
  while (PyObject* raw = or_park([&] { return PyIter_Next(iter.ptr()); })) {
    const auto item = py::reinterpret_steal<py::object>(raw);
    w.read_object(item.ptr(), index++);
    if (w.chunk_full()) {
      w.flush();
      if (stop_requested(stop)) return nullptr;
    }
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  w.flush();
  if (stop_requested(stop)) return nullptr;
  return w.finish_object_list(resource_version);
}

Batch build_event_batch(PyObject* evs) {
  if (PyObject_TypeCheck(evs, g.event)) {
    Writer w(/*events=*/true, 1);
    w.read_event(evs, 0);  // one Event
    w.flush();
    return w.finish_event_batch();
  }
  if (PyUnicode_Check(evs) || PyBytes_Check(evs)) raise_type("events", "an iterable of events", evs);
  const Py_ssize_t hint = or_park([&] { return PyObject_LengthHint(evs, 0); });
  if (hint < 0) throw py::error_already_set();
  auto iter = py::reinterpret_steal<py::object>(or_park([&] { return PyObject_GetIter(evs); }));
  if (!iter) throw py::error_already_set();
  Writer w(/*events=*/true, hint);
  Py_ssize_t index = 0;
  while (PyObject* raw = or_park([&] { return PyIter_Next(iter.ptr()); })) {
    const auto item = py::reinterpret_steal<py::object>(raw);
    w.read_event(item.ptr(), index++);
    if (w.chunk_full()) w.flush();
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  w.flush();
  return w.finish_event_batch();
}

}  // namespace berth_py
