//go:build cgo

package berth

/*
#cgo noescape bg_quiet_notifier_new
#cgo nocallback bg_quiet_notifier_new

#include "bg.h"

static berth_status bg_quiet_notifier_new(uintptr_t* out, bg_res* res) {
  berth_notifier* n = NULL;
  berth_status st = berth_notifier_new(&n);
  *out = (uintptr_t)n;
  return bg_done(st, res);
}
*/
import "C"

import (
	"context"
	"slices"
	"sync"
)

// Direct delivery: how a waiting Acquire of an in-process Limiter learns of
// its grant without a syscall.
//
// Every call that can grant a Limiter's waiters (Release, SetCapacity, the
// cancel of an abandoned Acquire) is made by this package, and the library
// grants inside that call. So the caller, right after it, claims
// on the waiters' behalf: it walks the Limiter's parked Acquires in ticket
// order and claims each until a claim fails. The library grants strictly
// from the head of its FIFO queue, so the granted tickets are a prefix of
// the parked ones and the first failure ends the walk. The claimer then
// hands the permits to the goroutine over its channel: no eventfd write, no
// read, no netpoller round trip (which, with every P busy, is only looked at
// when one runs out of work or by sysmon up to 10 ms later), one cgo call
// per grant (and one for the first ungranted waiter).
//
// The order and the grants stay the library's: this only delivers them.
// Acquires enqueue under directQueue.mu, so the parked slice is in ticket
// order, and a walk (under the same lock) after a granting call always
// finds the waiters that call granted.
//
// The tickets still name a notifier, whose tokens nobody needs: the quiet
// notifier, which no poller watches. Its eventfd is written only when it
// goes from drained to non-empty, so it is drained (tokens dropped) once
// every quietDrainEvery grants rather than after each one.

const quietDrainEvery = 64

// releaseClaimMax is how many parked tickets one Release tries to claim in
// the cgo call that releases (the walk goes on if all are granted).
const releaseClaimMax = 8

var quiet struct {
	mu sync.Mutex
	h  C.uintptr_t // berth_notifier*, never freed; 0 until made
}

// quietNotifier returns the process's quiet notifier, making it on first
// use. A failure is returned and retried next time.
func quietNotifier() (C.uintptr_t, error) {
	quiet.mu.Lock()
	defer quiet.mu.Unlock()
	if quiet.h != 0 {
		return quiet.h, nil
	}
	var h C.uintptr_t
	var r C.bg_res
	if st := C.bg_quiet_notifier_new(&h, &r); st != C.BERTH_OK {
		return 0, resError(st, &r)
	}
	quiet.h = h
	return h, nil
}

// directQueue holds the parked Acquires of one Limiter.
type directQueue struct {
	mu     sync.Mutex
	parked []*directWaiter // ticket order
	grants int             // tokens posted to the quiet notifier since this queue last drained it
	nt     C.uintptr_t     // the quiet notifier, once an Acquire has needed it
}

type directWaiter struct {
	ticket uint64
	n      int64
	// ch receives one waitResult from the goroutine that removes the waiter
	// from parked (under directQueue.mu): waitGranted with the permits
	// already claimed, or waitClosed holding nothing.
	ch chan waitResult
}

// acquireDirect is acquire for a Limiter (see Limiter.Acquire), once acquire
// has seen that ctx (whose Done channel is done) is not done already.
func (t *ticketHandle) acquireDirect(ctx context.Context, done <-chan struct{}, n int64) error {
	q := t.direct
	hnd, err := t.enter("Acquire")
	if err != nil {
		return err
	}
	q.mu.Lock()
	if q.nt == 0 {
		if q.nt, err = quietNotifier(); err != nil {
			q.mu.Unlock()
			t.mu.RUnlock()
			return err
		}
	}
	// Counted before the library can queue the ticket: a Release that grants
	// it then sees parked > 0 and walks (see release).
	t.parked.Add(1)
	now, ticket, err := t.calls.enqueue(hnd, n, q.nt, 0)
	if err != nil || now {
		t.parked.Add(-1)
		q.mu.Unlock()
		t.mu.RUnlock()
		return err
	}
	w := directWaiters.Get().(*directWaiter)
	w.ticket, w.n = ticket, n
	q.parked = append(q.parked, w)
	q.mu.Unlock()
	t.mu.RUnlock()
	defer t.parked.Add(-1)
	select {
	case res := <-w.ch:
		directWaiters.Put(w) // its channel is empty again
		if res == waitClosed {
			return errClosed("Acquire", t.calls.what)
		}
		return nil // claimed for us
	case <-done:
		return t.abandonDirect(ctx, w)
	}
}

// directWaiters recycles waiters with their channels: a contended Acquire
// then allocates nothing. Only a waiter whose channel was emptied goes back.
var directWaiters = sync.Pool{New: func() any { return &directWaiter{ch: make(chan waitResult, 1)} }}

// abandonDirect settles a waiter whose context ended: it leaves holding
// nothing, however the end raced the grant.
func (t *ticketHandle) abandonDirect(ctx context.Context, w *directWaiter) error {
	q := t.direct
	t.mu.RLock()
	if t.h == 0 {
		// Close cancelled the ticket (w.ch has waitClosed, or will not be read).
		t.mu.RUnlock()
		return ctx.Err()
	}
	q.mu.Lock()
	if i := slices.Index(q.parked, w); i >= 0 {
		q.parked = slices.Delete(q.parked, i, i+1)
		if t.calls.cancel(t.h, w.ticket) == C.BERTH_CANCEL_WAS_GRANTED {
			q.grants++ // its token went to the quiet notifier
		}
	} else {
		// A walk claimed it first: the permits are ours; give them back.
		<-w.ch
		_ = t.calls.release(t.h, w.n)
	}
	// Leaving the queue (or giving permits back) may let those behind in.
	t.walkLocked()
	q.mu.Unlock()
	t.mu.RUnlock()
	directWaiters.Put(w) // out of parked, channel empty
	return ctx.Err()
}

// walkIfParked claims, after a call that may have granted, for the parked
// Acquires the library granted. The caller holds t.mu for reading.
func (t *ticketHandle) walkIfParked() {
	if t.direct == nil || t.parked.Load() == 0 {
		return
	}
	t.direct.mu.Lock()
	t.walkLocked()
	t.direct.mu.Unlock()
}

// walkLocked: see "Direct delivery". The caller holds t.mu for reading and
// t.direct.mu.
func (t *ticketHandle) walkLocked() {
	q := t.direct
	k := 0
	for k < len(q.parked) {
		claimed, err := t.calls.claim(t.h, q.parked[k].ticket)
		if err != nil || !claimed {
			break
		}
		k++
	}
	t.deliverLocked(k)
}

// releaseDirect is Release with waiters parked: the release and the claims
// for the first few parked waiters in one cgo call, then the walk goes on
// if all of those were granted.
func (t *ticketHandle) releaseDirect(hnd C.uintptr_t, n int64) error {
	q := t.direct
	q.mu.Lock()
	defer q.mu.Unlock()
	var buf [releaseClaimMax]uint64
	k := min(len(q.parked), len(buf))
	for i := range k {
		buf[i] = q.parked[i].ticket
	}
	claimed, err := t.calls.releaseClaim(hnd, n, buf, k)
	t.deliverLocked(claimed)
	if err == nil && claimed == k && k > 0 {
		t.walkLocked()
	}
	return err
}

// deliverLocked hands the first k parked waiters, whose tickets were just
// claimed, their permits. The caller holds t.direct.mu.
func (t *ticketHandle) deliverLocked(k int) {
	q := t.direct
	if k == 0 {
		return
	}
	for i := range k {
		q.parked[i].ch <- waitGranted
		q.parked[i] = nil
	}
	q.parked = slices.Delete(q.parked, 0, k)
	q.grants += k
	if q.grants >= quietDrainEvery {
		q.grants = 0
		drainQuiet(q.nt)
	}
}

// cancelDirect cancels every parked Acquire of t and wakes it with
// waitClosed. The caller holds t.mu for writing and frees the handle next.
func (t *ticketHandle) cancelDirect() {
	q := t.direct
	q.mu.Lock()
	for _, w := range q.parked {
		t.calls.cancel(t.h, w.ticket) // waiting or granted: either way nothing is held after
		w.ch <- waitClosed
	}
	q.parked = nil
	q.mu.Unlock()
}
