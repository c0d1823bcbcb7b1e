package berth

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestConcurrent_AddAndPopLoseAndDuplicateNoKey(t *testing.T) {
	e := newEngine(t)
	const (
		producers   = 4
		consumers   = 4
		perProducer = 3000
		total       = producers * perProducer
		pool        = "shared"
	)
	// The pool must exist before consumers pop (a pop of an absent pool is
	// ErrNotFound, not empty).
	mustAdd(t, e, pool, ready("seed", "n0"))

	var (
		wg       sync.WaitGroup
		popped   atomic.Int64
		mu       sync.Mutex
		seen     = make(map[string]int, total+1)
		firstErr atomic.Pointer[error]
	)
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	const timeout = 30 * time.Second
	deadline := time.Now().Add(timeout)

	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]Key, 0, 50)
			for i := range perProducer {
				k := ready(fmt.Sprintf("p%d-k%d", p, i), fmt.Sprintf("n%d", i%13))
				if i%2 == 0 { // half single adds, half batches
					if ins, err := e.Add(pool, k); err != nil || !ins {
						fail(fmt.Errorf("Add %s = %v, %v", k.Name, ins, err))
						return
					}
					continue
				}
				batch = append(batch, k)
				if len(batch) == cap(batch) || i >= perProducer-2 {
					if n, err := e.AddBatch(pool, batch); err != nil || n != len(batch) {
						fail(fmt.Errorf("AddBatch = %d, %v", n, err))
						return
					}
					batch = batch[:0]
				}
			}
		}()
	}
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]string, 0, total/consumers)
			defer func() {
				mu.Lock()
				for _, n := range local {
					seen[n]++
				}
				mu.Unlock()
			}()
			for i := 0; popped.Load() < total+1; i++ {
				if firstErr.Load() != nil {
					return
				}
				if time.Now().After(deadline) {
					fail(fmt.Errorf("only %d of %d keys handed out after %v: keys lost", popped.Load(), total+1, timeout))
					return
				}
				pop := e.PopSpread
				if (c+i)%3 == 0 {
					pop = e.PopFIFO
				}
				h, ok, err := pop(pool)
				if err != nil {
					fail(err)
					return
				}
				if !ok {
					continue
				}
				// Every 5th hand-out is put back, to be handed out again
				// later. A put-back can be stale if this goroutine was
				// descheduled for more than PutBackWindow hand-outs of the
				// others; then the key stays with this consumer.
				if i%5 == 0 {
					restored, err := e.PutBack(pool, h)
					if err != nil {
						fail(fmt.Errorf("PutBack %s: %v", h.Name, err))
						return
					}
					if restored {
						continue
					}
				}
				local = append(local, h.Name)
				popped.Add(1)
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		t.Fatal(*p)
	}
	if len(seen) != total+1 {
		t.Fatalf("%d distinct keys handed out; want %d", len(seen), total+1)
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("key %s handed out %d times", name, n)
		}
	}
	for p := range producers {
		for i := range perProducer {
			if name := fmt.Sprintf("p%d-k%d", p, i); seen[name] != 1 {
				t.Fatalf("key %s lost", name)
			}
		}
	}
	if s, err := e.Stats(pool); err != nil || s.Keys != 0 {
		t.Fatalf("Stats at the end = %+v, %v; want empty", s, err)
	}
}

func TestConcurrent_CloseWhileCallsAreInFlight(t *testing.T) {
	for round := range 20 {
		e, err := NewEngine()
		if err != nil {
			t.Fatal(err)
		}
		mustAdd(t, e, "p", ready("seed", "n0"))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					var err error
					switch i % 4 {
					case 0:
						_, err = e.Add("p", ready(fmt.Sprintf("g%d-%d", g, i), "n1"))
					case 1:
						_, _, err = e.PopSpread("p")
					case 2:
						_, err = e.Snapshot("p")
					case 3:
						_, err = e.AddBatch("p", []Key{ready(fmt.Sprintf("b%d-%d", g, i), "n2")})
					}
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						t.Errorf("round %d: unexpected error %v", round, err)
						return
					}
				}
			}()
		}
		close(start)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		wg.Wait()
	}
}

func TestConcurrent_PoolsAreIndependent(t *testing.T) {
	e := newEngine(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool := fmt.Sprintf("pool-%d", g)
			for i := range 500 {
				if _, err := e.Add(pool, ready(fmt.Sprintf("k%d", i), fmt.Sprintf("n%d", i%5))); err != nil {
					t.Error(err)
					return
				}
			}
			for i := range 500 {
				h, ok, err := e.PopFIFO(pool)
				if want := fmt.Sprintf("k%d", i); err != nil || !ok || h.Name != want {
					t.Errorf("%s: PopFIFO = %q, %v, %v; want %s", pool, h.Name, ok, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}
