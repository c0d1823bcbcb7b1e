//go:build cgo

package berth

/*
#cgo noescape bg_limiter_new
#cgo nocallback bg_limiter_new
#cgo noescape bg_limiter_try_acquire
#cgo nocallback bg_limiter_try_acquire
#cgo noescape bg_limiter_acquire_async
#cgo nocallback bg_limiter_acquire_async
#cgo noescape bg_limiter_claim
#cgo nocallback bg_limiter_claim
#cgo noescape bg_limiter_cancel
#cgo nocallback bg_limiter_cancel
#cgo noescape bg_limiter_release
#cgo nocallback bg_limiter_release
#cgo noescape bg_limiter_release_claim
#cgo nocallback bg_limiter_release_claim
#cgo noescape bg_limiter_set_capacity
#cgo nocallback bg_limiter_set_capacity
#cgo noescape bg_limiter_stats
#cgo nocallback bg_limiter_stats
#cgo nocallback bg_limiter_free

#include "bg.h"

static berth_status bg_limiter_new(uintptr_t* out, bg_res* res, int64_t capacity) {
  berth_limiter* l = NULL;
  berth_status st = berth_limiter_new(&l, capacity);
  *out = (uintptr_t)l;
  return bg_done(st, res);
}

static void bg_limiter_free(uintptr_t l) { berth_limiter_free(BG_LIMITER(l)); }

static berth_status bg_limiter_try_acquire(bg_res* res, uintptr_t l, int64_t n) {
  return bg_done(berth_limiter_try_acquire(&res->flag, BG_LIMITER(l), n), res);
}

static berth_status bg_limiter_acquire_async(uint64_t* out_ticket, bg_res* res, uintptr_t l,
                                             int64_t n, uintptr_t notifier, uint64_t token) {
  return bg_done(berth_limiter_acquire_async(&res->flag, out_ticket, BG_LIMITER(l), n,
                                             BG_NOTIFIER(notifier), token),
                 res);
}

static berth_status bg_limiter_claim(bg_res* res, uintptr_t l, uint64_t ticket) {
  return bg_done(berth_limiter_claim(&res->flag, BG_LIMITER(l), ticket), res);
}

static berth_status bg_limiter_cancel(bg_res* res, uintptr_t l, uint64_t ticket) {
  return bg_done(berth_limiter_cancel(&res->flag, BG_LIMITER(l), ticket), res);
}

static berth_status bg_limiter_release(bg_res* res, uintptr_t l, int64_t n) {
  return bg_done(berth_limiter_release(BG_LIMITER(l), n), res);
}

// Releases n permits, then claims tickets[0..k) in order until one is not
// granted (*claimed of them were): the release and the claims of the
// waiters it granted in one cgo call (see direct.go). A failing release
// claims nothing.
static berth_status bg_limiter_release_claim(size_t* claimed, bg_res* res, uintptr_t l, int64_t n,
                                             const uint64_t* tickets, size_t k) {
  *claimed = 0;
  berth_status st = berth_limiter_release(BG_LIMITER(l), n);
  if (st != BERTH_OK) return bg_done(st, res);
  for (size_t i = 0; i < k; i++) {
    int ok = 0;
    st = berth_limiter_claim(&ok, BG_LIMITER(l), tickets[i]);
    if (st != BERTH_OK) return bg_done(st, res);
    if (!ok) break;
    *claimed = i + 1;
  }
  return BERTH_OK;
}

static berth_status bg_limiter_set_capacity(bg_res* res, uintptr_t l, int64_t capacity) {
  return bg_done(berth_limiter_set_capacity(BG_LIMITER(l), capacity), res);
}

static berth_status bg_limiter_stats(berth_limiter_stats* out, bg_res* res, uintptr_t l) {
  return bg_done(berth_limiter_get_stats(out, BG_LIMITER(l)), res);
}
*/
import "C"

import (
	"context"
	"runtime"
	"strconv"
	"unsafe"
)

// Refusal says why TryAcquire did not take the permits.
type Refusal int

const (
	// NotRefused: the permits were taken.
	NotRefused Refusal = C.BERTH_LIMIT_GRANTED
	// RefusedAtCapacity: in-use + n would exceed the capacity.
	RefusedAtCapacity Refusal = C.BERTH_LIMIT_AT_CAPACITY
	// RefusedWaitersQueued: others wait first (waiters are served FIFO and
	// nobody barges past them).
	RefusedWaitersQueued Refusal = C.BERTH_LIMIT_WAITERS_QUEUED
)

func (r Refusal) String() string {
	switch r {
	case NotRefused:
		return "NotRefused"
	case RefusedAtCapacity:
		return "RefusedAtCapacity"
	case RefusedWaitersQueued:
		return "RefusedWaitersQueued"
	}
	return "Refusal(" + strconv.Itoa(int(r)) + ")"
}

// LimiterStats are the counters of a Limiter, read atomically.
type LimiterStats struct {
	Capacity       int64
	InUse          int64  // permits held (including granted waits not yet claimed)
	Waiting        int64  // waiters queued
	WaitingPermits int64  // permits they ask for
	Granted        uint64 // grants made (including ones cancelled before the claim)
	Rejected       uint64 // TryAcquire refusals
	TimedOut       uint64 // blocking waits in the library that hit their deadline
	Cancelled      uint64 // waits cancelled (Acquire whose context ended, Close)
}

// Limiter is a concurrency limiter: weighted permits under a capacity that
// can change at run time. Waiters are served first come, first served, and
// nobody barges past a waiter: a large request at the head of the queue is
// not starved by small ones behind it (while anyone waits, TryAcquire refuses
// with RefusedWaitersQueued). Lowering the capacity never revokes held
// permits: new grants wait until the permits in use drop below it, and a
// waiter asking for more than a lowered capacity waits until it is raised.
//
// Acquire waits without blocking an OS thread: the wait is queued in the
// library (which decides the order) and the goroutine parks on a channel;
// the Release (or SetCapacity, or cancelled Acquire) that grants it claims
// the permits and hands them over, with no syscall. A cancelled Acquire
// never leaks a permit, however the cancellation races the grant.
//
// Every method is safe for concurrent use. Call Close when done; every
// method after Close returns an error wrapping ErrClosed, and Acquires
// waiting at Close return it too (holding nothing).
type Limiter struct {
	ticketHandle // the handle (berth_limiter*), its guard and its parked waiters
}

// limiterCalls are the calls of asynchronous Acquires on a Limiter.
var limiterCalls = ticketCalls{
	what: "limiter",
	tryAcquire: func(h C.uintptr_t, n int64) (Refusal, error) {
		var r C.bg_res
		if st := C.bg_limiter_try_acquire(&r, h, C.int64_t(n)); st != C.BERTH_OK {
			return 0, resError(st, &r)
		}
		return Refusal(r.flag), nil
	},
	release: func(h C.uintptr_t, n int64) error {
		var r C.bg_res
		if st := C.bg_limiter_release(&r, h, C.int64_t(n)); st != C.BERTH_OK {
			return resError(st, &r)
		}
		return nil
	},
	setCapacity: func(h C.uintptr_t, capacity int64) error {
		var r C.bg_res
		if st := C.bg_limiter_set_capacity(&r, h, C.int64_t(capacity)); st != C.BERTH_OK {
			return resError(st, &r)
		}
		return nil
	},
	free: func(h C.uintptr_t) { C.bg_limiter_free(h) },
	enqueue: func(h C.uintptr_t, n int64, nt C.uintptr_t, tok uint64) (bool, uint64, error) {
		var r C.bg_res
		var ticket C.uint64_t
		if st := C.bg_limiter_acquire_async(&ticket, &r, h, C.int64_t(n), nt, C.uint64_t(tok)); st != C.BERTH_OK {
			return false, 0, resError(st, &r)
		}
		return r.flag != 0, uint64(ticket), nil
	},
	releaseClaim: func(h C.uintptr_t, n int64, tickets [releaseClaimMax]uint64, k int) (int, error) {
		var r C.bg_res
		var claimed C.size_t
		p := (*C.uint64_t)(unsafe.Pointer(&tickets[0])) // a copy on this stack: nothing escapes
		if st := C.bg_limiter_release_claim(&claimed, &r, h, C.int64_t(n), p, C.size_t(k)); st != C.BERTH_OK {
			return int(claimed), resError(st, &r)
		}
		return int(claimed), nil
	},
	claim: func(h C.uintptr_t, ticket uint64) (bool, error) {
		var r C.bg_res
		if st := C.bg_limiter_claim(&r, h, C.uint64_t(ticket)); st != C.BERTH_OK {
			return false, resError(st, &r)
		}
		return r.flag != 0, nil
	},
	cancel: func(h C.uintptr_t, ticket uint64) C.int {
		var r C.bg_res
		C.bg_limiter_cancel(&r, h, C.uint64_t(ticket)) // never fails for a live handle
		return r.flag
	},
}

// NewLimiter creates a limiter with capacity >= 1 permits, none in use.
func NewLimiter(capacity int64) (*Limiter, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var h C.uintptr_t
	var r C.bg_res
	if st := C.bg_limiter_new(&h, &r, C.int64_t(capacity)); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	l := &Limiter{}
	l.h, l.calls, l.direct = h, &limiterCalls, &directQueue{}
	// A limiter dropped without Close is freed when it becomes unreachable
	// (no Acquire can be waiting on it then: a waiter references it).
	l.cleanup = runtime.AddCleanup(l, limiterCalls.free, h)
	return l, nil
}

// Close frees the limiter. Acquires waiting on it return an error wrapping
// ErrClosed, holding nothing; permits held are simply forgotten. It waits for
// calls in flight to finish. Calling Close again is a no-op that returns nil.
func (l *Limiter) Close() error {
	if l == nil {
		return nil
	}
	return l.close()
}

// TryAcquire takes n permits if they are free and nobody waits; it never
// waits. ok reports whether it took them; if not, reason says why. n < 1 or
// n > the capacity is ErrInvalidArgument.
func (l *Limiter) TryAcquire(n int64) (ok bool, reason Refusal, err error) {
	if l == nil {
		return false, 0, errClosed("TryAcquire", limiterCalls.what)
	}
	return l.tryAcquire(n)
}

// Acquire takes n permits, waiting in FIFO order until they are granted or
// ctx ends. On nil the caller holds the permits and must Release them. On
// error it holds nothing: ctx.Err() if ctx ended first (also when it had
// already ended on entry, even if the permits were free), an error wrapping
// ErrClosed if the limiter was closed, ErrInvalidArgument if n < 1 or
// n > the capacity at the time of the call.
//
// Waiting blocks the goroutine only: no OS thread is held.
func (l *Limiter) Acquire(ctx context.Context, n int64) error {
	if l == nil {
		return errClosed("Acquire", "limiter")
	}
	return l.acquire(ctx, n)
}

// Release returns n permits and grants waiters that now fit, in order.
// Releasing more than are in use is ErrInvalidArgument and changes nothing.
func (l *Limiter) Release(n int64) error {
	if l == nil {
		return errClosed("Release", limiterCalls.what)
	}
	return l.release(n)
}

// SetCapacity changes the capacity (>= 1). Raising it grants waiters that
// now fit; lowering it revokes nothing.
func (l *Limiter) SetCapacity(capacity int64) error {
	if l == nil {
		return errClosed("SetCapacity", limiterCalls.what)
	}
	return l.setCapacity(capacity)
}

// Stats reads the counters of the limiter.
func (l *Limiter) Stats() (LimiterStats, error) {
	var s C.berth_limiter_stats
	var r C.bg_res
	hnd, err := l.enter("Stats")
	if err != nil {
		return LimiterStats{}, err
	}
	st := C.bg_limiter_stats(&s, &r, hnd)
	l.mu.RUnlock()
	if st != C.BERTH_OK {
		return LimiterStats{}, resError(st, &r)
	}
	return LimiterStats{
		Capacity:       int64(s.capacity),
		InUse:          int64(s.in_use),
		Waiting:        int64(s.waiting),
		WaitingPermits: int64(s.waiting_permits),
		Granted:        uint64(s.granted),
		Rejected:       uint64(s.rejected),
		TimedOut:       uint64(s.timed_out),
		Cancelled:      uint64(s.cancelled),
	}, nil
}
