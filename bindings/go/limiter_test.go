//go:build cgo

package berth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newLimiter(t testing.TB, capacity int64) *Limiter {
	t.Helper()
	l, err := NewLimiter(capacity)
	if err != nil {
		t.Fatalf("NewLimiter(%d): %v", capacity, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func limStats(t testing.TB, l *Limiter) LimiterStats {
	t.Helper()
	s, err := l.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func mustTry(t testing.TB, l *Limiter, n int64, wantOK bool, want Refusal) {
	t.Helper()
	ok, reason, err := l.TryAcquire(n)
	if err != nil || ok != wantOK || reason != want {
		t.Fatalf("TryAcquire(%d) = %v, %v, %v; want %v, %v, nil", n, ok, reason, err, wantOK, want)
	}
}

func mustRelease(t testing.TB, l *Limiter, n int64) {
	t.Helper()
	if err := l.Release(n); err != nil {
		t.Fatalf("Release(%d): %v", n, err)
	}
}

// waitUntil polls cond until it holds, failing after 10 s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// acquireAsync starts Acquire(ctx, n) in a goroutine; its result arrives on
// the returned channel.
func acquireAsync(l *Limiter, ctx context.Context, n int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- l.Acquire(ctx, n) }()
	return ch
}

// waitQueued waits until the limiter has `waiting` waiters queued.
func waitQueued(t testing.TB, l *Limiter, waiting int64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d waiters are queued", waiting), func() bool { return limStats(t, l).Waiting == waiting })
}

func result(t testing.TB, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Acquire did not return", what)
		return nil
	}
}

func notReturned(t testing.TB, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s: Acquire returned %v; want it still waiting", what, err)
	case <-time.After(20 * time.Millisecond):
	}
}

// registryEmpty waits until no waiter and no early token is left in the
// registry (abandoned entries leave when their token is drained).
func registryEmpty(t testing.TB) {
	t.Helper()
	waitUntil(t, "the waiter registry is empty", func() bool {
		if n := notif.p.Load(); n != nil {
			n.drain()
		}
		registry.mu.Lock()
		defer registry.mu.Unlock()
		return len(registry.m) == 0 && len(registry.early) == 0
	})
}

func TestLimiter_TryAcquireTakesUpToTheCapacityThenRefuses(t *testing.T) {
	l := newLimiter(t, 3)
	mustTry(t, l, 2, true, NotRefused)
	mustTry(t, l, 2, false, RefusedAtCapacity)
	mustTry(t, l, 1, true, NotRefused)
	mustTry(t, l, 1, false, RefusedAtCapacity)
	s := limStats(t, l)
	if s.Capacity != 3 || s.InUse != 3 || s.Granted != 2 || s.Rejected != 2 || s.Waiting != 0 {
		t.Fatalf("stats %+v; want capacity 3, in use 3, granted 2, rejected 2", s)
	}
	mustRelease(t, l, 2)
	mustTry(t, l, 2, true, NotRefused)
	mustRelease(t, l, 3)
	if s := limStats(t, l); s.InUse != 0 {
		t.Fatalf("in use %d after releasing everything", s.InUse)
	}
}

func TestLimiter_AcquireUncontendedGrantsAtOnce(t *testing.T) {
	l := newLimiter(t, 2)
	ctx := context.Background()
	for range 100 {
		if err := l.Acquire(ctx, 2); err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		if s := limStats(t, l); s.InUse != 2 {
			t.Fatalf("in use %d after Acquire(2)", s.InUse)
		}
		mustRelease(t, l, 2)
	}
	if s := limStats(t, l); s.Granted != 100 || s.InUse != 0 {
		t.Fatalf("stats %+v; want 100 granted, none in use", s)
	}
}

func TestLimiter_BadCountsAreInvalidArgumentAndChangeNothing(t *testing.T) {
	if _, err := NewLimiter(0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewLimiter(0): %v; want ErrInvalidArgument", err)
	}
	if _, err := NewLimiter(-5); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("NewLimiter(-5): %v; want ErrInvalidArgument", err)
	}
	l := newLimiter(t, 4)
	mustTry(t, l, 2, true, NotRefused)
	ctx := context.Background()
	for _, n := range []int64{0, -1, 5} {
		if _, _, err := l.TryAcquire(n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("TryAcquire(%d): %v; want ErrInvalidArgument", n, err)
		}
		if err := l.Acquire(ctx, n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Acquire(%d): %v; want ErrInvalidArgument", n, err)
		}
	}
	// Releasing more than is held.
	err := l.Release(3)
	wantStatus(t, err, ErrInvalidArgument)
	var be *Error
	if !errors.As(err, &be) || be.Message == "" {
		t.Errorf("Release(3) error %#v; want the library's message", err)
	}
	if err := l.Release(0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Release(0): %v; want ErrInvalidArgument", err)
	}
	if err := l.SetCapacity(0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SetCapacity(0): %v; want ErrInvalidArgument", err)
	}
	if s := limStats(t, l); s.Capacity != 4 || s.InUse != 2 || s.Waiting != 0 {
		t.Fatalf("stats %+v after bad calls; want capacity 4, 2 in use, nobody waiting", s)
	}
	mustRelease(t, l, 2)
}

func TestLimiter_FIFOBigWaiterAtTheHeadIsNotStarved(t *testing.T) {
	l := newLimiter(t, 4)
	ctx := context.Background()
	mustTry(t, l, 3, true, NotRefused)
	big := acquireAsync(l, ctx, 4)
	waitQueued(t, l, 1)
	// One permit is free, but the big waiter is first: nobody barges.
	mustTry(t, l, 1, false, RefusedWaitersQueued)
	small := acquireAsync(l, ctx, 1)
	waitQueued(t, l, 2)
	// Freeing 2 of 3 would let the small one in if it could pass the big one.
	mustRelease(t, l, 2)
	notReturned(t, big, "big after 2 released")
	notReturned(t, small, "small queued behind big")
	mustRelease(t, l, 1)
	if err := result(t, big, "big"); err != nil {
		t.Fatalf("big Acquire(4): %v", err)
	}
	if s := limStats(t, l); s.InUse != 4 || s.Waiting != 1 || s.WaitingPermits != 1 {
		t.Fatalf("stats %+v; want the big waiter holding 4 and the small one waiting", s)
	}
	notReturned(t, small, "small while big holds everything")
	mustRelease(t, l, 4)
	if err := result(t, small, "small"); err != nil {
		t.Fatalf("small Acquire(1): %v", err)
	}
	mustRelease(t, l, 1)
	if s := limStats(t, l); s.InUse != 0 || s.Waiting != 0 {
		t.Fatalf("stats %+v at the end", s)
	}
}

func TestLimiter_WaitersAreGrantedInArrivalOrder(t *testing.T) {
	l := newLimiter(t, 1)
	ctx := context.Background()
	mustTry(t, l, 1, true, NotRefused)
	const n = 8
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Acquire(ctx, 1); err != nil {
				t.Errorf("Acquire %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := l.Release(1); err != nil {
				t.Errorf("Release %d: %v", i, err)
			}
		}()
		waitQueued(t, l, int64(i+1)) // queue them one after another
	}
	mustRelease(t, l, 1)
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("granted in order %v; want 0..%d", order, n-1)
		}
	}
	if len(order) != n {
		t.Fatalf("%d of %d waiters granted", len(order), n)
	}
}

func TestLimiter_LoweringTheCapacityNeverRevokes(t *testing.T) {
	l := newLimiter(t, 4)
	mustTry(t, l, 4, true, NotRefused)
	if err := l.SetCapacity(2); err != nil {
		t.Fatal(err)
	}
	if s := limStats(t, l); s.Capacity != 2 || s.InUse != 4 {
		t.Fatalf("stats %+v after lowering to 2; want 4 still in use", s)
	}
	mustRelease(t, l, 3) // 1 in use
	mustTry(t, l, 1, true, NotRefused)
	mustTry(t, l, 1, false, RefusedAtCapacity)
	mustRelease(t, l, 2)

	// A waiter asking for more than a lowered capacity waits until it is
	// raised again.
	if err := l.SetCapacity(4); err != nil {
		t.Fatal(err)
	}
	mustTry(t, l, 4, true, NotRefused)
	w := acquireAsync(l, context.Background(), 3)
	waitQueued(t, l, 1)
	if err := l.SetCapacity(2); err != nil {
		t.Fatal(err)
	}
	mustRelease(t, l, 4)
	notReturned(t, w, "waiter for 3 under capacity 2")
	if s := limStats(t, l); s.InUse != 0 || s.Waiting != 1 {
		t.Fatalf("stats %+v; want nothing in use and the waiter queued", s)
	}
	if err := l.SetCapacity(3); err != nil {
		t.Fatal(err)
	}
	if err := result(t, w, "waiter after raising to 3"); err != nil {
		t.Fatalf("Acquire(3): %v", err)
	}
	mustRelease(t, l, 3)
}

func TestLimiter_CancelledAcquireHoldsNothingAndLetsOthersThrough(t *testing.T) {
	l := newLimiter(t, 4)
	mustTry(t, l, 2, true, NotRefused)
	ctx, cancel := context.WithCancel(context.Background())
	big := acquireAsync(l, ctx, 4)
	waitQueued(t, l, 1)
	small := acquireAsync(l, context.Background(), 2)
	waitQueued(t, l, 2)
	notReturned(t, small, "small behind big")
	cancel()
	if err := result(t, big, "cancelled big"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v; want context.Canceled", err)
	}
	// The big waiter leaving the head lets the small one (which fits) in.
	if err := result(t, small, "small"); err != nil {
		t.Fatalf("small Acquire(2): %v", err)
	}
	s := limStats(t, l)
	if s.InUse != 4 || s.Waiting != 0 || s.Cancelled != 1 {
		t.Fatalf("stats %+v; want 4 in use (2 + small), nobody waiting, 1 cancelled", s)
	}
	mustRelease(t, l, 4)
	registryEmpty(t)
}

func TestLimiter_AcquireDeadlineReturnsDeadlineExceeded(t *testing.T) {
	l := newLimiter(t, 1)
	mustTry(t, l, 1, true, NotRefused)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Acquire(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline: %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("Acquire returned after %v; the deadline was 20ms", d)
	}
	if s := limStats(t, l); s.InUse != 1 || s.Waiting != 0 {
		t.Fatalf("stats %+v; want the original holder only", s)
	}
	mustRelease(t, l, 1)
}

func TestLimiter_AcquireWithAnEndedContextFailsEvenIfFree(t *testing.T) {
	l := newLimiter(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Acquire(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context: %v; want context.Canceled", err)
	}
	if s := limStats(t, l); s.InUse != 0 || s.Granted != 0 {
		t.Fatalf("stats %+v; want nothing taken", s)
	}
}

// TestLimiter_GrantsAreHandedOverByTheGrantingCall: a Limiter's waits take
// no process notifier token and never enter the registry; the Release that
// grants claims for the waiter (so Stats shows the permits held, nothing
// unclaimed), in ticket order, weighted waiters included.
func TestLimiter_GrantsAreHandedOverByTheGrantingCall(t *testing.T) {
	l := newLimiter(t, 3)
	ctx := context.Background()
	mustTry(t, l, 3, true, NotRefused)
	tok := nextToken.Load()
	big := acquireAsync(l, ctx, 2)
	waitQueued(t, l, 1)
	small := acquireAsync(l, ctx, 1)
	waitQueued(t, l, 2)
	registry.mu.Lock()
	inRegistry := len(registry.m)
	registry.mu.Unlock()
	if inRegistry != 0 || nextToken.Load() != tok {
		t.Fatalf("Limiter waits used the process notifier: %d registered, %d tokens taken", inRegistry, nextToken.Load()-tok)
	}
	mustRelease(t, l, 1) // one free: the head wants two, and nobody barges past it
	notReturned(t, big, "the 2-permit head with one free")
	notReturned(t, small, "the 1-permit waiter behind the head")
	mustRelease(t, l, 1)
	if err := result(t, big, "big"); err != nil {
		t.Fatal(err)
	}
	if s := limStats(t, l); s.InUse != 3 || s.Waiting != 1 {
		t.Fatalf("after the head's grant: %+v; want 3 in use (claimed), 1 waiting", s)
	}
	notReturned(t, small, "the 1-permit waiter with none free")
	mustRelease(t, l, 2)
	if err := result(t, small, "small"); err != nil {
		t.Fatal(err)
	}
	if s := limStats(t, l); s.InUse != 2 || s.Waiting != 0 {
		t.Fatalf("end: %+v; want 2 in use, none waiting", s)
	}
	mustRelease(t, l, 2)
}

func TestLimiter_LimitersShareTheNotifierButNotTheirWaiters(t *testing.T) {
	a := newLimiter(t, 1)
	b := newLimiter(t, 1)
	ctx := context.Background()
	mustTry(t, a, 1, true, NotRefused)
	mustTry(t, b, 1, true, NotRefused)
	wa := acquireAsync(a, ctx, 1)
	wb := acquireAsync(b, ctx, 1)
	waitQueued(t, a, 1)
	waitQueued(t, b, 1)
	mustRelease(t, b, 1)
	if err := result(t, wb, "b"); err != nil {
		t.Fatalf("b: %v", err)
	}
	notReturned(t, wa, "a while only b released")
	mustRelease(t, a, 1)
	if err := result(t, wa, "a"); err != nil {
		t.Fatalf("a: %v", err)
	}
	mustRelease(t, a, 1)
	mustRelease(t, b, 1)
}

func TestLimiter_CloseWakesWaitersWithErrClosed(t *testing.T) {
	l, err := NewLimiter(2)
	if err != nil {
		t.Fatal(err)
	}
	mustTry(t, l, 2, true, NotRefused)
	var ws []<-chan error
	for range 5 {
		ws = append(ws, acquireAsync(l, context.Background(), 1))
	}
	waitQueued(t, l, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		if err := result(t, w, fmt.Sprintf("waiter %d", i)); !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter %d after Close: %v; want ErrClosed", i, err)
		}
	}
	registryEmpty(t)
}

func TestLimiter_ClosedEveryMethodReturnsErrClosed(t *testing.T) {
	l, err := NewLimiter(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := l.TryAcquire(1); !errors.Is(err, ErrClosed) {
		t.Errorf("TryAcquire: %v", err)
	}
	if err := l.Acquire(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire: %v", err)
	}
	if err := l.Release(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Release: %v", err)
	}
	if err := l.SetCapacity(2); !errors.Is(err, ErrClosed) {
		t.Errorf("SetCapacity: %v", err)
	}
	if _, err := l.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats: %v", err)
	}
	var nl *Limiter
	if err := nl.Acquire(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("nil Acquire: %v", err)
	}
	if err := nl.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
}

// TestLimiter_CancelRacingTheGrantNeverLeaks releases the only permit at the
// moment the waiter's context is cancelled, many times, so the cancel lands
// before the grant, between the grant and the delivery, and after it.
func TestLimiter_CancelRacingTheGrantNeverLeaks(t *testing.T) {
	l := newLimiter(t, 1)
	rounds := 2000
	if testing.Short() {
		rounds = 200
	}
	var won, lost int
	for i := range rounds {
		mustTry(t, l, 1, true, NotRefused)
		ctx, cancel := context.WithCancel(context.Background())
		w := acquireAsync(l, ctx, 1)
		waitQueued(t, l, 1)
		switch i % 3 {
		case 0: // cancel, then release at once (the waiter may not have run)
			cancel()
			mustRelease(t, l, 1)
		case 1: // release (which grants and delivers), then cancel
			mustRelease(t, l, 1)
			cancel()
		default: // both at once from two goroutines
			start := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); <-start; cancel() }()
			go func() {
				defer wg.Done()
				<-start
				if err := l.Release(1); err != nil {
					t.Errorf("Release: %v", err)
				}
			}()
			close(start)
			wg.Wait()
		}
		switch err := result(t, w, fmt.Sprintf("round %d", i)); {
		case err == nil:
			won++
			mustRelease(t, l, 1)
		case errors.Is(err, context.Canceled):
			lost++
		default:
			t.Fatalf("round %d: Acquire: %v", i, err)
		}
		if s := limStats(t, l); s.InUse != 0 || s.Waiting != 0 {
			t.Fatalf("round %d: stats %+v; a permit leaked", i, s)
		}
	}
	t.Logf("%d rounds: the grant won %d, the cancel %d", rounds, won, lost)
	if lost == 0 || won == 0 {
		t.Fatalf("in %d rounds the grant won %d times and the cancel %d: the race was not exercised", rounds, won, lost)
	}
	registryEmpty(t)
}

// TestLimiter_RandomCancellationsLeakNoPermit runs many goroutines that
// acquire random weights with contexts cancelled at random moments or short
// deadlines, hold briefly and release, while the capacity changes. No moment
// may see more permits held than the largest capacity, and at the end
// nothing is held, nothing waits, and the registry is empty.
func TestLimiter_RandomCancellationsLeakNoPermit(t *testing.T) {
	const (
		maxCap     = 6
		goroutines = 32
	)
	perG := 400
	if testing.Short() {
		perG = 50
	}
	l := newLimiter(t, maxCap)
	var (
		held              atomic.Int64
		ok, cancelled, to atomic.Int64
		wg                sync.WaitGroup
		stop              = make(chan struct{})
		capDone           = make(chan struct{})
		firstErr          atomic.Pointer[error]
	)
	// Goroutines report through firstErr, not t, so that a stuck run can
	// fail the test without them failing it again after it has ended.
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	// The capacity moves between 3 and maxCap (never below the largest
	// weight, 3, so no Acquire is invalid).
	go func() {
		defer close(capDone)
		r := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(r.IntN(500)) * time.Microsecond):
				if err := l.SetCapacity(int64(3 + r.IntN(maxCap-2))); err != nil {
					fail(fmt.Errorf("SetCapacity: %w", err))
				}
			}
		}
	}()
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 99))
			for range perG {
				n := int64(1 + r.IntN(3))
				var ctx context.Context
				var cancel context.CancelFunc
				switch r.IntN(3) {
				case 0: // a short deadline
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(r.IntN(300))*time.Microsecond)
				case 1: // cancelled by someone else at a random moment
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(r.IntN(300))*time.Microsecond, cancel)
				default: // no deadline
					ctx, cancel = context.WithCancel(context.Background())
				}
				err := l.Acquire(ctx, n)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
					if h := held.Add(n); h > maxCap {
						fail(fmt.Errorf("%d permits held at once; capacity is at most %d", h, maxCap))
					}
					if r.IntN(2) == 0 {
						time.Sleep(time.Duration(r.IntN(50)) * time.Microsecond)
					}
					held.Add(-n)
					if err := l.Release(n); err != nil {
						fail(fmt.Errorf("Release(%d): %w", n, err))
						return
					}
				case errors.Is(err, context.Canceled):
					cancelled.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					to.Add(1)
				default:
					fail(fmt.Errorf("Acquire(%d): %w", n, err))
					return
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(60 * time.Second):
		close(stop)
		<-capDone
		t.Fatalf("goroutines still acquiring after 60s (a waiter is stuck); stats %+v", limStats(t, l))
	}
	close(stop)
	<-capDone
	if err := firstErr.Load(); err != nil {
		t.Fatal(*err)
	}
	s := limStats(t, l)
	t.Logf("%d acquired, %d cancelled, %d past their deadline; stats %+v", ok.Load(), cancelled.Load(), to.Load(), s)
	if s.InUse != 0 || s.Waiting != 0 || s.WaitingPermits != 0 {
		t.Fatalf("stats %+v at the end; want nothing in use or waiting", s)
	}
	if ok.Load() == 0 || cancelled.Load()+to.Load() == 0 {
		t.Fatal("the run did not both acquire and cancel")
	}
	if s.Granted < uint64(ok.Load()) {
		t.Fatalf("library granted %d < %d successful Acquires", s.Granted, ok.Load())
	}
	registryEmpty(t)
}

// TestLimiter_CloseWhileCallsAreInFlight closes limiters under goroutines
// that acquire, release and wait: every call returns either normally or with
// ErrClosed (or its context's error), and none hangs.
func TestLimiter_CloseWhileCallsAreInFlight(t *testing.T) {
	for round := range 20 {
		l, err := NewLimiter(2)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(g*50)*time.Microsecond)
					err := l.Acquire(ctx, 1)
					cancel()
					if errors.Is(err, ErrClosed) {
						return
					}
					if err == nil {
						if err := l.Release(1); err != nil {
							if errors.Is(err, ErrClosed) {
								return
							}
							t.Errorf("Release: %v", err)
							return
						}
					} else if !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Acquire: %v", err)
						return
					} else if _, err := l.Stats(); errors.Is(err, ErrClosed) {
						return // an ended context wins over a closed limiter
					}
				}
			}()
		}
		time.Sleep(time.Duration(1+round%5) * time.Millisecond)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: goroutines still running 10s after Close", round)
		}
	}
	registryEmpty(t)
}

func TestRegistry_EarlyTokenIsFoundByTheRegistration(t *testing.T) {
	if _, err := sharedNotifier(); err != nil { // makes the maps
		t.Fatal(err)
	}
	tok := nextToken.Add(1)
	deliver([]_Ctype_uint64_t{_Ctype_uint64_t(tok)})
	w := &waiter{ch: make(chan waitResult, 1)}
	if !register(tok, w) {
		t.Fatal("register after the token was drained: not granted")
	}
	// A later token is filed, and an abandoned waiter gets no send.
	tok2 := nextToken.Add(1)
	if register(tok2, w) {
		t.Fatal("register of an undrained token: granted")
	}
	registry.mu.Lock()
	w.abandoned = true
	registry.mu.Unlock()
	deliver([]_Ctype_uint64_t{_Ctype_uint64_t(tok2)})
	select {
	case r := <-w.ch:
		t.Fatalf("abandoned waiter was sent %v", r)
	default:
	}
	registryEmpty(t)
}

func TestRefusal_String(t *testing.T) {
	for r, want := range map[Refusal]string{NotRefused: "NotRefused", RefusedAtCapacity: "RefusedAtCapacity",
		RefusedWaitersQueued: "RefusedWaitersQueued", 7: "Refusal(7)"} {
		if got := r.String(); got != want {
			t.Errorf("%d.String() = %q; want %q", int(r), got, want)
		}
	}
}

// TestLimiter_GrantReachesTheWaiterPromptlyWhenEveryPIsBusy keeps every P
// busy with spinning goroutines, when the runtime looks at the netpoller
// only from sysmon (about every 10 ms): Release itself must hand the grant
// to the waiter, not leave it to the dispatcher.
func TestLimiter_GrantReachesTheWaiterPromptlyWhenEveryPIsBusy(t *testing.T) {
	l := newLimiter(t, 1)
	var stop atomic.Bool
	var spinners sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for !stop.Load() {
			}
		}()
	}
	defer spinners.Wait()
	defer stop.Store(true)
	const rounds = 21
	lats := make([]time.Duration, 0, rounds)
	for range rounds {
		mustTry(t, l, 1, true, NotRefused)
		woke := make(chan time.Time, 1)
		go func() {
			if err := l.Acquire(context.Background(), 1); err != nil {
				t.Error(err)
			}
			woke <- time.Now()
		}()
		waitQueued(t, l, 1)
		start := time.Now()
		mustRelease(t, l, 1)
		lats = append(lats, (<-woke).Sub(start))
		mustRelease(t, l, 1)
	}
	slices.Sort(lats)
	t.Logf("hand-off with every P busy: median %v, max %v", lats[rounds/2], lats[rounds-1])
	if lats[rounds/2] > 3*time.Millisecond {
		t.Fatalf("median hand-off %v with every P busy; want well under the netpoller's 10ms", lats[rounds/2])
	}
}

// TestLimiter_DroppedLimiterIsCollected checks that nothing of the binding
// (the registry, the dispatcher) keeps a Limiter reachable once its waits
// are over, so the cleanup safety net can free one dropped without Close.
func TestLimiter_DroppedLimiterIsCollected(t *testing.T) {
	collected := make(chan struct{})
	func() {
		l, err := NewLimiter(1)
		if err != nil {
			t.Fatal(err)
		}
		runtime.AddCleanup(l, func(ch chan struct{}) { close(ch) }, collected)
		// One wait granted, one cancelled after its grant: both leave the
		// registry.
		mustTry(t, l, 1, true, NotRefused)
		w := acquireAsync(l, context.Background(), 1)
		waitQueued(t, l, 1)
		mustRelease(t, l, 1)
		if err := result(t, w, "granted"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w = acquireAsync(l, ctx, 1)
		waitQueued(t, l, 1)
		cancel()
		if err := result(t, w, "cancelled"); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Acquire: %v", err)
		}
		mustRelease(t, l, 1)
	}()
	registryEmpty(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a dropped Limiter was not collected: something still references it")
		}
	}
}

// TestLimiter_ContendedAcquiresAreNeverLeftParked: goroutines racing
// Acquire against Release on a small capacity all finish; a grant that the
// releasing call failed to hand over would leave its goroutine parked until
// the deadline.
func TestLimiter_ContendedAcquiresAreNeverLeftParked(t *testing.T) {
	l := newLimiter(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var held atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				n := int64(1 + (g+i)%2)
				if err := l.Acquire(ctx, n); err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				if h := held.Add(n); h > 2 {
					t.Errorf("%d permits held; capacity 2", h)
				}
				runtime.Gosched()
				held.Add(-n)
				if err := l.Release(n); err != nil {
					t.Errorf("Release: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if s := limStats(t, l); s.InUse != 0 || s.Waiting != 0 {
		t.Fatalf("stats %+v; want nothing held or waiting", s)
	}
}
