//go:build cgo

package berth

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is an arbitrary explicit time for the tests that pass times in.
const t0 = Instant(1_000_000_000_000)

func newBucket(t testing.TB, rate float64, burst int64) *Bucket {
	t.Helper()
	b, err := NewBucket(rate, burst)
	if err != nil {
		t.Fatalf("NewBucket(%v, %d): %v", rate, burst, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func allowAt(t testing.TB, b *Bucket, at Instant, n int64) bool {
	t.Helper()
	ok, err := b.AllowAt(at, n)
	if err != nil {
		t.Fatalf("AllowAt(%v, %d): %v", at.Sub(t0), n, err)
	}
	return ok
}

func reserveAt(t testing.TB, b *Bucket, at Instant, n int64) Reservation {
	t.Helper()
	r, err := b.ReserveAt(at, n)
	if err != nil {
		t.Fatalf("ReserveAt(%v, %d): %v", at.Sub(t0), n, err)
	}
	return r
}

func tokensAt(t testing.TB, b *Bucket, at Instant) float64 {
	t.Helper()
	s, err := b.StatsAt(at)
	if err != nil {
		t.Fatalf("StatsAt: %v", err)
	}
	return s.Tokens
}

func wantTokens(t testing.TB, b *Bucket, at Instant, want float64) {
	t.Helper()
	if got := tokensAt(t, b, at); math.Abs(got-want) > 1e-6 {
		t.Fatalf("tokens at t0+%v = %v; want %v", at.Sub(t0), got, want)
	}
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestBucket_AllowTakesTheBurstThenRefillsAtTheRate(t *testing.T) {
	b := newBucket(t, 10, 5) // one token per 100 ms
	wantTokens(t, b, t0, 5)  // starts full
	if !allowAt(t, b, t0, 5) {
		t.Fatal("Allow(5) of a full bucket of 5 refused")
	}
	if allowAt(t, b, t0, 1) {
		t.Fatal("Allow(1) of an empty bucket allowed")
	}
	if allowAt(t, b, t0.Add(ms(99)), 1) {
		t.Fatal("Allow(1) after 99ms at 10/s allowed")
	}
	if !allowAt(t, b, t0.Add(ms(100)), 1) {
		t.Fatal("Allow(1) after 100ms at 10/s refused")
	}
	wantTokens(t, b, t0.Add(ms(100)), 0)
	// Refilling stops at the burst.
	wantTokens(t, b, t0.Add(ms(10_000)), 5)
	if !allowAt(t, b, t0.Add(ms(10_000)), 5) {
		t.Fatal("Allow(5) after a long pause refused")
	}
	if allowAt(t, b, t0.Add(ms(10_000)), 1) {
		t.Fatal("more than the burst was allowed at once")
	}
}

func TestBucket_AllowNeverGoesIntoDebt(t *testing.T) {
	b := newBucket(t, 10, 5)
	allowAt(t, b, t0, 4)
	if allowAt(t, b, t0, 2) {
		t.Fatal("Allow(2) with 1 token allowed")
	}
	wantTokens(t, b, t0, 1) // the refusal took nothing
}

func TestBucket_ReserveGoesIntoDebtAndSaysWhenToAct(t *testing.T) {
	b := newBucket(t, 10, 5)
	r := reserveAt(t, b, t0, 5)
	if r.TimeToAct() != t0 || r.DelayFrom(t0) != 0 || r.Tokens() != 5 {
		t.Fatalf("first reservation acts at t0+%v after %v with %d tokens; want now, 5", r.TimeToAct().Sub(t0), r.DelayFrom(t0), r.Tokens())
	}
	r2 := reserveAt(t, b, t0, 2)
	if r2.TimeToAct() != t0.Add(ms(200)) || r2.DelayFrom(t0) != ms(200) {
		t.Fatalf("second reservation acts at t0+%v; want t0+200ms", r2.TimeToAct().Sub(t0))
	}
	if d := r2.DelayFrom(t0.Add(ms(150))); d != ms(50) {
		t.Fatalf("DelayFrom(t0+150ms) = %v; want 50ms", d)
	}
	if d := r2.DelayFrom(t0.Add(ms(500))); d != 0 {
		t.Fatalf("DelayFrom after the time to act = %v; want 0", d)
	}
	wantTokens(t, b, t0, -2)
	r3 := reserveAt(t, b, t0.Add(ms(50)), 1) // -2 + 0.5 - 1 = -2.5 at t0+50ms
	if r3.TimeToAct() != t0.Add(ms(300)) {
		t.Fatalf("third reservation acts at t0+%v; want t0+300ms", r3.TimeToAct().Sub(t0))
	}
	if allowAt(t, b, t0.Add(ms(250)), 1) {
		t.Fatal("Allow while in debt allowed")
	}
}

func TestBucket_CancelGivesBackWhatNobodyReservedAfter(t *testing.T) {
	b := newBucket(t, 10, 5)
	reserveAt(t, b, t0, 5)
	r := reserveAt(t, b, t0, 3) // acts at t0+300ms
	r.CancelAt(t0)
	wantTokens(t, b, t0, 0) // all 3 back: nobody reserved after it
	if r2 := reserveAt(t, b, t0, 1); r2.TimeToAct() != t0.Add(ms(100)) {
		t.Fatalf("after the cancel, Reserve(1) acts at t0+%v; want t0+100ms", r2.TimeToAct().Sub(t0))
	}

	// With a later reservation behind it, only what that one did not
	// reserve comes back.
	b2 := newBucket(t, 10, 5)
	reserveAt(t, b2, t0, 5)
	mid := reserveAt(t, b2, t0, 2)  // acts at t0+200ms
	last := reserveAt(t, b2, t0, 1) // acts at t0+300ms
	_ = last
	mid.CancelAt(t0) // 2 - 1 (the 100ms between them, at 10/s) = 1 back
	wantTokens(t, b2, t0, -2)
}

func TestBucket_CancelTwiceGivesBackOnce(t *testing.T) {
	b := newBucket(t, 10, 5)
	reserveAt(t, b, t0, 5)
	r := reserveAt(t, b, t0, 3)
	copyOfR := r
	r.CancelAt(t0)
	wantTokens(t, b, t0, 0)
	r.CancelAt(t0)
	copyOfR.CancelAt(t0) // copies share the reservation
	r.Cancel()
	wantTokens(t, b, t0, 0)
	var zero Reservation
	zero.Cancel() // holds nothing; must not panic
	if zero.Delay() != 0 || zero.Tokens() != 0 {
		t.Fatal("the zero Reservation is not empty")
	}
}

func TestBucket_CancelAfterTheTimeToActGivesNothingBack(t *testing.T) {
	b := newBucket(t, 10, 5)
	reserveAt(t, b, t0, 5)
	r := reserveAt(t, b, t0, 3) // acts at t0+300ms
	r.CancelAt(t0.Add(ms(400)))
	wantTokens(t, b, t0.Add(ms(400)), 1) // -3 + 4
}

func TestBucket_SetRateAndBurstKeepTheTokensAccrued(t *testing.T) {
	b := newBucket(t, 10, 5)
	allowAt(t, b, t0, 5)
	if err := b.SetRateAt(t0.Add(ms(100)), 100); err != nil { // 1 token accrued at 10/s
		t.Fatal(err)
	}
	wantTokens(t, b, t0.Add(ms(110)), 2) // + 1 at 100/s
	if err := b.SetBurstAt(t0.Add(ms(110)), 1); err != nil {
		t.Fatal(err)
	}
	wantTokens(t, b, t0.Add(ms(110)), 1) // capped at once
	s, err := b.StatsAt(t0.Add(ms(110)))
	if err != nil || s.Rate != 100 || s.Burst != 1 {
		t.Fatalf("stats %+v, %v; want rate 100, burst 1", s, err)
	}
	if _, err := b.AllowAt(t0.Add(ms(200)), 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Allow(2) over the lowered burst: %v; want ErrInvalidArgument", err)
	}
	if err := b.SetRate(0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetRate(0): %v; want ErrInvalidArgument", err)
	}
	if err := b.SetBurst(0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetBurst(0): %v; want ErrInvalidArgument", err)
	}
}

func TestBucket_InfiniteRateAllowsEverythingUpToTheBurst(t *testing.T) {
	b := newBucket(t, math.Inf(1), 3)
	for range 1000 {
		if !allowAt(t, b, t0, 3) {
			t.Fatal("Allow at an infinite rate refused")
		}
	}
	if r := reserveAt(t, b, t0, 3); r.DelayFrom(t0) != 0 {
		t.Fatalf("Reserve at an infinite rate waits %v", r.DelayFrom(t0))
	}
	if _, err := b.AllowAt(t0, 4); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Allow over the burst: %v; want ErrInvalidArgument", err)
	}
}

func TestBucket_BadArgumentsAreInvalidArgument(t *testing.T) {
	for _, c := range []struct {
		rate  float64
		burst int64
	}{{0, 1}, {-1, 1}, {math.NaN(), 1}, {math.Inf(-1), 1}, {1, 0}, {1, -3}} {
		if _, err := NewBucket(c.rate, c.burst); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("NewBucket(%v, %d): %v; want ErrInvalidArgument", c.rate, c.burst, err)
		}
	}
	b := newBucket(t, 10, 5)
	for _, n := range []int64{0, -1, 6} {
		if _, err := b.Allow(n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Allow(%d): %v", n, err)
		}
		if _, err := b.Reserve(n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Reserve(%d): %v", n, err)
		}
		if err := b.Wait(context.Background(), n); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Wait(%d): %v", n, err)
		}
	}
	// Negative instants would mean "now" to the library: rejected.
	if _, err := b.AllowAt(-1, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("AllowAt(-1): %v", err)
	}
	if _, err := b.ReserveAt(-5, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ReserveAt(-5): %v", err)
	}
	if _, err := b.StatsAt(-1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("StatsAt(-1): %v", err)
	}
	if err := b.SetRateAt(-1, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SetRateAt(-1): %v", err)
	}
	if err := b.SetBurstAt(-1, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("SetBurstAt(-1): %v", err)
	}
	if s, err := b.Stats(); err != nil || s.Tokens != 5 {
		t.Fatalf("stats %+v, %v after bad calls; want the bucket untouched", s, err)
	}
}

func TestBucket_TimesPastMaxInt64AreInvalidArgument(t *testing.T) {
	// 1e-300 tokens/s: one token in 1e309 ns; two reserves overflowed int64.
	if _, err := NewBucket(1e-300, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("NewBucket(1e-300, 1): %v; want ErrInvalidArgument", err)
	}
	slow := newBucket(t, 1.1e-10, 1) // ~288 years a token: fits
	if err := slow.SetRateAt(t0, 1e-10); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetRateAt(1e-10): %v; want ErrInvalidArgument", err)
	}

	end := Instant(math.MaxInt64)
	b := newBucket(t, 10, 1)
	if r := reserveAt(t, b, end-2, 1); r.TimeToAct() != end-2 {
		t.Fatalf("TimeToAct %d; want %d", r.TimeToAct(), end-2)
	}
	r, err := b.ReserveAt(end-2, 1) // due 100 ms later: it wrapped negative
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "INT64_MAX") {
		t.Fatalf("ReserveAt past the end: %+v, %v; want ErrInvalidArgument", r, err)
	}
	wantTokens(t, b, end-2, 0) // nothing taken

	// Due exactly at the end: granted, and a cancel gives it back.
	b2 := newBucket(t, 10, 1)
	at := end - Instant(ms(100))
	reserveAt(t, b2, at, 1)
	r2 := reserveAt(t, b2, at, 1)
	if r2.TimeToAct() != end || r2.DelayFrom(at) != ms(100) {
		t.Fatalf("TimeToAct %d, delay %v; want %d, 100ms", r2.TimeToAct(), r2.DelayFrom(at), end)
	}
	r2.CancelAt(at)
	wantTokens(t, b2, at, 0)
}

func TestBucket_NowIsTheLibrarysMonotonicClock(t *testing.T) {
	a := Now()
	time.Sleep(5 * time.Millisecond)
	d := Now().Sub(a)
	if d < 5*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Now advanced %v over a 5ms sleep", d)
	}
	// Calls without a time use the same clock: a reservation made now acts
	// at about Now() + its delay.
	b := newBucket(t, 10, 1)
	before := Now()
	b.Reserve(1)
	r, err := b.Reserve(1)
	after := Now()
	if err != nil {
		t.Fatal(err)
	}
	if r.TimeToAct() < before.Add(ms(100)) || r.TimeToAct() > after.Add(ms(100)) {
		t.Fatalf("time to act %d not within [%d, %d] + 100ms", r.TimeToAct(), before, after)
	}
	if dl := r.Delay(); dl <= 0 || dl > ms(100) {
		t.Fatalf("Delay() = %v; want in (0, 100ms]", dl)
	}
}

func TestBucket_WaitWaitsForTheTimeToAct(t *testing.T) {
	b := newBucket(t, 50, 1) // one token per 20 ms
	ctx := context.Background()
	if err := b.Wait(ctx, 1); err != nil { // full: no wait
		t.Fatal(err)
	}
	start := time.Now()
	for range 3 {
		if err := b.Wait(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < ms(55) {
		t.Fatalf("3 Waits at 50/s took %v; want about 60ms", d)
	}
}

func TestBucket_WaitCancelledGivesTheTokensBack(t *testing.T) {
	b := newBucket(t, 1, 1)
	if ok, err := b.Allow(1); !ok || err != nil {
		t.Fatalf("Allow: %v, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(ms(20), cancel)
	start := time.Now()
	err := b.Wait(ctx, 1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait: %v; want context.Canceled", err)
	}
	if d := time.Since(start); d < ms(15) || d > ms(900) {
		t.Fatalf("Wait returned after %v; the context ended after 20ms", d)
	}
	// Without the cancel the bucket would be about 1 token in debt.
	s, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Tokens < 0 {
		t.Fatalf("tokens %v after a cancelled Wait; the reservation was not cancelled", s.Tokens)
	}
}

func TestBucket_WaitPastTheDeadlineFailsAtOnce(t *testing.T) {
	b := newBucket(t, 0.001, 1)
	b.Allow(1)
	// The next token comes in 1000 s, the deadline in 5 s: Wait must see
	// that at once rather than sleep until the deadline (the bound is loose
	// on purpose: it separates "at once" from "at the deadline" on a loaded
	// machine).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := b.Wait(ctx, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v; want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("Wait took %v to find the deadline too short", d)
	}
	if s, _ := b.Stats(); s.Tokens < 0 {
		t.Fatalf("tokens %v; the reservation was not cancelled", s.Tokens)
	}
	// An ended context fails before taking anything.
	cancel()
	b2 := newBucket(t, 1, 1)
	if err := b2.Wait(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with an ended context: %v", err)
	}
	if s, _ := b2.Stats(); s.Tokens != 1 {
		t.Fatalf("tokens %v; want the bucket untouched", s.Tokens)
	}
}

func TestBucket_CloseWakesWaitsAndEveryMethodReturnsErrClosed(t *testing.T) {
	b, err := NewBucket(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	b.Allow(1)
	r, err := b.Reserve(1)
	if err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- b.Wait(context.Background(), 1) }()
	time.Sleep(ms(10))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waitErr:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait across Close: %v; want ErrClosed", err)
		}
	case <-time.After(ms(900)):
		t.Fatal("Close did not wake the Wait")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	r.Cancel() // no-op after Close
	if _, err := b.Allow(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Allow: %v", err)
	}
	if _, err := b.AllowAt(t0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("AllowAt: %v", err)
	}
	if _, err := b.Reserve(1); !errors.Is(err, ErrClosed) {
		t.Errorf("Reserve: %v", err)
	}
	if err := b.Wait(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait: %v", err)
	}
	if err := b.SetRate(2); !errors.Is(err, ErrClosed) {
		t.Errorf("SetRate: %v", err)
	}
	if err := b.SetBurst(2); !errors.Is(err, ErrClosed) {
		t.Errorf("SetBurst: %v", err)
	}
	if _, err := b.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats: %v", err)
	}
	var nb *Bucket
	if _, err := nb.Allow(1); !errors.Is(err, ErrClosed) {
		t.Errorf("nil Allow: %v", err)
	}
	if err := nb.Wait(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Errorf("nil Wait: %v", err)
	}
}

// TestBucket_ConcurrentReservationsAreExact reserves from many goroutines at
// one explicit instant: the reservations must be one per token slot, so
// their times to act, sorted, are the multiples of 1/rate (to within the
// library's rounding up to a whole nanosecond).
func TestBucket_ConcurrentReservationsAreExact(t *testing.T) {
	b := newBucket(t, 1000, 1) // one token per ms
	const goroutines, per = 8, 100
	var mu sync.Mutex
	var acts []Instant
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				r, err := b.ReserveAt(t0, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acts = append(acts, r.TimeToAct())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(acts) != goroutines*per {
		t.Fatalf("%d reservations; want %d", len(acts), goroutines*per)
	}
	slices.Sort(acts)
	for i, at := range acts {
		if d := at.Sub(t0.Add(ms(i))); d < 0 || d > time.Microsecond {
			t.Fatalf("reservation %d acts at t0+%v; want t0+%dms", i, at.Sub(t0), i)
		}
	}
}

func TestInstant_AddAndSubSaturateInsteadOfWrapping(t *testing.T) {
	cases := []struct {
		name string
		got  int64
		want int64
	}{
		{"add far future", int64(Instant(math.MaxInt64 - 5).Add(time.Hour)), math.MaxInt64},
		{"add far past", int64(Instant(math.MinInt64 + 5).Add(-time.Hour)), math.MinInt64},
		{"add in range", int64(t0.Add(time.Second)), int64(t0) + int64(time.Second)},
		{"add negative in range", int64(t0.Add(-time.Second)), int64(t0) - int64(time.Second)},
		{"sub max - min", int64(Instant(math.MaxInt64).Sub(Instant(math.MinInt64))), math.MaxInt64},
		{"sub min - max", int64(Instant(math.MinInt64).Sub(Instant(math.MaxInt64))), math.MinInt64},
		{"sub 0 - min", int64(Instant(0).Sub(Instant(math.MinInt64))), math.MaxInt64},
		{"sub -1 - max", int64(Instant(-1).Sub(Instant(math.MaxInt64))), math.MinInt64},
		{"sub in range", int64(t0.Sub(t0.Add(-time.Second))), int64(time.Second)},
		{"sub negative in range", int64(Instant(-5).Sub(Instant(7))), -12},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
	// A far deadline stays usable: AllowAt with it is valid, not negative.
	b := newBucket(t, 1, 1)
	if _, err := b.AllowAt(Now().Add(math.MaxInt64), 1); err != nil {
		t.Fatalf("AllowAt(far future): %v", err)
	}
}
