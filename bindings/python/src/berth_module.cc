// berth._berth: the pybind11 module over Berth's C ABI (capi/berth.h).
//
// This file talks to Berth only through berth_* functions and the
// FlatBuffers schema (capi/berth.fbs); it never includes core/ headers.
//
// Threading: every berth_* call that touches an engine or a buffer runs with
// the GIL released, so Python threads using one Engine run in parallel inside
// Berth. An Engine counts its calls in flight (the counter is only touched
// while holding the GIL); close() makes new calls raise ClosedError and frees
// the engine only once the calls in flight have returned.
//
// Hot path (pop_spread + add is what a control plane runs per claim):
//  - the data methods are METH_FASTCALL descriptors on the pybind11 class,
//    not pybind11-dispatched functions (see "Engine methods" below);
//  - arguments stay py::handle and are converted with the CPython API: a
//    str's UTF-8 form goes to Berth as pointer + length, without copies;
//  - PoolKey (a typing.NamedTuple) is built with tp_alloc, not by calling
//    the class;
//  - the GIL is released with a bare PyEval_SaveThread/RestoreThread pair.

#include <pybind11/pybind11.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "berth.h"
#include "berth_generated.h"

namespace py = pybind11;

namespace {

// ---------------------------------------------------------------------------
// Objects looked up once at import. Deliberately leaked (held for the life of
// the process) so nothing here is released during interpreter shutdown.
// ---------------------------------------------------------------------------
struct Globals {
  PyTypeObject* pool_key = nullptr;  // berth._types.PoolKey (a tuple subclass)
  PyTypeObject* pool_stats = nullptr;
  PyTypeObject* node_stat = nullptr;
  PyObject* error_base = nullptr;  // berth._errors.Error
  PyObject* error_by_status[8] = {};
  PyObject* closed_error = nullptr;
};
Globals g;

constexpr int kPoolKeyFields = 6;  // namespace, name, node, ready, seq, token

inline bool is_failure(berth_status st) { return st != BERTH_OK && st != BERTH_EMPTY; }

// Releases the GIL for its scope. py::gil_scoped_release does the same plus a
// get_internals() lookup on every construction, which measured ~20 ns per call
// on the add / pop_spread path; we never use gil_scoped_acquire, so the plain
// CPython pair is all that is needed.
class NoGil {
 public:
  NoGil() : state_(PyEval_SaveThread()) {}
  ~NoGil() { PyEval_RestoreThread(state_); }
  NoGil(const NoGil&) = delete;
  NoGil& operator=(const NoGil&) = delete;

 private:
  PyThreadState* state_;
};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

// The detail of a failed call, read on the calling thread right after the call
// (while the GIL is still released), as berth.h asks.
struct Failure {
  berth_status status = BERTH_OK;
  std::string message;
  std::string status_name;

  void capture(berth_status st) {
    status = st;
    size_t len = 0;
    const char* msg = berth_last_error(&len);
    message.assign(msg ? msg : "", msg ? len : 0);
    status_name = berth_status_name(st);
  }
};

[[noreturn]] void raise_error(PyObject* cls, int status, const std::string& message,
                              const char* status_name) {
  auto msg = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
      message.data(), static_cast<Py_ssize_t>(message.size()), "replace"));
  if (!msg) throw py::error_already_set();
  py::object name = status_name ? py::object(py::str(status_name)) : py::object(py::none());
  py::object exc = py::reinterpret_borrow<py::object>(cls)(msg, status, name);
  PyErr_SetObject(cls, exc.ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_failure(const Failure& f) {
  PyObject* cls = g.error_base;
  if (f.status >= 0 && f.status < static_cast<int>(std::size(g.error_by_status)) &&
      g.error_by_status[f.status] != nullptr) {
    cls = g.error_by_status[f.status];
  }
  raise_error(cls, f.status, f.message, f.status_name.c_str());
}

// An error detected by the binding itself, with the status the library would
// have returned for it.
[[noreturn]] void raise_status(berth_status st, const std::string& message) {
  Failure f;
  f.status = st;
  f.message = message;
  f.status_name = berth_status_name(st);
  raise_failure(f);
}

[[noreturn]] void raise_closed() {
  raise_error(g.closed_error, BERTH_ERR_INVALID_ARGUMENT, "the engine is closed",
              "BERTH_ERR_INVALID_ARGUMENT");
}

[[noreturn]] void raise_type(const std::string& what, const char* expected, PyObject* got) {
  throw py::type_error(what + " must be " + expected + ", not " + Py_TYPE(got)->tp_name);
}

// ---------------------------------------------------------------------------
// Argument conversion
// ---------------------------------------------------------------------------

// UTF-8 view of a Python str. For ASCII strings CPython hands out its own
// storage; otherwise it caches the UTF-8 form on the str object. Either way
// the bytes live as long as the str, which the caller keeps alive.
struct Utf8 {
  const char* data;
  size_t size;
};

// `what` names the argument in error messages (e.g. "name", "keys[3].node").
inline Utf8 utf8(PyObject* obj, const char* what, Py_ssize_t index = -1) {
  auto label = [&]() {
    return index < 0 ? std::string(what)
                     : "keys[" + std::to_string(index) + "]." + what;
  };
  if (!PyUnicode_Check(obj)) raise_type(label(), "str", obj);
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(obj, &n);
  if (p == nullptr) {
    // A str with lone surrogates has no UTF-8 form: to Berth that is a name
    // that is not valid UTF-8.
    std::string detail;
    if (PyErr_Occurred()) {
      py::error_already_set e;
      detail = std::string(": ") + e.what();
    }
    raise_status(BERTH_ERR_INVALID_NAME, label() + " cannot be encoded as UTF-8" + detail);
  }
  return Utf8{p, static_cast<size_t>(n)};
}

inline int as_ready(PyObject* obj, const char* what = "ready", Py_ssize_t index = -1) {
  if (obj == Py_True) return 1;
  if (obj == Py_False) return 0;
  raise_type(index < 0 ? std::string(what) : "keys[" + std::to_string(index) + "]." + what,
             "bool", obj);
}

// ---------------------------------------------------------------------------
// Result conversion
// ---------------------------------------------------------------------------

inline PyObject* decode(const char* p, size_t n) {
  return PyUnicode_DecodeUTF8(p, static_cast<Py_ssize_t>(n), "strict");
}

// Builds a PoolKey without going through its Python __new__: a NamedTuple is a
// tuple subclass, and tp_alloc + filling the items is what tuple.__new__ does
// for subclasses.
py::object make_pool_key(PyObject* ns, PyObject* name, PyObject* node, bool ready,
                         uint64_t seq, uint64_t token) {
  // Steal the three strings first so they are released on every path.
  py::object ons = py::reinterpret_steal<py::object>(ns);
  py::object oname = py::reinterpret_steal<py::object>(name);
  py::object onode = py::reinterpret_steal<py::object>(node);
  if (!ns || !name || !node) throw py::error_already_set();
  PyObject* oseq = PyLong_FromUnsignedLongLong(seq);
  if (!oseq) throw py::error_already_set();
  PyObject* otoken = PyLong_FromUnsignedLongLong(token);
  if (!otoken) {
    Py_DECREF(oseq);
    throw py::error_already_set();
  }
  PyObject* t = g.pool_key->tp_alloc(g.pool_key, kPoolKeyFields);
  if (!t) {
    Py_DECREF(oseq);
    Py_DECREF(otoken);
    throw py::error_already_set();
  }
  PyTuple_SET_ITEM(t, 0, ons.release().ptr());
  PyTuple_SET_ITEM(t, 1, oname.release().ptr());
  PyTuple_SET_ITEM(t, 2, onode.release().ptr());
  PyObject* r = ready ? Py_True : Py_False;
  Py_INCREF(r);
  PyTuple_SET_ITEM(t, 3, r);
  PyTuple_SET_ITEM(t, 4, oseq);
  PyTuple_SET_ITEM(t, 5, otoken);
  return py::reinterpret_steal<py::object>(t);
}

py::object make_pool_key(const berth_pool_key& k) {
  if (k.namespace_len > sizeof(k.namespace_) || k.name_len > sizeof(k.name) ||
      k.node_len > sizeof(k.node)) {
    raise_status(BERTH_ERR_INTERNAL, "berth_pool_key with out-of-range lengths");
  }
  return make_pool_key(decode(k.namespace_, k.namespace_len), decode(k.name, k.name_len),
                       decode(k.node, k.node_len), k.ready != 0, k.seq, k.token);
}

inline PyObject* fb_str(const flatbuffers::String* s) {
  return s ? decode(s->c_str(), s->size()) : decode("", 0);
}

// Calls a NamedTuple class with positional arguments (cold paths only).
template <class... Args>
py::object make_tuple_type(PyTypeObject* type, Args&&... args) {
  return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(type))(
      std::forward<Args>(args)...);
}

// ---------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------

class Engine;

// Marks one call in flight on an engine. Constructed and destroyed with the
// GIL held, which is what makes the plain counter safe.
class Flight {
 public:
  explicit Flight(Engine& e);
  ~Flight();
  Flight(const Flight&) = delete;
  Flight& operator=(const Flight&) = delete;
  berth_engine* handle() const { return handle_; }

 private:
  Engine& engine_;
  berth_engine* handle_;
};

class Engine {
 public:
  Engine() {
    berth_engine* e = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_engine_new(&e);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    handle_ = e;
  }

  ~Engine() {
    // No call can be in flight here: every call holds a reference to self.
    if (handle_) berth_engine_free(handle_);
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  bool closed() const { return handle_ == nullptr; }

  // Stops new calls (they raise ClosedError), waits for the calls already in
  // flight in other threads to return, then frees the engine. Waiting is
  // bounded because no berth_* call of this ABI blocks; raising instead would
  // starve: the GIL changes hands exactly when a thread enters Berth, so a
  // busy engine almost always has a call in flight when close() runs.
  void close() {
    if (!handle_) return;
    berth_engine* e = handle_;
    handle_ = nullptr;  // from here on, new calls raise ClosedError
    for (unsigned spins = 0; in_flight_ != 0; ++spins) {
      NoGil nogil;  // lets the calls in flight finish
      if (spins < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    NoGil nogil;
    berth_engine_free(e);
  }

  // Runs fn(berth_engine*) -> berth_status with the GIL released, and raises
  // the matching berth.Error if it failed. Returns BERTH_OK or BERTH_EMPTY.
  template <class Fn>
  berth_status call(Fn&& fn) {
    Flight flight(*this);
    berth_status st;
    Failure f;
    {
      NoGil nogil;
      st = fn(flight.handle());
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(st)) raise_failure(f);
    return st;
  }

  // berth_pool_add and berth_pool_update take the same arguments.
  using AddFn = berth_status (*)(int*, berth_engine*, const char*, size_t, const char*, size_t,
                                 const char*, size_t, const char*, size_t, int);

  bool add_like(AddFn fn, py::handle pool, py::handle ns, py::handle name, py::handle node,
                py::handle ready) {
    Utf8 p = utf8(pool.ptr(), "pool");
    Utf8 a = utf8(ns.ptr(), "namespace");
    Utf8 b = utf8(name.ptr(), "name");
    Utf8 c = utf8(node.ptr(), "node");
    int r = as_ready(ready.ptr());
    int flag = 0;
    call([&](berth_engine* e) {
      return fn(&flag, e, p.data, p.size, a.data, a.size, b.data, b.size, c.data, c.size, r);
    });
    return flag != 0;
  }

  bool add(py::handle pool, py::handle ns, py::handle name, py::handle node, py::handle ready) {
    return add_like(&berth_pool_add, pool, ns, name, node, ready);
  }

  bool update(py::handle pool, py::handle ns, py::handle name, py::handle node,
              py::handle ready) {
    return add_like(&berth_pool_update, pool, ns, name, node, ready);
  }

  size_t add_batch(py::handle pool, py::handle keys);

  bool remove(py::handle pool, py::handle ns, py::handle name) {
    Utf8 p = utf8(pool.ptr(), "pool");
    Utf8 a = utf8(ns.ptr(), "namespace");
    Utf8 b = utf8(name.ptr(), "name");
    int removed = 0;
    call([&](berth_engine* e) {
      return berth_pool_remove(&removed, e, p.data, p.size, a.data, a.size, b.data, b.size);
    });
    return removed != 0;
  }

  bool remove_pool(py::handle pool) {
    Utf8 p = utf8(pool.ptr(), "pool");
    int removed = 0;
    call([&](berth_engine* e) { return berth_pool_remove_pool(&removed, e, p.data, p.size); });
    return removed != 0;
  }

  template <bool kSpread>
  py::object pop(py::handle pool) {
    Utf8 p = utf8(pool.ptr(), "pool");
    berth_pool_key k;
    berth_status st = call([&](berth_engine* e) {
      return kSpread ? berth_pool_pop_spread(&k, e, p.data, p.size)
                     : berth_pool_pop_fifo(&k, e, p.data, p.size);
    });
    if (st == BERTH_EMPTY) return py::none();
    return make_pool_key(k);
  }

  bool put_back(py::handle pool, py::handle key) {
    Utf8 p = utf8(pool.ptr(), "pool");
    PyObject* k = key.ptr();
    if (!PyObject_TypeCheck(k, g.pool_key) || PyTuple_GET_SIZE(k) != kPoolKeyFields) {
      raise_type("key", "a berth.PoolKey", k);
    }
    Utf8 a = utf8(PyTuple_GET_ITEM(k, 0), "key.namespace");
    Utf8 b = utf8(PyTuple_GET_ITEM(k, 1), "key.name");
    PyObject* tok = PyTuple_GET_ITEM(k, 5);
    if (!PyLong_Check(tok) || PyBool_Check(tok)) raise_type("key.token", "int", tok);
    uint64_t token = PyLong_AsUnsignedLongLong(tok);
    if (token == static_cast<uint64_t>(-1) && PyErr_Occurred()) {
      PyErr_Clear();
      raise_status(BERTH_ERR_INVALID_ARGUMENT, "key.token is out of the range of a uint64");
    }
    int restored = 0;
    call([&](berth_engine* e) {
      return berth_pool_put_back(&restored, e, p.data, p.size, a.data, a.size, b.data, b.size,
                                 token);
    });
    return restored != 0;
  }

  py::object stats(py::handle pool) {
    Utf8 p = utf8(pool.ptr(), "pool");
    berth_pool_stats s{};
    call([&](berth_engine* e) { return berth_pool_get_stats(&s, e, p.data, p.size); });
    return make_tuple_type(g.pool_stats, s.keys, s.ready_keys, s.scheduled_keys, s.nodes,
                           s.put_back_records);
  }

  py::list snapshot(py::handle pool);
  py::dict node_stats(py::handle pool);

 private:
  friend class Flight;
  berth_engine* handle_ = nullptr;  // nullptr once closed
  size_t in_flight_ = 0;            // guarded by the GIL
};

Flight::Flight(Engine& e) : engine_(e), handle_(e.handle_) {
  if (!handle_) raise_closed();
  ++engine_.in_flight_;
}
Flight::~Flight() { --engine_.in_flight_; }

// A buffer returned by Berth, freed by Berth when this goes out of scope.
class Buffer {
 public:
  Buffer() = default;
  ~Buffer() {
    if (buf_) {
      NoGil nogil;
      berth_buffer_free(buf_);
    }
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  berth_buffer** out() { return &buf_; }
  berth_buffer* get() const { return buf_; }
  const uint8_t* data = nullptr;
  size_t size = 0;

 private:
  berth_buffer* buf_ = nullptr;
};

// Fetches a buffer with fn(berth_buffer**, berth_engine*) and reads its bytes.
template <class Fn>
void fetch_buffer(Engine& engine, Buffer& buf, Fn&& fn) {
  engine.call([&](berth_engine* e) {
    berth_status st = fn(buf.out(), e);
    if (st == BERTH_OK) st = berth_buffer_data(&buf.data, &buf.size, buf.get());
    return st;
  });
}

template <class Root>
const Root* verified_root(const Buffer& buf, const char* identifier, const char* what) {
  // The default table limit (1e6) would reject snapshots of large pools.
  flatbuffers::Verifier v(buf.data, buf.size, /*max_depth=*/64,
                          /*max_tables=*/std::numeric_limits<flatbuffers::uoffset_t>::max());
  if (buf.data == nullptr || !v.VerifyBuffer<Root>(identifier)) {
    raise_status(BERTH_ERR_BAD_BUFFER,
                 std::string("the ") + what + " buffer returned by libberth failed verification");
  }
  return flatbuffers::GetRoot<Root>(buf.data);
}

py::list Engine::snapshot(py::handle pool) {
  Utf8 p = utf8(pool.ptr(), "pool");
  Buffer buf;
  fetch_buffer(*this, buf, [&](berth_buffer** out, berth_engine* e) {
    return berth_pool_snapshot(out, e, p.data, p.size);
  });
  auto* root = verified_root<berth::fb::PoolSnapshot>(buf, BERTH_FB_POOL_SNAPSHOT_ID,
                                                      "PoolSnapshot");
  auto* keys = root->keys();
  const size_t n = keys ? keys->size() : 0;
  py::list out(n);
  for (size_t i = 0; i < n; ++i) {
    const auto* k = keys->Get(static_cast<flatbuffers::uoffset_t>(i));
    py::object key = make_pool_key(fb_str(k->namespace_()), fb_str(k->name()),
                                   fb_str(k->node()), k->ready(), k->seq(), 0);
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), key.release().ptr());
  }
  return out;
}

py::dict Engine::node_stats(py::handle pool) {
  Utf8 p = utf8(pool.ptr(), "pool");
  Buffer buf;
  fetch_buffer(*this, buf, [&](berth_buffer** out, berth_engine* e) {
    return berth_pool_node_stats(out, e, p.data, p.size);
  });
  auto* root = verified_root<berth::fb::PoolNodeStats>(buf, BERTH_FB_POOL_NODE_STATS_ID,
                                                       "PoolNodeStats");
  py::dict out;
  if (auto* nodes = root->nodes()) {
    for (const auto* ns : *nodes) {
      py::object node = py::reinterpret_steal<py::object>(fb_str(ns->node()));
      if (!node) throw py::error_already_set();
      out[node] = make_tuple_type(g.node_stat, node, ns->keys(), ns->ready_keys());
    }
  }
  return out;
}

// The four fields of one batch entry: a PoolKey, a (namespace, name, node,
// ready) tuple or list, or any object with those attributes. The fields are
// borrowed from the item (or from `holder`) and used before any Python code
// runs again.
struct BatchItem {
  py::object holder;  // owns the fields read as attributes
  PyObject* fields[4];
};

void read_batch_item(PyObject* item, Py_ssize_t index, BatchItem& out) {
  if (PyObject_TypeCheck(item, g.pool_key) && PyTuple_GET_SIZE(item) == kPoolKeyFields) {
    for (int i = 0; i < 4; ++i) out.fields[i] = PyTuple_GET_ITEM(item, i);
    return;
  }
  const bool sequence = PyTuple_Check(item) || PyList_Check(item);
  if (sequence && PySequence_Fast_GET_SIZE(item) == 4) {
    for (int i = 0; i < 4; ++i) out.fields[i] = PySequence_Fast_GET_ITEM(item, i);
    return;
  }
  if (!sequence) {
    static const char* const kAttrs[4] = {"namespace", "name", "node", "ready"};
    py::tuple t(4);
    int i = 0;
    for (; i < 4; ++i) {
      PyObject* v = PyObject_GetAttrString(item, kAttrs[i]);
      if (!v) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
        break;
      }
      PyTuple_SET_ITEM(t.ptr(), i, v);
    }
    if (i == 4) {
      for (int j = 0; j < 4; ++j) out.fields[j] = PyTuple_GET_ITEM(t.ptr(), j);
      out.holder = std::move(t);
      return;
    }
  }
  throw py::type_error("keys[" + std::to_string(index) +
                       "] must be a berth.PoolKey or a (namespace, name, node, ready) tuple, "
                       "not " + Py_TYPE(item)->tp_name);
}

size_t Engine::add_batch(py::handle pool, py::handle keys) {
  Utf8 p = utf8(pool.ptr(), "pool");
  if (PyUnicode_Check(keys.ptr()) || PyBytes_Check(keys.ptr())) {
    raise_type("keys", "an iterable of keys", keys.ptr());
  }
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<berth::fb::PoolKey>> offsets;
  Py_ssize_t hint = PyObject_LengthHint(keys.ptr(), 0);
  if (hint < 0) throw py::error_already_set();
  offsets.reserve(static_cast<size_t>(hint));

  py::object iter = py::reinterpret_steal<py::object>(PyObject_GetIter(keys.ptr()));
  if (!iter) throw py::error_already_set();
  Py_ssize_t index = 0;
  // Bytes of the finished buffer beyond the strings: the vector, vtables and
  // table headers. Keeps us under BERTH_MAX_BUFFER_LEN (FlatBufferBuilder
  // itself cannot grow past 2 GiB).
  constexpr size_t kPerKeyOverhead = 64;
  while (PyObject* raw = PyIter_Next(iter.ptr())) {
    py::object item = py::reinterpret_steal<py::object>(raw);
    BatchItem bi;
    read_batch_item(item.ptr(), index, bi);
    Utf8 ns = utf8(bi.fields[0], "namespace", index);
    Utf8 name = utf8(bi.fields[1], "name", index);
    Utf8 node = utf8(bi.fields[2], "node", index);
    int ready = as_ready(bi.fields[3], "ready", index);
    const size_t need = fbb.GetSize() + ns.size + name.size + node.size +
                        kPerKeyOverhead * (offsets.size() + 1);
    if (need > BERTH_MAX_BUFFER_LEN) {
      raise_status(BERTH_ERR_BAD_BUFFER,
                   "batch would exceed BERTH_MAX_BUFFER_LEN bytes at keys[" +
                       std::to_string(index) + "]; split it into smaller batches");
    }
    auto ons = ns.size ? fbb.CreateString(ns.data, ns.size) : flatbuffers::Offset<flatbuffers::String>();
    // An empty name is still written, so that Berth reports it as an invalid
    // name (with its index) rather than a missing field.
    auto oname = fbb.CreateString(name.data, name.size);
    auto onode = node.size ? fbb.CreateString(node.data, node.size) : flatbuffers::Offset<flatbuffers::String>();
    offsets.push_back(berth::fb::CreatePoolKey(fbb, ons, oname, onode, ready != 0, 0));
    ++index;
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  auto vec = fbb.CreateVector(offsets);
  fbb.Finish(berth::fb::CreatePoolKeyBatch(fbb, vec), BERTH_FB_POOL_KEY_BATCH_ID);

  size_t inserted = 0;
  const uint8_t* data = fbb.GetBufferPointer();
  const size_t size = fbb.GetSize();
  call([&](berth_engine* e) {
    return berth_pool_add_batch(&inserted, e, p.data, p.size, data, size);
  });
  return inserted;
}

// ---------------------------------------------------------------------------
// Engine methods as METH_FASTCALL descriptors
//
// pybind11's generic dispatcher (argument vector, overload loop, casters)
// costs ~100 ns per call here; the data methods are therefore installed as
// plain CPython methods that parse their arguments in place and call the
// Engine member directly. Measured on the pop_spread + add pair at
// (10000 keys, 100 nodes): 975 ns through pybind11's dispatcher, 700 ns this
// way (see bench/bench_pair.py).
// ---------------------------------------------------------------------------

enum class Fallback { kRequired, kEmptyStr, kTrue };

struct Param {
  const char* name;
  Fallback fallback = Fallback::kRequired;
};

PyObject* g_empty_str = nullptr;  // "" (default of node)

template <size_t N>
bool parse_args(const char* fname, const std::array<Param, N>& params, PyObject* const* args,
                Py_ssize_t nargs, PyObject* kwnames, PyObject* (&out)[N]) {
  if (nargs > static_cast<Py_ssize_t>(N)) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname,
                 static_cast<int>(N), nargs);
    return false;
  }
  for (size_t i = 0; i < N; ++i) out[i] = i < static_cast<size_t>(nargs) ? args[i] : nullptr;
  if (kwnames) {
    const Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t j = 0; j < nkw; ++j) {
      PyObject* kw = PyTuple_GET_ITEM(kwnames, j);
      size_t i = 0;
      while (i < N && PyUnicode_CompareWithASCIIString(kw, params[i].name) != 0) ++i;
      if (i == N) {
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, kw);
        return false;
      }
      if (out[i]) {
        PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                     params[i].name);
        return false;
      }
      out[i] = args[nargs + j];
    }
  }
  for (size_t i = 0; i < N; ++i) {
    if (out[i]) continue;
    switch (params[i].fallback) {
      case Fallback::kRequired:
        PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)", fname,
                     params[i].name, static_cast<int>(i + 1));
        return false;
      case Fallback::kEmptyStr:
        out[i] = g_empty_str;
        break;
      case Fallback::kTrue:
        out[i] = Py_True;
        break;
    }
  }
  return true;
}

inline PyObject* to_python(bool v) { return Py_NewRef(v ? Py_True : Py_False); }
inline PyObject* to_python(size_t v) { return PyLong_FromSize_t(v); }
inline PyObject* to_python(py::object v) { return v.release().ptr(); }

// One Engine method: its Python name, parameters and docstring (whose first
// lines are the __text_signature__ that inspect.signature reads).
template <auto Member, size_t N>
struct Method {
  static constexpr auto member = Member;
  const char* name;
  std::array<Param, N> params;
  const char* doc;
};

template <const auto& M>
PyObject* trampoline(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                     PyObject* kwnames) {
  constexpr size_t N = std::tuple_size_v<decltype(M.params)>;
  PyObject* a[N];
  if (!parse_args(M.name, M.params, args, nargs, kwnames, a)) return nullptr;
  try {
    // The descriptor guarantees self is an Engine; the class is final, so
    // the instance has pybind11's simple layout.
    auto* engine =
        reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder().value_ptr<Engine>();
    if (!engine) {
      PyErr_SetString(PyExc_TypeError, "berth.Engine.__init__() was not called");
      return nullptr;
    }
    constexpr auto member = std::remove_cvref_t<decltype(M)>::member;
    return [&]<size_t... I>(std::index_sequence<I...>) {
      return to_python((engine->*member)(py::handle(a[I])...));
    }(std::make_index_sequence<N>{});
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (py::builtin_exception& e) {
    e.set_error();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}


// The parameter lists below must match the signatures in berth/_berth.pyi
// (tests/test_package.py checks them through inspect.signature).
constexpr Param kPool{"pool"};
constexpr Param kNamespace{"namespace"};
constexpr Param kName{"name"};
constexpr Param kNode{"node", Fallback::kEmptyStr};
constexpr Param kReady{"ready", Fallback::kTrue};

constexpr Method<&Engine::add, 5> kAdd{
    "add", {kPool, kNamespace, kName, kNode, kReady},
    "add($self, pool, namespace, name, node='', ready=True)\n--\n\n"
    "Adds a key to a pool, creating the pool if needed. True if it was inserted; "
    "False if it was present (node and ready updated in place, age kept)."};
constexpr Method<&Engine::update, 5> kUpdate{
    "update", {kPool, kNamespace, kName, kNode, kReady},
    "update($self, pool, namespace, name, node='', ready=True)\n--\n\n"
    "Updates node and ready of a key only if it is in the pool (age kept); never inserts. "
    "True if it was there."};
constexpr Method<&Engine::add_batch, 2> kAddBatch{
    "add_batch", {kPool, Param{"keys"}},
    "add_batch($self, pool, keys)\n--\n\n"
    "Adds many keys in one call, all or nothing; returns how many were new."};
constexpr Method<&Engine::remove, 3> kRemove{
    "remove", {kPool, kNamespace, kName},
    "remove($self, pool, namespace, name)\n--\n\n"
    "Removes a key; True if it was there. An absent key or pool is not an error."};
constexpr Method<&Engine::remove_pool, 1> kRemovePool{
    "remove_pool", {kPool},
    "remove_pool($self, pool)\n--\n\nDrops a pool and its put_back records; True if it existed."};
constexpr Method<&Engine::pop<false>, 1> kPopFifo{
    "pop_fifo", {kPool},
    "pop_fifo($self, pool)\n--\n\nHands out the oldest key (ready or not), or None if the pool "
    "is empty."};
constexpr Method<&Engine::pop<true>, 1> kPopSpread{
    "pop_spread", {kPool},
    "pop_spread($self, pool)\n--\n\nHands out a key by the NodeSpread rule, or None if the pool "
    "is empty."};
constexpr Method<&Engine::put_back, 2> kPutBack{
    "put_back", {kPool, Param{"key"}},
    "put_back($self, pool, key)\n--\n\n"
    "Returns a handed-out PoolKey at its original age; False if the put_back is stale."};
constexpr Method<&Engine::stats, 1> kStats{
    "stats", {kPool}, "stats($self, pool)\n--\n\nCounters of a pool (PoolStats)."};
constexpr Method<&Engine::snapshot, 1> kSnapshot{
    "snapshot", {kPool},
    "snapshot($self, pool)\n--\n\nEvery key of a pool, oldest first (list of PoolKey, token 0)."};
constexpr Method<&Engine::node_stats, 1> kNodeStats{
    "node_stats", {kPool},
    "node_stats($self, pool)\n--\n\nKey counts per node (dict of NodeStat), in node-name order."};

template <const auto& M>
PyMethodDef method_def() {
  return {M.name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&trampoline<M>)),
          METH_FASTCALL | METH_KEYWORDS, M.doc};
}

// Referenced by the method descriptors for the life of the process.
PyMethodDef g_method_defs[] = {
    method_def<kAdd>(),        method_def<kUpdate>(),   method_def<kAddBatch>(),
    method_def<kRemove>(),     method_def<kRemovePool>(), method_def<kPopFifo>(),
    method_def<kPopSpread>(),  method_def<kPutBack>(),  method_def<kStats>(),
    method_def<kSnapshot>(),   method_def<kNodeStats>(),
};

PyTypeObject* load_type(const py::module_& mod, const char* name) {
  py::object t = mod.attr(name);
  if (!PyType_Check(t.ptr()) ||
      !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(t.ptr()), &PyTuple_Type)) {
    throw py::import_error(std::string("berth._types.") + name + " must be a NamedTuple class");
  }
  return reinterpret_cast<PyTypeObject*>(t.release().ptr());
}

}  // namespace

PYBIND11_MODULE(_berth, m) {
  m.doc() = "Native core of the berth package: a thin layer over Berth's C ABI (berth.h).";

  // The library we loaded must speak the ABI we were compiled against.
  const uint32_t loaded = berth_abi_version();
  if (loaded / 10000 != BERTH_ABI_VERSION_MAJOR || loaded < BERTH_ABI_VERSION) {
    throw py::import_error("berth: libberth has ABI version " + std::to_string(loaded) +
                           " but the binding was built against " +
                           std::to_string(BERTH_ABI_VERSION) +
                           " (major must match and the library must not be older)");
  }

  py::module_ types = py::module_::import("berth._types");
  g.pool_key = load_type(types, "PoolKey");
  g.pool_stats = load_type(types, "PoolStats");
  g.node_stat = load_type(types, "NodeStat");
  if (py::len(types.attr("PoolKey").attr("_fields")) != kPoolKeyFields) {
    throw py::import_error("berth._types.PoolKey must have 6 fields");
  }

  py::module_ errors = py::module_::import("berth._errors");
  g.error_base = py::object(errors.attr("Error")).release().ptr();
  const std::pair<int, const char*> by_status[] = {
      {BERTH_ERR_INVALID_ARGUMENT, "InvalidArgumentError"},
      {BERTH_ERR_INVALID_NAME, "InvalidNameError"},
      {BERTH_ERR_NOT_FOUND, "NotFoundError"},
      {BERTH_ERR_BAD_BUFFER, "BadBufferError"},
      {BERTH_ERR_NO_MEMORY, "OutOfMemoryError"},
      {BERTH_ERR_INTERNAL, "InternalError"},
  };
  for (const auto& [status, name] : by_status) {
    g.error_by_status[status] = py::object(errors.attr(name)).release().ptr();
  }
  g.closed_error = py::object(errors.attr("ClosedError")).release().ptr();

  m.attr("ABI_VERSION") = BERTH_ABI_VERSION;
  m.attr("MAX_POOL_LEN") = BERTH_MAX_POOL_LEN;
  m.attr("MAX_NAMESPACE_LEN") = BERTH_MAX_NAMESPACE_LEN;
  m.attr("MAX_NAME_LEN") = BERTH_MAX_NAME_LEN;
  m.attr("MAX_NODE_LEN") = BERTH_MAX_NODE_LEN;
  m.attr("POOL_PUT_BACK_WINDOW") = BERTH_POOL_PUT_BACK_WINDOW;
  {
    // For tests: the status codes as compiled from berth.h, and the library's
    // names for them.
    py::dict statuses;
    for (int st = BERTH_OK; st <= BERTH_ERR_INTERNAL; ++st) statuses[py::int_(st)] = berth_status_name(st);
    m.attr("_STATUS_NAMES") = statuses;
  }

  m.def("abi_version", &berth_abi_version,
        "ABI version of the loaded libberth (MAJOR*10000 + MINOR*100 + PATCH).");

  g_empty_str = PyUnicode_FromStringAndSize("", 0);
  if (!g_empty_str) throw py::error_already_set();

  py::class_<Engine> cls(m, "Engine", py::is_final(),
                         "A Berth engine: owns pools of keys. Thread-safe; use as a "
                         "context manager or call close().");
  cls.attr("__module__") = "berth";
  cls.def(py::init<>())
      .def("close", &Engine::close,
           "Frees the engine after calls in flight in other threads return. "
           "Idempotent.")
      .def_property_readonly("closed", &Engine::closed)
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](Engine& e, py::args) {
        e.close();
        return false;
      })
      .def("__repr__",
           [](const Engine& e) { return e.closed() ? "<berth.Engine closed>" : "<berth.Engine open>"; });
  for (PyMethodDef& def : g_method_defs) {
    auto descr = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &def));
    if (!descr) throw py::error_already_set();
    cls.attr(def.ml_name) = descr;
  }
}
