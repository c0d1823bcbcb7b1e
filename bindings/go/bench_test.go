//go:build cgo

package berth

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

func benchKeys(n, m int) []Key {
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{Namespace: "bench", Name: fmt.Sprintf("sandbox-%06d", i), Node: fmt.Sprintf("node-%03d", i%m), Ready: true}
	}
	return keys
}

// BenchmarkStats is close to the fixed cost of one call through the binding:
// the library side is O(1).
func BenchmarkStats(b *testing.B) {
	e := newEngine(b)
	mustAdd(b, e, "p", ready("a", "n1"))
	for b.Loop() {
		if _, err := e.Stats("p"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPopSpreadAddPair(b *testing.B) {
	e := newEngine(b)
	if _, err := e.AddBatch("p", benchKeys(10000, 100)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		h, ok, err := e.PopSpread("p")
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		if _, err := e.Add("p", h.Key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddBatch10000(b *testing.B) {
	e := newEngine(b)
	keys := benchKeys(10000, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.AddBatch("p", keys); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := e.RemovePool("p"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func BenchmarkBuildBatch10000(b *testing.B) {
	keys := benchKeys(10000, 100)
	b.ReportAllocs()
	for b.Loop() {
		bb := getBatchBuilder()
		_ = bb.build(keys)
		putBatchBuilder(bb)
	}
}

// benchCache is the cache of cmd/berth-bench: 10000 objects over 100
// namespaces, 100 each, with two labels and a 256-byte payload.
func benchCache(b *testing.B) *Cache {
	c := newCache(b, CacheOptions{})
	objs := make([]Object, 10000)
	payload := make([]byte, 256)
	for i := range objs {
		objs[i] = Object{Namespace: fmt.Sprintf("ns-%d", i/100), Name: fmt.Sprintf("obj-%d", i), ResourceVersion: uint64(i + 1),
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": fmt.Sprintf("t%d", i%3)}, Payload: payload}
	}
	if err := c.Replace(objs, uint64(len(objs))); err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkCacheList100(b *testing.B) {
	c := benchCache(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		l, err := c.List("ns-7", nil)
		if err != nil || l.Len() != 100 {
			b.Fatal(l.Len(), err)
		}
		for _, v := range l.All() {
			n += len(v.Name()) + len(v.Payload())
		}
	}
	_ = n
}

func BenchmarkCacheListSelector(b *testing.B) {
	c := benchCache(b)
	sel := MustParseSelector("app=app-3,tier in (t0,t1)")
	defer sel.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.List("ns-7", sel); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCacheGet(b *testing.B) {
	c := benchCache(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := c.Get("ns-7", "obj-777"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkCacheGetCycled is cmd/berth-bench's cache_get_go in small: Gets
// cycling through 1024 keys, so the lookups miss the CPU cache as they would
// in a real informer.
func BenchmarkCacheGetCycled(b *testing.B) {
	c := benchCache(b)
	keys := make([][2]string, 1024)
	for k := range keys {
		i := (k * 7919) % 10000
		keys[k] = [2]string{fmt.Sprintf("ns-%d", i/100), fmt.Sprintf("obj-%d", i)}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := &keys[i&1023]
		i++
		if v, ok, err := c.Get(k[0], k[1]); err != nil || !ok || len(v.Payload()) != 256 {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkCacheGet64KiB gets an object with a 64 KiB payload: the cost of
// the copy into the view.
func BenchmarkCacheGet64KiB(b *testing.B) {
	c := syncedCache(b)
	o := Object{Namespace: "ns", Name: "big", ResourceVersion: 2, Labels: map[string]string{"app": "web"},
		Payload: make([]byte, 64<<10)}
	if _, err := c.Upsert(o); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(o.Payload)))
	for b.Loop() {
		if _, ok, err := c.Get("ns", "big"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkCacheUpsert(b *testing.B) {
	c := benchCache(b)
	o := Object{Namespace: "ns-7", Name: "obj-777", Labels: map[string]string{"app": "app-7", "tier": "t0"}, Payload: make([]byte, 256)}
	rv := uint64(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		rv++
		o.ResourceVersion = rv
		if ok, err := c.Upsert(o); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkSelectorMatches(b *testing.B) {
	sel := MustParseSelector("app=web,tier notin (db),!canary")
	defer sel.Close()
	labels := map[string]string{"app": "web", "tier": "frontend", "version": "3"}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := sel.Matches(labels); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkLimiterTryAcquireRelease(b *testing.B) {
	l := newLimiter(b, 1)
	for b.Loop() {
		if ok, _, err := l.TryAcquire(1); !ok || err != nil {
			b.Fatal(ok, err)
		}
		if err := l.Release(1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLimiterAcquireReleaseUncontended(b *testing.B) {
	l := newLimiter(b, 1)
	ctx := context.Background()
	for b.Loop() {
		if err := l.Acquire(ctx, 1); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLimiterContended: 8 goroutines on capacity 4, each holding its
// permit across a runtime.Gosched, as cmd/berth-bench's contended figure.
func BenchmarkLimiterContended(b *testing.B) {
	l := newLimiter(b, 4)
	ctx := context.Background()
	benchContended(b, func() {
		if err := l.Acquire(ctx, 1); err != nil {
			b.Error(err)
		}
		runtime.Gosched()
		if err := l.Release(1); err != nil {
			b.Error(err)
		}
	})
	if s := limStats(b, l); s.InUse != 0 || s.Waiting != 0 {
		b.Fatalf("stats %+v", s)
	}
}

func benchContended(b *testing.B, one func()) {
	const goroutines = 8
	var next atomic.Int64
	n := int64(b.N)
	b.ResetTimer()
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= n {
				one()
			}
		}()
	}
	wg.Wait()
}
