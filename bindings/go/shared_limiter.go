//go:build cgo

package berth

/*
#cgo noescape bg_shared_limiter_open
#cgo nocallback bg_shared_limiter_open
#cgo noescape bg_shared_limiter_unlink
#cgo nocallback bg_shared_limiter_unlink
#cgo noescape bg_shared_limiter_try_acquire
#cgo nocallback bg_shared_limiter_try_acquire
#cgo noescape bg_shared_limiter_acquire_async
#cgo nocallback bg_shared_limiter_acquire_async
#cgo noescape bg_shared_limiter_claim
#cgo nocallback bg_shared_limiter_claim
#cgo noescape bg_shared_limiter_cancel
#cgo nocallback bg_shared_limiter_cancel
#cgo noescape bg_shared_limiter_release
#cgo nocallback bg_shared_limiter_release
#cgo noescape bg_shared_limiter_set_capacity
#cgo nocallback bg_shared_limiter_set_capacity
#cgo noescape bg_shared_limiter_stats
#cgo nocallback bg_shared_limiter_stats
#cgo nocallback bg_shared_limiter_close

#include "bg.h"

#define BG_SHARED(h) ((berth_shared_limiter*)(h))

static berth_status bg_shared_limiter_open(uintptr_t* out, bg_res* res, const char* name,
                                           size_t name_len, int64_t capacity, int create) {
  berth_shared_limiter* l = NULL;
  berth_status st = berth_shared_limiter_open(&l, name, name_len, capacity, create);
  *out = (uintptr_t)l;
  return bg_done(st, res);
}

// Stops the handle's thread (joining it) and unmaps.
static void bg_shared_limiter_close(uintptr_t l) { berth_shared_limiter_close(BG_SHARED(l)); }

static berth_status bg_shared_limiter_unlink(bg_res* res, const char* name, size_t name_len) {
  return bg_done(berth_shared_limiter_unlink(name, name_len), res);
}

static berth_status bg_shared_limiter_try_acquire(bg_res* res, uintptr_t l, int64_t n) {
  return bg_done(berth_shared_limiter_try_acquire(&res->flag, BG_SHARED(l), n), res);
}

static berth_status bg_shared_limiter_acquire_async(uint64_t* out_ticket, bg_res* res,
                                                    uintptr_t l, int64_t n, uintptr_t notifier,
                                                    uint64_t token) {
  return bg_done(berth_shared_limiter_acquire_async(&res->flag, out_ticket, BG_SHARED(l), n,
                                                    BG_NOTIFIER(notifier), token),
                 res);
}

static berth_status bg_shared_limiter_claim(bg_res* res, uintptr_t l, uint64_t ticket) {
  return bg_done(berth_shared_limiter_claim(&res->flag, BG_SHARED(l), ticket), res);
}

static berth_status bg_shared_limiter_cancel(bg_res* res, uintptr_t l, uint64_t ticket) {
  return bg_done(berth_shared_limiter_cancel(&res->flag, BG_SHARED(l), ticket), res);
}

static berth_status bg_shared_limiter_release(bg_res* res, uintptr_t l, int64_t n) {
  return bg_done(berth_shared_limiter_release(BG_SHARED(l), n), res);
}

static berth_status bg_shared_limiter_set_capacity(bg_res* res, uintptr_t l, int64_t capacity) {
  return bg_done(berth_shared_limiter_set_capacity(BG_SHARED(l), capacity), res);
}

static berth_status bg_shared_limiter_stats(berth_shared_limiter_stats* out, bg_res* res,
                                            uintptr_t l) {
  return bg_done(berth_shared_limiter_get_stats(out, BG_SHARED(l)), res);
}
*/
import "C"

import (
	"context"
	"runtime"
)

// SharedLimiterStats are the counters of a shared limiter, for every process
// that uses it.
//
// Rejected counts TryAcquire refusals and also, as the library counts them,
// Acquires that had to queue while their handle had no other wait queued
// (its first attempt is a try); the in-process Limiter counts no Acquire.
// TimedOut counts blocking library waits, which this package never makes,
// so only other bindings' processes add to it.
type SharedLimiterStats struct {
	Capacity  int64
	InUse     int64  // permits held by every process (including granted waits not yet claimed)
	Waiting   int64  // waiters queued in the region (see SharedLimiter: one per handle at most)
	Holders   int64  // processes holding permits
	Granted   uint64 // grants made (including ones cancelled before the claim)
	Rejected  uint64 // refusals (see above)
	TimedOut  uint64 // blocking waits in the library that hit their deadline (see above)
	Reclaimed uint64 // permits taken back from processes that died holding them
}

// SharedLimiter is a handle on a concurrency limiter in named shared memory
// (the POSIX region "/berth.<name>", /dev/shm/berth.<name> on Linux), so one
// capacity holds across every process of the host that opens the name. It
// has the semantics of Limiter (weighted permits, FIFO waiters nobody barges
// past, a capacity that changes at run time and is never revoked), with
// permits counted per process:
//
//   - Permits belong to the process, not to the handle: a process releases
//     what it acquired through any of its handles, and can release no more
//     than it holds (ErrInvalidArgument).
//   - A process that dies holding permits (crash, SIGKILL) gets them taken
//     back: the library reclaims a dead holder's permits when another
//     process looks (a request that does not fit, every Stats, and every
//     50 ms while someone waits). Stats.Reclaimed counts them.
//   - Closing a handle does not release what the process holds.
//
// Acquire waits without blocking an OS thread in Go: the handle's own
// library thread waits in the region and posts the grant to the process's
// notifier, which the runtime poller watches (see notifier.go). That thread
// serves the handle's waits one at a time, in order, so Stats.Waiting counts
// at most one waiter per handle; a handle's later waits queue behind it in
// the process. A cancelled Acquire never leaks a permit, however the
// cancellation races the grant.
//
// Permits belong to the process (berth.h). Every method is safe for concurrent use. Call Close when done;
// every method after Close returns an error wrapping ErrClosed, and Acquires
// waiting at Close return it too (holding nothing).
type SharedLimiter struct {
	ticketHandle // the handle (berth_shared_limiter*), its guard and its parked waiters
}

// sharedLimiterCalls are the calls of asynchronous Acquires on a
// SharedLimiter.
var sharedLimiterCalls = ticketCalls{
	what: "shared limiter",
	tryAcquire: func(h C.uintptr_t, n int64) (Refusal, error) {
		var r C.bg_res
		if st := C.bg_shared_limiter_try_acquire(&r, h, C.int64_t(n)); st != C.BERTH_OK {
			return 0, resError(st, &r)
		}
		return Refusal(r.flag), nil
	},
	release: func(h C.uintptr_t, n int64) error {
		var r C.bg_res
		if st := C.bg_shared_limiter_release(&r, h, C.int64_t(n)); st != C.BERTH_OK {
			return resError(st, &r)
		}
		return nil
	},
	setCapacity: func(h C.uintptr_t, capacity int64) error {
		var r C.bg_res
		if st := C.bg_shared_limiter_set_capacity(&r, h, C.int64_t(capacity)); st != C.BERTH_OK {
			return resError(st, &r)
		}
		return nil
	},
	free: func(h C.uintptr_t) { C.bg_shared_limiter_close(h) },
	enqueue: func(h C.uintptr_t, n int64, nt C.uintptr_t, tok uint64) (bool, uint64, error) {
		var r C.bg_res
		var ticket C.uint64_t
		if st := C.bg_shared_limiter_acquire_async(&ticket, &r, h, C.int64_t(n), nt, C.uint64_t(tok)); st != C.BERTH_OK {
			return false, 0, resError(st, &r)
		}
		return r.flag != 0, uint64(ticket), nil
	},
	claim: func(h C.uintptr_t, ticket uint64) (bool, error) {
		var r C.bg_res
		if st := C.bg_shared_limiter_claim(&r, h, C.uint64_t(ticket)); st != C.BERTH_OK {
			return false, resError(st, &r)
		}
		return r.flag != 0, nil
	},
	cancel: func(h C.uintptr_t, ticket uint64) C.int {
		var r C.bg_res
		C.bg_shared_limiter_cancel(&r, h, C.uint64_t(ticket)) // never fails for a live handle
		return r.flag
	},
}

// OpenSharedLimiter opens the shared limiter name. With create it is created
// with capacity (>= 1) permits if it does not exist; an existing one keeps
// its capacity (use SetCapacity), and capacity is not looked at without
// create. Names are 1 to 200 bytes of [A-Za-z0-9._-].
//
// Fails: ErrInvalidName; ErrInvalidArgument (create with capacity < 1);
// ErrNotFound (absent and not create); ErrBadRegion (something else exists
// under the name: it is left untouched); ErrInternal (the OS refused: the
// message says why).
func OpenSharedLimiter(name string, capacity int64, create bool) (*SharedLimiter, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var h C.uintptr_t
	var r C.bg_res
	np, nn := cstr(name)
	if st := C.bg_shared_limiter_open(&h, &r, np, nn, C.int64_t(capacity), cbool(create)); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	l := &SharedLimiter{}
	l.h, l.calls = h, &sharedLimiterCalls
	// A handle dropped without Close is closed when it becomes unreachable
	// (no Acquire can be waiting on it then: a waiter references it).
	l.cleanup = runtime.AddCleanup(l, sharedLimiterCalls.free, h)
	return l, nil
}

// UnlinkSharedLimiter removes the name: later opens without create fail
// with ErrNotFound, and with create make a new limiter, while handles open
// now keep using the old one. Fails: ErrInvalidName; ErrNotFound.
func UnlinkSharedLimiter(name string) error {
	if err := checkABI(); err != nil {
		return err
	}
	var r C.bg_res
	np, nn := cstr(name)
	if st := C.bg_shared_limiter_unlink(&r, np, nn); st != C.BERTH_OK {
		return resError(st, &r)
	}
	return nil
}

// Close closes the handle. Acquires waiting on it return an error wrapping
// ErrClosed, holding nothing; permits the process holds stay held until it
// releases them through another handle or exits. It waits for calls in
// flight to finish. Calling Close again is a no-op that returns nil.
func (l *SharedLimiter) Close() error {
	if l == nil {
		return nil
	}
	return l.close()
}

// TryAcquire takes n permits for the process if they are free and nobody
// waits in the region; it never waits. ok reports whether it took them; if
// not, reason says why. n < 1 or n > the capacity is ErrInvalidArgument.
func (l *SharedLimiter) TryAcquire(n int64) (ok bool, reason Refusal, err error) {
	if l == nil {
		return false, 0, errClosed("TryAcquire", sharedLimiterCalls.what)
	}
	return l.tryAcquire(n)
}

// Acquire takes n permits for the process, waiting in FIFO order until they
// are granted or ctx ends. On nil the process holds the permits and must
// Release them. On error it holds nothing: ctx.Err() if ctx ended first
// (also when it had already ended on entry, even if the permits were free),
// an error wrapping ErrClosed if the handle was closed, ErrInvalidArgument
// if n < 1 or n > the capacity at the time of the call.
//
// Waiting blocks the goroutine only: no Go-side OS thread is held.
func (l *SharedLimiter) Acquire(ctx context.Context, n int64) error {
	if l == nil {
		return errClosed("Acquire", "shared limiter")
	}
	return l.acquire(ctx, n)
}

// Release returns n permits the process holds (taken through any handle)
// and lets waiters that now fit through, in order. Releasing more than the
// process holds is ErrInvalidArgument and changes nothing.
func (l *SharedLimiter) Release(n int64) error {
	if l == nil {
		return errClosed("Release", sharedLimiterCalls.what)
	}
	return l.release(n)
}

// SetCapacity changes the capacity (>= 1) for every process. Raising it lets
// waiters that now fit through; lowering it revokes nothing.
func (l *SharedLimiter) SetCapacity(capacity int64) error {
	if l == nil {
		return errClosed("SetCapacity", sharedLimiterCalls.what)
	}
	return l.setCapacity(capacity)
}

// Stats reads the counters of the limiter, after reclaiming the permits of
// dead holders.
func (l *SharedLimiter) Stats() (SharedLimiterStats, error) {
	var s C.berth_shared_limiter_stats
	var r C.bg_res
	hnd, err := l.enter("Stats")
	if err != nil {
		return SharedLimiterStats{}, err
	}
	st := C.bg_shared_limiter_stats(&s, &r, hnd)
	l.mu.RUnlock()
	if st != C.BERTH_OK {
		return SharedLimiterStats{}, resError(st, &r)
	}
	return SharedLimiterStats{
		Capacity:  int64(s.capacity),
		InUse:     int64(s.in_use),
		Waiting:   int64(s.waiting),
		Holders:   int64(s.holders),
		Granted:   uint64(s.granted),
		Rejected:  uint64(s.rejected),
		TimedOut:  uint64(s.timed_out),
		Reclaimed: uint64(s.reclaimed),
	}, nil
}
