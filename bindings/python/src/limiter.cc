// Limiter: the in-process concurrency limiter (berth_limiter_*), and the
// binding of _Notifier (the class is in limit.h), the eventfd-backed queue
// the asyncio support of both limiters waits on.

#include <limits>
#include <memory>
#include <string>

#include "common.h"
#include "limit.h"

namespace berth_py {
namespace {

// Capacity set by Limiter::close to wake every waiter. Not INT64_MAX: Berth
// adds in-use and the request before comparing with it.
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

PyMethodDef g_limiter_methods[] = {
    method_def<kTryAcquire>(),  method_def<kTryAcquireReason>(), method_def<kAcquireBlocking>(),
    method_def<kRelease>(),     method_def<kReleaseHeld>(),      method_def<kSetCapacity>(),
    method_def<kLimiterStats>(), method_def<kAcquireAsync>(),    method_def<kClaim>(),
    method_def<kCancel>(),
};


constexpr Method<&Notifier::drain, 0> kDrain{
    "drain", {}, "drain($self)\n--\n\nEvery completed token, oldest first (list of int)."};

PyMethodDef g_notifier_methods[] = {method_def<kDrain>()};

}  // namespace

void bind_notifier(py::module_& m) {
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
}

void bind_limiter(py::module_& m) {
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
}

}  // namespace berth_py
