//go:build cgo

package berth

// #include "bg.h"
import "C"

import (
	"context"
	"runtime"
	"strconv"
	"sync/atomic"
)

// ticketCalls are the C calls of one kind of limiter (in-process or shared):
// those an asynchronous Acquire makes, and the ones both limiters' methods
// share. Each wraps one bg_* helper with its bg_res on its own stack, so
// going through a function value costs no allocation.
type ticketCalls struct {
	what string // the kind of handle, for errClosed: "limiter", "shared limiter"
	// tryAcquire, release and setCapacity are the calls of those names;
	// free releases the handle.
	tryAcquire  func(h C.uintptr_t, n int64) (Refusal, error)
	release     func(h C.uintptr_t, n int64) error
	setCapacity func(h C.uintptr_t, capacity int64) error
	free        func(h C.uintptr_t)
	// enqueue asks for n permits: granted now, or a ticket whose grant
	// posts tok to the notifier nt.
	enqueue func(h C.uintptr_t, n int64, nt C.uintptr_t, tok uint64) (grantedNow bool, ticket uint64, err error)
	// releaseClaim (Limiter only) releases n permits, then claims tickets
	// in order until one is not granted, in one cgo call; claimed says how
	// many were.
	releaseClaim func(h C.uintptr_t, n int64, tickets [releaseClaimMax]uint64, k int) (claimed int, err error)
	// claim takes over a granted ticket's permits.
	claim func(h C.uintptr_t, ticket uint64) (claimed bool, err error)
	// cancel cancels a ticket and says what it found (BERTH_CANCEL_*).
	cancel func(h C.uintptr_t, ticket uint64) C.int
}

// ticketHandle is the part of a limiter handle that asynchronous Acquires
// use: the handle, its guard, and its waiters parked in the registry.
type ticketHandle struct {
	guard // the library's handle; a waiting Acquire does not hold it while it waits
	// parked counts Acquires waiting on a ticket. Calls that may grant
	// drain the notifier themselves only while it is non-zero.
	parked atomic.Int64
	calls  *ticketCalls
	// direct: the Limiter's parked Acquires, delivered by the callers of
	// granting calls (direct.go); nil for a SharedLimiter, whose grants go
	// through the process notifier and its registry.
	direct  *directQueue
	cleanup runtime.Cleanup // frees the handle of a limiter dropped without Close
}

// The bodies of the methods both limiters have (see Limiter and
// SharedLimiter for what they do); the exported methods check for a nil
// receiver and call these.

func (t *ticketHandle) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.h == 0 {
		return nil
	}
	t.cleanup.Stop()
	if t.direct != nil {
		t.cancelDirect()
	} else {
		t.cancelParked()
	}
	t.calls.free(t.h)
	t.h = 0
	return nil
}

func (t *ticketHandle) tryAcquire(n int64) (bool, Refusal, error) {
	hnd, err := t.enter("TryAcquire")
	if err != nil {
		return false, 0, err
	}
	reason, err := t.calls.tryAcquire(hnd, n)
	t.mu.RUnlock()
	if err != nil {
		return false, 0, err
	}
	return reason == NotRefused, reason, nil
}

func (t *ticketHandle) release(n int64) error {
	hnd, err := t.enter("Release")
	if err != nil {
		return err
	}
	if t.direct != nil && t.parked.Load() > 0 {
		err = t.releaseDirect(hnd, n)
	} else {
		err = t.calls.release(hnd, n)
		if err == nil {
			// A waiter that enqueued before this release counted itself
			// in parked first (acquireDirect), so it is seen here.
			t.walkIfParked()
		}
	}
	t.mu.RUnlock()
	return err
}

func (t *ticketHandle) setCapacity(capacity int64) error {
	hnd, err := t.enter("SetCapacity")
	if err != nil {
		return err
	}
	err = t.calls.setCapacity(hnd, capacity)
	if err == nil {
		t.walkIfParked()
	}
	t.mu.RUnlock()
	return err
}

// acquire is Acquire(ctx, n) of either limiter (see Limiter.Acquire).
func (t *ticketHandle) acquire(ctx context.Context, n int64) error {
	done := ctx.Done()
	if done != nil {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
	}
	if t.direct != nil {
		return t.acquireDirect(ctx, done, n)
	}
	nt, err := sharedNotifier()
	if err != nil {
		return err
	}
	tok := nextToken.Add(1)
	hnd, err := t.enter("Acquire")
	if err != nil {
		return err
	}
	now, ticket, err := t.calls.enqueue(hnd, n, nt.h, tok)
	if err != nil || now {
		t.mu.RUnlock()
		return err
	}
	// Registered before the read lock is dropped, so Close (which takes it
	// for writing) finds every outstanding ticket in the registry.
	w := &waiter{owner: t, ticket: ticket, ch: make(chan waitResult, 1)}
	t.parked.Add(1)
	granted := register(tok, w)
	t.mu.RUnlock()
	defer t.parked.Add(-1)
	if !granted {
		select {
		case res := <-w.ch:
			if res == waitClosed {
				return errClosed("Acquire", t.calls.what)
			}
		case <-done:
			t.abandon(tok, w)
			return ctx.Err()
		}
	}
	return t.claim(ticket)
}

// claim takes over the permits of a granted ticket.
func (t *ticketHandle) claim(ticket uint64) error {
	t.mu.RLock()
	if t.h == 0 {
		// Closing the handle dropped (or gave back) the unclaimed grant.
		t.mu.RUnlock()
		return errClosed("Acquire", t.calls.what)
	}
	claimed, err := t.calls.claim(t.h, ticket)
	t.mu.RUnlock()
	if err != nil {
		return err
	}
	if !claimed {
		return &Error{Status: statusInternal,
			Message: "Acquire: ticket " + strconv.FormatUint(ticket, 10) + " was posted but cannot be claimed"}
	}
	return nil
}

// abandon cancels the ticket of a waiter whose context ended. Whatever the
// cancel finds (still queued; granted, with or without the token drained),
// the caller holds nothing afterwards.
func (t *ticketHandle) abandon(tok uint64, w *waiter) {
	t.mu.RLock()
	if t.h == 0 {
		// Close cancelled the ticket and settled the registry entry.
		t.mu.RUnlock()
		return
	}
	// The cancel and the registry update are one step under registry.mu,
	// so neither deliver nor a Close can see the entry in between.
	registry.mu.Lock()
	outcome := t.calls.cancel(t.h, w.ticket)
	if registry.m[tok] == w {
		if outcome == C.BERTH_CANCEL_WAS_GRANTED {
			w.abandoned = true // its token is queued: deliver drops the entry
		} else {
			delete(registry.m, tok)
		}
	}
	// Otherwise the token was delivered already (w.ch holds the grant,
	// which nobody reads) and the cancel gave the permits back.
	registry.mu.Unlock()
	t.mu.RUnlock()
}

// cancelParked cancels every ticket parked on t and wakes its Acquire with
// waitClosed. The caller holds t.mu for writing and frees the handle next.
//
// Cancelling first lets the registry know which tokens are still on their
// way (a ticket granted before the cancel has posted its token), so none is
// left behind in it, and no grant is left unclaimed in the library.
func (t *ticketHandle) cancelParked() {
	registry.mu.Lock()
	for tok, w := range registry.m {
		if w.owner != t || w.abandoned {
			continue
		}
		if t.calls.cancel(t.h, w.ticket) == C.BERTH_CANCEL_WAS_GRANTED {
			w.abandoned = true
		} else {
			delete(registry.m, tok)
		}
		w.ch <- waitClosed
	}
	registry.mu.Unlock()
}
