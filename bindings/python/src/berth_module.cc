// berth._berth: the pybind11 module over Berth's C ABI (capi/berth.h).
//
// This file talks to Berth only through berth_* functions and the
// FlatBuffers schema (capi/berth.fbs); it never includes core/ headers.
//
// Threading: every berth_* call that touches an engine, a cache, a selector, a
// limiter, a shared limiter, a notifier, a bucket or a buffer runs with the
// GIL released, so Python threads using one handle run in parallel inside
// Berth. Each handle (Engine, Cache, Selector, Limiter, SharedLimiter,
// _Notifier, Bucket) counts its calls in flight (the counter is only touched
// while holding the GIL); close() makes new calls raise ClosedError and frees
// the handle only once the calls in flight have returned (Limiter::close and
// SharedLimiter::close first wake the threads blocked in them). A Selector
// passed to Cache.list, and a _Notifier passed to berth_limiter_acquire_async
// or berth_shared_limiter_acquire_async, are in flight for that call too.
//
// Interpreter exit: once this module's atexit handler has run, a thread
// returning from Berth never takes the GIL back (CPython 3.11 would end it
// with pthread_exit, and the unwind would abort the process): it parks, and
// the process exits around it. close() at that point leaves a handle with
// calls in flight allocated instead of waiting for them. See "Interpreter
// exit" below.
//
// The asyncio side of the Limiter, SharedLimiter and Bucket is Python
// (berth/_limit.py); it is installed on the classes at import.
//
// Hot path (pop_spread + add is what a control plane runs per claim; list +
// reading the objects is what a cache reader runs):
//  - the data methods are METH_FASTCALL descriptors on the pybind11 classes,
//    not pybind11-dispatched functions (see "Methods as METH_FASTCALL
//    descriptors" below);
//  - arguments stay py::handle and are converted with the CPython API: a
//    str's UTF-8 form goes to Berth as pointer + length, without copies; a
//    payload goes as the pointer of its buffer export, without copies;
//  - PoolKey (a typing.NamedTuple) is built with tp_alloc, not by calling
//    the class;
//  - ObjectList / ObjectView are plain CPython types (not pybind11 classes)
//    over the FlatBuffers bytes Berth returned: nothing is decoded until it
//    is read, and a payload is a memoryview over those bytes;
//  - the GIL is released with a bare PyEval_SaveThread/RestoreThread pair.

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cxxabi.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <unordered_map>
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
constexpr int kStatusCount = BERTH_ERR_FORKED + 1;

struct Globals {
  PyTypeObject* pool_key = nullptr;  // berth._types.PoolKey (a tuple subclass)
  PyTypeObject* pool_stats = nullptr;
  PyTypeObject* node_stat = nullptr;
  PyTypeObject* cache_stats = nullptr;
  PyTypeObject* event = nullptr;        // berth._types.Event
  PyTypeObject* object_list = nullptr;  // berth.ObjectList (defined here)
  PyTypeObject* object_view = nullptr;  // berth.ObjectView (defined here)
  PyTypeObject* selector = nullptr;     // berth.Selector (pybind11 class)
  PyTypeObject* limiter_stats = nullptr;  // berth._types.LimiterStats
  PyTypeObject* shared_limiter_stats = nullptr;  // berth._types.SharedLimiterStats
  PyTypeObject* bucket_stats = nullptr;   // berth._types.BucketStats
  PyObject* reservation = nullptr;        // berth._types.Reservation (a plain class)
  PyObject* refusal[3] = {};              // berth._types.Refusal members, by value
  PyTypeObject* notifier = nullptr;       // berth._berth._Notifier (pybind11 class)
  PyObject* get_running_loop = nullptr;   // asyncio.events._get_running_loop
  PyObject* wake_closed = nullptr;        // berth._limit._wake_closed
  PyObject* error_base = nullptr;       // berth._errors.Error
  PyObject* error_by_status[kStatusCount] = {};
  PyObject* closed_error = nullptr;
};
Globals g;

constexpr int kPoolKeyFields = 6;  // namespace, name, node, ready, seq, token

inline bool is_failure(berth_status st) { return st != BERTH_OK && st != BERTH_EMPTY; }

// ---------------------------------------------------------------------------
// Interpreter exit
//
// CPython 3.11's Py_FinalizeEx runs the atexit handlers (other threads still
// run normally), then marks the runtime finalizing; from then on a thread
// other than the finalizing one that takes the GIL back (take_gil, reached by
// PyEval_RestoreThread) is ended with pthread_exit. That is a forced unwind,
// and one started in ~NoGil (a destructor, hence noexcept) makes the C++
// runtime call std::terminate: the process aborted at exit whenever a daemon
// thread was inside Berth. So once exit has begun, a thread returning from
// Berth never takes the GIL back: it parks (sleeps until the process ends,
// holding no GIL and no Berth lock). The handshake is Dekker's:
//  - a thread about to take the GIL back announces itself (g_restoring,
//    seq_cst), then reads g_exiting: set, it withdraws and parks; clear, it
//    takes the GIL and withdraws;
//  - the atexit handler (registered at import) sets g_exiting (seq_cst), then
//    lets the GIL go until g_restoring is 0 (for at most kExitWait),
// so a thread either sees the flag or is seen by the handler, and none is
// inside PyEval_RestoreThread when the runtime is marked finalizing. The
// thread running the handler is the finalizing one; it is never parked.
// ---------------------------------------------------------------------------

std::atomic<bool> g_exiting{false};
std::atomic<int> g_restoring{0};
pthread_t g_exit_thread;  // written before g_exiting is set, read after it is seen
constexpr auto kExitWait = std::chrono::seconds(1);

[[noreturn]] void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

// Returns fn(), a C API call that may run Python code (a class's __new__, an
// iterator's __next__, a property) while this module's frames hold objects.
// If exit ends the thread in there (take_gil's pthread_exit at a GIL switch
// of that code), the forced unwind stops here and the thread parks: going on
// would run those frames' destructors (references dropped, objects freed)
// without the GIL while the interpreter finalizes, a fatal error. fn must own
// nothing with a destructor.
template <class Fn>
auto or_park(Fn&& fn) -> decltype(fn()) {
#if defined(__GLIBCXX__)
  try {
    return fn();
  } catch (abi::__forced_unwind&) {
    park_forever();
  }
#else
  return fn();
#endif
}

// Calls a Python callable (an error class, a NamedTuple class,
// Reservation, _wake_closed) with positional arguments, as or_park says.
template <class... Args>
py::object call_python(PyObject* callable, Args&&... args) {
  py::tuple argv = py::make_tuple(std::forward<Args>(args)...);
  PyObject* out = or_park([&] { return PyObject_Call(callable, argv.ptr(), nullptr); });
  if (!out) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(out);
}

// True once exit has begun and this thread is not the one finalizing: a call
// of this thread that releases the GIL will never take it back.
bool parking() {
  return g_exiting.load(std::memory_order_seq_cst) && !pthread_equal(pthread_self(), g_exit_thread);
}

// PyEval_RestoreThread, or parks the thread for good if exit has begun.
void restore_gil(PyThreadState* state) {
  g_restoring.fetch_add(1, std::memory_order_seq_cst);
  if (parking()) {
    g_restoring.fetch_sub(1, std::memory_order_seq_cst);
    park_forever();
  }
  PyEval_RestoreThread(state);
  g_restoring.fetch_sub(1, std::memory_order_release);
}

// Releases the GIL for its scope. py::gil_scoped_release does the same plus a
// get_internals() lookup on every construction, which measured ~20 ns per call
// on the add / pop_spread path; we never use gil_scoped_acquire, so the plain
// CPython pair is all that is needed. Every place this module takes the GIL
// back is the destructor of a NoGil (see "Interpreter exit").
class NoGil {
 public:
  NoGil() : state_(PyEval_SaveThread()) {}
  ~NoGil() { restore_gil(state_); }
  NoGil(const NoGil&) = delete;
  NoGil& operator=(const NoGil&) = delete;

 private:
  PyThreadState* state_;
};

// The atexit handler (GIL held): see "Interpreter exit".
void begin_exit() {
  g_exit_thread = pthread_self();
  g_exiting.store(true, std::memory_order_seq_cst);
  const auto deadline = std::chrono::steady_clock::now() + kExitWait;
  while (g_restoring.load(std::memory_order_seq_cst) != 0 &&
         std::chrono::steady_clock::now() < deadline) {
    NoGil nogil;  // lets the announced threads take the GIL and withdraw
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

// In a forked child only the forking thread exists, and it holds the GIL.
void reset_exit_after_fork() { g_restoring.store(0, std::memory_order_relaxed); }

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
  py::object exc = call_python(cls, msg, status, name);
  PyErr_SetObject(cls, exc.ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_failure(const Failure& f) {
  PyObject* cls = g.error_base;
  if (f.status >= 0 && f.status < kStatusCount && g.error_by_status[f.status] != nullptr) {
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

// `what`: "engine", "cache" or "selector".
[[noreturn]] void raise_closed(const char* what) {
  raise_error(g.closed_error, BERTH_ERR_BAD_HANDLE, std::string("the ") + what + " is closed",
              "BERTH_ERR_BAD_HANDLE");
}

[[noreturn]] void raise_type(const std::string& what, const char* expected, PyObject* got) {
  throw py::type_error(what + " must be " + expected + ", not " + Py_TYPE(got)->tp_name);
}

// ---------------------------------------------------------------------------
// Argument conversion
// ---------------------------------------------------------------------------

// Names an argument in error messages: "name", or for an item of a batch
// "<batch>[<index>].<what>" (e.g. "keys[3].node", "events[0].labels").
struct Arg {
  const char* what;
  Py_ssize_t index = -1;
  const char* batch = "keys";

  std::string str() const {
    return index < 0 ? std::string(what)
                     : std::string(batch) + "[" + std::to_string(index) + "]." + what;
  }
  Arg with(const char* field) const { return Arg{field, index, batch}; }
};

// UTF-8 view of a Python str. For ASCII strings CPython hands out its own
// storage; otherwise it caches the UTF-8 form on the str object. Either way
// the bytes live as long as the str, which the caller keeps alive.
struct Utf8 {
  const char* data;
  size_t size;
};

// A str with lone surrogates has no UTF-8 form: to Berth that is text that is
// not valid UTF-8, reported with `bad` (an invalid name, or a bad selector).
inline Utf8 utf8(PyObject* obj, const Arg& arg, berth_status bad = BERTH_ERR_INVALID_NAME) {
  if (!PyUnicode_Check(obj)) raise_type(arg.str(), "str", obj);
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(obj, &n);
  if (p == nullptr) {
    std::string detail;
    if (PyErr_Occurred()) {
      py::error_already_set e;
      detail = std::string(": ") + e.what();
    }
    raise_status(bad, arg.str() + " cannot be encoded as UTF-8" + detail);
  }
  return Utf8{p, static_cast<size_t>(n)};
}

// `what` names the argument in error messages (e.g. "name", "keys[3].node").
inline Utf8 utf8(PyObject* obj, const char* what, Py_ssize_t index = -1) {
  return utf8(obj, Arg{what, index});
}

inline int as_ready(PyObject* obj, const char* what = "ready", Py_ssize_t index = -1) {
  if (obj == Py_True) return 1;
  if (obj == Py_False) return 0;
  raise_type(Arg{what, index}.str(), "bool", obj);
}

// An int in [-2**63, 2**63) (bool is refused). Range is left to Berth (a count
// < 1 is its BERTH_ERR_INVALID_ARGUMENT, with its message).
inline int64_t as_i64(PyObject* obj, const Arg& arg) {
  if (!PyLong_Check(obj) || PyBool_Check(obj)) raise_type(arg.str(), "int", obj);
  const long long v = PyLong_AsLongLong(obj);
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    raise_status(BERTH_ERR_INVALID_ARGUMENT, arg.str() + " is out of the range of an int64");
  }
  return v;
}

// An int or float (not bool), as a double; NaN and the range are left to Berth.
inline double as_double(PyObject* obj, const Arg& arg) {
  if (PyFloat_Check(obj)) return PyFloat_AS_DOUBLE(obj);
  if (!PyLong_Check(obj) || PyBool_Check(obj)) raise_type(arg.str(), "float or int", obj);
  const double v = PyLong_AsDouble(obj);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    raise_status(BERTH_ERR_INVALID_ARGUMENT, arg.str() + " is out of the range of a double");
  }
  return v;
}

// A time on Berth's clock: None means now (BERTH_NOW); an explicit time must
// be >= 0 (Berth reads every negative value as "now").
inline int64_t as_now(PyObject* obj) {
  if (obj == Py_None) return BERTH_NOW;
  const int64_t v = as_i64(obj, Arg{"now_ns"});
  if (v < 0) raise_status(BERTH_ERR_INVALID_ARGUMENT, "now_ns must be >= 0 (None means now)");
  return v;
}

// The longest wait passed to berth_limiter_acquire: Berth adds it to
// steady_clock::now(), which must not overflow (~146 years).
constexpr int64_t kMaxTimeoutNs = int64_t{1} << 62;

// A timeout in seconds (int or float; None or +inf: no deadline) as Berth's
// timeout_ns (-1: no deadline).
inline int64_t as_timeout_ns(PyObject* obj) {
  if (obj == Py_None) return -1;
  const double s = as_double(obj, Arg{"timeout"});
  if (std::isnan(s) || s < 0) {
    raise_status(BERTH_ERR_INVALID_ARGUMENT, "timeout must be >= 0 seconds or None");
  }
  if (std::isinf(s)) return -1;
  const double ns = std::ceil(s * 1e9);
  return ns >= static_cast<double>(kMaxTimeoutNs) ? kMaxTimeoutNs : static_cast<int64_t>(ns);
}

// An int in [0, 2**64) (bool is refused: it is not a version or a limit).
inline uint64_t as_u64(PyObject* obj, const Arg& arg) {
  if (!PyLong_Check(obj) || PyBool_Check(obj)) raise_type(arg.str(), "int", obj);
  const unsigned long long v = PyLong_AsUnsignedLongLong(obj);
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    raise_status(BERTH_ERR_INVALID_ARGUMENT, arg.str() + " is out of the range of a uint64");
  }
  return v;
}

// Calls f(key, key_utf8, value, value_utf8) for every label of `mapping`: a
// dict, or any mapping (an object with items()) of str to str. None means no
// labels. The str objects are borrowed from the mapping (or from the items
// list while f runs): f must copy them or take references before returning.
// No Python code runs between the calls for a dict.
template <class F>
void for_each_label(PyObject* mapping, const Arg& arg, F&& f) {
  auto one = [&](PyObject* k, PyObject* v) {
    if (!PyUnicode_Check(k)) raise_type(arg.str() + " keys", "str", k);
    if (!PyUnicode_Check(v)) raise_type(arg.str() + " values", "str", v);
    const Utf8 ku = utf8(k, arg.with("labels key"));
    const Utf8 vu = utf8(v, arg.with("labels value"));
    f(k, ku, v, vu);
  };
  if (mapping == Py_None) return;
  if (PyDict_Check(mapping)) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(mapping, &pos, &k, &v)) one(k, v);
    return;
  }
  const char* expected = "a mapping of str to str";
  if (PyUnicode_Check(mapping) || PyBytes_Check(mapping) || PyByteArray_Check(mapping) ||
      PyList_Check(mapping) || PyTuple_Check(mapping)) {
    raise_type(arg.str(), expected, mapping);
  }
  auto items = py::reinterpret_steal<py::object>(or_park([&] { return PyMapping_Items(mapping); }));
  if (!items) {
    if (PyErr_ExceptionMatches(PyExc_AttributeError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
      PyErr_Clear();
      raise_type(arg.str(), expected, mapping);
    }
    throw py::error_already_set();
  }
  // PyMapping_Items returns a list; we own it and its (key, value) tuples.
  const Py_ssize_t n = PyList_GET_SIZE(items.ptr());
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* kv = PyList_GET_ITEM(items.ptr(), i);
    if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) raise_type(arg.str() + " items", "(key, value) pairs", kv);
    one(PyTuple_GET_ITEM(kv, 0), PyTuple_GET_ITEM(kv, 1));
  }
}

// Labels as the berth_label array a C call takes. Holds a reference to every
// key and value, so the pointers stay valid while the GIL is released even if
// another thread changes the mapping meanwhile.
class LabelArgs {
 public:
  LabelArgs() = default;
  ~LabelArgs() {
    for (PyObject* r : refs_) Py_DECREF(r);
  }
  LabelArgs(const LabelArgs&) = delete;
  LabelArgs& operator=(const LabelArgs&) = delete;

  void read(PyObject* mapping, const Arg& arg) {
    if (PyDict_Check(mapping)) {
      const auto n = static_cast<size_t>(PyDict_GET_SIZE(mapping));
      labels_.reserve(n);
      refs_.reserve(2 * n);
    }
    for_each_label(mapping, arg, [&](PyObject* k, Utf8 ku, PyObject* v, Utf8 vu) {
      labels_.push_back(berth_label{ku.data, ku.size, vu.data, vu.size});
      refs_.push_back(k);
      Py_INCREF(k);
      refs_.push_back(v);
      Py_INCREF(v);
    });
  }
  const berth_label* data() const { return labels_.empty() ? nullptr : labels_.data(); }
  size_t size() const { return labels_.size(); }

 private:
  std::vector<berth_label> labels_;
  std::vector<PyObject*> refs_;
};

// A bytes-like argument, exported (not copied) for the duration of a call.
// While exported, a bytearray cannot be resized by another thread.
class BytesArg {
 public:
  BytesArg() = default;
  ~BytesArg() {
    if (held_) PyBuffer_Release(&view_);
  }
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;

  // None means no bytes.
  void read(PyObject* obj, const Arg& arg) {
    if (obj == Py_None) return;
    if (!PyObject_CheckBuffer(obj)) raise_type(arg.str(), "a bytes-like object", obj);
    if (or_park([&] { return PyObject_GetBuffer(obj, &view_, PyBUF_SIMPLE); }) != 0) {
      throw py::error_already_set();
    }
    held_ = true;
  }
  const uint8_t* data() const {
    return held_ && view_.len ? static_cast<const uint8_t*>(view_.buf) : nullptr;
  }
  size_t size() const { return held_ ? static_cast<size_t>(view_.len) : 0; }

 private:
  Py_buffer view_{};
  bool held_ = false;
};

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
  return call_python(reinterpret_cast<PyObject*>(type), std::forward<Args>(args)...);
}

// ---------------------------------------------------------------------------
// Handles: Engine, Cache and Selector
// ---------------------------------------------------------------------------

// Which process this is, for state inherited through fork: a counter bumped
// in the child of every fork (registered at import). Not the pid: a
// grandchild can get its dead grandparent's pid.
std::atomic<uint32_t> g_process{1};
void next_process() { g_process.fetch_add(1, std::memory_order_relaxed); }
inline uint32_t self_process() { return g_process.load(std::memory_order_relaxed); }

// An owned berth handle H, freed by kFree, with the in-flight rule: every call
// runs inside a Flight; close() stops new calls (ClosedError) and frees the
// handle only once the calls in flight in other threads have returned.
template <class H, berth_status (*kFree)(H*)>
class Handle {
 public:
  // Marks one call in flight on a handle. Constructed and destroyed with the
  // GIL held, which is what makes the plain counter safe.
  class Flight {
   public:
    explicit Flight(Handle& h) : owner_(h), handle_(h.handle_) {
      if (!handle_) raise_closed(h.what_);
      // Calls in flight are counted per process: a forked child inherits
      // the parent's count, but not the threads that were making those calls.
      if (const uint32_t self = self_process(); owner_.flight_process_ != self) {
        owner_.flight_process_ = self;
        owner_.in_flight_ = 0;
      }
      ++owner_.in_flight_;
    }
    ~Flight() { --owner_.in_flight_; }
    Flight(const Flight&) = delete;
    Flight& operator=(const Flight&) = delete;
    H* handle() const { return handle_; }

   private:
    Handle& owner_;
    H* handle_;
  };

  ~Handle() {
    // A call holds a reference to self, so none is in flight here, except
    // one parked at exit (see "Interpreter exit") if the interpreter drops
    // the references of its thread's frames: that handle is leaked.
    if (handle_ && calls_in_flight() == 0) kFree(handle_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  bool closed() const { return handle_ == nullptr; }

  // Stops new calls (they raise ClosedError), waits for the calls already in
  // flight in other threads to return, then frees the handle. Waiting is
  // bounded because the only berth_* call that blocks (berth_limiter_acquire)
  // is woken by Limiter::close first (see there); raising instead would
  // starve: the GIL changes hands exactly when a thread enters Berth, so a
  // busy handle almost always has a call in flight when close() runs. Once
  // interpreter exit has begun, a call in flight never returns (its thread
  // parks): close() then leaves the handle allocated instead of waiting.
  void close() { close_with([](H*) {}); }

 protected:
  // close(), running wake(H*) with the GIL released once new calls are
  // refused and before waiting for the calls in flight: it must make every
  // blocked call return.
  template <class Wake>
  void close_with(Wake&& wake) {
    if (!handle_) return;
    H* h = handle_;
    handle_ = nullptr;  // from here on, new calls raise ClosedError
    {
      NoGil nogil;
      wake(h);
    }
    for (unsigned spins = 0; calls_in_flight() != 0; ++spins) {
      if (g_exiting.load(std::memory_order_seq_cst)) return;  // h is leaked (see close())
      NoGil nogil;  // lets the calls in flight finish
      if (spins < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    NoGil nogil;
    kFree(h);
  }

 public:
  // Runs fn(H*) -> berth_status with the GIL released, and raises the
  // matching berth.Error if it failed. Returns BERTH_OK or BERTH_EMPTY.
  template <class Fn>
  berth_status call(Fn&& fn) {
    Flight flight(*this);
    return call(flight, std::forward<Fn>(fn));
  }

  // The same within a Flight the caller holds (to make more calls in it).
  template <class Fn>
  berth_status call(const Flight& flight, Fn&& fn) {
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

 protected:
  // `what` names the handle in ClosedError's message.
  explicit Handle(const char* what) : what_(what) {}

  // Takes ownership of h (from a _new or _parse call made with the GIL
  // released).
  void adopt(H* h) { handle_ = h; }

  // The handle, nullptr once closed; for destructors (no Flight needed there).
  H* raw_handle() const { return handle_; }

 private:
  H* handle_ = nullptr;  // nullptr once closed
  // Calls in flight in this process (a forked child has none of its parent's).
  size_t calls_in_flight() const { return flight_process_ == self_process() ? in_flight_ : 0; }

  size_t in_flight_ = 0;  // guarded by the GIL
  uint32_t flight_process_ = 0;  // the process in_flight_ counts calls of
  const char* what_;
};

// A buffer returned by Berth, freed by Berth when this goes out of scope
// (unless released to an ObjectList).
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
  berth_buffer* release() {
    berth_buffer* b = buf_;
    buf_ = nullptr;
    return b;
  }
  // Stores fn(out()) and, if it succeeded, reads the bytes. Runs with the GIL
  // released; returns the status of the failing call.
  template <class Fn>
  berth_status fetch(Fn&& fn) {
    berth_status st = fn(&buf_);
    if (st == BERTH_OK) st = berth_buffer_data(&data, &size, buf_);
    return st;
  }
  const uint8_t* data = nullptr;
  size_t size = 0;

 private:
  berth_buffer* buf_ = nullptr;
};

template <class Root>
bool verify(const uint8_t* data, size_t size, const char* identifier) {
  if (data == nullptr) return false;
  // The default table limit (1e6) would reject snapshots of large pools.
  flatbuffers::Verifier v(data, size, /*max_depth=*/64,
                          /*max_tables=*/std::numeric_limits<flatbuffers::uoffset_t>::max());
  return v.VerifyBuffer<Root>(identifier);
}

[[noreturn]] void raise_bad_output(const char* what) {
  raise_status(BERTH_ERR_BAD_BUFFER,
               std::string("the ") + what + " buffer returned by libberth failed verification");
}

template <class Root>
const Root* verified_root(const Buffer& buf, const char* identifier, const char* what) {
  if (!verify<Root>(buf.data, buf.size, identifier)) raise_bad_output(what);
  return flatbuffers::GetRoot<Root>(buf.data);
}

// ---------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------

class Engine : public Handle<berth_engine, &berth_engine_free> {
 public:
  Engine() : Handle("engine") {
    berth_engine* e = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_engine_new(&e);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(e);
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
    const uint64_t token = as_u64(PyTuple_GET_ITEM(k, 5), Arg{"key.token"});
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
};

// Fetches a buffer with fn(berth_buffer**, berth_engine*) and reads its bytes.
template <class Fn>
void fetch_buffer(Engine& engine, Buffer& buf, Fn&& fn) {
  engine.call([&](berth_engine* e) {
    return buf.fetch([&](berth_buffer** out) { return fn(out, e); });
  });
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
      PyObject* v = or_park([&] { return PyObject_GetAttrString(item, kAttrs[i]); });
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

// Bytes of a finished batch beyond its strings and payloads, per item: the
// vector slot, vtables and table headers. Keeps batches under
// BERTH_MAX_BUFFER_LEN (FlatBufferBuilder itself cannot grow past 2 GiB).
constexpr size_t kPerItemOverhead = 64;

void check_batch_room(const flatbuffers::FlatBufferBuilder& fbb, size_t extra, size_t items,
                      const Arg& at) {
  const size_t need = fbb.GetSize() + extra + kPerItemOverhead * (items + 1);
  if (need > BERTH_MAX_BUFFER_LEN) {
    raise_status(BERTH_ERR_BAD_BUFFER,
                 "batch would exceed BERTH_MAX_BUFFER_LEN bytes at " + std::string(at.batch) +
                     "[" + std::to_string(at.index) + "]; split it into smaller batches");
  }
}

size_t Engine::add_batch(py::handle pool, py::handle keys) {
  Utf8 p = utf8(pool.ptr(), "pool");
  if (PyUnicode_Check(keys.ptr()) || PyBytes_Check(keys.ptr())) {
    raise_type("keys", "an iterable of keys", keys.ptr());
  }
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<berth::fb::PoolKey>> offsets;
  Py_ssize_t hint = or_park([&] { return PyObject_LengthHint(keys.ptr(), 0); });
  if (hint < 0) throw py::error_already_set();
  offsets.reserve(static_cast<size_t>(hint));

  auto iter = py::reinterpret_steal<py::object>(or_park([&] { return PyObject_GetIter(keys.ptr()); }));
  if (!iter) throw py::error_already_set();
  Py_ssize_t index = 0;
  while (PyObject* raw = or_park([&] { return PyIter_Next(iter.ptr()); })) {
    py::object item = py::reinterpret_steal<py::object>(raw);
    BatchItem bi;
    read_batch_item(item.ptr(), index, bi);
    Utf8 ns = utf8(bi.fields[0], "namespace", index);
    Utf8 name = utf8(bi.fields[1], "name", index);
    Utf8 node = utf8(bi.fields[2], "node", index);
    int ready = as_ready(bi.fields[3], "ready", index);
    check_batch_room(fbb, ns.size + name.size + node.size, offsets.size(), Arg{"", index});
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
// ObjectList and ObjectView: lazy views over an ObjectList buffer
//
// An ObjectList owns the berth_buffer Berth returned (freed when the
// ObjectList is collected) and decodes nothing up front. Indexing makes an
// ObjectView: a pointer to one Object table plus a reference to the
// ObjectList. Its fields are decoded when read; its payload is a read-only
// memoryview over the buffer (the ObjectView exports it through the buffer
// protocol, so the memoryview keeps the view, and so the buffer, alive).
// Plain CPython types: a pybind11 property costs ~100 ns per read, which is
// most of the cost of reading an object.
// ---------------------------------------------------------------------------

using FbObjects = flatbuffers::Vector<flatbuffers::Offset<berth::fb::Object>>;

struct ObjectListObject {
  PyObject_HEAD
  berth_buffer* buffer;      // owned
  const FbObjects* objects;  // inside buffer; nullptr if the list has none
  Py_ssize_t size;
  uint64_t resource_version;
};

struct ObjectViewObject {
  PyObject_HEAD
  ObjectListObject* list;  // strong reference: keeps the buffer alive
  const berth::fb::Object* object;
};

bool verify_object_list(const Buffer& buf) {
  return verify<berth::fb::ObjectList>(buf.data, buf.size, BERTH_FB_OBJECT_LIST_ID);
}

// Wraps a verified ObjectList buffer (taking it over from buf).
py::object make_object_list(Buffer& buf) {
  const auto* root = flatbuffers::GetRoot<berth::fb::ObjectList>(buf.data);
  auto* self = PyObject_New(ObjectListObject, g.object_list);
  if (!self) throw py::error_already_set();
  self->buffer = buf.release();
  self->objects = root->objects();
  self->size = self->objects ? static_cast<Py_ssize_t>(self->objects->size()) : 0;
  self->resource_version = root->resource_version();
  return py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(self));
}

PyObject* make_object_view(ObjectListObject* list, Py_ssize_t i) {
  auto* v = PyObject_New(ObjectViewObject, g.object_view);
  if (!v) return nullptr;
  Py_INCREF(list);
  v->list = list;
  v->object = list->objects->Get(static_cast<flatbuffers::uoffset_t>(i));
  return reinterpret_cast<PyObject*>(v);
}

void object_list_dealloc(PyObject* self) {
  auto* o = reinterpret_cast<ObjectListObject*>(self);
  if (o->buffer) {
    NoGil nogil;
    berth_buffer_free(o->buffer);
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
  Py_DECREF(v->list);
  PyTypeObject* tp = Py_TYPE(self);
  tp->tp_free(self);
  Py_DECREF(tp);
}

inline const berth::fb::Object* view_object(PyObject* self) {
  return reinterpret_cast<ObjectViewObject*>(self)->object;
}

PyObject* object_view_namespace(PyObject* self, void*) {
  return fb_str(view_object(self)->namespace_());
}

PyObject* object_view_name(PyObject* self, void*) { return fb_str(view_object(self)->name()); }

PyObject* object_view_resource_version(PyObject* self, void*) {
  return PyLong_FromUnsignedLongLong(view_object(self)->resource_version());
}

PyObject* object_view_labels(PyObject* self, void*) {
  PyObject* d = PyDict_New();
  if (!d) return nullptr;
  if (const auto* labels = view_object(self)->labels()) {
    for (const auto* l : *labels) {
      PyObject* k = fb_str(l->key());
      PyObject* v = k ? fb_str(l->value()) : nullptr;
      if (!v || PyDict_SetItem(d, k, v) < 0) {
        Py_XDECREF(k);
        Py_XDECREF(v);
        Py_DECREF(d);
        return nullptr;
      }
      Py_DECREF(k);
      Py_DECREF(v);
    }
  }
  return d;
}

PyObject* object_view_payload(PyObject* self, void*) { return PyMemoryView_FromObject(self); }

// The buffer protocol of an ObjectView: its payload, read-only.
int object_view_getbuffer(PyObject* self, Py_buffer* view, int flags) {
  const auto* obj = view_object(self);
  const auto* p = obj->payload();
  // A zero-length export still needs a valid pointer.
  void* data = const_cast<void*>(p && p->size() ? static_cast<const void*>(p->data())
                                                : static_cast<const void*>(obj));
  const Py_ssize_t len = p ? static_cast<Py_ssize_t>(p->size()) : 0;
  return PyBuffer_FillInfo(view, self, data, len, /*readonly=*/1, flags);
}

PyObject* object_view_repr(PyObject* self) {
  const auto* obj = view_object(self);
  auto ns = py::reinterpret_steal<py::object>(fb_str(obj->namespace_()));
  auto name = py::reinterpret_steal<py::object>(fb_str(obj->name()));
  if (!ns || !name) return nullptr;
  return PyUnicode_FromFormat("<berth.ObjectView %U/%U resource_version=%llu>", ns.ptr(),
                              name.ptr(),
                              static_cast<unsigned long long>(obj->resource_version()));
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
     "The object's payload: a read-only memoryview over the list's buffer (no copy). It keeps "
     "the buffer alive.",
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
                      "The objects of Cache.list (or Cache.get): a read-only sequence of "
                      "ObjectView over the FlatBuffers bytes Berth returned. Nothing is decoded "
                      "until it is read; the bytes are freed when the list and every view and "
                      "payload taken from it are gone.")},
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
                      "One object of an ObjectList. Fields are decoded when read; payload is a "
                      "read-only memoryview over the list's bytes. An ObjectView also exports "
                      "its payload through the buffer protocol (bytes(view) copies it).")},
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
// Selector
// ---------------------------------------------------------------------------

class Selector : public Handle<berth_selector, &berth_selector_free> {
 public:
  explicit Selector(py::handle text) : Handle("selector") {
    const Utf8 t = utf8(text.ptr(), Arg{"text"}, BERTH_ERR_BAD_SELECTOR);
    berth_selector* s = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_selector_parse(&s, t.data, t.size);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(s);
  }

  // The canonical form (berth_selector_string), computed once.
  py::object str() {
    if (closed()) raise_closed("selector");
    if (!canonical_) {
      Buffer buf;
      call([&](berth_selector* s) {
        return buf.fetch([&](berth_buffer** out) { return berth_selector_string(out, s); });
      });
      canonical_ = py::reinterpret_steal<py::object>(
          decode(reinterpret_cast<const char*>(buf.data), buf.size));
      if (!canonical_) throw py::error_already_set();
    }
    return canonical_;
  }

  py::object repr() {
    if (closed()) return py::str("<berth.Selector closed>");
    return py::str("berth.Selector({!r})").format(str());
  }

  bool matches(py::handle labels) {
    LabelArgs l;
    l.read(labels.ptr(), Arg{"labels"});
    int out = 0;
    call([&](berth_selector* s) { return berth_selector_matches(&out, s, l.data(), l.size()); });
    return out != 0;
  }

 private:
  py::object canonical_;
};

// The Selector inside a berth.Selector instance (the class is final, so the
// instance has pybind11's simple layout); nullptr if __init__ did not run.
template <class T>
T* native(PyObject* self) {
  return reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder().value_ptr<T>();
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

using FbString = flatbuffers::Offset<flatbuffers::String>;
using FbLabels = flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<berth::fb::Label>>>;
using FbPayload = flatbuffers::Offset<flatbuffers::Vector<uint8_t>>;

// Writes one Object table from Python fields; labels/payload may be nullptr
// (absent). `scratch` is reused between objects.
flatbuffers::Offset<berth::fb::Object> build_object(
    flatbuffers::FlatBufferBuilder& fbb, std::vector<flatbuffers::Offset<berth::fb::Label>>& scratch,
    size_t items, const Arg& at, PyObject* ns_obj, PyObject* name_obj, PyObject* rv_obj,
    PyObject* labels_obj, PyObject* payload_obj) {
  const Utf8 ns = utf8(ns_obj, at.with("namespace"));
  const Utf8 name = utf8(name_obj, at.with("name"));
  const uint64_t rv = as_u64(rv_obj, at.with("resource_version"));
  check_batch_room(fbb, ns.size + name.size, items, at);
  const FbString ons = ns.size ? fbb.CreateString(ns.data, ns.size) : FbString();
  // An empty name is still written, so that Berth reports it as an invalid
  // name (with its index) rather than a missing field.
  const FbString oname = fbb.CreateString(name.data, name.size);
  FbLabels olabels;
  if (labels_obj && labels_obj != Py_None) {
    scratch.clear();
    for_each_label(labels_obj, at.with("labels"), [&](PyObject*, Utf8 k, PyObject*, Utf8 v) {
      check_batch_room(fbb, k.size + v.size + 16, items, at);
      const FbString ok = fbb.CreateString(k.data, k.size);
      const FbString ov = v.size ? fbb.CreateString(v.data, v.size) : FbString();
      scratch.push_back(berth::fb::CreateLabel(fbb, ok, ov));
    });
    if (!scratch.empty()) olabels = fbb.CreateVector(scratch);
  }
  FbPayload opayload;
  if (payload_obj) {
    BytesArg p;
    p.read(payload_obj, at.with("payload"));
    if (p.size()) {
      check_batch_room(fbb, p.size(), items, at);
      opayload = fbb.CreateVector(p.data(), p.size());
    }
  }
  return berth::fb::CreateObject(fbb, ons, oname, rv, olabels, opayload);
}

// Copies an Object table of an ObjectView as it is (no Python decoding).
flatbuffers::Offset<berth::fb::Object> copy_object(
    flatbuffers::FlatBufferBuilder& fbb, std::vector<flatbuffers::Offset<berth::fb::Label>>& scratch,
    size_t items, const Arg& at, const berth::fb::Object* src) {
  auto copy_str = [&](const flatbuffers::String* s) {
    return s ? fbb.CreateString(s->c_str(), s->size()) : FbString();
  };
  size_t bytes = (src->namespace_() ? src->namespace_()->size() : 0) +
                 (src->name() ? src->name()->size() : 0) +
                 (src->payload() ? src->payload()->size() : 0);
  if (const auto* labels = src->labels()) {
    for (const auto* l : *labels) {
      bytes += 16 + (l->key() ? l->key()->size() : 0) + (l->value() ? l->value()->size() : 0);
    }
  }
  check_batch_room(fbb, bytes, items, at);
  const FbString ons = copy_str(src->namespace_());
  const FbString oname = copy_str(src->name());
  FbLabels olabels;
  if (const auto* labels = src->labels()) {
    scratch.clear();
    for (const auto* l : *labels) {
      const FbString ok = copy_str(l->key());
      const FbString ov = copy_str(l->value());
      scratch.push_back(berth::fb::CreateLabel(fbb, ok, ov));
    }
    olabels = fbb.CreateVector(scratch);
  }
  FbPayload opayload;
  if (const auto* p = src->payload()) opayload = fbb.CreateVector(p->data(), p->size());
  return berth::fb::CreateObject(fbb, ons, oname, src->resource_version(), olabels, opayload);
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

constexpr int kDeleted = 2;

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
  py::object replace(py::handle objects, py::handle rv);

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
    Buffer buf;
    bool ok = false;
    berth_status st = BERTH_OK;
    Failure f;
    {
      NoGil nogil;
      berth_selector* s = sel_flight ? sel_flight->handle() : nullptr;
      if (parse) st = berth_selector_parse(&s, text.data, text.size);
      if (is_failure(st)) {
        f.capture(st);
      } else {
        st = buf.fetch([&](berth_buffer** out) {
          return berth_cache_list(out, flight.handle(), n.data, n.size, s);
        });
        if (is_failure(st)) {
          f.capture(st);
        } else {
          ok = verify_object_list(buf);
        }
        if (parse) berth_selector_free(s);
      }
    }
    if (is_failure(st)) raise_failure(f);
    if (!ok) raise_bad_output("ObjectList");
    return make_object_list(buf);
  }

  py::object get(py::handle ns, py::handle name) {
    const Utf8 a = utf8(ns.ptr(), "namespace");
    const Utf8 b = utf8(name.ptr(), "name");
    Buffer buf;
    bool ok = false;
    berth_status st = call([&](berth_cache* c) {
      berth_status s = buf.fetch([&](berth_buffer** out) {
        return berth_cache_get(out, c, a.data, a.size, b.data, b.size);
      });
      if (s == BERTH_OK) ok = verify_object_list(buf);
      return s;
    });
    if (st == BERTH_EMPTY) return py::none();
    if (!ok) raise_bad_output("ObjectList");
    py::object list = make_object_list(buf);
    auto* o = reinterpret_cast<ObjectListObject*>(list.ptr());
    if (o->size != 1) {
      raise_status(BERTH_ERR_INTERNAL, "berth_cache_get returned " + std::to_string(o->size) +
                                           " objects instead of one");
    }
    auto view = py::reinterpret_steal<py::object>(make_object_view(o, 0));
    if (!view) throw py::error_already_set();
    return view;
  }

  py::object stats() {
    berth_cache_stats s{};
    call([&](berth_cache* c) { return berth_cache_get_stats(&s, c); });
    return make_tuple_type(g.cache_stats, s.objects, s.tombstones, s.resource_version, s.applied,
                           s.ignored, s.synced != 0);
  }
};

// A list given as an item is copied to a tuple first: building an object can
// run Python code (a custom mapping's items()), which could change the list.
py::object item_fields(PyObject* item) {
  if (PyTuple_Check(item)) return py::reinterpret_borrow<py::object>(item);
  auto t = py::reinterpret_steal<py::object>(PyList_AsTuple(item));
  if (!t) throw py::error_already_set();
  return t;
}

size_t Cache::apply(py::handle events) {
  PyObject* evs = events.ptr();
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<berth::fb::Event>> offsets;
  std::vector<flatbuffers::Offset<berth::fb::Label>> scratch;

  auto add = [&](PyObject* item, Py_ssize_t index) {
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
    py::object fields = item_fields(item);
    PyObject* const* f = &PyTuple_GET_ITEM(fields.ptr(), 0);
    const berth::fb::EventType type = event_type(f[0], at.with("type"));
    // A delete uses only namespace, name and resource_version.
    const bool deleted = static_cast<int>(type) == kDeleted;
    auto obj = build_object(fbb, scratch, offsets.size(), at, f[1], f[2], f[3],
                            !deleted && n > 4 ? f[4] : nullptr, !deleted && n > 5 ? f[5] : nullptr);
    offsets.push_back(berth::fb::CreateEvent(fbb, type, obj));
  };

  if (PyObject_TypeCheck(evs, g.event)) {
    add(evs, 0);  // one Event
  } else {
    if (PyUnicode_Check(evs) || PyBytes_Check(evs)) raise_type("events", "an iterable of events", evs);
    auto iter = py::reinterpret_steal<py::object>(or_park([&] { return PyObject_GetIter(evs); }));
    if (!iter) throw py::error_already_set();
    Py_ssize_t index = 0;
    while (PyObject* raw = or_park([&] { return PyIter_Next(iter.ptr()); })) {
      py::object item = py::reinterpret_steal<py::object>(raw);
      add(item.ptr(), index++);
    }
    if (PyErr_Occurred()) throw py::error_already_set();
  }
  auto vec = fbb.CreateVector(offsets);
  fbb.Finish(berth::fb::CreateEventBatch(fbb, vec), BERTH_FB_EVENT_BATCH_ID);

  size_t applied = 0;
  const uint8_t* data = fbb.GetBufferPointer();
  const size_t size = fbb.GetSize();
  call([&](berth_cache* c) { return berth_cache_apply(&applied, c, data, size); });
  return applied;
}

py::object Cache::replace(py::handle objects, py::handle rv) {
  PyObject* objs = objects.ptr();
  const uint64_t list_rv = as_u64(rv.ptr(), Arg{"resource_version"});
  if (PyUnicode_Check(objs) || PyBytes_Check(objs)) raise_type("objects", "an iterable of objects", objs);
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<berth::fb::Object>> offsets;
  std::vector<flatbuffers::Offset<berth::fb::Label>> scratch;
  Py_ssize_t hint = or_park([&] { return PyObject_LengthHint(objs, 0); });
  if (hint < 0) throw py::error_already_set();
  offsets.reserve(static_cast<size_t>(hint));

  auto iter = py::reinterpret_steal<py::object>(or_park([&] { return PyObject_GetIter(objs); }));
  if (!iter) throw py::error_already_set();
  Py_ssize_t index = 0;
  static const char* const kAttrs[5] = {"namespace", "name", "resource_version", "labels",
                                        "payload"};
  while (PyObject* raw = or_park([&] { return PyIter_Next(iter.ptr()); })) {
    py::object item = py::reinterpret_steal<py::object>(raw);
    const Arg at{"", index, "objects"};
    PyObject* it = item.ptr();
    if (Py_TYPE(it) == g.object_view) {
      // Straight from another list's bytes: nothing to decode.
      offsets.push_back(copy_object(fbb, scratch, offsets.size(), at,
                                    reinterpret_cast<ObjectViewObject*>(it)->object));
    } else if (PyTuple_Check(it) || PyList_Check(it)) {
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(it);
      if (n < 3 || n > 5) {
        throw py::type_error("objects[" + std::to_string(index) +
                             "] must be a berth.Object or a (namespace, name, resource_version[, "
                             "labels[, payload]]) tuple, not a sequence of " +
                             std::to_string(n) + " items");
      }
      py::object fields = item_fields(it);
      PyObject* const* f = &PyTuple_GET_ITEM(fields.ptr(), 0);
      offsets.push_back(build_object(fbb, scratch, offsets.size(), at, f[0], f[1], f[2],
                                     n > 3 ? f[3] : nullptr, n > 4 ? f[4] : nullptr));
    } else {
      // Any object with the attributes; labels and payload are optional.
      py::object attrs[5];
      for (int i = 0; i < 5; ++i) {
        PyObject* v = or_park([&] { return PyObject_GetAttrString(it, kAttrs[i]); });
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
        attrs[i] = py::reinterpret_steal<py::object>(v);
      }
      offsets.push_back(build_object(fbb, scratch, offsets.size(), at, attrs[0].ptr(),
                                     attrs[1].ptr(), attrs[2].ptr(), attrs[3].ptr(),
                                     attrs[4].ptr()));
    }
    ++index;
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  auto vec = fbb.CreateVector(offsets);
  fbb.Finish(berth::fb::CreateObjectList(fbb, list_rv, vec), BERTH_FB_OBJECT_LIST_ID);

  const uint8_t* data = fbb.GetBufferPointer();
  const size_t size = fbb.GetSize();
  call([&](berth_cache* c) { return berth_cache_replace(c, data, size); });
  return py::none();
}

// ---------------------------------------------------------------------------
// Limiter, notifier and token bucket
//
// Only the synchronous primitives live here. The asyncio side (one notifier
// per event loop watched with loop.add_reader, tokens mapped to futures,
// claim / cancel around the await) is Python, in berth/_limit.py, which
// installs `acquire`, `hold`, `__aenter__`/`__aexit__`, `wait` and
// `wait_blocking` on these classes at import.
// ---------------------------------------------------------------------------

// A method that needs its Python instance (to build an object referring to
// it) takes Self first; the trampoline passes it.
struct Self {
  py::handle obj;
};

// Raises RuntimeError if this thread runs an asyncio event loop: a blocking
// wait there would stall every task of the loop (berth.h: "Never call it from
// an event loop's thread").
void refuse_in_event_loop(const char* what, const char* instead) {
  PyObject* loop = PyObject_CallNoArgs(g.get_running_loop);
  if (!loop) throw py::error_already_set();
  const bool running = loop != Py_None;
  Py_DECREF(loop);
  if (running) {
    PyErr_Format(PyExc_RuntimeError,
                 "%s() would block the event loop running in this thread; use %s", what, instead);
    throw py::error_already_set();
  }
}

class Notifier : public Handle<berth_notifier, &berth_notifier_free> {
 public:
  Notifier() : Handle("notifier") {
    berth_notifier* n = nullptr;
    Failure f;
    int fd = -1;
    {
      NoGil nogil;
      berth_status st = berth_notifier_new(&n);
      if (!is_failure(st)) {
        st = berth_notifier_fd(&fd, n);
        if (is_failure(st)) {
          f.capture(st);
          berth_notifier_free(n);
        }
      } else {
        f.capture(st);
      }
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(n);
    fd_ = fd;
  }

  int fd() const {
    if (closed()) raise_closed("notifier");
    return fd_;
  }

  // Every token completed so far, oldest first, taken kBatch at a time (the
  // eventfd's readiness is cleared by the first batch).
  py::object drain() {
    static constexpr size_t kBatch = 256;
    std::array<uint64_t, kBatch> buf;
    py::list out;
    for (;;) {
      size_t n = 0;
      call([&](berth_notifier* h) { return berth_notifier_drain(&n, h, buf.data(), kBatch); });
      for (size_t i = 0; i < n; ++i) {
        auto v = py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(buf[i]));
        if (!v || PyList_Append(out.ptr(), v.ptr()) < 0) throw py::error_already_set();
      }
      if (n < kBatch) break;
    }
    return out;
  }

 private:
  int fd_ = -1;
};

// The Refusal member for what try_acquire of `fn` said (BERTH_LIMIT_*).
py::object refusal_object(int r, const char* fn) {
  if (r < 0 || r > 2) {
    raise_status(BERTH_ERR_INTERNAL, std::string(fn) + " returned refusal " + std::to_string(r));
  }
  return py::reinterpret_borrow<py::object>(g.refusal[r]);
}

// The notifier argument of _acquire_async: a live berth._Notifier.
Notifier& notifier_arg(py::handle notifier) {
  PyObject* nobj = notifier.ptr();
  if (!PyObject_TypeCheck(nobj, g.notifier)) raise_type("notifier", "a berth._Notifier", nobj);
  Notifier* nt = native<Notifier>(nobj);
  if (!nt) throw py::type_error("berth._Notifier.__init__() was not called");
  return *nt;
}

// A ticket (or None when granted at once) as _acquire_async returns it.
py::object ticket_object(int granted, uint64_t ticket) {
  if (granted) return py::none();
  auto out = py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(ticket));
  if (!out) throw py::error_already_set();
  return out;
}

// Capacity set by Limiter::close to wake every waiter. Not INT64_MAX: Berth
// adds in-use and the request before comparing with it.
// ---------------------------------------------------------------------------
// Blocking waits that Ctrl-C and close() can end
//
// A blocking berth_*_acquire cannot be interrupted: only a grant or its
// deadline ends it, so a Python thread blocked in it ignores KeyboardInterrupt
// (and a hostile or stuck peer could keep it there). So the blocking waits of
// both limiters (acquire_blocking, hold) use the asynchronous form: they
// queue a ticket whose grant posts to a notifier made for that wait, and
// ppoll its fd together with an optional wake fd that close() makes
// readable. A signal interrupts the ppoll; the Python handlers run with the
// GIL, and if one raises (KeyboardInterrupt) the ticket is cancelled (a grant
// that raced in goes back) and the exception propagates, holding nothing.
// The cost: a timeout is a cancel, counted by the limiters' stats as
// cancelled (Limiter) or not at all (SharedLimiter), not as timed_out
// (timeout=0 uses the blocking call, which counts).
// ---------------------------------------------------------------------------

template <class H>
struct TicketCalls;
template <>
struct TicketCalls<berth_limiter> {
  static constexpr auto acquire_async = &berth_limiter_acquire_async;
  static constexpr auto claim = &berth_limiter_claim;
  static constexpr auto cancel = &berth_limiter_cancel;
};
template <>
struct TicketCalls<berth_shared_limiter> {
  static constexpr auto acquire_async = &berth_shared_limiter_acquire_async;
  static constexpr auto claim = &berth_shared_limiter_claim;
  static constexpr auto cancel = &berth_shared_limiter_cancel;
};

enum class WaitResult { kGranted, kTimedOut, kClosed, kFailed };

// Waits for k permits of h until deadline (berth_clock_now_ns; -1: none) or
// until wake_fd (-1: none) is readable. Called with the GIL held (released
// while waiting); *f holds the detail of kFailed.
template <class H>
WaitResult wait_for_permits(H* h, int64_t k, int64_t deadline, int wfd, Failure* failure) {
  using Calls = TicketCalls<H>;
  enum class Result { kPending, kGranted, kTimedOut, kClosed, kSignal, kFailed };
  Failure& f = *failure;
  berth_notifier* nt = nullptr;
  int nfd = -1;
  uint64_t ticket = 0;
  // berth_*_cancel, ignoring the outcome.
  auto cancel_ticket = [&] {
    int outcome = BERTH_CANCEL_UNKNOWN;
    Calls::cancel(&outcome, h, ticket);
  };
  auto fail = [&](berth_status st) {
    f.capture(st);
    return Result::kFailed;
  };
  // Ends the wait without the permits (a grant that raced in goes back).
  auto give_up = [&](Result r) {
    cancel_ticket();
    return r;
  };
  auto try_claim = [&](bool* claimed) {
    int c = 0;
    const berth_status st = Calls::claim(&c, h, ticket);
    *claimed = c != 0;
    return st;
  };
  // Starts the wait (with the GIL released).
  auto start = [&]() -> Result {
    berth_status st = berth_notifier_new(&nt);
    if (is_failure(st)) return fail(st);
    if (st = berth_notifier_fd(&nfd, nt); is_failure(st)) return fail(st);
    int granted = 0;
    st = Calls::acquire_async(&granted, &ticket, h, k, nt, 1);
    if (is_failure(st)) return fail(st);
    return granted ? Result::kGranted : Result::kPending;
  };
  // Waits for the grant, the deadline, close() or a signal (GIL released).
  auto poll = [&]() -> Result {
    for (;;) {
      pollfd fds[2] = {{nfd, POLLIN, 0}, {wfd, POLLIN, 0}};  // a negative fd is ignored
      timespec ts{};
      if (deadline >= 0) {
        const int64_t left = deadline - berth_clock_now_ns();
        if (left <= 0) {  // a grant that landed by now still counts
          bool claimed = false;
          if (berth_status st = try_claim(&claimed); is_failure(st)) return give_up(fail(st));
          return claimed ? Result::kGranted : give_up(Result::kTimedOut);
        }
        ts.tv_sec = static_cast<time_t>(left / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(left % 1'000'000'000);
      }
      const int r = ppoll(fds, 2, deadline >= 0 ? &ts : nullptr, nullptr);
      if (r < 0) {
        if (errno == EINTR) return Result::kSignal;
        f.status = BERTH_ERR_INTERNAL;
        f.message = std::string("ppoll: ") + std::strerror(errno);
        f.status_name = berth_status_name(BERTH_ERR_INTERNAL);
        return give_up(Result::kFailed);
      }
      if (fds[1].revents != 0) return give_up(Result::kClosed);
      if (fds[0].revents != 0) {
        uint64_t token = 0;
        size_t count = 0;
        berth_notifier_drain(&count, nt, &token, 1);
        bool claimed = false;
        if (berth_status st = try_claim(&claimed); is_failure(st)) return give_up(fail(st));
        if (claimed) return Result::kGranted;
      }
    }
  };

  Result res;
  {
    NoGil nogil;
    res = start();
    if (res == Result::kPending) res = poll();
  }
  // Interrupted by a signal: run the Python handlers (KeyboardInterrupt
  // ends the wait holding nothing), then wait on.
  while (res == Result::kSignal) {
    if (PyErr_CheckSignals() < 0) {
      {
        NoGil nogil;
        cancel_ticket();
        berth_notifier_free(nt);
      }
      throw py::error_already_set();
    }
    NoGil nogil;
    res = poll();
  }
  {
    NoGil nogil;
    berth_notifier_free(nt);  // the limiter keeps it while a ticket may post
  }
  switch (res) {
    case Result::kGranted: return WaitResult::kGranted;
    case Result::kTimedOut: return WaitResult::kTimedOut;
    case Result::kClosed: return WaitResult::kClosed;
    default: return WaitResult::kFailed;
  }
}

constexpr int64_t kWakeCapacity = std::numeric_limits<int64_t>::max() / 4;

class Limiter : public Handle<berth_limiter, &berth_limiter_free> {
 public:
  explicit Limiter(py::handle capacity) : Handle("limiter") {
    const int64_t c = as_i64(capacity.ptr(), Arg{"capacity"});
    berth_limiter* l = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_limiter_new(&l, c);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(l);
  }

  // berth.h has no call that interrupts a waiter, and berth_limiter_free must
  // not run while a thread is blocked in berth_limiter_acquire. So close()
  // raises the capacity far enough to grant every waiter: blocked threads
  // return (acquire_blocking sees the limiter closed, gives the permits back
  // and raises ClosedError, which lets close() finish), and queued tickets
  // are granted, so their tokens reach the event loops, whose tasks wake up,
  // find the limiter closed (ClosedError) and hold nothing.
  void close() {
    close_with([](berth_limiter* h) {
      berth_limiter_stats s{};
      // Unconditionally: a thread past its Flight may not have queued yet.
      if (berth_limiter_get_stats(&s, h) == BERTH_OK && s.capacity < kWakeCapacity) {
        berth_limiter_set_capacity(h, kWakeCapacity);
      }
    });
  }

  int refusal(py::handle n) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    int r = BERTH_LIMIT_GRANTED;
    call([&](berth_limiter* l) { return berth_limiter_try_acquire(&r, l, k); });
    return r;
  }

  bool try_acquire(py::handle n) { return refusal(n) == BERTH_LIMIT_GRANTED; }

  py::object try_acquire_reason(py::handle n) {
    return refusal_object(refusal(n), "berth_limiter_try_acquire");
  }

  py::object acquire_blocking(py::handle n, py::handle timeout) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    const int64_t t = as_timeout_ns(timeout.ptr());
    if (t != 0) refuse_in_event_loop("acquire_blocking", "'async with limiter.acquire(n)'");
    Flight flight(*this);
    berth_status st = BERTH_OK;
    Failure f;
    if (t == 0) {  // never waits: the blocking call with a deadline of now
      NoGil nogil;
      st = berth_limiter_acquire(flight.handle(), k, 0);
      if (is_failure(st)) f.capture(st);
    } else {  // interruptible (see "Blocking waits"); close() wakes it with a grant
      const int64_t deadline = t < 0 ? -1 : berth_clock_now_ns() + t;
      switch (wait_for_permits(flight.handle(), k, deadline, -1, &f)) {
        case WaitResult::kGranted: break;
        case WaitResult::kTimedOut:
          st = BERTH_ERR_TIMEOUT;
          f.status = st;
          f.message = "no permits within " + std::to_string(t) + " ns";
          f.status_name = berth_status_name(st);
          break;
        case WaitResult::kClosed:
        case WaitResult::kFailed: st = f.status; break;
      }
    }
    if (closed()) {  // woken by close(): give back what it granted
      if (st == BERTH_OK) {
        NoGil nogil;
        berth_limiter_release(flight.handle(), k);
      }
      raise_closed("limiter");
    }
    if (is_failure(st)) raise_failure(f);
    return py::none();
  }

  py::object release(py::handle n) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    call([&](berth_limiter* l) { return berth_limiter_release(l, k); });
    return py::none();
  }

  // release() for the exit of a context manager: after close() the permits
  // went with the limiter, so there is nothing to give back (and raising
  // would hide the exception leaving the block).
  py::object release_held(py::handle n) {
    if (closed()) return py::none();
    return release(n);
  }

  // None if granted at once (the caller holds the permits), else the ticket.
  py::object acquire_async(py::handle n, py::handle notifier, py::handle token) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    Notifier& nt = notifier_arg(notifier);
    const uint64_t tok = as_u64(token.ptr(), Arg{"token"});
    Notifier::Flight nf(nt);
    int granted = 0;
    uint64_t ticket = 0;
    call([&](berth_limiter* l) {
      return berth_limiter_acquire_async(&granted, &ticket, l, k, nf.handle(), tok);
    });
    return ticket_object(granted, ticket);
  }

  bool claim(py::handle ticket) {
    const uint64_t t = as_u64(ticket.ptr(), Arg{"ticket"});
    int claimed = 0;
    call([&](berth_limiter* l) { return berth_limiter_claim(&claimed, l, t); });
    return claimed != 0;
  }

  py::object cancel(py::handle ticket) {
    const uint64_t t = as_u64(ticket.ptr(), Arg{"ticket"});
    int outcome = BERTH_CANCEL_UNKNOWN;
    call([&](berth_limiter* l) { return berth_limiter_cancel(&outcome, l, t); });
    return py::int_(outcome);
  }

  py::object set_capacity(py::handle capacity) {
    const int64_t c = as_i64(capacity.ptr(), Arg{"capacity"});
    call([&](berth_limiter* l) { return berth_limiter_set_capacity(l, c); });
    return py::none();
  }

  berth_limiter_stats raw_stats() {
    berth_limiter_stats s{};
    call([&](berth_limiter* l) { return berth_limiter_get_stats(&s, l); });
    return s;
  }

  py::object stats() {
    const berth_limiter_stats s = raw_stats();
    return make_tuple_type(g.limiter_stats, s.capacity, s.in_use, s.waiting, s.waiting_permits,
                           s.granted, s.rejected, s.timed_out, s.cancelled);
  }
};

// ---------------------------------------------------------------------------
// Shared limiter
//
// Blocking waits: see "Blocking waits that Ctrl-C and close() can end";
// close() ends them through the handle's wake fd (the capacity, which
// Limiter::close raises, is every process's here).
//
// Processes. Permits belong to the process. In a forked child the handle
// works as a handle of a new process (berth.h, "fork": none of the parent's
// permits, tickets or waits); this binding's per-process state (wake fd,
// blocks, tickets, asyncio waits) starts afresh there (become_owner).
//
// Blocks. Permits taken for a hold() or acquire() block are counted
// (block_held_); close() gives them back, since the block can no longer do so
// through this handle (otherwise they would stay held, host-wide, until the
// process exits). Permits taken with try_acquire / acquire_blocking are the
// caller's to release, through any handle of the process.
// ---------------------------------------------------------------------------

class SharedLimiter : public Handle<berth_shared_limiter, &berth_shared_limiter_close> {
 public:
  SharedLimiter(py::handle name, py::handle capacity) : Handle("shared limiter") {
    const Utf8 nm = utf8(name.ptr(), Arg{"name"});
    const bool create = !capacity.is_none();
    const int64_t c = create ? as_i64(capacity.ptr(), Arg{"capacity"}) : 0;
    berth_shared_limiter* l = nullptr;
    int wfd = -1;
    Failure f;
    {
      NoGil nogil;
      const berth_status st = berth_shared_limiter_open(&l, nm.data, nm.size, c, create ? 1 : 0);
      if (is_failure(st)) {
        f.capture(st);
      } else if ((wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        f.status = BERTH_ERR_INTERNAL;
        f.message = std::string("eventfd: ") + std::strerror(errno);
        f.status_name = berth_status_name(BERTH_ERR_INTERNAL);
        berth_shared_limiter_close(l);
      }
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(l);
    wake_fd_ = wfd;
    owner_process_ = self_process();
    name_ = py::reinterpret_borrow<py::object>(name);
  }

  ~SharedLimiter() {
    // No call is in flight and no block is open (they hold references).
    if (!owner()) block_held_ = 0;  // the parent's blocks are not this process's
    if (berth_shared_limiter* h = raw_handle(); h != nullptr && block_held_ > 0) {
      berth_shared_limiter_release(h, block_held_);
    }
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  static void unlink(py::handle name) {
    const Utf8 nm = utf8(name.ptr(), Arg{"name"});
    Failure f;
    {
      NoGil nogil;
      const berth_status st = berth_shared_limiter_unlink(nm.data, nm.size);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
  }

  // Stops new calls, gives back the blocks' permits, wakes every wait of
  // this handle (blocking threads through the wake fd; asyncio tasks through
  // their futures, after the handle is freed) and frees the handle once the
  // calls in flight have returned.
  void close() {
    if (closed()) return;
    if (!owner()) become_owner();
    // tickets_ stays: a claim in flight must still find its ticket's n and
    // give the permits back (took_for_block).
    const int64_t held = block_held_;
    block_held_ = 0;
    const int wfd = wake_fd_;
    close_with([&](berth_shared_limiter* h) {
      const uint64_t one = 1;
      (void)!::write(wfd, &one, sizeof one);  // stays readable: every wait sees it
      if (held > 0) berth_shared_limiter_release(h, held);
    });
    if (PyDict_GET_SIZE(waits_.ptr()) != 0) {
      call_python(g.wake_closed, waits_.attr("values")());
    }
  }

  py::object name() const { return name_; }
  py::dict waits() {
    if (!owner()) become_owner();
    return waits_;
  }

  int refusal(py::handle n) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    int r = BERTH_LIMIT_GRANTED;
    call([&](berth_shared_limiter* l) { return berth_shared_limiter_try_acquire(&r, l, k); });
    return r;
  }

  bool try_acquire(py::handle n) { return refusal(n) == BERTH_LIMIT_GRANTED; }

  py::object try_acquire_reason(py::handle n) {
    return refusal_object(refusal(n), "berth_shared_limiter_try_acquire");
  }

  py::object acquire_blocking(py::handle n, py::handle timeout) {
    wait(n, timeout, "acquire_blocking", false);
    return py::none();
  }

  // hold()'s entry: acquire_blocking, counted for the block.
  py::object acquire_held(py::handle n, py::handle timeout) {
    wait(n, timeout, "hold", true);
    return py::none();
  }

  py::object release(py::handle n) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    call([&](berth_shared_limiter* l) { return berth_shared_limiter_release(l, k); });
    return py::none();
  }

  // A block's exit: a no-op once closed (close() gave the permits back).
  py::object release_held(py::handle n) {
    if (closed()) return py::none();
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    // Uncounted before the call: a close() running meanwhile must not give
    // them back as well. Not counted again if the release fails: then the
    // process no longer holds them (someone released the block's permits).
    if (!owner()) become_owner();
    block_held_ = std::max<int64_t>(0, block_held_ - k);
    call([&](berth_shared_limiter* l) { return berth_shared_limiter_release(l, k); });
    return py::none();
  }

  // For `async with limiter.acquire(n)` only (counted for the block): None
  // if granted at once, else the ticket.
  py::object acquire_async(py::handle n, py::handle notifier, py::handle token) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    Notifier& nt = notifier_arg(notifier);
    const uint64_t tok = as_u64(token.ptr(), Arg{"token"});
    if (!owner()) become_owner();
    Notifier::Flight nf(nt);
    Flight flight(*this);
    int granted = 0;
    uint64_t ticket = 0;
    call(flight, [&](berth_shared_limiter* l) {
      return berth_shared_limiter_acquire_async(&granted, &ticket, l, k, nf.handle(), tok);
    });
    if (granted) {
      took_for_block(flight, k);
    } else {
      tickets_[ticket] = k;
    }
    return ticket_object(granted, ticket);
  }

  bool claim(py::handle ticket) {
    const uint64_t t = as_u64(ticket.ptr(), Arg{"ticket"});
    if (!owner()) become_owner();
    Flight flight(*this);
    int claimed = 0;
    call(flight, [&](berth_shared_limiter* l) { return berth_shared_limiter_claim(&claimed, l, t); });
    int64_t k = 0;
    if (auto it = tickets_.find(t); it != tickets_.end()) {
      k = it->second;
      tickets_.erase(it);
    }
    if (claimed && k > 0) took_for_block(flight, k);
    return claimed != 0;
  }

  py::object cancel(py::handle ticket) {
    const uint64_t t = as_u64(ticket.ptr(), Arg{"ticket"});
    if (!owner()) become_owner();
    int outcome = BERTH_CANCEL_UNKNOWN;
    call([&](berth_shared_limiter* l) { return berth_shared_limiter_cancel(&outcome, l, t); });
    tickets_.erase(t);
    return py::int_(outcome);
  }

  py::object set_capacity(py::handle capacity) {
    const int64_t c = as_i64(capacity.ptr(), Arg{"capacity"});
    call([&](berth_shared_limiter* l) { return berth_shared_limiter_set_capacity(l, c); });
    return py::none();
  }

  berth_shared_limiter_stats raw_stats() {
    berth_shared_limiter_stats s{};
    call([&](berth_shared_limiter* l) { return berth_shared_limiter_get_stats(&s, l); });
    return s;
  }

  py::object stats() {
    const berth_shared_limiter_stats s = raw_stats();
    return make_tuple_type(g.shared_limiter_stats, s.capacity, s.in_use, s.waiting, s.holders,
                           s.granted, s.rejected, s.timed_out, s.reclaimed);
  }

 private:
  bool owner() const { return self_process() == owner_process_; }

  // A forked child: the handle works there as a handle of a new process
  // (berth.h, "fork"), so the binding's per-process state starts afresh. Its
  // wake fd would be the parent's eventfd (a close() in either process would
  // wake the other's waits), its blocks and tickets are the parent's, and
  // its asyncio waits belong to the parent's event loops. The inherited fd
  // is closed here only (the parent's stays open).
  void become_owner() {
    const int wfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0) {
      PyErr_SetFromErrno(PyExc_OSError);
      throw py::error_already_set();
    }
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = wfd;
    block_held_ = 0;
    tickets_.clear();
    waits_ = py::dict();
    owner_process_ = self_process();
  }

  // Counts k permits just taken for a block. If close() ran meanwhile it gave
  // back the blocks' permits without these: give them back and raise.
  void took_for_block(const Flight& flight, int64_t k) {
    if (closed()) {
      {
        NoGil nogil;
        berth_shared_limiter_release(flight.handle(), k);
      }
      raise_closed("shared limiter");
    }
    block_held_ += k;  // the caller became the owner first
  }

  // The blocking wait (see the section comment): k permits held on return,
  // or TimeoutError, ClosedError, or what a signal handler raised.
  void wait(py::handle n, py::handle timeout, const char* what, bool for_block) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    const int64_t t = as_timeout_ns(timeout.ptr());
    if (!owner()) become_owner();  // before a block counts its permits
    if (t == 0) {  // never waits: the blocking call with a deadline of now
      Flight flight(*this);
      call(flight, [&](berth_shared_limiter* l) { return berth_shared_limiter_acquire(l, k, 0); });
      if (for_block) {
        took_for_block(flight, k);
      } else if (closed()) {
        NoGil nogil;
        berth_shared_limiter_release(flight.handle(), k);
      }
      if (closed()) raise_closed("shared limiter");
      return;
    }
    refuse_in_event_loop(what, "'async with limiter.acquire(n)'");
    Flight flight(*this);
    berth_shared_limiter* const h = flight.handle();
    const int wfd = wake_fd_;
    const int64_t deadline = t < 0 ? -1 : berth_clock_now_ns() + t;

    Failure f;
    const WaitResult res = wait_for_permits(h, k, deadline, wfd, &f);
    switch (res) {
      case WaitResult::kGranted:
        if (for_block) {
          took_for_block(flight, k);
        } else if (closed()) {  // woken by close(): give back what it granted
          {
            NoGil nogil;
            berth_shared_limiter_release(h, k);
          }
          raise_closed("shared limiter");
        }
        return;
      case WaitResult::kTimedOut:
        raise_status(BERTH_ERR_TIMEOUT, "no permits within " + std::to_string(t) + " ns");
      case WaitResult::kClosed:
        raise_closed("shared limiter");
      case WaitResult::kFailed:
        break;
    }
    raise_failure(f);
  }

  int wake_fd_ = -1;
  uint32_t owner_process_ = 0;
  int64_t block_held_ = 0;  // permits of open blocks (owner process; GIL)
  std::unordered_map<uint64_t, int64_t> tickets_;  // queued ticket -> n (GIL)
  py::dict waits_;  // ticket -> future of the asyncio waits (berth/_limit.py)
  py::object name_;
};

class Bucket : public Handle<berth_bucket, &berth_bucket_free> {
 public:
  Bucket(py::handle rate, py::handle burst) : Handle("bucket") {
    const double r = as_double(rate.ptr(), Arg{"rate"});
    const int64_t b = as_i64(burst.ptr(), Arg{"burst"});
    berth_bucket* h = nullptr;
    Failure f;
    {
      NoGil nogil;
      berth_status st = berth_bucket_new(&h, r, b);
      if (is_failure(st)) f.capture(st);
    }
    if (is_failure(f.status)) raise_failure(f);
    adopt(h);
  }

  bool allow(py::handle n, py::handle now) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    const int64_t t = as_now(now.ptr());
    int allowed = 0;
    call([&](berth_bucket* b) { return berth_bucket_allow(&allowed, b, k, t); });
    return allowed != 0;
  }

  py::object reserve(Self self, py::handle n, py::handle now) {
    const int64_t k = as_i64(n.ptr(), Arg{"n"});
    const int64_t t = as_now(now.ptr());
    berth_reservation r{};
    call([&](berth_bucket* b) { return berth_bucket_reserve(&r, b, k, t); });
    return call_python(g.reservation, self.obj, r.time_to_act_ns, r.delay_ns, r.tokens, r.rate);
  }

  // Reservation.cancel(): the reservation's fields come back from Python.
  py::object cancel_reservation(py::handle time_to_act_ns, py::handle tokens, py::handle rate,
                                py::handle now) {
    berth_reservation r{};
    r.time_to_act_ns = as_i64(time_to_act_ns.ptr(), Arg{"time_to_act_ns"});
    r.tokens = as_i64(tokens.ptr(), Arg{"tokens"});
    r.rate = as_double(rate.ptr(), Arg{"rate"});
    const int64_t t = as_now(now.ptr());
    call([&](berth_bucket* b) { return berth_bucket_cancel(b, &r, t); });
    return py::none();
  }

  py::object set_rate(py::handle rate, py::handle now) {
    const double r = as_double(rate.ptr(), Arg{"rate"});
    const int64_t t = as_now(now.ptr());
    call([&](berth_bucket* b) { return berth_bucket_set_rate(b, r, t); });
    return py::none();
  }

  py::object set_burst(py::handle burst, py::handle now) {
    const int64_t v = as_i64(burst.ptr(), Arg{"burst"});
    const int64_t t = as_now(now.ptr());
    call([&](berth_bucket* b) { return berth_bucket_set_burst(b, v, t); });
    return py::none();
  }

  berth_bucket_stats raw_stats(int64_t now) {
    berth_bucket_stats s{};
    call([&](berth_bucket* b) { return berth_bucket_get_stats(&s, b, now); });
    return s;
  }

  py::object stats(py::handle now) {
    const berth_bucket_stats s = raw_stats(as_now(now.ptr()));
    return make_tuple_type(g.bucket_stats, s.rate, s.burst, s.tokens);
  }
};

// ---------------------------------------------------------------------------
// Methods as METH_FASTCALL descriptors
//
// pybind11's generic dispatcher (argument vector, overload loop, casters)
// costs ~100 ns per call here; the data methods are therefore installed as
// plain CPython methods that parse their arguments in place and call the
// C++ member directly. Measured on the pop_spread + add pair at
// (10000 keys, 100 nodes): 975 ns through pybind11's dispatcher, 700 ns this
// way (see bench/bench_pair.py).
// ---------------------------------------------------------------------------

enum class Fallback { kRequired, kEmptyStr, kTrue, kNone, kZero, kOne };

struct Param {
  const char* name;
  Fallback fallback = Fallback::kRequired;
};

PyObject* g_empty_str = nullptr;  // "" (default of node, of Cache.list's namespace)
PyObject* g_zero = nullptr;       // 0 (default of Cache.delete's resource_version)
PyObject* g_one = nullptr;        // 1 (default of a limiter's or a bucket's n)

template <size_t N>
bool parse_args(const char* fname, const std::array<Param, N>& params, PyObject* const* args,
                Py_ssize_t nargs, PyObject* kwnames, std::array<PyObject*, N>& out) {
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
      case Fallback::kNone:
        out[i] = Py_None;
        break;
      case Fallback::kZero:
        out[i] = g_zero;
        break;
      case Fallback::kOne:
        out[i] = g_one;
        break;
    }
  }
  return true;
}

inline PyObject* to_python(bool v) { return Py_NewRef(v ? Py_True : Py_False); }
inline PyObject* to_python(size_t v) { return PyLong_FromSize_t(v); }
inline PyObject* to_python(py::object v) { return v.release().ptr(); }

// One method: its Python name, parameters and docstring (whose first lines are
// the __text_signature__ that inspect.signature reads).
template <auto Member, size_t N>
struct Method {
  static constexpr auto member = Member;
  const char* name;
  std::array<Param, N> params;
  const char* doc;
};

template <class T>
struct MemberClass;
template <class C, class R, class... A>
struct MemberClass<R (C::*)(A...)> {
  using type = C;
};

template <const auto& M>
PyObject* trampoline(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                     PyObject* kwnames) {
  constexpr size_t N = std::tuple_size_v<decltype(M.params)>;
  std::array<PyObject*, N> a;
  if (!parse_args(M.name, M.params, args, nargs, kwnames, a)) return nullptr;
  try {
    constexpr auto member = std::remove_cvref_t<decltype(M)>::member;
    using C = typename MemberClass<std::remove_cv_t<decltype(member)>>::type;
    // The descriptor guarantees self is a C; the classes are final, so the
    // instance has pybind11's simple layout.
    C* obj = native<C>(self);
    if (!obj) {
      PyErr_Format(PyExc_TypeError, "%s.__init__() was not called", Py_TYPE(self)->tp_name);
      return nullptr;
    }
    return [&]<size_t... I>(std::index_sequence<I...>) {
      if constexpr (std::is_invocable_v<decltype(member), C*, Self,
                                        decltype((void)I, py::handle())...>) {
        return to_python((obj->*member)(Self{py::handle(self)}, py::handle(a[I])...));
      } else {
        return to_python((obj->*member)(py::handle(a[I])...));
      }
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
constexpr Param kResourceVersion{"resource_version"};

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

constexpr Param kN1{"n", Fallback::kOne};
constexpr Param kNowNs{"now_ns", Fallback::kNone};

constexpr Method<&Limiter::try_acquire, 1> kTryAcquire{
    "try_acquire", {kN1},
    "try_acquire($self, n=1)\n--\n\n"
    "Takes n permits if they are free and nobody waits; never waits. True if taken."};
constexpr Method<&Limiter::try_acquire_reason, 1> kTryAcquireReason{
    "try_acquire_reason", {kN1},
    "try_acquire_reason($self, n=1)\n--\n\n"
    "As try_acquire, but says why not: a Refusal (GRANTED means the permits were taken)."};
constexpr Method<&Limiter::acquire_blocking, 2> kAcquireBlocking{
    "acquire_blocking", {kN1, Param{"timeout", Fallback::kNone}},
    "acquire_blocking($self, n=1, timeout=None)\n--\n\n"
    "Blocks this thread (GIL released) until n permits are granted, in FIFO order; raises "
    "berth.TimeoutError after timeout seconds (None: no deadline)."};
constexpr Method<&Limiter::release, 1> kRelease{
    "release", {kN1},
    "release($self, n=1)\n--\n\nReturns n permits and grants the waiters that now fit, in "
    "order."};
constexpr Method<&Limiter::release_held, 1> kReleaseHeld{
    "_release_held", {kN1},
    "_release_held($self, n=1)\n--\n\nrelease() for a context manager's exit: nothing to do "
    "once the limiter is closed."};
constexpr Method<&Limiter::set_capacity, 1> kSetCapacity{
    "set_capacity", {Param{"capacity"}},
    "set_capacity($self, capacity)\n--\n\nChanges the capacity (>= 1); lowering it never "
    "revokes held permits."};
constexpr Method<&Limiter::stats, 0> kLimiterStats{
    "stats", {}, "stats($self)\n--\n\nCounters of the limiter (LimiterStats)."};
constexpr Method<&Limiter::acquire_async, 3> kAcquireAsync{
    "_acquire_async", {Param{"n"}, Param{"notifier"}, Param{"token"}},
    "_acquire_async($self, n, notifier, token)\n--\n\n"
    "berth_limiter_acquire_async: None if granted now, else the ticket whose grant posts token "
    "to notifier."};
constexpr Method<&Limiter::claim, 1> kClaim{
    "_claim", {Param{"ticket"}},
    "_claim($self, ticket)\n--\n\nberth_limiter_claim: True if the caller now holds the "
    "ticket's permits."};
constexpr Method<&Limiter::cancel, 1> kCancel{
    "_cancel", {Param{"ticket"}},
    "_cancel($self, ticket)\n--\n\nberth_limiter_cancel: 0 unknown, 1 was waiting, 2 was "
    "granted (its permits went back)."};

constexpr Param kTimeout{"timeout", Fallback::kNone};

constexpr Method<&SharedLimiter::try_acquire, 1> kSharedTryAcquire{
    "try_acquire", {kN1},
    "try_acquire($self, n=1)\n--\n\n"
    "Takes n permits for this process if they are free and nobody waits (in any process); "
    "never waits. True if taken."};
constexpr Method<&SharedLimiter::try_acquire_reason, 1> kSharedTryAcquireReason{
    "try_acquire_reason", {kN1},
    "try_acquire_reason($self, n=1)\n--\n\n"
    "As try_acquire, but says why not: a Refusal (GRANTED means the permits were taken)."};
constexpr Method<&SharedLimiter::acquire_blocking, 2> kSharedAcquireBlocking{
    "acquire_blocking", {kN1, kTimeout},
    "acquire_blocking($self, n=1, timeout=None)\n--\n\n"
    "Blocks this thread (GIL released) until n permits are granted to this process, in FIFO "
    "order across processes; raises berth.TimeoutError after timeout seconds (None: no "
    "deadline)."};
constexpr Method<&SharedLimiter::acquire_held, 2> kSharedAcquireHeld{
    "_acquire_held", {kN1, kTimeout},
    "_acquire_held($self, n=1, timeout=None)\n--\n\n"
    "hold()'s entry: acquire_blocking, with the permits counted for the block (close() gives "
    "them back)."};
constexpr Method<&SharedLimiter::release, 1> kSharedRelease{
    "release", {kN1},
    "release($self, n=1)\n--\n\nReturns n permits this process holds and lets the waiters "
    "that now fit in, in order."};
constexpr Method<&SharedLimiter::release_held, 1> kSharedReleaseHeld{
    "_release_held", {kN1},
    "_release_held($self, n=1)\n--\n\nrelease() for a block's exit: nothing to do once the "
    "handle is closed (close() gave the block's permits back)."};
constexpr Method<&SharedLimiter::set_capacity, 1> kSharedSetCapacity{
    "set_capacity", {Param{"capacity"}},
    "set_capacity($self, capacity)\n--\n\nChanges the capacity (>= 1) for every process; "
    "lowering it never revokes held permits."};
constexpr Method<&SharedLimiter::stats, 0> kSharedStats{
    "stats", {},
    "stats($self)\n--\n\nCounters of the shared limiter (SharedLimiterStats), after "
    "reclaiming the permits of dead processes."};
constexpr Method<&SharedLimiter::acquire_async, 3> kSharedAcquireAsync{
    "_acquire_async", {Param{"n"}, Param{"notifier"}, Param{"token"}},
    "_acquire_async($self, n, notifier, token)\n--\n\n"
    "berth_shared_limiter_acquire_async for a block: None if granted now, else the ticket whose "
    "grant posts token to notifier."};
constexpr Method<&SharedLimiter::claim, 1> kSharedClaim{
    "_claim", {Param{"ticket"}},
    "_claim($self, ticket)\n--\n\nberth_shared_limiter_claim: True if this process now holds "
    "the ticket's permits (counted for the block)."};
constexpr Method<&SharedLimiter::cancel, 1> kSharedCancel{
    "_cancel", {Param{"ticket"}},
    "_cancel($self, ticket)\n--\n\nberth_shared_limiter_cancel: 0 unknown, 1 was waiting, 2 "
    "was granted (its permits went back)."};

constexpr Method<&Notifier::drain, 0> kDrain{
    "drain", {}, "drain($self)\n--\n\nEvery completed token, oldest first (list of int)."};

constexpr Method<&Bucket::allow, 2> kAllow{
    "allow", {kN1, kNowNs},
    "allow($self, n=1, now_ns=None)\n--\n\nTakes n tokens now if the bucket holds them; "
    "False (nothing taken) if not."};
constexpr Method<&Bucket::reserve, 2> kReserve{
    "reserve", {kN1, kNowNs},
    "reserve($self, n=1, now_ns=None)\n--\n\nTakes n tokens now, into debt if need be; the "
    "Reservation says how long to wait before acting."};
constexpr Method<&Bucket::cancel_reservation, 4> kCancelReservation{
    "_cancel_reservation", {Param{"time_to_act_ns"}, Param{"tokens"}, Param{"rate"}, kNowNs},
    "_cancel_reservation($self, time_to_act_ns, tokens, rate, now_ns=None)\n--\n\n"
    "berth_bucket_cancel of a reservation's fields (Reservation.cancel calls it once)."};
constexpr Method<&Bucket::set_rate, 2> kSetRate{
    "set_rate", {Param{"rate"}, kNowNs},
    "set_rate($self, rate, now_ns=None)\n--\n\nChanges the rate (> 0 or math.inf) from now "
    "on, keeping the tokens accrued."};
constexpr Method<&Bucket::set_burst, 2> kSetBurst{
    "set_burst", {Param{"burst"}, kNowNs},
    "set_burst($self, burst, now_ns=None)\n--\n\nChanges the burst (>= 1) from now on; a "
    "lower burst caps the tokens at once."};
constexpr Method<&Bucket::stats, 1> kBucketStats{
    "stats", {kNowNs},
    "stats($self, now_ns=None)\n--\n\nRate, burst and tokens at now_ns (BucketStats)."};

constexpr Method<&Selector::matches, 1> kMatches{
    "matches", {Param{"labels"}},
    "matches($self, labels)\n--\n\nTrue if the labels (a mapping of str to str) satisfy every "
    "requirement."};

template <const auto& M>
PyMethodDef method_def() {
  return {M.name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&trampoline<M>)),
          METH_FASTCALL | METH_KEYWORDS, M.doc};
}

// Referenced by the method descriptors for the life of the process.
PyMethodDef g_engine_methods[] = {
    method_def<kAdd>(),        method_def<kUpdate>(),   method_def<kAddBatch>(),
    method_def<kRemove>(),     method_def<kRemovePool>(), method_def<kPopFifo>(),
    method_def<kPopSpread>(),  method_def<kPutBack>(),  method_def<kStats>(),
    method_def<kSnapshot>(),   method_def<kNodeStats>(),
};
PyMethodDef g_cache_methods[] = {
    method_def<kUpsert>(), method_def<kDelete>(), method_def<kApply>(),      method_def<kReplace>(),
    method_def<kList>(),   method_def<kGet>(),    method_def<kCacheStats>(),
};
PyMethodDef g_selector_methods[] = {method_def<kMatches>()};
PyMethodDef g_limiter_methods[] = {
    method_def<kTryAcquire>(),  method_def<kTryAcquireReason>(), method_def<kAcquireBlocking>(),
    method_def<kRelease>(),     method_def<kReleaseHeld>(),      method_def<kSetCapacity>(),
    method_def<kLimiterStats>(), method_def<kAcquireAsync>(),    method_def<kClaim>(),
    method_def<kCancel>(),
};
PyMethodDef g_shared_limiter_methods[] = {
    method_def<kSharedTryAcquire>(),    method_def<kSharedTryAcquireReason>(),
    method_def<kSharedAcquireBlocking>(), method_def<kSharedAcquireHeld>(),
    method_def<kSharedRelease>(),       method_def<kSharedReleaseHeld>(),
    method_def<kSharedSetCapacity>(),   method_def<kSharedStats>(),
    method_def<kSharedAcquireAsync>(),  method_def<kSharedClaim>(),
    method_def<kSharedCancel>(),
};
PyMethodDef g_notifier_methods[] = {method_def<kDrain>()};
PyMethodDef g_bucket_methods[] = {
    method_def<kAllow>(),   method_def<kReserve>(),  method_def<kCancelReservation>(),
    method_def<kSetRate>(), method_def<kSetBurst>(), method_def<kBucketStats>(),
};

template <size_t N>
void install_methods(py::handle cls, PyMethodDef (&defs)[N]) {
  for (PyMethodDef& def : defs) {
    auto descr = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &def));
    if (!descr) throw py::error_already_set();
    cls.attr(def.ml_name) = descr;
  }
}

PyTypeObject* load_type(const py::module_& mod, const char* name) {
  py::object t = mod.attr(name);
  if (!PyType_Check(t.ptr()) ||
      !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(t.ptr()), &PyTuple_Type)) {
    throw py::import_error(std::string("berth._types.") + name + " must be a NamedTuple class");
  }
  return reinterpret_cast<PyTypeObject*>(t.release().ptr());
}

// close() and closed of a handle class.
template <class C>
void def_close(py::class_<C>& cls, const char* close_doc) {
  cls.def("close", [](C& c) { c.close(); }, close_doc)
      .def_property_readonly("closed", [](const C& c) { return c.closed(); });
}

// close(), closed, the context manager protocol and repr of a handle class.
template <class C>
void def_handle_protocol(py::class_<C>& cls, const char* close_doc) {
  def_close(cls, close_doc);
  cls.def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](C& c, py::args) {
        c.close();
        return false;
      });
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
  g.cache_stats = load_type(types, "CacheStats");
  g.event = load_type(types, "Event");
  g.limiter_stats = load_type(types, "LimiterStats");
  g.shared_limiter_stats = load_type(types, "SharedLimiterStats");
  g.bucket_stats = load_type(types, "BucketStats");
  g.reservation = py::object(types.attr("Reservation")).release().ptr();
  for (int r = 0; r < 3; ++r) {
    g.refusal[r] = py::object(types.attr("Refusal")(r)).release().ptr();
  }
  g.get_running_loop =
      py::object(py::module_::import("asyncio.events").attr("_get_running_loop")).release().ptr();
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
      {BERTH_ERR_NOT_SYNCED, "NotSyncedError"},
      {BERTH_ERR_BAD_SELECTOR, "BadSelectorError"},
      {BERTH_ERR_TIMEOUT, "TimeoutError"},
      {BERTH_ERR_BAD_REGION, "BadRegionError"},
      {BERTH_ERR_BAD_HANDLE, "BadHandleError"},
      {BERTH_ERR_FORKED, "ForkedError"},
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
  m.attr("MAX_PAYLOAD_LEN") = BERTH_MAX_PAYLOAD_LEN;
  m.attr("MAX_LABELS") = BERTH_MAX_LABELS;
  {
    // For tests: the status codes as compiled from berth.h, and the library's
    // names for them.
    py::dict statuses;
    for (int st = BERTH_OK; st < kStatusCount; ++st) statuses[py::int_(st)] = berth_status_name(st);
    m.attr("_STATUS_NAMES") = statuses;
  }

  m.def("abi_version", &berth_abi_version,
        "ABI version of the loaded libberth (MAJOR*10000 + MINOR*100 + PATCH).");

  g_empty_str = PyUnicode_FromStringAndSize("", 0);
  if (!g_empty_str) throw py::error_already_set();
  g_zero = PyLong_FromLong(0);
  if (!g_zero) throw py::error_already_set();
  g_one = PyLong_FromLong(1);
  if (!g_one) throw py::error_already_set();
  m.def("clock_now_ns", &berth_clock_now_ns,
        "Berth's monotonic clock (CLOCK_MONOTONIC) in nanoseconds: the clock of the now_ns "
        "arguments and of Reservation.time_to_act_ns.");

  py::class_<Engine> cls(m, "Engine", py::is_final(),
                         "A Berth engine: owns pools of keys. Thread-safe; use as a "
                         "context manager or call close().");
  cls.attr("__module__") = "berth";
  cls.def(py::init<>());
  def_handle_protocol(cls, "Frees the engine after calls in flight in other threads return. "
                           "Idempotent.");
  cls.def("__repr__", [](const Engine& e) {
    return e.closed() ? "<berth.Engine closed>" : "<berth.Engine open>";
  });
  install_methods(cls, g_engine_methods);

  py::class_<Selector> sel(m, "Selector", py::is_final(),
                           "A parsed Kubernetes label selector (immutable, thread-safe). Use as "
                           "a context manager or call close(); it is also freed when collected.");
  sel.attr("__module__") = "berth";
  sel.def(py::init([](py::object text) { return std::make_unique<Selector>(text); }),
          py::arg("text"));
  def_handle_protocol(sel, "Frees the selector after calls in flight in other threads "
                           "(including Cache.list calls using it) return. Idempotent.");
  sel.def("__str__", &Selector::str).def("__repr__", &Selector::repr);
  install_methods(sel, g_selector_methods);
  g.selector = reinterpret_cast<PyTypeObject*>(sel.inc_ref().ptr());

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

  py::class_<Notifier> notifier(m, "_Notifier", py::is_final(),
                                "A berth_notifier: an eventfd to watch for readability plus a "
                                "queue of completed tokens. Internal to the asyncio support.");
  notifier.attr("__module__") = "berth";
  notifier.def(py::init<>());
  def_close(notifier, "Frees this reference to the notifier (a limiter still holding tickets "
                      "that post to it keeps it alive). Idempotent.");
  notifier.def_property_readonly("fd", &Notifier::fd);
  notifier.def("__repr__", [](const Notifier& n) {
    return n.closed() ? std::string("<berth._Notifier closed>")
                      : "<berth._Notifier fd=" + std::to_string(n.fd()) + ">";
  });
  install_methods(notifier, g_notifier_methods);
  g.notifier = reinterpret_cast<PyTypeObject*>(notifier.inc_ref().ptr());

  py::class_<Limiter> limiter(m, "Limiter", py::is_final(),
                              "A concurrency limiter: weighted permits under a capacity that "
                              "can change at run time, FIFO waiters. Thread-safe; asyncio "
                              "waits never block the event loop.");
  limiter.attr("__module__") = "berth";
  limiter.def(py::init([](py::object c) { return std::make_unique<Limiter>(c); }),
              py::arg("capacity"));
  def_close(limiter, "Frees the limiter. Waiters are woken and raise ClosedError; permits "
                     "held are forgotten (releasing them is a no-op). Idempotent.");
  limiter.def_property(
      "capacity", [](Limiter& l) { return l.raw_stats().capacity; },
      [](Limiter& l, py::object c) { l.set_capacity(c); });
  limiter.def("__repr__", [](Limiter& l) {
    if (l.closed()) return std::string("<berth.Limiter closed>");
    const berth_limiter_stats s = l.raw_stats();
    return "<berth.Limiter capacity=" + std::to_string(s.capacity) +
           " in_use=" + std::to_string(s.in_use) + " waiting=" + std::to_string(s.waiting) + ">";
  });
  install_methods(limiter, g_limiter_methods);

  py::class_<Bucket> bucket(m, "Bucket", py::is_final(),
                            "A token bucket with the semantics of golang.org/x/time/rate. "
                            "Thread-safe; use as a context manager or call close().");
  bucket.attr("__module__") = "berth";
  bucket.def(py::init([](py::object rate, py::object burst) {
               return std::make_unique<Bucket>(rate, burst);
             }),
             py::arg("rate"), py::arg("burst"));
  def_handle_protocol(bucket, "Frees the bucket after calls in flight in other threads return. "
                              "Idempotent.");
  bucket.def_property(
      "rate", [](Bucket& b) { return b.raw_stats(BERTH_NOW).rate; },
      [](Bucket& b, py::object r) { b.set_rate(r, py::none()); });
  bucket.def_property(
      "burst", [](Bucket& b) { return b.raw_stats(BERTH_NOW).burst; },
      [](Bucket& b, py::object v) { b.set_burst(v, py::none()); });
  bucket.def("__repr__", [](Bucket& b) {
    if (b.closed()) return std::string("<berth.Bucket closed>");
    const berth_bucket_stats s = b.raw_stats(BERTH_NOW);
    return "<berth.Bucket rate=" + py::repr(py::float_(s.rate)).cast<std::string>() +
           " burst=" + std::to_string(s.burst) + ">";
  });
  install_methods(bucket, g_bucket_methods);

  py::class_<SharedLimiter> shared(
      m, "SharedLimiter", py::is_final(),
      "A concurrency limiter in named shared memory (/dev/shm/berth.<name>): one capacity for "
      "every process that opens the name. Permits belong to processes; those of a process that "
      "dies are reclaimed. Thread-safe; asyncio waits never block the event loop.");
  shared.attr("__module__") = "berth";
  shared.def(py::init([](py::object name, py::object capacity) {
               return std::make_unique<SharedLimiter>(name, capacity);
             }),
             py::arg("name"), py::arg("capacity") = py::none());
  def_close(shared, "Closes this handle. Waits on it are woken and raise ClosedError; permits "
                    "held by its hold()/acquire() blocks are given back. Other permits this "
                    "process holds stay held. Idempotent.");
  shared.def_static("unlink", [](py::object name) { SharedLimiter::unlink(name); },
                    py::arg("name"),
                    "Removes the name (berth_shared_limiter_unlink); processes that have it open "
                    "keep using the region. NotFoundError if there is no such name.");
  shared.def_property_readonly("name", &SharedLimiter::name);
  shared.def_property_readonly("_waits", &SharedLimiter::waits);
  shared.def_property(
      "capacity", [](SharedLimiter& l) { return l.raw_stats().capacity; },
      [](SharedLimiter& l, py::object c) { l.set_capacity(c); });
  shared.def("__repr__", [](SharedLimiter& l) {
    const std::string name = py::repr(l.name()).cast<std::string>();
    if (l.closed()) return "<berth.SharedLimiter " + name + " closed>";
    const berth_shared_limiter_stats s = l.raw_stats();
    return "<berth.SharedLimiter " + name + " capacity=" + std::to_string(s.capacity) +
           " in_use=" + std::to_string(s.in_use) + " waiting=" + std::to_string(s.waiting) + ">";
  });
  install_methods(shared, g_shared_limiter_methods);

  // Per-process state of the handles starts afresh in a forked child.
  pthread_atfork(nullptr, nullptr, [] {
    next_process();
    reset_exit_after_fork();
  });

  // Threads inside Berth at interpreter exit park instead of aborting the
  // process (see "Interpreter exit"). A new interpreter starts afresh.
  g_exiting.store(false, std::memory_order_seq_cst);
  py::module_::import("atexit").attr("register")(
      py::cpp_function(&begin_exit, py::name("_begin_exit"),
                       py::doc("Parks the threads that return from Berth from now on.")));

  // The asyncio and context-manager parts, written in Python.
  py::module_ limit = py::module_::import("berth._limit");
  g.wake_closed = py::object(limit.attr("_wake_closed")).release().ptr();
  limit.attr("_install")(limiter, bucket, notifier, shared);

  make_object_types();
  m.attr("ObjectList") = py::handle(reinterpret_cast<PyObject*>(g.object_list));
  m.attr("ObjectView") = py::handle(reinterpret_cast<PyObject*>(g.object_view));
}
