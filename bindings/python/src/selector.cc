// The binding of berth.Selector (the class is in selector.h).

#include <memory>

#include "common.h"
#include "selector.h"

namespace berth_py {
namespace {

constexpr Method<&Selector::matches, 1> kMatches{
    "matches", {Param{"labels"}},
    "matches($self, labels)\n--\n\nTrue if the labels (a mapping of str to str) satisfy every "
    "requirement."};

PyMethodDef g_selector_methods[] = {method_def<kMatches>()};


}  // namespace

void bind_selector(py::module_& m) {
  py::class_<Selector> sel(m, "Selector", py::is_final(),
                           "A parsed Kubernetes label selector (immutable, thread-safe). Use as "
                           "a context manager or call close(); it is also freed when collected.");
  sel.attr("__module__") = "berth";
  sel.def(py::init([](py::object text) { return std::make_unique<Selector>(text); }),
          py::arg("text"));
  def_handle_protocol(sel, "Frees the selector after calls in flight in other threads "
                           "(including Cache.list calls using it) return. Idempotent.");
  sel.def("__str__", &Selector::str).def("__repr__", &Selector::repr);
  sel.def("__eq__", &Selector::eq, py::arg("other"),
          "Equal when the canonical forms are: Selector(str(s)) == s.");
  sel.def("__hash__", &Selector::hash, "The hash of the canonical form.");
  install_methods(sel, g_selector_methods);
  g.selector = reinterpret_cast<PyTypeObject*>(sel.inc_ref().ptr());
}

}  // namespace berth_py
