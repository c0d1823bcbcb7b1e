#pragma once

// berth._berth: the pybind11 module over Berth's C ABI (capi/berth.h).
//
// The extension talks to Berth only through berth_* functions and the
// FlatBuffers schema (capi/berth.fbs); it never includes core/ headers.
//
// Layout (one file per capability, as core/ is):
//  - common.h: the machinery every capability shares (below); its state is
//    defined once, in module.cc;
//  - errors.cc: the exception hierarchy (berth._errors) and raising it;
//  - flatbuf.h: FlatBuffers helpers (only pool.cc and cache.cc include the
//    generated header);
//  - pool.cc (Engine), selector.{h,cc}, cache.cc (Cache, ObjectList,
//    ObjectView), cache_write.{h,cc} (the batches Cache.apply and
//    Cache.replace build, giving the GIL up between chunks), limit.h (_Notifier and the blocking wait, shared by both
//    limiters), limiter.cc (Limiter, _Notifier's binding), shared_limiter.cc,
//    bucket.cc;
//  - module.cc: PYBIND11_MODULE, the module-level names, the order in which
//    the capabilities register, and the shared state.
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

#include <pthread.h>

#include <cxxabi.h>
#include <pybind11/pybind11.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "berth.h"

namespace berth_py {

namespace py = pybind11;

// ---------------------------------------------------------------------------
// Objects looked up once at import. Deliberately leaked (held for the life of
// the process) so nothing here is released during interpreter shutdown.
// ---------------------------------------------------------------------------
inline constexpr int kStatusCount = BERTH_ERR_FORKED + 1;

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
extern Globals g;  // module.cc

inline constexpr int kPoolKeyFields = 6;  // namespace, name, node, ready, seq, token

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

// Defined in module.cc (one copy for the whole extension).
extern std::atomic<bool> g_exiting;
extern std::atomic<int> g_restoring;
extern pthread_t g_exit_thread;  // written before g_exiting is set, read after it is seen

[[noreturn]] void park_forever();

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
inline bool parking() {
  return g_exiting.load(std::memory_order_seq_cst) && !pthread_equal(pthread_self(), g_exit_thread);
}

// PyEval_RestoreThread, or parks the thread for good if exit has begun.
inline void restore_gil(PyThreadState* state) {
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
void begin_exit();

// In a forked child only the forking thread exists, and it holds the GIL.
void reset_exit_after_fork();

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

// The raising functions are defined in errors.cc.
[[noreturn]] void raise_error(PyObject* cls, int status, const std::string& message,
                              const char* status_name);

[[noreturn]] void raise_failure(const Failure& f);

// An error detected by the binding itself, with the status the library would
// have returned for it.
[[noreturn]] void raise_status(berth_status st, const std::string& message);

// `what`: "engine", "cache" or "selector".
[[noreturn]] void raise_closed(const char* what);

[[noreturn]] void raise_type(const std::string& what, const char* expected, PyObject* got);

// A buffer returned by libberth failed verification (flatbuf.h).
[[noreturn]] void raise_bad_output(const char* what);

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
inline constexpr int64_t kMaxTimeoutNs = int64_t{1} << 62;

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

// Calls a NamedTuple class with positional arguments (cold paths only).
template <class... Args>
py::object make_tuple_type(PyTypeObject* type, Args&&... args) {
  return call_python(reinterpret_cast<PyObject*>(type), std::forward<Args>(args)...);
}

// ---------------------------------------------------------------------------
// Handles: the base of every handle class, and the buffers Berth returns
// ---------------------------------------------------------------------------

// Which process this is, for state inherited through fork: a counter bumped
// in the child of every fork (registered at import). Not the pid: a
// grandchild can get its dead grandparent's pid.
extern std::atomic<uint32_t> g_process;  // module.cc
void next_process();
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

// The Selector inside a berth.Selector instance (the class is final, so the
// instance has pybind11's simple layout); nullptr if __init__ did not run.
template <class T>
T* native(PyObject* self) {
  return reinterpret_cast<py::detail::instance*>(self)->get_value_and_holder().value_ptr<T>();
}

// A method that needs its Python instance (to build an object referring to
// it) takes Self first; the trampoline passes it.
struct Self {
  py::handle obj;
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

// Defined in module.cc, made by init_method_defaults().
extern PyObject* g_empty_str;  // "" (default of node, of Cache.list's namespace)
extern PyObject* g_zero;       // 0 (default of Cache.delete's resource_version)
extern PyObject* g_one;        // 1 (default of a limiter's or a bucket's n)

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

// The parameter lists of the Method constants (in each capability's file)
// must match the signatures in berth/_berth.pyi (tests/test_package.py checks
// them through inspect.signature). The parameters used by several methods:
inline constexpr Param kPool{"pool"};
inline constexpr Param kNamespace{"namespace"};
inline constexpr Param kName{"name"};
inline constexpr Param kNode{"node", Fallback::kEmptyStr};
inline constexpr Param kReady{"ready", Fallback::kTrue};
inline constexpr Param kResourceVersion{"resource_version"};
inline constexpr Param kN1{"n", Fallback::kOne};
inline constexpr Param kNowNs{"now_ns", Fallback::kNone};
inline constexpr Param kTimeout{"timeout", Fallback::kNone};

template <const auto& M>
PyMethodDef method_def() {
  return {M.name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&trampoline<M>)),
          METH_FASTCALL | METH_KEYWORDS, M.doc};
}

template <size_t N>
void install_methods(py::handle cls, PyMethodDef (&defs)[N]) {
  for (PyMethodDef& def : defs) {
    auto descr = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &def));
    if (!descr) throw py::error_already_set();
    cls.attr(def.ml_name) = descr;
  }
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

// ---------------------------------------------------------------------------
// Module initialisation, in the order module.cc calls them
// ---------------------------------------------------------------------------

// berth._types (the NamedTuple classes, Reservation, Refusal) and asyncio's
// _get_running_loop into g (module.cc).
void init_types();
// berth._errors' classes into g (errors.cc).
void init_errors();
// g_empty_str, g_zero, g_one (module.cc).
void init_method_defaults();

void bind_pool(py::module_& m);              // pool.cc: Engine
void bind_selector(py::module_& m);          // selector.cc: Selector
void bind_cache(py::module_& m);             // cache.cc: Cache
void bind_notifier(py::module_& m);          // limiter.cc: _Notifier
void bind_limiter(py::module_& m);           // limiter.cc: Limiter
void bind_bucket(py::module_& m);            // bucket.cc: Bucket
void bind_shared_limiter(py::module_& m);    // shared_limiter.cc: SharedLimiter
void bind_object_types(py::module_& m);      // cache.cc: ObjectList, ObjectView

}  // namespace berth_py
