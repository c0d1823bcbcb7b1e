//go:build cgo

package berth

/*
#cgo noescape bg_bucket_new
#cgo nocallback bg_bucket_new
#cgo noescape bg_bucket_allow
#cgo nocallback bg_bucket_allow
#cgo noescape bg_bucket_reserve
#cgo nocallback bg_bucket_reserve
#cgo noescape bg_bucket_cancel
#cgo nocallback bg_bucket_cancel
#cgo noescape bg_bucket_set
#cgo nocallback bg_bucket_set
#cgo noescape bg_bucket_stats
#cgo nocallback bg_bucket_stats
#cgo nocallback bg_bucket_free
#cgo nocallback berth_clock_now_ns

#include "bg.h"

static berth_status bg_bucket_new(uintptr_t* out, bg_res* res, double rate, int64_t burst) {
  berth_bucket* b = NULL;
  berth_status st = berth_bucket_new(&b, rate, burst);
  *out = (uintptr_t)b;
  return bg_done(st, res);
}

static void bg_bucket_free(uintptr_t b) { berth_bucket_free(BG_BUCKET(b)); }

static berth_status bg_bucket_allow(bg_res* res, uintptr_t b, int64_t n, int64_t now) {
  return bg_done(berth_bucket_allow(&res->flag, BG_BUCKET(b), n, now), res);
}

static berth_status bg_bucket_reserve(berth_reservation* out, bg_res* res, uintptr_t b,
                                      int64_t n, int64_t now) {
  return bg_done(berth_bucket_reserve(out, BG_BUCKET(b), n, now), res);
}

static berth_status bg_bucket_cancel(bg_res* res, uintptr_t b, berth_reservation* r,
                                     int64_t now) {
  return bg_done(berth_bucket_cancel(BG_BUCKET(b), r, now), res);
}

// berth_bucket_set_rate (burst ignored) or berth_bucket_set_burst (rate
// ignored).
static berth_status bg_bucket_set(bg_res* res, uintptr_t b, int set_burst, double rate,
                                  int64_t burst, int64_t now) {
  berth_status st = set_burst ? berth_bucket_set_burst(BG_BUCKET(b), burst, now)
                              : berth_bucket_set_rate(BG_BUCKET(b), rate, now);
  return bg_done(st, res);
}

static berth_status bg_bucket_stats(berth_bucket_stats* out, bg_res* res, uintptr_t b,
                                    int64_t now) {
  return bg_done(berth_bucket_get_stats(out, BG_BUCKET(b), now), res);
}
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"time"
)

// Instant is a time on Berth's monotonic clock (CLOCK_MONOTONIC), in
// nanoseconds. It is the clock the Go runtime's monotonic readings use too,
// so durations between Instants and time.Since agree. Bucket methods ending
// in At take an explicit Instant, which makes their behaviour exact (for
// tests and simulations); an Instant must be >= 0.
type Instant int64

// Now reads Berth's monotonic clock (berth_clock_now_ns).
func Now() Instant { return Instant(C.berth_clock_now_ns()) }

// Add returns t+d, saturating at the largest and smallest Instant instead
// of wrapping (as time.Time.Sub saturates), so a deadline far in the future
// stays in the future.
func (t Instant) Add(d time.Duration) Instant {
	sum := t + Instant(d)
	if d > 0 && sum < t {
		return math.MaxInt64
	}
	if d < 0 && sum > t {
		return math.MinInt64
	}
	return sum
}

// Sub returns t-u, saturating at the largest and smallest time.Duration when
// the difference does not fit (as time.Time.Sub does).
func (t Instant) Sub(u Instant) time.Duration {
	d := t - u
	// Overflow only when t and u differ in sign and d's sign is not t's.
	if (t >= 0) != (u >= 0) && (d >= 0) != (t >= 0) {
		if t >= 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return time.Duration(d)
}

// now is BERTH_NOW: "the library reads its clock".
const now C.int64_t = C.BERTH_NOW

// BucketStats are the figures of a Bucket at one time.
type BucketStats struct {
	Rate   float64 // tokens per second; +Inf: no limit
	Burst  int64
	Tokens float64 // negative while reservations are in debt
}

// Bucket is a token-bucket rate limiter with the semantics of
// golang.org/x/time/rate: tokens refill continuously at Rate per second up
// to Burst (the bucket starts full); Allow takes n tokens now or refuses;
// Reserve takes them now, into debt if need be, and says how long to wait
// before acting; cancelling a reservation before its time gives back the
// tokens nobody reserved after it. Rate and burst change at run time,
// keeping the tokens accrued (a lower burst caps them at once).
//
// Every method is safe for concurrent use. Call Close when done; every
// method after Close returns an error wrapping ErrClosed, and so do Waits in
// progress.
type Bucket struct {
	guard                 // berth_bucket*
	closed  chan struct{} // closed by Close: wakes Waits
	cleanup runtime.Cleanup
}

// NewBucket creates a full bucket: rate > 0 tokens per second (math.Inf(1):
// no limit), burst >= 1. A rate so slow that one token takes more than
// math.MaxInt64 ns (~292 years; rate below ~1.08e-10) is ErrInvalidArgument.
func NewBucket(rate float64, burst int64) (*Bucket, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var h C.uintptr_t
	var r C.bg_res
	if st := C.bg_bucket_new(&h, &r, C.double(rate), C.int64_t(burst)); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	b := &Bucket{guard: guard{h: h}, closed: make(chan struct{})}
	// A bucket dropped without Close is freed when it becomes unreachable.
	b.cleanup = runtime.AddCleanup(b, func(h C.uintptr_t) { C.bg_bucket_free(h) }, h)
	return b, nil
}

// Close frees the bucket and wakes Waits in progress (they return an error
// wrapping ErrClosed). It waits for calls in flight to finish. Calling Close
// again is a no-op that returns nil.
func (b *Bucket) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == 0 {
		return nil
	}
	b.cleanup.Stop()
	C.bg_bucket_free(b.h)
	b.h = 0
	close(b.closed)
	return nil
}

// at converts an explicit time for the library, rejecting what would collide
// with BERTH_NOW.
func at(t Instant, op string) (C.int64_t, error) {
	if t < 0 {
		return 0, &Error{Status: statusInvalidArgument, Message: fmt.Sprintf("%s: instant %d is negative", op, int64(t))}
	}
	return C.int64_t(t), nil
}

// Allow takes n tokens now if the bucket holds them; it never goes into
// debt. n < 1 or n > the burst is ErrInvalidArgument.
func (b *Bucket) Allow(n int64) (bool, error) { return b.allow(now, n, "Allow") }

// AllowAt is Allow at time t.
func (b *Bucket) AllowAt(t Instant, n int64) (bool, error) {
	c, err := at(t, "AllowAt")
	if err != nil {
		return false, err
	}
	return b.allow(c, n, "AllowAt")
}

func (b *Bucket) allow(t C.int64_t, n int64, op string) (bool, error) {
	var r C.bg_res
	hnd, err := b.enter(op)
	if err != nil {
		return false, err
	}
	st := C.bg_bucket_allow(&r, hnd, C.int64_t(n), t)
	b.mu.RUnlock()
	if st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// Reservation is n tokens taken from a Bucket by Reserve, possibly into
// debt: act at TimeToAct, or Cancel to give the tokens back. The zero
// Reservation holds nothing. Copies share the reservation (cancelling one
// cancels all).
type Reservation struct{ r *reservation }

type reservation struct {
	b         *Bucket
	c         C.berth_reservation
	cancelled atomic.Bool
}

// Reserve takes n tokens now, into debt if need be; the caller must wait
// Delay before acting, or Cancel. n < 1 or n > the burst is
// ErrInvalidArgument, and so is a time to act after math.MaxInt64 ns
// (nothing is taken).
func (b *Bucket) Reserve(n int64) (Reservation, error) { return b.reserve(now, n, "Reserve") }

// ReserveAt is Reserve at time t.
func (b *Bucket) ReserveAt(t Instant, n int64) (Reservation, error) {
	c, err := at(t, "ReserveAt")
	if err != nil {
		return Reservation{}, err
	}
	return b.reserve(c, n, "ReserveAt")
}

func (b *Bucket) reserve(t C.int64_t, n int64, op string) (Reservation, error) {
	res := &reservation{b: b}
	var r C.bg_res
	hnd, err := b.enter(op)
	if err != nil {
		return Reservation{}, err
	}
	st := C.bg_bucket_reserve(&res.c, &r, hnd, C.int64_t(n), t)
	b.mu.RUnlock()
	if st != C.BERTH_OK {
		return Reservation{}, resError(st, &r)
	}
	return Reservation{res}, nil
}

// TimeToAct is when the holder may act.
func (r Reservation) TimeToAct() Instant {
	if r.r == nil {
		return 0
	}
	return Instant(r.r.c.time_to_act_ns)
}

// Tokens is how many tokens the reservation took.
func (r Reservation) Tokens() int64 {
	if r.r == nil {
		return 0
	}
	return int64(r.r.c.tokens)
}

// Delay is how long from now until TimeToAct; 0 if that has passed.
func (r Reservation) Delay() time.Duration { return r.DelayFrom(Now()) }

// DelayFrom is how long from t until TimeToAct; 0 if that is not after t.
func (r Reservation) DelayFrom(t Instant) time.Duration {
	if r.r == nil {
		return 0
	}
	return max(0, r.TimeToAct().Sub(t))
}

// Cancel gives back the tokens of the reservation that nobody reserved after
// it, if its time to act has not passed. Only the first Cancel (or CancelAt)
// of a reservation does anything; after the bucket is closed it is a no-op.
func (r Reservation) Cancel() { r.cancel(now) }

// CancelAt is Cancel at time t (a negative t cancels nothing).
func (r Reservation) CancelAt(t Instant) {
	if c, err := at(t, "CancelAt"); err == nil {
		r.cancel(c)
	}
}

func (r Reservation) cancel(t C.int64_t) {
	// A second cancel of the same reservation would give tokens back again
	// (berth_bucket_cancel guards only the struct it is passed, not copies
	// of it): only the first cancel of all the copies goes through.
	if r.r == nil || !r.r.cancelled.CompareAndSwap(false, true) {
		return
	}
	b := r.r.b
	// The library zeroes the tokens of the struct it cancels: give it a
	// copy, so the Reservation stays immutable (and Tokens() race-free).
	c := r.r.c
	var res C.bg_res
	b.mu.RLock()
	if b.h != 0 {
		// It fails only for NULL arguments or a corrupt rate, never here.
		C.bg_bucket_cancel(&res, b.h, &c, t)
	}
	b.mu.RUnlock()
	if res.msg != 0 {
		_ = resError(0, &res) // frees the message
	}
}

// Wait takes n tokens and returns when the caller may act. If ctx ends
// first, the reservation is cancelled (the tokens go back as Cancel says)
// and ctx.Err() is returned. If ctx has a deadline before the time to act,
// Wait cancels at once and returns an error wrapping
// context.DeadlineExceeded instead of waiting for it. n < 1 or n > the burst
// is ErrInvalidArgument.
func (b *Bucket) Wait(ctx context.Context, n int64) error {
	done := ctx.Done()
	if done != nil {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
	}
	r, err := b.Reserve(n)
	if err != nil {
		return err
	}
	d := time.Duration(r.r.c.delay_ns)
	if d <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		r.Cancel()
		return fmt.Errorf("berth: Wait(n=%d) would exceed the context deadline: %w", n, context.DeadlineExceeded)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-done:
		r.Cancel()
		return ctx.Err()
	case <-b.closed:
		return errClosed("Wait", "bucket")
	}
}

// SetRate changes the rate (as NewBucket takes it) from now on, keeping the
// tokens accrued so far.
func (b *Bucket) SetRate(rate float64) error { return b.set(now, 0, rate, 0, "SetRate") }

// SetRateAt is SetRate at time t.
func (b *Bucket) SetRateAt(t Instant, rate float64) error {
	c, err := at(t, "SetRateAt")
	if err != nil {
		return err
	}
	return b.set(c, 0, rate, 0, "SetRateAt")
}

// SetBurst changes the burst (>= 1) from now on; a lower burst caps the
// tokens at once.
func (b *Bucket) SetBurst(burst int64) error { return b.set(now, 1, 0, burst, "SetBurst") }

// SetBurstAt is SetBurst at time t.
func (b *Bucket) SetBurstAt(t Instant, burst int64) error {
	c, err := at(t, "SetBurstAt")
	if err != nil {
		return err
	}
	return b.set(c, 1, 0, burst, "SetBurstAt")
}

func (b *Bucket) set(t C.int64_t, setBurst C.int, rate float64, burst int64, op string) error {
	var r C.bg_res
	hnd, err := b.enter(op)
	if err != nil {
		return err
	}
	st := C.bg_bucket_set(&r, hnd, setBurst, C.double(rate), C.int64_t(burst), t)
	b.mu.RUnlock()
	if st != C.BERTH_OK {
		return resError(st, &r)
	}
	return nil
}

// Stats reads the rate, the burst and the tokens now.
func (b *Bucket) Stats() (BucketStats, error) { return b.stats(now, "Stats") }

// StatsAt is Stats at time t.
func (b *Bucket) StatsAt(t Instant) (BucketStats, error) {
	c, err := at(t, "StatsAt")
	if err != nil {
		return BucketStats{}, err
	}
	return b.stats(c, "StatsAt")
}

func (b *Bucket) stats(t C.int64_t, op string) (BucketStats, error) {
	var s C.berth_bucket_stats
	var r C.bg_res
	hnd, err := b.enter(op)
	if err != nil {
		return BucketStats{}, err
	}
	st := C.bg_bucket_stats(&s, &r, hnd, t)
	b.mu.RUnlock()
	if st != C.BERTH_OK {
		return BucketStats{}, resError(st, &r)
	}
	return BucketStats{Rate: float64(s.rate), Burst: int64(s.burst), Tokens: float64(s.tokens)}, nil
}
