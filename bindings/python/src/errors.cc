// The exception hierarchy: berth._errors' classes, looked up at import, and
// the functions that raise them (declared in common.h).

#include "common.h"

#include <string>
#include <utility>

namespace berth_py {

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

[[noreturn]] void raise_status(berth_status st, const std::string& message) {
  Failure f;
  f.status = st;
  f.message = message;
  f.status_name = berth_status_name(st);
  raise_failure(f);
}

[[noreturn]] void raise_closed(const char* what) {
  raise_error(g.closed_error, BERTH_ERR_BAD_HANDLE, std::string("the ") + what + " is closed",
              "BERTH_ERR_BAD_HANDLE");
}

[[noreturn]] void raise_type(const std::string& what, const char* expected, PyObject* got) {
  throw py::type_error(what + " must be " + expected + ", not " + Py_TYPE(got)->tp_name);
}

[[noreturn]] void raise_bad_output(const char* what) {
  raise_status(BERTH_ERR_BAD_BUFFER,
               std::string("the ") + what + " buffer returned by libberth failed verification");
}

void init_errors() {
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
}

}  // namespace berth_py
