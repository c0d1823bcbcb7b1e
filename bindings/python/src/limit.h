#pragma once

// ---------------------------------------------------------------------------
// Limiter, notifier and token bucket
//
// Only the synchronous primitives live here. The asyncio side (one notifier
// per event loop watched with loop.add_reader, tokens mapped to futures,
// claim / cancel around the await) is Python, in berth/_limit.py, which
// installs `acquire`, `hold`, `__aenter__`/`__aexit__`, `wait` and
// `wait_blocking` on these classes at import.
// ---------------------------------------------------------------------------

// This header holds what the limiters share: the _Notifier class (bound in
// limiter.cc), the helpers of their _acquire_async / try_acquire_reason and
// the interruptible blocking wait (wait_for_permits).

#include <poll.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "common.h"

namespace berth_py {

// Raises RuntimeError if this thread runs an asyncio event loop: a blocking
// wait there would stall every task of the loop (berth.h: "Never call it from
// an event loop's thread").
inline void refuse_in_event_loop(const char* what, const char* instead) {
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
inline py::object refusal_object(int r, const char* fn) {
  if (r < 0 || r > 2) {
    raise_status(BERTH_ERR_INTERNAL, std::string(fn) + " returned refusal " + std::to_string(r));
  }
  return py::reinterpret_borrow<py::object>(g.refusal[r]);
}

// The notifier argument of _acquire_async: a live berth._Notifier.
inline Notifier& notifier_arg(py::handle notifier) {
  PyObject* nobj = notifier.ptr();
  if (!PyObject_TypeCheck(nobj, g.notifier)) raise_type("notifier", "a berth._Notifier", nobj);
  Notifier* nt = native<Notifier>(nobj);
  if (!nt) throw py::type_error("berth._Notifier.__init__() was not called");
  return *nt;
}

// A ticket (or None when granted at once) as _acquire_async returns it.
inline py::object ticket_object(int granted, uint64_t ticket) {
  if (granted) return py::none();
  auto out = py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(ticket));
  if (!out) throw py::error_already_set();
  return out;
}

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

}  // namespace berth_py
