// SharedLimiter: the limiter in named shared memory (berth_shared_limiter_*).

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "common.h"
#include "limit.h"

namespace berth_py {
namespace {

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

PyMethodDef g_shared_limiter_methods[] = {
    method_def<kSharedTryAcquire>(),    method_def<kSharedTryAcquireReason>(),
    method_def<kSharedAcquireBlocking>(), method_def<kSharedAcquireHeld>(),
    method_def<kSharedRelease>(),       method_def<kSharedReleaseHeld>(),
    method_def<kSharedSetCapacity>(),   method_def<kSharedStats>(),
    method_def<kSharedAcquireAsync>(),  method_def<kSharedClaim>(),
    method_def<kSharedCancel>(),
};


}  // namespace

void bind_shared_limiter(py::module_& m) {
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
}

}  // namespace berth_py
