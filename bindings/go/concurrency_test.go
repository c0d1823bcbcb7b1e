//go:build cgo

package berth

import (
	"errors"
	"fmt"
	"slices"
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

func TestConcurrent_CacheReadersAndWritersEndConsistent(t *testing.T) {
	c := syncedCache(t)
	const (
		writers   = 4
		readers   = 4
		perWriter = 2000
		names     = 150
	)
	type op struct {
		ns, name string
		rv       uint64
		deleted  bool
	}
	var (
		rv       atomic.Uint64
		logs     = make([][]op, writers)
		wg       sync.WaitGroup
		done     = make(chan struct{})
		firstErr atomic.Pointer[error]
	)
	rv.Store(1)
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	// An object's labels and payload are derived from its resourceVersion,
	// so a reader can tell a torn or mixed-up object from a good one.
	makeObj := func(ns, name string, rv uint64) Object {
		return Object{Namespace: ns, Name: name, ResourceVersion: rv,
			Labels:  map[string]string{"mod": fmt.Sprint(rv % 7), "ns": ns},
			Payload: fmt.Appendf(nil, "rv=%d", rv)}
	}
	checkObj := func(v ObjectView) error {
		if mod, _ := v.Label("mod"); mod != fmt.Sprint(v.ResourceVersion()%7) {
			return fmt.Errorf("%s/%s@%d has label mod=%q", v.Namespace(), v.Name(), v.ResourceVersion(), mod)
		}
		if ns, _ := v.Label("ns"); ns != v.Namespace() {
			return fmt.Errorf("%s/%s has label ns=%q", v.Namespace(), v.Name(), ns)
		}
		if want := fmt.Sprintf("rv=%d", v.ResourceVersion()); string(v.Payload()) != want {
			return fmt.Errorf("%s/%s@%d has payload %q", v.Namespace(), v.Name(), v.ResourceVersion(), v.Payload())
		}
		return nil
	}

	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []Event
			for i := range perWriter {
				ns := fmt.Sprintf("ns-%d", (w+i)%3)
				name := fmt.Sprintf("o-%d", (i*7+w*13)%names)
				v := rv.Add(1)
				deleted := i%5 == 0
				logs[w] = append(logs[w], op{ns, name, v, deleted})
				var err error
				switch {
				case w%2 == 1: // odd writers apply batches of watch events
					ev := Event{Type: Modified, Object: makeObj(ns, name, v)}
					if deleted {
						ev = Event{Type: Deleted, Object: Object{Namespace: ns, Name: name, ResourceVersion: v}}
					}
					batch = append(batch, ev)
					if len(batch) == 10 || i == perWriter-1 {
						_, err = c.Apply(batch)
						batch = batch[:0]
					}
				case deleted:
					_, err = c.Delete(ns, name, v)
				default:
					_, err = c.Upsert(makeObj(ns, name, v))
				}
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	var rwg sync.WaitGroup
	for g := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			sel := MustParseSelector("mod in (0,1,2),ns")
			defer sel.Close()
			var lastRV uint64
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				if firstErr.Load() != nil {
					return
				}
				var l *ObjectList
				var err error
				useSel := (g+i)%2 == 0
				if useSel {
					l, err = c.List(fmt.Sprintf("ns-%d", i%3), sel)
				} else {
					l, err = c.List("", nil)
				}
				if err != nil {
					fail(err)
					return
				}
				if l.ResourceVersion() < lastRV {
					fail(fmt.Errorf("list resourceVersion went back from %d to %d", lastRV, l.ResourceVersion()))
					return
				}
				lastRV = l.ResourceVersion()
				prev := ""
				for _, v := range l.All() {
					if err := checkObj(v); err != nil {
						fail(err)
						return
					}
					if useSel {
						if mod, _ := v.Label("mod"); mod > "2" || v.Namespace() != fmt.Sprintf("ns-%d", i%3) {
							fail(fmt.Errorf("List(ns-%d, %s) returned %s/%s with mod=%s", i%3, sel, v.Namespace(), v.Name(), mod))
							return
						}
					}
					if k := v.Namespace() + "/" + v.Name(); k <= prev {
						fail(fmt.Errorf("list not sorted: %q after %q", k, prev))
						return
					} else {
						prev = k
					}
				}
				if v, ok, err := c.Get(fmt.Sprintf("ns-%d", i%3), fmt.Sprintf("o-%d", i%names)); err != nil {
					fail(err)
					return
				} else if ok {
					if err := checkObj(v); err != nil {
						fail(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	rwg.Wait()
	if p := firstErr.Load(); p != nil {
		t.Fatal(*p)
	}

	// The final state: for each object, the operation with the largest
	// resourceVersion wins, whatever order the writers' calls landed in.
	last := map[string]op{}
	for _, l := range logs {
		for _, o := range l {
			k := o.ns + "/" + o.name
			if prev, ok := last[k]; !ok || o.rv > prev.rv {
				last[k] = o
			}
		}
	}
	var present []string
	for k, o := range last {
		if !o.deleted {
			present = append(present, k)
		}
	}
	slices.Sort(present) // every namespace is "ns-<digit>": "ns/name" order is (ns, name) order
	var want []string
	for _, k := range present {
		want = append(want, fmt.Sprintf("%s@%d", k, last[k].rv))
	}
	l, err := c.List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := keys(l)
	if !slices.Equal(got, want) {
		t.Fatalf("final List has %d objects, want %d\ngot  %q\nwant %q", len(got), len(want), got, want)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.ResourceVersion != rv.Load() || s.Objects != uint64(len(want)) {
		t.Fatalf("Stats = %+v; want resourceVersion %d and %d objects", s, rv.Load(), len(want))
	}
}

func TestConcurrent_CacheCloseWhileCallsAreInFlight(t *testing.T) {
	for round := range 20 {
		c, err := NewCache(CacheOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Replace(nil, 1); err != nil {
			t.Fatal(err)
		}
		sel := MustParseSelector("app=web")
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; ; i++ {
					var err error
					rv := uint64(2 + i)
					o := Object{Namespace: "ns", Name: fmt.Sprintf("g%d-%d", g, i%50), ResourceVersion: rv,
						Labels: map[string]string{"app": "web"}}
					switch i % 5 {
					case 0:
						_, err = c.Upsert(o)
					case 1:
						_, err = c.List("ns", sel)
					case 2:
						_, err = c.Apply([]Event{{Type: Added, Object: o}})
					case 3:
						_, _, err = c.Get("ns", o.Name)
					case 4:
						_, err = c.Delete("ns", o.Name, rv)
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
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}()
		// Closing the selector in flight makes Lists fail with ErrClosed
		// (naming the selector), never crash.
		go func() {
			defer wg.Done()
			sel.Close()
		}()
		wg.Wait()
	}
}
