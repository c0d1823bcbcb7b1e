//go:build cgo

package berth

// #include "bg.h"
import "C"

import "sync"

// guard is a library handle and the lock that keeps Close from freeing it
// under a call: calls hold mu for reading, Close for writing. h is 0 once
// closed. Every handle type embeds one.
type guard struct {
	mu sync.RWMutex
	h  C.uintptr_t
}

// lock read-locks g and returns its handle; after Close it returns an error
// wrapping ErrClosed (op: the method; what: the kind of handle) and holds
// nothing. On success the caller calls g.mu.RUnlock() when the call is done.
func (g *guard) lock(op, what string) (C.uintptr_t, error) {
	g.mu.RLock()
	if g.h == 0 {
		g.mu.RUnlock()
		return 0, errClosed(op, what)
	}
	return g.h, nil
}

// enter is guard.lock for each handle type, nil receivers included (a nil
// handle is as closed as a closed one).

func (e *Engine) enter(op string) (C.uintptr_t, error) {
	if e == nil {
		return 0, errClosed(op, "engine")
	}
	return e.lock(op, "engine")
}

func (c *Cache) enter(op string) (C.uintptr_t, error) {
	if c == nil {
		return 0, errClosed(op, "cache")
	}
	return c.lock(op, "cache")
}

func (s *Selector) enter(op string) (C.uintptr_t, error) {
	if s == nil {
		return 0, errClosed(op, "selector")
	}
	return s.lock(op, "selector")
}

func (b *Bucket) enter(op string) (C.uintptr_t, error) {
	if b == nil {
		return 0, errClosed(op, "bucket")
	}
	return b.lock(op, "bucket")
}

func (t *ticketHandle) enter(op string) (C.uintptr_t, error) {
	return t.lock(op, t.calls.what)
}

func (l *Limiter) enter(op string) (C.uintptr_t, error) {
	if l == nil {
		return 0, errClosed(op, limiterCalls.what)
	}
	return l.ticketHandle.enter(op)
}

func (l *SharedLimiter) enter(op string) (C.uintptr_t, error) {
	if l == nil {
		return 0, errClosed(op, sharedLimiterCalls.what)
	}
	return l.ticketHandle.enter(op)
}
