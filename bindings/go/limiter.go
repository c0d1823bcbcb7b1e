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
	"sync"
	"sync/atomic"
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
// library and its grant is delivered to the goroutine through the runtime
// poller. A cancelled Acquire never leaks a permit, however the cancellation
// races the grant.
//
// Every method is safe for concurrent use. Call Close when done; every
// method after Close returns an error wrapping ErrClosed, and Acquires
// waiting at Close return it too (holding nothing).
type Limiter struct {
	// mu guards h: calls hold it for reading, Close for writing, so the
	// handle is never freed while a call is using it. A waiting Acquire
	// does not hold it while it waits.
	mu      sync.RWMutex
	h       C.uintptr_t // berth_limiter*; 0 once closed
	cleanup runtime.Cleanup
	// parked counts Acquires waiting on a ticket. Calls that may grant
	// drain the notifier themselves only while it is non-zero.
	parked atomic.Int64
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
	l := &Limiter{h: h}
	// A limiter dropped without Close is freed when it becomes unreachable
	// (no Acquire can be waiting on it then: a waiter references it).
	l.cleanup = runtime.AddCleanup(l, func(h C.uintptr_t) { C.bg_limiter_free(h) }, h)
	return l, nil
}

// Close frees the limiter. Acquires waiting on it return an error wrapping
// ErrClosed, holding nothing; permits held are simply forgotten. It waits for
// calls in flight to finish. Calling Close again is a no-op that returns nil.
func (l *Limiter) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == 0 {
		return nil
	}
	l.cleanup.Stop()
	// Cancel every parked ticket first, so that the registry knows which
	// tokens are still on their way (a ticket granted before the cancel has
	// posted its token) and none is left behind in it.
	registry.mu.Lock()
	for tok, w := range registry.m {
		if w.l != l || w.abandoned {
			continue
		}
		var r C.bg_res
		C.bg_limiter_cancel(&r, l.h, C.uint64_t(w.ticket))
		if r.flag == C.BERTH_CANCEL_WAS_GRANTED {
			w.abandoned = true
		} else {
			delete(registry.m, tok)
		}
		w.ch <- waitClosed
	}
	registry.mu.Unlock()
	C.bg_limiter_free(l.h)
	l.h = 0
	return nil
}

// TryAcquire takes n permits if they are free and nobody waits; it never
// waits. ok reports whether it took them; if not, reason says why. n < 1 or
// n > the capacity is ErrInvalidArgument.
func (l *Limiter) TryAcquire(n int64) (ok bool, reason Refusal, err error) {
	if l == nil {
		return false, 0, errClosed("TryAcquire", "limiter")
	}
	var r C.bg_res
	l.mu.RLock()
	if l.h == 0 {
		l.mu.RUnlock()
		return false, 0, errClosed("TryAcquire", "limiter")
	}
	st := C.bg_limiter_try_acquire(&r, l.h, C.int64_t(n))
	l.mu.RUnlock()
	if st != C.BERTH_OK {
		return false, 0, resError(st, &r)
	}
	reason = Refusal(r.flag)
	return reason == NotRefused, reason, nil
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
	done := ctx.Done()
	if done != nil {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
	}
	nt, err := sharedNotifier()
	if err != nil {
		return err
	}
	tok := nextToken.Add(1)
	var (
		r      C.bg_res
		ticket C.uint64_t
	)
	l.mu.RLock()
	if l.h == 0 {
		l.mu.RUnlock()
		return errClosed("Acquire", "limiter")
	}
	st := C.bg_limiter_acquire_async(&ticket, &r, l.h, C.int64_t(n), nt.h, C.uint64_t(tok))
	if st != C.BERTH_OK {
		l.mu.RUnlock()
		return resError(st, &r)
	}
	if r.flag != 0 { // granted at once
		l.mu.RUnlock()
		return nil
	}
	// Registered before the read lock is dropped, so Close (which takes it
	// for writing) finds every outstanding ticket in the registry.
	w := &waiter{l: l, ticket: uint64(ticket), ch: make(chan waitResult, 1)}
	l.parked.Add(1)
	granted := register(tok, w)
	l.mu.RUnlock()
	defer l.parked.Add(-1)
	if !granted {
		select {
		case res := <-w.ch:
			if res == waitClosed {
				return errClosed("Acquire", "limiter")
			}
		case <-done:
			l.abandon(tok, w)
			return ctx.Err()
		}
	}
	return l.claim(w.ticket)
}

// claim takes over the permits of a granted ticket.
func (l *Limiter) claim(ticket uint64) error {
	var r C.bg_res
	l.mu.RLock()
	if l.h == 0 {
		l.mu.RUnlock()
		return errClosed("Acquire", "limiter")
	}
	st := C.bg_limiter_claim(&r, l.h, C.uint64_t(ticket))
	l.mu.RUnlock()
	if st != C.BERTH_OK {
		return resError(st, &r)
	}
	if r.flag == 0 {
		return &Error{Status: statusInternal,
			Message: "Acquire: ticket " + strconv.FormatUint(ticket, 10) + " was posted but cannot be claimed"}
	}
	return nil
}

// abandon cancels the ticket of a waiter whose context ended. Whatever the
// cancel finds (still queued; granted, with or without the token drained),
// the caller holds nothing afterwards.
func (l *Limiter) abandon(tok uint64, w *waiter) {
	l.mu.RLock()
	if l.h == 0 {
		// Close cancelled the ticket and settled the registry entry.
		l.mu.RUnlock()
		return
	}
	// The cancel and the registry update are one step under registry.mu,
	// so neither deliver nor a Close can see the entry in between.
	registry.mu.Lock()
	var r C.bg_res
	C.bg_limiter_cancel(&r, l.h, C.uint64_t(w.ticket))
	if registry.m[tok] == w {
		if r.flag == C.BERTH_CANCEL_WAS_GRANTED {
			w.abandoned = true // its token is queued: deliver drops the entry
		} else {
			delete(registry.m, tok)
		}
	}
	// Otherwise the token was delivered already (w.ch holds the grant,
	// which nobody reads) and the cancel gave the permits back.
	registry.mu.Unlock()
	l.mu.RUnlock()
	// Leaving the queue may have let the waiters behind through.
	if l.parked.Load() > 1 {
		kick()
	}
}

// Release returns n permits and grants waiters that now fit, in order.
// Releasing more than are in use is ErrInvalidArgument and changes nothing.
func (l *Limiter) Release(n int64) error {
	if l == nil {
		return errClosed("Release", "limiter")
	}
	var r C.bg_res
	l.mu.RLock()
	if l.h == 0 {
		l.mu.RUnlock()
		return errClosed("Release", "limiter")
	}
	st := C.bg_limiter_release(&r, l.h, C.int64_t(n))
	l.mu.RUnlock()
	if st != C.BERTH_OK {
		return resError(st, &r)
	}
	if l.parked.Load() > 0 {
		kick()
	}
	return nil
}

// SetCapacity changes the capacity (>= 1). Raising it grants waiters that
// now fit; lowering it revokes nothing.
func (l *Limiter) SetCapacity(capacity int64) error {
	if l == nil {
		return errClosed("SetCapacity", "limiter")
	}
	var r C.bg_res
	l.mu.RLock()
	if l.h == 0 {
		l.mu.RUnlock()
		return errClosed("SetCapacity", "limiter")
	}
	st := C.bg_limiter_set_capacity(&r, l.h, C.int64_t(capacity))
	l.mu.RUnlock()
	if st != C.BERTH_OK {
		return resError(st, &r)
	}
	if l.parked.Load() > 0 {
		kick()
	}
	return nil
}

// Stats reads the counters of the limiter.
func (l *Limiter) Stats() (LimiterStats, error) {
	if l == nil {
		return LimiterStats{}, errClosed("Stats", "limiter")
	}
	var s C.berth_limiter_stats
	var r C.bg_res
	l.mu.RLock()
	if l.h == 0 {
		l.mu.RUnlock()
		return LimiterStats{}, errClosed("Stats", "limiter")
	}
	st := C.bg_limiter_stats(&s, &r, l.h)
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
