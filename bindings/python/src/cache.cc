// Cache: the object cache (berth_cache_*), and the ObjectList / ObjectView
// types its reads return.

#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache_write.h"
#include "common.h"
#include "flatbuf.h"
#include "selector.h"

namespace berth_py {
namespace {

// ---------------------------------------------------------------------------
// ObjectList and ObjectView: references to the cache's objects
//
// The cache hands out counted references to its immutable objects
// (berth_object, berth_object_list: C ABI 0.6), never copies. An ObjectList
// owns a berth_object_list (freed when it is collected). Indexing makes an
// ObjectView holding the list and the object's fields (pointers into the
// object, valid while the list lives); Cache.get makes an ObjectView owning
// a berth_object. Fields are decoded when read; the payload is handed out
// as bytes (one copy, what json.loads and orjson.loads take) or, through
// the buffer protocol, as a zero-copy read-only memoryview.
// Plain CPython types: a pybind11 property costs ~100 ns per read, which is
// most of the cost of reading an object.
// ---------------------------------------------------------------------------

struct ObjectListObject {
  PyObject_HEAD
  berth_object_list* list;  // owned
  Py_ssize_t size;
  uint64_t resource_version;
};

struct ObjectViewObject {
  PyObject_HEAD
  berth_object* object;    // owned; for a list element, taken when labels are first read
  ObjectListObject* list;  // strong, for a list element (keeps `fields` valid); else nullptr
  Py_ssize_t index;        // in `list`
  berth_object_fields fields;
};

// Wraps a list Berth returned (taking it over).
py::object make_object_list(berth_object_list* list, uint64_t rv) {
  size_t n = 0;
  berth_object_list_size(&n, list);  // cannot fail on a live list
  auto* self = PyObject_New(ObjectListObject, g.object_list);
  if (!self) {
    NoGil nogil;
    berth_object_list_free(list);
    throw py::error_already_set();
  }
  self->list = list;
  self->size = static_cast<Py_ssize_t>(n);
  self->resource_version = rv;
  return py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(self));
}

// For slots, which return NULL instead of throwing: the berth.Error of a
// failed call as the current Python exception.
void set_failure(berth_status st) {
  Failure f;
  f.capture(st);
  try {
    raise_failure(f);
  } catch (py::error_already_set& e) {
    e.restore();
  }
}

PyObject* new_view() {
  auto* v = PyObject_New(ObjectViewObject, g.object_view);
  if (!v) return nullptr;
  v->object = nullptr;
  v->list = nullptr;
  v->index = 0;
  v->fields = berth_object_fields{};
  return reinterpret_cast<PyObject*>(v);
}

PyObject* make_object_view(ObjectListObject* list, Py_ssize_t i) {
  PyObject* self = new_view();
  if (!self) return nullptr;
  auto* v = reinterpret_cast<ObjectViewObject*>(self);
  const berth_status st = berth_object_list_get(nullptr, &v->fields, list->list, static_cast<size_t>(i));
  if (st != BERTH_OK) {  // an index in range of a live list: cannot happen
    set_failure(st);
    Py_DECREF(self);
    return nullptr;
  }
  Py_INCREF(list);
  v->list = list;
  v->index = i;
  return self;
}

void object_list_dealloc(PyObject* self) {
  auto* o = reinterpret_cast<ObjectListObject*>(self);
  if (o->list) {
    NoGil nogil;  // drops a reference per object
    berth_object_list_free(o->list);
  }
  PyTypeObject* tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

Py_ssize_t object_list_len(PyObject* self) {
  return reinterpret_cast<ObjectListObject*>(self)->size;
}

PyObject* object_list_item(PyObject* self, Py_ssize_t i) {
  auto* o = reinterpret_cast<ObjectListObject*>(self);
  if (i < 0 || i >= o->size) {
    PyErr_SetString(PyExc_IndexError, "ObjectList index out of range");
    return nullptr;
  }
  return make_object_view(o, i);
}

PyObject* object_list_subscript(PyObject* self, PyObject* key) {
  auto* o = reinterpret_cast<ObjectListObject*>(self);
  if (PyIndex_Check(key)) {
    Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
    if (i == -1 && PyErr_Occurred()) return nullptr;
    if (i < 0) i += o->size;
    return object_list_item(self, i);
  }
  if (PySlice_Check(key)) {
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0) return nullptr;
    const Py_ssize_t n = PySlice_AdjustIndices(o->size, &start, &stop, step);
    PyObject* out = PyList_New(n);
    if (!out) return nullptr;
    for (Py_ssize_t k = 0, i = start; k < n; ++k, i += step) {
      PyObject* v = make_object_view(o, i);
      if (!v) {
        Py_DECREF(out);
        return nullptr;
      }
      PyList_SET_ITEM(out, k, v);
    }
    return out;
  }
  PyErr_Format(PyExc_TypeError, "ObjectList indices must be integers or slices, not %.200s",
               Py_TYPE(key)->tp_name);
  return nullptr;
}

// A dedicated iterator: cheaper than the generic sequence iterator (no
// IndexError to end it).
struct ObjectListIterObject {
  PyObject_HEAD
  ObjectListObject* list;  // strong; nullptr once exhausted
  Py_ssize_t next;
};
PyTypeObject* g_object_list_iter = nullptr;

PyObject* object_list_iter(PyObject* self) {
  auto* it = PyObject_New(ObjectListIterObject, g_object_list_iter);
  if (!it) return nullptr;
  Py_INCREF(self);
  it->list = reinterpret_cast<ObjectListObject*>(self);
  it->next = 0;
  return reinterpret_cast<PyObject*>(it);
}

PyObject* object_list_iter_next(PyObject* self) {
  auto* it = reinterpret_cast<ObjectListIterObject*>(self);
  if (!it->list) return nullptr;
  if (it->next >= it->list->size) {
    Py_CLEAR(it->list);
    return nullptr;  // StopIteration, without an exception object
  }
  return make_object_view(it->list, it->next++);
}

PyObject* object_list_iter_length_hint(PyObject* self, PyObject*) {
  auto* it = reinterpret_cast<ObjectListIterObject*>(self);
  return PyLong_FromSsize_t(it->list ? it->list->size - it->next : 0);
}

void object_list_iter_dealloc(PyObject* self) {
  auto* it = reinterpret_cast<ObjectListIterObject*>(self);
  Py_XDECREF(it->list);
  PyTypeObject* tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

PyObject* object_list_resource_version(PyObject* self, void*) {
  return PyLong_FromUnsignedLongLong(reinterpret_cast<ObjectListObject*>(self)->resource_version);
}

PyObject* object_list_repr(PyObject* self) {
  auto* o = reinterpret_cast<ObjectListObject*>(self);
  return PyUnicode_FromFormat("<berth.ObjectList of %zd objects at resource_version %llu>",
                              o->size, static_cast<unsigned long long>(o->resource_version));
}

void object_view_dealloc(PyObject* self) {
  auto* v = reinterpret_cast<ObjectViewObject*>(self);
  if (v->object) berth_object_free(v->object);  // O(1): no need to drop the GIL
  Py_XDECREF(v->list);
  PyTypeObject* tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

inline const berth_object_fields& view_fields(PyObject* self) {
  return reinterpret_cast<ObjectViewObject*>(self)->fields;
}

PyObject* object_view_namespace(PyObject* self, void*) {
  const auto& f = view_fields(self);
  return PyUnicode_FromStringAndSize(f.namespace_, static_cast<Py_ssize_t>(f.namespace_len));
}

PyObject* object_view_name(PyObject* self, void*) {
  const auto& f = view_fields(self);
  return PyUnicode_FromStringAndSize(f.name, static_cast<Py_ssize_t>(f.name_len));
}

PyObject* object_view_resource_version(PyObject* self, void*) {
  return PyLong_FromUnsignedLongLong(view_fields(self).resource_version);
}

// The labels of a view, sorted by key (berth_object_labels), into `out`
// (room for BERTH_MAX_LABELS); the count, or -1 with a Python error set.
Py_ssize_t view_labels(PyObject* self, berth_label* out) {
  auto* v = reinterpret_cast<ObjectViewObject*>(self);
  if (v->fields.n_labels == 0) return 0;
  static_assert(BERTH_MAX_LABELS > 0);
  berth_status st = BERTH_OK;
  if (!v->object) {
    st = berth_object_list_get(&v->object, nullptr, v->list->list, static_cast<size_t>(v->index));
  }
  size_t n = 0;
  if (st == BERTH_OK) st = berth_object_labels(out, BERTH_MAX_LABELS, &n, v->object);
  if (n > BERTH_MAX_LABELS) n = BERTH_MAX_LABELS;  // the core allows no more
  if (st != BERTH_OK) {  // no handle available
    set_failure(st);
    return -1;
  }
  return static_cast<Py_ssize_t>(n);
}


PyObject* object_view_labels(PyObject* self, void*) {
  berth_label labels[BERTH_MAX_LABELS];
  const Py_ssize_t n = view_labels(self, labels);
  if (n < 0) return nullptr;
  PyObject* d = _PyDict_NewPresized(n);
  if (!d) return nullptr;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* k = PyUnicode_FromStringAndSize(labels[i].key, static_cast<Py_ssize_t>(labels[i].key_len));
    PyObject* val = k ? PyUnicode_FromStringAndSize(labels[i].value,
                                                    static_cast<Py_ssize_t>(labels[i].value_len))
                      : nullptr;
    if (!val || PyDict_SetItem(d, k, val) < 0) {
      Py_XDECREF(k);
      Py_XDECREF(val);
      Py_DECREF(d);
      return nullptr;
    }
    Py_DECREF(k);
    Py_DECREF(val);
  }
  return d;
}

PyObject* object_view_payload(PyObject* self, void*) {
  const auto& f = view_fields(self);
  return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(f.payload),
                                   static_cast<Py_ssize_t>(f.payload_len));
}

// The buffer protocol of an ObjectView: its payload, read-only, no copy.
int object_view_getbuffer(PyObject* self, Py_buffer* view, int flags) {
  const auto& f = view_fields(self);
  return PyBuffer_FillInfo(view, self, const_cast<uint8_t*>(f.payload),
                           static_cast<Py_ssize_t>(f.payload_len), /*readonly=*/1, flags);
}

PyObject* object_view_repr(PyObject* self) {
  const auto& f = view_fields(self);
  auto ns = py::reinterpret_steal<py::object>(object_view_namespace(self, nullptr));
  auto name = py::reinterpret_steal<py::object>(object_view_name(self, nullptr));
  if (!ns || !name) return nullptr;
  return PyUnicode_FromFormat("<berth.ObjectView %U/%U resource_version=%llu>", ns.ptr(),
                              name.ptr(), static_cast<unsigned long long>(f.resource_version));
}

PyGetSetDef g_object_list_getset[] = {
    {"resource_version", &object_list_resource_version, nullptr,
     "The cache's resourceVersion when the list was taken.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyGetSetDef g_object_view_getset[] = {
    {"namespace", &object_view_namespace, nullptr, "The object's namespace (\"\" if none).",
     nullptr},
    {"name", &object_view_name, nullptr, "The object's name.", nullptr},
    {"resource_version", &object_view_resource_version, nullptr,
     "The object's resourceVersion.", nullptr},
    {"labels", &object_view_labels, nullptr,
     "The object's labels: a new dict, decoded on every read.", nullptr},
    {"payload", &object_view_payload, nullptr,
     "The object's payload as bytes (a copy; json.loads takes it). memoryview(view) gives "
     "it without a copy.",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef g_object_list_iter_methods[] = {
    {"__length_hint__", &object_list_iter_length_hint, METH_NOARGS, nullptr},
    {nullptr, nullptr, 0, nullptr},
};

template <class T>
void* slot(T fn) {
  return reinterpret_cast<void*>(fn);
}

PyTypeObject* make_type(const char* name, size_t basicsize, PyType_Slot* slots) {
  PyType_Spec spec{name, static_cast<int>(basicsize), 0,
                   static_cast<unsigned>(Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION),
                   slots};
  PyObject* t = PyType_FromSpec(&spec);
  if (!t) throw py::error_already_set();
  return reinterpret_cast<PyTypeObject*>(t);
}

void make_object_types() {
  static PyType_Slot list_slots[] = {
      {Py_tp_doc, const_cast<char*>(
                      "The objects of Cache.list: a read-only sequence of ObjectView, each a "
                      "reference to an immutable object of the cache (nothing is copied). "
                      "Nothing is decoded until it is read.")},
      {Py_tp_dealloc, slot(&object_list_dealloc)},
      {Py_tp_repr, slot(&object_list_repr)},
      {Py_tp_iter, slot(&object_list_iter)},
      {Py_tp_getset, g_object_list_getset},
      {Py_sq_length, slot(&object_list_len)},
      {Py_sq_item, slot(&object_list_item)},
      {Py_mp_length, slot(&object_list_len)},
      {Py_mp_subscript, slot(&object_list_subscript)},
      {0, nullptr},
  };
  static PyType_Slot view_slots[] = {
      {Py_tp_doc, const_cast<char*>(
                      "One object of the cache: a reference to its immutable object, unchanged "
                      "by later writes. Fields are decoded when read; payload is bytes (a "
                      "copy); memoryview(view) exports the payload without a copy.")},
      {Py_tp_dealloc, slot(&object_view_dealloc)},
      {Py_tp_repr, slot(&object_view_repr)},
      {Py_tp_getset, g_object_view_getset},
      {Py_bf_getbuffer, slot(&object_view_getbuffer)},
      {0, nullptr},
  };
  static PyType_Slot iter_slots[] = {
      {Py_tp_dealloc, slot(&object_list_iter_dealloc)},
      {Py_tp_iter, slot(&PyObject_SelfIter)},
      {Py_tp_iternext, slot(&object_list_iter_next)},
      {Py_tp_methods, g_object_list_iter_methods},
      {0, nullptr},
  };
  g.object_list = make_type("berth.ObjectList", sizeof(ObjectListObject), list_slots);
  g.object_view = make_type("berth.ObjectView", sizeof(ObjectViewObject), view_slots);
  g_object_list_iter =
      make_type("berth._ObjectListIterator", sizeof(ObjectListIterObject), iter_slots);
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

class Cache : public Handle<berth_cache, &berth_cache_free> {
 public:
  explicit Cache(py::handle tombstone_limit) : Handle("cache") {
    PyObject* l = tombstone_limit.ptr();
    if (!PyLong_Check(l) || PyBool_Check(l)) raise_type("tombstone_limit", "int", l);
    const unsigned long long limit = PyLong_AsUnsignedLongLong(l);
    if ((limit == static_cast<unsigned long long>(-1) && PyErr_Occurred()) ||
        limit > std::numeric_limits<uint32_t>::max()) {
      PyErr_Clear();
      raise_status(BERTH_ERR_INVALID_ARGUMENT, "tombstone_limit is out of the range of a uint32");
    }
    berth_cache_options opts{};
    opts.tombstone_limit = static_cast<uint32_t>(limit);
    berth_cache* c = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_cache_new(&c, &opts);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(c);
  }

  bool upsert(py::handle ns, py::handle name, py::handle rv, py::handle labels,
              py::handle payload) {
    const Utf8 a = utf8(ns.ptr(), "namespace");
    const Utf8 b = utf8(name.ptr(), "name");
    const uint64_t v = as_u64(rv.ptr(), Arg{"resource_version"});
    LabelArgs l;
    l.read(labels.ptr(), Arg{"labels"});
    BytesArg p;
    p.read(payload.ptr(), Arg{"payload"});
    int applied = 0;
    call([&](berth_cache* c) {
      return berth_cache_upsert(&applied, c, a.data, a.size, b.data, b.size, v, l.data(), l.size(),
                                p.data(), p.size());
    });
    return applied != 0;
  }

  bool remove(py::handle ns, py::handle name, py::handle rv) {
    const Utf8 a = utf8(ns.ptr(), "namespace");
    const Utf8 b = utf8(name.ptr(), "name");
    const uint64_t v = as_u64(rv.ptr(), Arg{"resource_version"});
    int applied = 0;
    call([&](berth_cache* c) {
      return berth_cache_delete(&applied, c, a.data, a.size, b.data, b.size, v);
    });
    return applied != 0;
  }

  size_t apply(py::handle events);
  py::object replace(py::handle objects, py::handle rv) {
    replace_with(objects.ptr(), rv.ptr(), nullptr);
    return py::none();
  }
  // replace(), polling stop.is_set() while building; False if it stopped
  // (the cache is unchanged). For replace_async (berth/_cache.py).
  bool replace_stoppable(py::handle objects, py::handle rv, py::handle stop) {
    return replace_with(objects.ptr(), rv.ptr(), stop.ptr());
  }

 private:
  bool replace_with(PyObject* objects, PyObject* rv, PyObject* stop);

 public:

  py::object list_objects(py::handle ns, py::handle selector) {
    const Utf8 n = utf8(ns.ptr(), "namespace");
    PyObject* sel = selector.ptr();
    std::optional<Selector::Flight> sel_flight;  // a Selector is in flight too
    Utf8 text{nullptr, 0};
    bool parse = false;
    if (sel == Py_None) {
    } else if (PyObject_TypeCheck(sel, g.selector)) {
      Selector* s = native<Selector>(sel);
      if (!s) throw py::type_error("berth.Selector.__init__() was not called");
      sel_flight.emplace(*s);
    } else if (PyUnicode_Check(sel)) {
      text = utf8(sel, Arg{"selector"}, BERTH_ERR_BAD_SELECTOR);
      parse = true;
    } else {
      raise_type("selector", "a berth.Selector, str or None", sel);
    }
    // Not call(): a selector parsed here must be freed after the list, and
    // berth_selector_free would clear the thread's last error.
    Flight flight(*this);
    berth_object_list* list = nullptr;
    uint64_t rv = 0;
    berth_status st = BERTH_OK;
    Failure f;
    {
      NoGil nogil;
      berth_selector* s = sel_flight ? sel_flight->handle() : nullptr;
      if (parse) st = berth_selector_parse(&s, text.data, text.size);
      if (is_failure(st)) {
        f.capture(st);
      } else {
        st = berth_cache_list_objects(&list, &rv, flight.handle(), n.data, n.size, s);
        if (is_failure(st)) f.capture(st);
        if (parse) berth_selector_free(s);
      }
    }
    if (is_failure(st)) raise_failure(f);
    return make_object_list(list, rv);
  }

  // Releases the GIL: the get itself is O(1), but behind a queued writer
  // (the cache's lock prefers writers) it can wait for a relist's merge.
  py::object get(py::handle ns, py::handle name) {
    const Utf8 a = utf8(ns.ptr(), "namespace");
    const Utf8 b = utf8(name.ptr(), "name");
    PyObject* self = new_view();
    if (!self) throw py::error_already_set();
    auto view = py::reinterpret_steal<py::object>(self);
    auto* v = reinterpret_cast<ObjectViewObject*>(self);
    const berth_status st = call([&](berth_cache* c) {
      return berth_cache_get_object(&v->object, &v->fields, c, a.data, a.size, b.data, b.size);
    });
    if (st == BERTH_EMPTY) return py::none();
    return view;
  }

  // len(cache): the objects it holds (berth_cache_get_stats); works before
  // the first sync.
  size_t len() {
    berth_cache_stats s{};
    call([&](berth_cache* c) { return berth_cache_get_stats(&s, c); });
    return static_cast<size_t>(s.objects);
  }

  // (namespace, name) in cache: as get(), without building a view.
  bool contains(py::handle key) {
    if (!PyTuple_Check(key.ptr()) || PyTuple_GET_SIZE(key.ptr()) != 2) {
      throw py::type_error("`in` takes a (namespace, name) tuple, not " +
                           std::string(Py_TYPE(key.ptr())->tp_name));
    }
    const Utf8 a = utf8(PyTuple_GET_ITEM(key.ptr(), 0), "namespace");
    const Utf8 b = utf8(PyTuple_GET_ITEM(key.ptr(), 1), "name");
    berth_object* o = nullptr;
    const berth_status st = call([&](berth_cache* c) {
      return berth_cache_get_object(&o, nullptr, c, a.data, a.size, b.data, b.size);
    });
    if (o) berth_object_free(o);
    return st == BERTH_OK;
  }

  py::object stats() {
    berth_cache_stats s{};
    call([&](berth_cache* c) { return berth_cache_get_stats(&s, c); });
    return make_tuple_type(g.cache_stats, s.objects, s.tombstones, s.resource_version, s.applied,
                           s.ignored, s.synced != 0);
  }
};

size_t Cache::apply(py::handle events) {
  Batch batch = build_event_batch(events.ptr());
  size_t applied = 0;
  call([&](berth_cache* c) {
    const berth_status st =
        berth_cache_apply(&applied, c, batch->GetBufferPointer(), batch->GetSize());
    batch.reset();  // a large batch is unmapped without the GIL
    return st;
  });
  return applied;
}

bool Cache::replace_with(PyObject* objects, PyObject* rv, PyObject* stop) {
  const uint64_t list_rv = as_u64(rv, Arg{"resource_version"});
  if (closed()) raise_closed("cache");  // before the work of building
  Batch batch = build_object_list(objects, list_rv, stop);
  if (!batch) return false;  // stopped
  call([&](berth_cache* c) {
    const berth_status st = berth_cache_replace(c, batch->GetBufferPointer(), batch->GetSize());
    batch.reset();  // a large batch is unmapped without the GIL
    return st;
  });
  return true;
}

constexpr Method<&Cache::upsert, 5> kUpsert{
    "upsert",
    {kNamespace, kName, kResourceVersion, Param{"labels", Fallback::kNone},
     Param{"payload", Fallback::kNone}},
    "upsert($self, namespace, name, resource_version, labels={}, payload=b'')\n--\n\n"
    "Inserts or replaces an object unless the cache holds it, or a tombstone of it, at a "
    "resource_version >= this one. True if the cache changed."};
constexpr Method<&Cache::remove, 3> kDelete{
    "delete", {kNamespace, kName, Param{"resource_version", Fallback::kZero}},
    "delete($self, namespace, name, resource_version=0)\n--\n\n"
    "Deletes an object as of resource_version (0 = whatever is cached) and leaves a "
    "tombstone. True if the cache changed."};
constexpr Method<&Cache::apply, 1> kApply{
    "apply", {Param{"events"}},
    "apply($self, events)\n--\n\n"
    "Applies watch events (or one Event) in order, all or nothing; returns how many changed "
    "the cache."};
constexpr Method<&Cache::replace, 2> kReplace{
    "replace", {Param{"objects"}, kResourceVersion},
    "replace($self, objects, resource_version)\n--\n\n"
    "Swaps in a full relist taken at resource_version, keeping newer entries and tombstones; "
    "marks the cache synced."};
constexpr Method<&Cache::replace_stoppable, 3> kReplaceStoppable{
    "_replace_stoppable", {Param{"objects"}, kResourceVersion, Param{"stop"}},
    "_replace_stoppable($self, objects, resource_version, stop)\n--\n\n"
    "replace(), polling stop.is_set() between chunks of objects while building the list; "
    "False, the cache unchanged, if it stopped. The primitive of replace_async."};
constexpr Method<&Cache::list_objects, 2> kList{
    "list", {Param{"namespace", Fallback::kEmptyStr}, Param{"selector", Fallback::kNone}},
    "list($self, namespace='', selector=None)\n--\n\n"
    "The objects of a namespace ('' = all) matching a selector (None = all), sorted by "
    "(namespace, name), as a lazy ObjectList."};
constexpr Method<&Cache::get, 2> kGet{
    "get", {kNamespace, kName},
    "get($self, namespace, name)\n--\n\nOne object as an ObjectView, or None if not cached."};
constexpr Method<&Cache::stats, 0> kCacheStats{
    "stats", {}, "stats($self)\n--\n\nCounters of the cache (CacheStats)."};

PyMethodDef g_cache_methods[] = {
    method_def<kUpsert>(), method_def<kDelete>(), method_def<kApply>(),      method_def<kReplace>(),
    method_def<kList>(),   method_def<kGet>(),    method_def<kCacheStats>(),
    method_def<kReplaceStoppable>(),
};


}  // namespace

// cache_write.h: an ObjectView's fields, straight from its list's bytes.
void read_object_view(PyObject* view, ObjectFields* out, std::vector<LabelView>* labels) {
  const berth_object_fields& f = view_fields(view);
  out->ns = std::string_view(f.namespace_, f.namespace_len);
  out->name = std::string_view(f.name, f.name_len);
  out->resource_version = f.resource_version;
  out->payload = std::span<const uint8_t>(f.payload, f.payload_len);
  // The label strings point into the object, which the view keeps alive.
  berth_label ls[BERTH_MAX_LABELS];
  const Py_ssize_t n = view_labels(view, ls);
  if (n < 0) throw py::error_already_set();
  for (Py_ssize_t i = 0; i < n; ++i) {
    labels->push_back({std::string_view(ls[i].key, ls[i].key_len),
                       std::string_view(ls[i].value, ls[i].value_len)});
  }
}

void bind_cache(py::module_& m) {
  py::class_<Cache> cache(m, "Cache", py::is_final(),
                          "An object cache: watch-fed, write-through, version-guarded, indexed "
                          "by namespace and labels. Thread-safe; use as a context manager or "
                          "call close().");
  cache.attr("__module__") = "berth";
  cache.def(py::init([](py::object limit) { return std::make_unique<Cache>(limit); }),
            py::arg("tombstone_limit") = 0);
  def_handle_protocol(cache, "Frees the cache after calls in flight in other threads return. "
                             "Idempotent. Lists already returned stay valid.");
  cache.def("__repr__", [](const Cache& c) {
    return c.closed() ? "<berth.Cache closed>" : "<berth.Cache open>";
  });
  install_methods(cache, g_cache_methods);
  cache.def("__len__", &Cache::len, "The number of objects cached (CacheStats.objects).");
  cache.def("__contains__", &Cache::contains, py::arg("key"),
            "(namespace, name) in cache: whether get() would find it.");
  m.def(
      "_object_list_bytes",
      [](py::handle objects, py::handle rv) {
        const uint64_t list_rv = as_u64(rv.ptr(), Arg{"resource_version"});
        Batch batch = build_object_list(objects.ptr(), list_rv, nullptr);
        auto out = py::reinterpret_steal<py::bytes>(PyBytes_FromStringAndSize(
            reinterpret_cast<const char*>(batch->GetBufferPointer()),
            static_cast<Py_ssize_t>(batch->GetSize())));
        if (!out) throw py::error_already_set();
        return out;
      },
      py::arg("objects"), py::arg("resource_version"),
      "The berth.fb.ObjectList bytes Cache.replace(objects, resource_version) passes to "
      "berth_cache_replace (for benchmarks and tests).");
}

void bind_object_types(py::module_& m) {
  make_object_types();
  m.attr("ObjectList") = py::handle(reinterpret_cast<PyObject*>(g.object_list));
  m.attr("ObjectView") = py::handle(reinterpret_cast<PyObject*>(g.object_view));
}

}  // namespace berth_py
