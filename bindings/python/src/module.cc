// The module: PYBIND11_MODULE, the module-level names, the order in which the
// capabilities register (see common.h for the layout), and the state the whole
// extension shares, defined once here (declared in common.h).

#include <pthread.h>

#include <chrono>
#include <string>
#include <thread>

#include "common.h"

namespace berth_py {

// The shared state (declared and documented in common.h).

Globals g;

std::atomic<bool> g_exiting{false};
std::atomic<int> g_restoring{0};
pthread_t g_exit_thread;  // written before g_exiting is set, read after it is seen
constexpr auto kExitWait = std::chrono::seconds(1);

[[noreturn]] void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

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

void reset_exit_after_fork() { g_restoring.store(0, std::memory_order_relaxed); }

std::atomic<uint32_t> g_process{1};
void next_process() { g_process.fetch_add(1, std::memory_order_relaxed); }

PyObject* g_empty_str = nullptr;
PyObject* g_zero = nullptr;
PyObject* g_one = nullptr;

void init_method_defaults() {
  g_empty_str = PyUnicode_FromStringAndSize("", 0);
  if (!g_empty_str) throw py::error_already_set();
  g_zero = PyLong_FromLong(0);
  if (!g_zero) throw py::error_already_set();
  g_one = PyLong_FromLong(1);
  if (!g_one) throw py::error_already_set();
}

namespace {

PyTypeObject* load_type(const py::module_& mod, const char* name) {
  py::object t = mod.attr(name);
  if (!PyType_Check(t.ptr()) ||
      !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(t.ptr()), &PyTuple_Type)) {
    throw py::import_error(std::string("berth._types.") + name + " must be a NamedTuple class");
  }
  return reinterpret_cast<PyTypeObject*>(t.release().ptr());
}

}  // namespace

void init_types() {
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
}

namespace {

void init_module(py::module_& m) {
  m.doc() = "Native core of the berth package: a thin layer over Berth's C ABI (berth.h).";

  // The library we loaded must speak the ABI we were compiled against.
  const uint32_t loaded = berth_abi_version();
  if (loaded / 10000 != BERTH_ABI_VERSION_MAJOR || loaded < BERTH_ABI_VERSION) {
    throw py::import_error("berth: libberth has ABI version " + std::to_string(loaded) +
                           " but the binding was built against " +
                           std::to_string(BERTH_ABI_VERSION) +
                           " (major must match and the library must not be older)");
  }

  init_types();
  init_errors();

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

  init_method_defaults();
  m.def("clock_now_ns", &berth_clock_now_ns,
        "Berth's monotonic clock (CLOCK_MONOTONIC) in nanoseconds: the clock of the now_ns "
        "arguments and of Reservation.time_to_act_ns.");

  bind_pool(m);
  bind_selector(m);
  bind_cache(m);
  bind_notifier(m);
  bind_limiter(m);
  bind_bucket(m);
  bind_shared_limiter(m);

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
  limit.attr("_install")(m.attr("Limiter"), m.attr("Bucket"), m.attr("_Notifier"),
                         m.attr("SharedLimiter"));
  py::module_::import("berth._cache").attr("_install")(m.attr("Cache"));

  bind_object_types(m);
}

}  // namespace
}  // namespace berth_py

PYBIND11_MODULE(_berth, m) { berth_py::init_module(m); }
