//go:build cgo

package berth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// workerEnv switches TestMain into a worker process for the cross-process
// tests: "<name>:<n>" opens the shared limiter name, acquires n permits,
// prints "held" and then holds them until it is killed (or its stdin
// closes, so that a worker never outlives the test).
const workerEnv = "BERTH_GO_TEST_SHARED_WORKER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(workerEnv); spec != "" {
		os.Exit(sharedWorker(spec))
	}
	os.Exit(m.Run())
}

func sharedWorker(spec string) int {
	name, ns, _ := strings.Cut(spec, ":")
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker: bad spec", spec)
		return 2
	}
	l, err := OpenSharedLimiter(name, 0, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker: open:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Acquire(ctx, n); err != nil {
		fmt.Fprintln(os.Stderr, "worker: acquire:", err)
		return 2
	}
	fmt.Println("held")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent goes away
	return 3
}

var sharedSeq atomic.Int64

// sharedName returns a limiter name unique to this process and call, and
// unlinks it when the test ends.
func sharedName(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("gotest-%d-%d", os.Getpid(), sharedSeq.Add(1))
	_ = UnlinkSharedLimiter(name) // a stale one from a dead run under the same pid
	t.Cleanup(func() {
		if err := UnlinkSharedLimiter(name); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("UnlinkSharedLimiter(%q): %v", name, err)
		}
	})
	return name
}

func openShared(t testing.TB, name string, capacity int64, create bool) *SharedLimiter {
	t.Helper()
	l, err := OpenSharedLimiter(name, capacity, create)
	if err != nil {
		t.Fatalf("OpenSharedLimiter(%q, %d, %v): %v", name, capacity, create, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

func shStats(t testing.TB, l *SharedLimiter) SharedLimiterStats {
	t.Helper()
	s, err := l.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s
}

func shTry(t testing.TB, l *SharedLimiter, n int64, wantOK bool, want Refusal) {
	t.Helper()
	ok, reason, err := l.TryAcquire(n)
	if err != nil || ok != wantOK || reason != want {
		t.Fatalf("TryAcquire(%d) = %v, %v, %v; want %v, %v, nil", n, ok, reason, err, wantOK, want)
	}
}

func shRelease(t testing.TB, l *SharedLimiter, n int64) {
	t.Helper()
	if err := l.Release(n); err != nil {
		t.Fatalf("Release(%d): %v", n, err)
	}
}

func shAcquireAsync(l *SharedLimiter, ctx context.Context, n int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- l.Acquire(ctx, n) }()
	return ch
}

func shWaiting(t testing.TB, l *SharedLimiter, waiting int64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d waiters are queued in the region", waiting),
		func() bool { return shStats(t, l).Waiting == waiting })
}

func TestSharedLimiter_Semantics(t *testing.T) {
	name := sharedName(t)
	if _, err := OpenSharedLimiter(name, 3, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open of an absent limiter without create: %v; want ErrNotFound", err)
	}
	if _, err := OpenSharedLimiter(name, 0, true); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("create with capacity 0: %v; want ErrInvalidArgument", err)
	}
	l := openShared(t, name, 3, true)
	shTry(t, l, 2, true, NotRefused)
	shTry(t, l, 2, false, RefusedAtCapacity)
	shTry(t, l, 1, true, NotRefused)
	s := shStats(t, l)
	if s.Capacity != 3 || s.InUse != 3 || s.Holders != 1 || s.Granted != 2 || s.Rejected != 1 || s.Waiting != 0 {
		t.Fatalf("stats %+v; want capacity 3, 3 in use by 1 holder, 2 granted, 1 rejected", s)
	}
	for _, n := range []int64{0, -1, 4} {
		if _, _, err := l.TryAcquire(n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("TryAcquire(%d): %v; want ErrInvalidArgument", n, err)
		}
		if err := l.Acquire(context.Background(), n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Acquire(%d): %v; want ErrInvalidArgument", n, err)
		}
	}
	if err := l.Release(0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Release(0): %v; want ErrInvalidArgument", err)
	}
	if err := l.SetCapacity(0); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SetCapacity(0): %v; want ErrInvalidArgument", err)
	}
	shRelease(t, l, 3)
	// The process holds nothing now: releasing more fails with the
	// library's message and changes nothing.
	err := l.Release(1)
	wantStatus(t, err, ErrInvalidArgument)
	var be *Error
	if !errors.As(err, &be) || be.Message == "" {
		t.Errorf("Release(1) error %#v; want the library's message", err)
	}
	// Opening an existing limiter with create keeps its capacity.
	again := openShared(t, name, 9, true)
	if s := shStats(t, again); s.Capacity != 3 || s.InUse != 0 || s.Holders != 0 {
		t.Fatalf("stats %+v through a second handle; want capacity 3 kept, nothing held", s)
	}
	// Lowering the capacity revokes nothing.
	if err := l.Acquire(context.Background(), 3); err != nil {
		t.Fatalf("Acquire(3): %v", err)
	}
	if err := l.SetCapacity(1); err != nil {
		t.Fatal(err)
	}
	if s := shStats(t, l); s.Capacity != 1 || s.InUse != 3 {
		t.Fatalf("stats %+v after lowering to 1; want 3 still in use", s)
	}
	shRelease(t, l, 3)
	shTry(t, l, 1, true, NotRefused)
	shTry(t, l, 1, false, RefusedAtCapacity)
	shRelease(t, l, 1)
	// Unlinking removes the name; open handles keep the region.
	if err := UnlinkSharedLimiter(name); err != nil {
		t.Fatal(err)
	}
	if err := UnlinkSharedLimiter(name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second unlink: %v; want ErrNotFound", err)
	}
	if _, err := OpenSharedLimiter(name, 1, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("open after unlink: %v; want ErrNotFound", err)
	}
	shTry(t, l, 1, true, NotRefused)
	if s := shStats(t, again); s.InUse != 1 {
		t.Fatalf("stats %+v of the unlinked region through the other handle; want 1 in use", s)
	}
	shRelease(t, again, 1)
}

func TestSharedLimiter_TwoHandlesShareOneCapacity(t *testing.T) {
	name := sharedName(t)
	a := openShared(t, name, 3, true)
	b := openShared(t, name, 0, false)
	shTry(t, a, 2, true, NotRefused)
	shTry(t, b, 2, false, RefusedAtCapacity)
	shTry(t, b, 1, true, NotRefused)
	shTry(t, a, 1, false, RefusedAtCapacity)
	if s := shStats(t, b); s.InUse != 3 || s.Holders != 1 {
		t.Fatalf("stats %+v; want 3 in use by one process through two handles", s)
	}
	// Permits belong to the process: b releases what a took.
	shRelease(t, b, 3)
	if s := shStats(t, a); s.InUse != 0 || s.Holders != 0 {
		t.Fatalf("stats %+v after b released everything; want nothing held", s)
	}
	if err := b.SetCapacity(5); err != nil {
		t.Fatal(err)
	}
	if s := shStats(t, a); s.Capacity != 5 {
		t.Fatalf("capacity %d through a after b set 5", s.Capacity)
	}
	shTry(t, a, 5, true, NotRefused)
	shRelease(t, a, 5)
}

func TestSharedLimiter_AcquireIsGrantedByAReleaseThroughAnotherHandle(t *testing.T) {
	name := sharedName(t)
	a := openShared(t, name, 4, true)
	b := openShared(t, name, 0, false)
	c := openShared(t, name, 0, false)
	ctx := context.Background()
	shTry(t, a, 3, true, NotRefused)
	big := shAcquireAsync(b, ctx, 4)
	shWaiting(t, a, 1)
	// One permit is free, but the big waiter is first: nobody barges.
	shTry(t, a, 1, false, RefusedWaitersQueued)
	small := shAcquireAsync(c, ctx, 1)
	shWaiting(t, a, 2)
	shRelease(t, a, 2)
	notReturned(t, big, "big after 2 of 3 released")
	notReturned(t, small, "small queued behind big")
	shRelease(t, a, 1)
	if err := result(t, big, "big"); err != nil {
		t.Fatalf("b.Acquire(4): %v", err)
	}
	if s := shStats(t, a); s.InUse != 4 || s.Waiting != 1 {
		t.Fatalf("stats %+v; want the big waiter holding 4 and the small one waiting", s)
	}
	notReturned(t, small, "small while big holds everything")
	shRelease(t, c, 4) // any handle of the process
	if err := result(t, small, "small"); err != nil {
		t.Fatalf("c.Acquire(1): %v", err)
	}
	shRelease(t, b, 1)
	if s := shStats(t, a); s.InUse != 0 || s.Waiting != 0 || s.Granted != 3 {
		t.Fatalf("stats %+v at the end; want nothing held or waiting, 3 granted", s)
	}
	registryEmpty(t)
}

func TestSharedLimiter_CancelAndDeadlineHoldNothing(t *testing.T) {
	name := sharedName(t)
	a := openShared(t, name, 2, true)
	b := openShared(t, name, 0, false)
	shTry(t, a, 2, true, NotRefused)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Acquire(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire past its deadline: %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Fatalf("Acquire returned after %v; the deadline was 20ms", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	w := shAcquireAsync(b, ctx, 2)
	shWaiting(t, a, 1)
	notReturned(t, w, "waiter on a full limiter")
	cancel()
	if err := result(t, w, "cancelled"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v; want context.Canceled", err)
	}
	shWaiting(t, a, 0)

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	shRelease(t, a, 2)
	granted := shStats(t, a).Granted
	if err := b.Acquire(done, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with an ended context: %v; want context.Canceled", err)
	}
	// Nothing was granted to the cancelled waits, and the permits are free.
	if s := shStats(t, a); s.InUse != 0 || s.Waiting != 0 || s.Granted != granted {
		t.Fatalf("stats %+v; want nothing held or waiting, %d granted", s, granted)
	}
	shTry(t, b, 2, true, NotRefused)
	shRelease(t, b, 2)
	registryEmpty(t)
}

// TestSharedLimiter_RandomCancellationsLeakNoPermit: goroutines on two
// handles acquire random weights with contexts cancelled at random moments
// or short deadlines, hold briefly and release, while the capacity changes.
// No moment sees more permits held than the largest capacity, and after a
// short settle nothing is held or waiting.
func TestSharedLimiter_RandomCancellationsLeakNoPermit(t *testing.T) {
	const (
		maxCap     = 5
		goroutines = 12 // per handle
	)
	perG := 150
	if testing.Short() {
		perG = 30
	}
	name := sharedName(t)
	handles := []*SharedLimiter{openShared(t, name, maxCap, true), openShared(t, name, 0, false)}
	var (
		held              atomic.Int64
		ok, cancelled, to atomic.Int64
		wg                sync.WaitGroup
		firstErr          atomic.Pointer[error]
		stop              = make(chan struct{})
		capDone           = make(chan struct{})
	)
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	go func() {
		defer close(capDone)
		r := rand.New(rand.NewPCG(3, 4))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(r.IntN(2000)) * time.Microsecond):
				if err := handles[r.IntN(2)].SetCapacity(int64(3 + r.IntN(maxCap-2))); err != nil {
					fail(fmt.Errorf("SetCapacity: %w", err))
				}
			}
		}
	}()
	for g := range 2 * goroutines {
		l := handles[g%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range perG {
				n := int64(1 + r.IntN(3))
				var ctx context.Context
				var cancel context.CancelFunc
				switch r.IntN(3) {
				case 0:
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(r.IntN(500))*time.Microsecond)
				case 1:
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(time.Duration(r.IntN(500))*time.Microsecond, cancel)
				default:
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
						time.Sleep(time.Duration(r.IntN(100)) * time.Microsecond)
					}
					held.Add(-n)
					if err := handles[r.IntN(2)].Release(n); err != nil {
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
	case <-time.After(90 * time.Second):
		close(stop)
		<-capDone
		t.Fatalf("goroutines still acquiring after 90s (a waiter is stuck); stats %+v", shStats(t, handles[0]))
	}
	close(stop)
	<-capDone
	if err := firstErr.Load(); err != nil {
		t.Fatal(*err)
	}
	// The handles' threads leave the region shortly after the last cancel.
	time.Sleep(20 * time.Millisecond)
	s := shStats(t, handles[0])
	t.Logf("%d acquired, %d cancelled, %d past their deadline; stats %+v", ok.Load(), cancelled.Load(), to.Load(), s)
	if s.InUse != 0 || s.Waiting != 0 || s.Holders != 0 {
		t.Fatalf("stats %+v after settling; want nothing in use or waiting", s)
	}
	if ok.Load() == 0 || cancelled.Load()+to.Load() == 0 {
		t.Fatal("the run did not both acquire and cancel")
	}
	registryEmpty(t)
}

func TestSharedLimiter_CloseWakesWaitersAndEveryMethodReturnsErrClosed(t *testing.T) {
	name := sharedName(t)
	a := openShared(t, name, 2, true)
	b, err := OpenSharedLimiter(name, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	shTry(t, a, 2, true, NotRefused)
	var ws []<-chan error
	for range 4 {
		ws = append(ws, shAcquireAsync(b, context.Background(), 1))
	}
	shWaiting(t, a, 1) // the handle's thread waits for the first; the others queue behind it
	waitUntil(t, "4 Acquires are parked", func() bool { return b.parked.Load() == 4 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for i, w := range ws {
		if err := result(t, w, fmt.Sprintf("waiter %d", i)); !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter %d after Close: %v; want ErrClosed", i, err)
		}
	}
	// A release after the close is not taken by the closed handle's waits.
	shRelease(t, a, 2)
	if s := shStats(t, a); s.InUse != 0 || s.Waiting != 0 {
		t.Fatalf("stats %+v after Close and a release; want nothing held or waiting", s)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := b.TryAcquire(1); !errors.Is(err, ErrClosed) {
		t.Errorf("TryAcquire: %v", err)
	}
	if err := b.Acquire(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire: %v", err)
	}
	if err := b.Release(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Release: %v", err)
	}
	if err := b.SetCapacity(2); !errors.Is(err, ErrClosed) {
		t.Errorf("SetCapacity: %v", err)
	}
	if _, err := b.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats: %v", err)
	}
	var nl *SharedLimiter
	if err := nl.Acquire(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("nil Acquire: %v", err)
	}
	if err := nl.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	registryEmpty(t)
}

// TestSharedLimiter_CloseWhileCallsAreInFlight closes handles under
// goroutines that acquire, release and wait: every call returns normally,
// with ErrClosed or with its context's error, none hangs, and nothing stays
// held.
func TestSharedLimiter_CloseWhileCallsAreInFlight(t *testing.T) {
	name := sharedName(t)
	keep := openShared(t, name, 2, true)
	for round := range 10 {
		l, err := OpenSharedLimiter(name, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(g*100)*time.Microsecond)
					err := l.Acquire(ctx, 1)
					cancel()
					switch {
					case errors.Is(err, ErrClosed):
						return
					case err == nil:
						// Released through the handle that stays open: the
						// permit is the process's whichever handle closes.
						if err := keep.Release(1); err != nil {
							t.Errorf("Release: %v", err)
							return
						}
					case !errors.Is(err, context.DeadlineExceeded):
						t.Errorf("Acquire: %v", err)
						return
					default:
						if _, err := l.Stats(); errors.Is(err, ErrClosed) {
							return
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(1+round%4) * time.Millisecond)
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
		if s := shStats(t, keep); s.InUse != 0 {
			t.Fatalf("round %d: stats %+v after Close; want nothing held", round, s)
		}
	}
	waitUntil(t, "nobody waits", func() bool { return shStats(t, keep).Waiting == 0 })
	registryEmpty(t)
}

func TestSharedLimiter_ForeignRegionIsBadRegion(t *testing.T) {
	// The size of a real region, read from the file that backs it.
	real := sharedName(t)
	openShared(t, real, 1, true)
	fi, err := os.Stat("/dev/shm/berth." + real)
	if err != nil {
		t.Skipf("the region is not at /dev/shm/berth.%s: %v", real, err)
	}
	size := fi.Size()
	if size <= 0 {
		t.Fatalf("region size %d", size)
	}
	for _, tc := range []struct {
		what    string
		data    []byte
		creates []bool
	}{
		{"junk of the right size", bytes.Repeat([]byte{0xa5}, int(size)), []bool{false, true}},
		{"junk of half the size", bytes.Repeat([]byte{0x5a}, int(size/2)), []bool{false, true}},
		// Looks like a region whose creator died before initialising it:
		// the library waits about a second for it, so open it once.
		{"zeros of the right size", make([]byte, size), []bool{true}},
	} {
		name := sharedName(t)
		path := "/dev/shm/berth." + name
		if err := os.WriteFile(path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, create := range tc.creates {
			l, err := OpenSharedLimiter(name, 4, create)
			if !errors.Is(err, ErrBadRegion) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("%s, create %v: %v; want ErrBadRegion", tc.what, create, err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.data) {
			t.Fatalf("%s: the library changed the foreign region", tc.what)
		}
	}
}

func TestSharedLimiter_BadNamesAreInvalidName(t *testing.T) {
	for _, name := range []string{"", "a/b", "/lead", "sp ace", "tab\t", "nul\x00byte", "é", "\xff",
		strings.Repeat("x", 201)} {
		l, err := OpenSharedLimiter(name, 1, true)
		if !errors.Is(err, ErrInvalidName) {
			if l != nil {
				l.Close()
				_ = UnlinkSharedLimiter(name)
			}
			t.Errorf("OpenSharedLimiter(%q): %v; want ErrInvalidName", name, err)
		}
		if err := UnlinkSharedLimiter(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("UnlinkSharedLimiter(%q): %v; want ErrInvalidName", name, err)
		}
	}
	// The whole alphabet, at the length limit, is accepted.
	prefix := fmt.Sprintf("Az09._-%d-", os.Getpid())
	name := prefix + strings.Repeat("x", 200-len(prefix))
	l, err := OpenSharedLimiter(name, 1, true)
	if err != nil {
		t.Fatalf("OpenSharedLimiter of a 200-byte name: %v", err)
	}
	l.Close()
	if err := UnlinkSharedLimiter(name); err != nil {
		t.Fatalf("UnlinkSharedLimiter of a 200-byte name: %v", err)
	}
}

// worker is a child process holding permits of a shared limiter.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startWorker re-executes the test binary as a worker that acquires n
// permits of name; it returns once the worker has started to wait (or
// hold), and held receives when it holds them.
func startWorker(t *testing.T, name string, n int64) (*worker, <-chan error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", workerEnv, name, n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &worker{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	held := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "held\n" {
			err = fmt.Errorf("worker said %q", line)
		}
		held <- err
	}()
	return w, held
}

func waitHeld(t *testing.T, held <-chan error, what string) {
	t.Helper()
	select {
	case err := <-held:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the worker did not report its permits", what)
	}
}

// kill SIGKILLs the worker and checks that it died of it (so it was
// holding when it died, not exiting on its own).
func (w *worker) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := w.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("worker exit: %v; want killed", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("worker exit: %v; want killed by SIGKILL", err)
	}
}

// TestSharedLimiter_KilledProcessIsReclaimed: worker processes wait for
// permits (granted by releases in this process) and are SIGKILLed while
// holding them. Their permits come back (Stats reclaims; a waiter here is
// granted by the reclaim), and no moment sees more held than the capacity.
func TestSharedLimiter_KilledProcessIsReclaimed(t *testing.T) {
	const capacity = 3
	name := sharedName(t)
	l := openShared(t, name, capacity, true)
	shTry(t, l, capacity, true, NotRefused)

	// Watch in-use and holders from another handle for the whole test.
	watch := openShared(t, name, 0, false)
	var maxInUse atomic.Int64
	stopWatch := make(chan struct{})
	watchDone := make(chan error, 1)
	go func() {
		for {
			s, err := watch.Stats()
			if err != nil {
				watchDone <- err
				return
			}
			if s.InUse > maxInUse.Load() {
				maxInUse.Store(s.InUse)
			}
			select {
			case <-stopWatch:
				watchDone <- nil
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	// Worker a waits for 2 permits, granted by a release here.
	a, aHeld := startWorker(t, name, 2)
	shWaiting(t, l, 1)
	shRelease(t, l, 2)
	waitHeld(t, aHeld, "worker a")
	// Worker b waits for the last one.
	b, bHeld := startWorker(t, name, 1)
	shWaiting(t, l, 1)
	shRelease(t, l, 1)
	waitHeld(t, bHeld, "worker b")
	if s := shStats(t, l); s.InUse != capacity || s.Holders != 2 || s.Reclaimed != 0 {
		t.Fatalf("stats %+v; want the 2 workers holding %d", s, capacity)
	}

	// This process waits for 2 while a holds them; killing a hands them
	// over through the reclaim of the waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mine := shAcquireAsync(l, ctx, 2)
	shWaiting(t, l, 1)
	notReturned(t, mine, "waiting while the workers hold everything")
	a.kill(t)
	if err := result(t, mine, "after worker a was killed"); err != nil {
		t.Fatalf("Acquire(2) after worker a was killed: %v", err)
	}
	if s := shStats(t, l); s.InUse != capacity || s.Holders != 2 || s.Reclaimed != 2 {
		t.Fatalf("stats %+v; want 2 held here, 1 by worker b, 2 reclaimed", s)
	}

	// Killing b with nobody waiting: Stats reclaims.
	b.kill(t)
	waitUntil(t, "worker b's permit is reclaimed", func() bool { return shStats(t, l).InUse == 2 })
	if s := shStats(t, l); s.Holders != 1 || s.Reclaimed != 3 {
		t.Fatalf("stats %+v; want only this process holding, 3 reclaimed", s)
	}
	shRelease(t, l, 2)
	if s := shStats(t, l); s.InUse != 0 || s.Holders != 0 || s.Waiting != 0 {
		t.Fatalf("stats %+v at the end; want nothing held", s)
	}
	close(stopWatch)
	if err := <-watchDone; err != nil {
		t.Fatalf("Stats while watching: %v", err)
	}
	if m := maxInUse.Load(); m > capacity || m == 0 {
		t.Fatalf("at most %d permits seen in use; capacity %d", m, capacity)
	}
}
