#pragma once

// Selector: a parsed label selector (berth_selector_*). The class is here
// because Cache.list takes one (cache.cc); the binding is in selector.cc.

#include "common.h"

namespace berth_py {

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

  // Equal selectors have the same canonical form: Selector(str(s)) == s.
  // A closed selector compares and hashes by the form it had, if it was
  // ever computed, else only equal to itself / ClosedError for hash().
  py::object eq(py::handle other) {
    if (!py::isinstance<Selector>(other)) return py::reinterpret_borrow<py::object>(Py_NotImplemented);
    auto& o = other.cast<Selector&>();
    if (&o == this) return py::bool_(true);
    py::object a = canonical_or_none(), b = o.canonical_or_none();
    if (a.is_none() || b.is_none()) return py::bool_(false);
    return py::bool_(a.equal(b));
  }

  py::int_ hash() {
    py::object c = canonical_or_none();
    if (c.is_none()) raise_closed("selector");
    return py::int_(py::hash(c));
  }

  bool matches(py::handle labels) {
    LabelArgs l;
    l.read(labels.ptr(), Arg{"labels"});
    int out = 0;
    call([&](berth_selector* s) { return berth_selector_matches(&out, s, l.data(), l.size()); });
    return out != 0;
  }

 private:
  py::object canonical_or_none() {
    if (canonical_ || closed()) return canonical_ ? canonical_ : py::none();
    return str();
  }

  py::object canonical_;
};

}  // namespace berth_py
