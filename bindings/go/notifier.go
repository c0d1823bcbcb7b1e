//go:build cgo

package berth

/*
#cgo noescape bg_notifier_new
#cgo nocallback bg_notifier_new
#cgo noescape bg_notifier_drain
#cgo nocallback bg_notifier_drain

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "bg.h"

// Creates a notifier and a close-on-exec duplicate of its fd. The duplicate
// is for the Go runtime poller: os.NewFile takes ownership of the fd it is
// given (closing it when the File is closed or collected), while berth.h
// forbids closing or reading the notifier's own fd. Both fds name the same
// eventfd, so readiness is the same; Go never reads either, it only waits.
static berth_status bg_notifier_new(uintptr_t* out, int* out_fd, bg_res* res) {
  berth_notifier* n = NULL;
  berth_status st = berth_notifier_new(&n);
  if (st != BERTH_OK) return bg_done(st, res);
  int fd = -1;
  st = berth_notifier_fd(&fd, n);
  if (st != BERTH_OK) {
    st = bg_done(st, res);
    berth_notifier_free(n);
    return st;
  }
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    char m[96];
    int len = snprintf(m, sizeof m, "go binding: duplicating the notifier fd failed (errno %d)", errno);
    bg_set_msg(res, m, len > 0 ? (size_t)len : 0);
    berth_notifier_free(n);
    return BERTH_ERR_INTERNAL;
  }
  *out = (uintptr_t)n;
  *out_fd = dup;
  return BERTH_OK;
}

static berth_status bg_notifier_drain(bg_res* res, uintptr_t n, uint64_t* tokens, size_t cap) {
  return bg_done(berth_notifier_drain(&res->count, BG_NOTIFIER(n), tokens, cap), res);
}
*/
import "C"

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// How asynchronous SharedLimiter waits reach goroutines. (A Limiter's do
// not come through here: the call that grants them hands them over, see
// direct.go.)
//
// The process has one berth_notifier, made on the first Acquire of a
// SharedLimiter and never freed (the limiters keep it alive while they may
// post to it anyway). Every waiting Acquire asks for its permits with a
// process-unique token and parks on a channel registered under that token;
// a grant posts the token to the notifier, and the dispatcher goroutine
// drains it and resolves the channel. One notifier for the process rather
// than one per limiter: one fd and one goroutine however many limiters
// there are, and the dispatcher references no limiter, so an abandoned one
// can still be collected (and freed by its cleanup). The wait itself
// (register, park, claim or cancel) is ticketHandle.acquire in async.go.
//
// The dispatcher is woken by the runtime poller when the eventfd becomes
// readable. It waits through os.File's RawConn.Read: the goroutine is parked
// in the netpoller (epoll) like a network read, so no OS thread is blocked
// for it. The alternative, poll(2) on a dedicated goroutine, would pin an OS
// thread in a blocking syscall for the life of the process and wake through
// a thread switch; it is kept only as the fallback should the runtime poller
// refuse the fd. A SharedLimiter's grants are posted by a thread of the
// handle some time after the call that freed the permits (possibly in
// another process), so only the dispatcher can see them.
//
// A token may be drained before its waiter has registered (the grant can
// happen between the acquire_async call returning the ticket and the
// registration); it is then parked in early, and the registration finds it.

// drainCap is how many tokens one berth_notifier_drain takes (a Go array on
// the stack of the drainer).
const drainCap = 32

type waitResult int8

const (
	waitGranted waitResult = iota + 1 // the ticket is granted: claim it
	waitClosed                        // the limiter was closed: nothing is held
)

// waiter is one Acquire parked on a ticket.
type waiter struct {
	owner  *ticketHandle // of the Limiter or SharedLimiter
	ticket uint64
	// ch receives at most one waitResult: deliver and Close only
	// send to a registered, non-abandoned waiter, and both remove or
	// abandon it in the same critical section.
	ch chan waitResult
	// abandoned (guarded by registry.mu): the ticket was cancelled after its
	// grant posted the token, so the token is still on its way; the entry
	// stays until the token is drained, then goes without a send.
	abandoned bool
}

var registry struct {
	mu    sync.Mutex
	m     map[uint64]*waiter  // token -> registered waiter
	early map[uint64]struct{} // tokens drained before their waiter registered
}

var nextToken atomic.Uint64

type notifier struct {
	h  C.uintptr_t // berth_notifier*; never freed
	fd int         // our duplicate of its fd (owned by f)
	f  *os.File
}

var notif struct {
	mu sync.Mutex
	p  atomic.Pointer[notifier]
}

// sharedNotifier returns the process's notifier, making it (and starting its
// dispatcher) on first use. A failure is returned and retried next time.
func sharedNotifier() (*notifier, error) {
	if n := notif.p.Load(); n != nil {
		return n, nil
	}
	notif.mu.Lock()
	defer notif.mu.Unlock()
	if n := notif.p.Load(); n != nil {
		return n, nil
	}
	var h C.uintptr_t
	var fd C.int
	var r C.bg_res
	if st := C.bg_notifier_new(&h, &fd, &r); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	registry.mu.Lock()
	if registry.m == nil {
		registry.m = make(map[uint64]*waiter)
		registry.early = make(map[uint64]struct{})
	}
	registry.mu.Unlock()
	n := &notifier{h: h, fd: int(fd)}
	// The eventfd is non-blocking, so os.NewFile registers it with the
	// runtime poller. n.f must never have Fd() called: that would put the
	// shared open file description into blocking mode, and the library's own
	// read in berth_notifier_drain would then block.
	n.f = os.NewFile(uintptr(fd), "berth-notifier")
	go n.dispatch()
	notif.p.Store(n)
	return n, nil
}

// dispatch drains the notifier whenever its fd becomes readable, for the
// life of the process.
func (n *notifier) dispatch() {
	if rc, err := n.f.SyscallConn(); err == nil {
		// The function runs on every readiness: it drains and returns false,
		// which parks the goroutine in the netpoller until the next one. The
		// poller's readiness is a latch, so a post that lands between the
		// drain and the park is not lost: the wait returns at once.
		err = rc.Read(func(uintptr) bool {
			n.drain()
			return false
		})
		_ = err // only if the fd cannot be polled; fall back below
	}
	n.dispatchPoll()
}

// dispatchPoll is the fallback dispatcher: it blocks its thread in ppoll(2)
// on the fd, then drains.
func (n *notifier) dispatchPoll() {
	type pollFd struct {
		fd      int32
		events  int16
		revents int16
	}
	const pollIn = 0x1
	for {
		p := pollFd{fd: int32(n.fd), events: pollIn}
		_, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, 0, 0, 0, 0)
		if errno != 0 && errno != syscall.EINTR {
			panic("berth: polling the limiter notifier failed: " + errno.Error())
		}
		n.drain()
	}
}

// drain takes every completed token and resolves its waiter.
func (n *notifier) drain() {
	var toks [drainCap]C.uint64_t
	for {
		var r C.bg_res
		st := C.bg_notifier_drain(&r, n.h, &toks[0], drainCap)
		if st != C.BERTH_OK {
			// Only a NULL argument fails, and none is ever passed.
			panic(resError(st, &r))
		}
		cnt := int(r.count)
		if cnt > 0 {
			deliver(toks[:cnt])
		}
		if cnt < drainCap {
			return
		}
	}
}

// drainQuiet drops every token queued on the notifier nt (the quiet
// notifier of direct.go, whose tokens nobody waits for).
func drainQuiet(nt C.uintptr_t) {
	var toks [drainCap]C.uint64_t
	for {
		var r C.bg_res
		if st := C.bg_notifier_drain(&r, nt, &toks[0], drainCap); st != C.BERTH_OK || int(r.count) < drainCap {
			return
		}
	}
}

func deliver(toks []C.uint64_t) {
	registry.mu.Lock()
	for _, t := range toks {
		tok := uint64(t)
		if w, ok := registry.m[tok]; ok {
			delete(registry.m, tok)
			if !w.abandoned {
				w.ch <- waitGranted
			}
		} else {
			registry.early[tok] = struct{}{}
		}
	}
	registry.mu.Unlock()
}

// register files w under tok; granted reports that tok was drained already
// (w is then not filed: claim at once).
func register(tok uint64, w *waiter) (granted bool) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if _, ok := registry.early[tok]; ok {
		delete(registry.early, tok)
		return true
	}
	registry.m[tok] = w
	return false
}
