// Command berth-bench measures the cost of the Go binding on the hand-out
// hot path and writes the figures as JSON records.
//
//	berth-bench -cpp-ns 85.3 -out pair.json -batch-out batch.json -scaling-out scaling.json \
//	    -list-cpp-ns 2100 -list-out list.json -get-cpp-ns 40 -get-out get.json
//
// The pair figure is one PopSpread followed by one Add of the same key back
// (same node, ready), on a pool kept at N keys over M nodes, all ready. The
// baseline is the C++ figure for the same pair, measured by the C++ bench in
// the same run and passed in with -cpp-ns; ratio is baseline/berth, so 1.0
// means the binding adds nothing.
//
// The scaling figure (-scaling-out) is the same pair from 8 goroutines at
// once on one pool against 1 goroutine, each ns per pair of wall time over
// all goroutines' pairs together (so 8 goroutines at full speed on 2 cores
// would halve it). The baseline is the 1-goroutine figure, measured in the
// same rounds (alternating, so load from elsewhere hits both alike); ratio =
// baseline/berth is the 8-goroutine total throughput over the 1-goroutine
// throughput: >= 1 means contention costs nothing, below 1 means collapse.
//
// The batch figure is adding N new keys to an empty pool with one AddBatch
// against N single Add calls (the baseline), both per key.
//
// The list figure is one Cache.List("ns-7", nil) on a cache of 10000 objects
// over 100 namespaces (100 results, each with a 256-byte payload), plus
// reading every result's Name and Payload. The baseline is the C++ figure
// for the same list through the C ABI, measured in the same run and passed
// in with -list-cpp-ns; -list-out gets the binding_list100_go record as a
// JSON array of one element.
//
// The get figure (-get-out, a JSON array of one record, cache_get_go) is one
// Cache.Get on a cache of 100000 objects over 100 namespaces (3 labels and a
// 256-byte payload each), cycling through 1024 keys, as bench/cache_bench.cc
// measures ObjectCache::Get in C++ (cache_get at n=100000). The baseline is
// that C++ figure from the same run, passed in with -get-cpp-ns.
//
// The limiter figures (-limiter-out, a JSON array of two records) are
//   - limiter_uncontended_go: one TryAcquire(1) + Release(1) on a limiter of
//     capacity 1 from one goroutine, against the same pair on a buffered
//     channel of capacity 1 used as a semaphore (send in a select with a
//     default, then receive) as the baseline;
//   - limiter_contended_go: 8 goroutines on a limiter of capacity 4, each
//     looping Acquire(ctx, 1), runtime.Gosched() (so the holder lets the
//     others run into a full limiter even on few cores), Release(1); ns per
//     op is the wall time over all goroutines' ops together. The baseline is
//     the same loop on golang.org/x/sync/semaphore.Weighted, measured in
//     rounds alternating with Berth's (median round of each).
//
// The ratio is baseline/berth as elsewhere.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	berth "github.com/berth-sched/berth/bindings/go"
)

type record struct {
	Name         string  `json:"name"`
	N            int     `json:"n"`
	M            int     `json:"m"`
	Threads      int     `json:"threads"`
	BerthNsPerOp float64 `json:"berth_ns_per_op"`
	BaselineNs   float64 `json:"baseline_ns_per_op"`
	Ratio        float64 `json:"ratio"`
}

func main() {
	var (
		n        = flag.Int("n", 10000, "keys in the pool")
		m        = flag.Int("m", 100, "nodes the keys are spread over")
		cppNs    = flag.Float64("cpp-ns", 0, "ns of one PopSpread+Add pair measured by the C++ bench (baseline); 0 if unknown")
		out      = flag.String("out", "", "write the binding_pair_go record to this path")
		batchOut = flag.String("batch-out", "", "write the binding_add_batch_go record to this path")
		dur      = flag.Duration("duration", 1500*time.Millisecond, "measuring time per figure (after warm-up)")
		listCpp  = flag.Float64("list-cpp-ns", 0, "ns of one 100-object cache list measured by the C++ bench (baseline); 0 if unknown")
		listOut  = flag.String("list-out", "", "write the binding_list100_go record (a JSON array) to this path")
		limOut   = flag.String("limiter-out", "", "write the limiter_uncontended_go and limiter_contended_go records (a JSON array) to this path")
		scaleOut = flag.String("scaling-out", "", "write the binding_pair_scaling_go record (8 goroutines vs 1) to this path")
		getCpp   = flag.Float64("get-cpp-ns", 0, "ns of one C++ ObjectCache::Get at 100000 objects (cache_get, baseline); 0 if unknown")
		getOut   = flag.String("get-out", "", "write the cache_get_go record (a JSON array) to this path")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("berth-bench: ")

	e, err := berth.NewEngine()
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	// The same names as bench/pool_bench.cc, so both sides hash and compare
	// the same bytes.
	keys := make([]berth.Key, *n)
	for i := range keys {
		keys[i] = berth.Key{Namespace: "default", Name: fmt.Sprintf("sb-%d", i), Node: fmt.Sprintf("gke-pool-node-%d", i%*m), Ready: true}
	}

	pairNs, pairAllocs := benchPair(e, keys, *dur)
	pair := record{Name: "binding_pair_go", N: *n, M: *m, Threads: 1, BerthNsPerOp: pairNs, BaselineNs: *cppNs}
	if *cppNs > 0 {
		pair.Ratio = *cppNs / pairNs
	}
	fmt.Printf("pair PopSpread+Add  go %8.1f ns/op (%.1f allocs/op)  c++ %8.1f ns/op  ratio %.3f\n",
		pairNs, pairAllocs, *cppNs, pair.Ratio)

	one, many := benchPairScaling(e, keys, scalingThreads, *dur)
	scaling := record{Name: "binding_pair_scaling_go", N: *n, M: *m, Threads: scalingThreads, BerthNsPerOp: many, BaselineNs: one, Ratio: one / many}
	fmt.Printf("pair x%d goroutines  go %8.1f ns/op  1 goroutine %8.1f ns/op  throughput ratio %.3f\n",
		scalingThreads, many, one, scaling.Ratio)

	batchNs, singleNs := benchAddBatch(e, keys, *dur)
	batch := record{Name: "binding_add_batch_go", N: *n, M: *m, Threads: 1, BerthNsPerOp: batchNs, BaselineNs: singleNs, Ratio: singleNs / batchNs}
	fmt.Printf("add %d keys         batch %6.1f ns/key  single adds %6.1f ns/key  ratio %.3f\n",
		*n, batchNs, singleNs, batch.Ratio)

	listNs, listAllocs := benchList(*dur)
	lst := record{Name: "binding_list100_go", N: listObjects, M: listPerNS, Threads: 1, BerthNsPerOp: listNs, BaselineNs: *listCpp}
	if *listCpp > 0 {
		lst.Ratio = *listCpp / listNs
	}
	fmt.Printf("list 100 of %d       go %8.1f ns/op (%.1f allocs/op)  c++ %8.1f ns/op  ratio %.3f\n",
		listObjects, listNs, listAllocs, *listCpp, lst.Ratio)

	getNs, getAllocs := benchGet(*dur)
	get := record{Name: "cache_get_go", N: getObjects, M: getNamespaces, Threads: 1, BerthNsPerOp: getNs, BaselineNs: *getCpp}
	if *getCpp > 0 {
		get.Ratio = *getCpp / getNs
	}
	fmt.Printf("get 1 of %d        go %8.1f ns/op (%.1f allocs/op)  c++ %8.1f ns/op  ratio %.3f\n",
		getObjects, getNs, getAllocs, *getCpp, get.Ratio)

	unc, con := benchLimiter(*dur)
	fmt.Printf("limiter TryAcquire+Release  go %6.1f ns/op (%.1f allocs/op)  chan semaphore %6.1f ns/op  ratio %.3f\n",
		unc.BerthNsPerOp, unc.allocs, unc.BaselineNs, unc.Ratio)
	fmt.Printf("limiter 8 goroutines cap 4  go %6.1f ns/op (%.1f allocs/op)  x/sync semaphore %6.1f ns/op  ratio %.3f\n",
		con.BerthNsPerOp, con.allocs, con.BaselineNs, con.Ratio)

	write(*out, pair)
	write(*batchOut, batch)
	write(*scaleOut, scaling)
	write(*listOut, []record{lst})
	write(*limOut, []record{unc.record, con.record})
	write(*getOut, []record{get})
}

func write(path string, r any) {
	if path == "" {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
}

// measure runs op in chunks until d has passed and returns the median ns per
// op over several rounds, after a warm-up of d/4.
func measure(d time.Duration, op func(iters int)) float64 {
	const rounds = 5
	chunk := 1
	// Warm-up, which also sizes the chunk to about 10 ms.
	for start := time.Now(); time.Since(start) < d/4; {
		t := time.Now()
		op(chunk)
		if time.Since(t) < 10*time.Millisecond {
			chunk *= 2
		}
	}
	per := make([]float64, 0, rounds)
	for range rounds {
		iters := 0
		start := time.Now()
		for time.Since(start) < d/rounds {
			op(chunk)
			iters += chunk
		}
		per = append(per, float64(time.Since(start).Nanoseconds())/float64(iters))
	}
	slices.Sort(per)
	return per[rounds/2]
}

// measurePair is measure for two ops whose rounds alternate (a, b, a, b,
// ...), so load from elsewhere on the machine falls on both alike; the
// median round of each.
func measurePair(d time.Duration, a, b func(iters int)) (aNs, bNs float64) {
	const rounds = 5
	warm := func(op func(iters int)) int {
		chunk := 1
		for start := time.Now(); time.Since(start) < d/8; {
			t := time.Now()
			op(chunk)
			if time.Since(t) < 10*time.Millisecond {
				chunk *= 2
			}
		}
		return chunk
	}
	ca, cb := warm(a), warm(b)
	round := func(op func(iters int), chunk int) float64 {
		iters := 0
		start := time.Now()
		for time.Since(start) < d/rounds {
			op(chunk)
			iters += chunk
		}
		return float64(time.Since(start).Nanoseconds()) / float64(iters)
	}
	pa := make([]float64, 0, rounds)
	pb := make([]float64, 0, rounds)
	for range rounds {
		pa = append(pa, round(a, ca))
		pb = append(pb, round(b, cb))
	}
	slices.Sort(pa)
	slices.Sort(pb)
	return pa[rounds/2], pb[rounds/2]
}

func benchPair(e *berth.Engine, keys []berth.Key, d time.Duration) (nsPerOp, allocsPerOp float64) {
	const pool = "default/warm-pool"
	if _, err := e.AddBatch(pool, keys); err != nil {
		log.Fatal(err)
	}
	pair := func(iters int) {
		for range iters {
			h, ok, err := e.PopSpread(pool)
			if err != nil || !ok {
				log.Fatalf("PopSpread: %v, %v", ok, err)
			}
			if _, err := e.Add(pool, h.Key); err != nil {
				log.Fatal(err)
			}
		}
	}
	nsPerOp = measure(d, pair)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const allocIters = 100000
	pair(allocIters)
	runtime.ReadMemStats(&after)
	allocsPerOp = float64(after.Mallocs-before.Mallocs) / allocIters

	if s, err := e.Stats(pool); err != nil || s.Keys != uint64(len(keys)) {
		log.Fatalf("pool drifted: %+v, %v", s, err)
	}
	if _, err := e.RemovePool(pool); err != nil {
		log.Fatal(err)
	}
	return nsPerOp, allocsPerOp
}

const scalingThreads = 8

// benchPairScaling returns the wall ns per pair with 1 goroutine and with
// `threads` goroutines popping and re-adding on one pool of len(keys) keys.
// The two are timed in alternating rounds of d/10 each, after a warm-up, and
// the median round of each is returned.
func benchPairScaling(e *berth.Engine, keys []berth.Key, threads int, d time.Duration) (oneNs, manyNs float64) {
	const pool = "default/warm-pool-scaling"
	if _, err := e.AddBatch(pool, keys); err != nil {
		log.Fatal(err)
	}
	// run lets g goroutines run pairs until the round's time is up and
	// returns ns of wall time per pair over all of them.
	run := func(g int, round time.Duration) float64 {
		var stop atomic.Bool
		var total atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range g {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local int64
				for !stop.Load() {
					h, ok, err := e.PopSpread(pool)
					if err != nil || !ok {
						log.Fatalf("PopSpread: %v, %v", ok, err)
					}
					if _, err := e.Add(pool, h.Key); err != nil {
						log.Fatal(err)
					}
					local++
				}
				total.Add(local)
			}()
		}
		time.Sleep(round)
		stop.Store(true)
		wg.Wait()
		return float64(time.Since(start).Nanoseconds()) / float64(total.Load())
	}
	run(threads, d/8) // warm-up
	const rounds = 5
	var ones, manys []float64
	for range rounds {
		ones = append(ones, run(1, d/(2*rounds)))
		manys = append(manys, run(threads, d/(2*rounds)))
	}
	slices.Sort(ones)
	slices.Sort(manys)
	if s, err := e.Stats(pool); err != nil || s.Keys != uint64(len(keys)) {
		log.Fatalf("pool drifted: %+v, %v", s, err)
	}
	if _, err := e.RemovePool(pool); err != nil {
		log.Fatal(err)
	}
	return ones[rounds/2], manys[rounds/2]
}

// benchAddBatch returns ns per key for AddBatch and for single Add calls,
// each filling an empty pool with every key. Dropping the pool between fills
// is not timed.
func benchAddBatch(e *berth.Engine, keys []berth.Key, d time.Duration) (batchNs, singleNs float64) {
	const pool = "default/warm-pool-batch"
	fill := func(add func()) func(int) time.Duration {
		return func(iters int) time.Duration {
			var busy time.Duration
			for range iters {
				t := time.Now()
				add()
				busy += time.Since(t)
				if _, err := e.RemovePool(pool); err != nil {
					log.Fatal(err)
				}
			}
			return busy
		}
	}
	batch := fill(func() {
		if n, err := e.AddBatch(pool, keys); err != nil || n != len(keys) {
			log.Fatalf("AddBatch: %d, %v", n, err)
		}
	})
	single := fill(func() {
		for _, k := range keys {
			if _, err := e.Add(pool, k); err != nil {
				log.Fatal(err)
			}
		}
	})
	return measureBusy(d, batch) / float64(len(keys)), measureBusy(d, single) / float64(len(keys))
}

// measureBusy is measure for ops that time only part of their work: op
// returns the time to count, and the median ns per iteration is returned.
func measureBusy(d time.Duration, op func(iters int) time.Duration) float64 {
	const rounds = 5
	for start := time.Now(); time.Since(start) < d/4; {
		op(1)
	}
	per := make([]float64, 0, rounds)
	for range rounds {
		iters := 0
		var busy time.Duration
		for start := time.Now(); time.Since(start) < d/rounds; iters++ {
			busy += op(1)
		}
		per = append(per, float64(busy.Nanoseconds())/float64(iters))
	}
	slices.Sort(per)
	return per[rounds/2]
}

const (
	listObjects    = 10000
	listNamespaces = 100
	listPerNS      = listObjects / listNamespaces
)

// benchList times List("ns-7", nil) on a cache of listObjects objects over
// listNamespaces namespaces ("ns-0".."ns-99", names "obj-<i>", labels
// app=app-<i%10> and tier=t<i%3>, a 256-byte payload, resourceVersion i+1),
// reading every result's Name and Payload.
func benchList(d time.Duration) (nsPerOp, allocsPerOp float64) {
	c, err := berth.NewCache(berth.CacheOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	payload := make([]byte, 256)
	for i := range payload {
		payload[i] = byte(i)
	}
	objs := make([]berth.Object, listObjects)
	for i := range objs {
		objs[i] = berth.Object{
			Namespace:       fmt.Sprintf("ns-%d", i/listPerNS),
			Name:            fmt.Sprintf("obj-%d", i),
			ResourceVersion: uint64(i + 1),
			Labels:          map[string]string{"app": fmt.Sprintf("app-%d", i%10), "tier": fmt.Sprintf("t%d", i%3)},
			Payload:         payload,
		}
	}
	if err := c.Replace(objs, listObjects); err != nil {
		log.Fatal(err)
	}
	sink := 0
	op := func(iters int) {
		for range iters {
			l, err := c.List("ns-7", nil)
			if err != nil {
				log.Fatal(err)
			}
			if l.Len() != listPerNS {
				log.Fatalf("List(ns-7) returned %d objects, want %d", l.Len(), listPerNS)
			}
			for i := range l.Len() {
				v := l.At(i)
				sink += len(v.Name()) + len(v.Payload())
			}
		}
	}
	nsPerOp = measure(d, op)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const allocIters = 10000
	op(allocIters)
	runtime.ReadMemStats(&after)
	allocsPerOp = float64(after.Mallocs-before.Mallocs) / allocIters
	if sink == 0 {
		log.Fatal("nothing read")
	}
	return nsPerOp, allocsPerOp
}

const (
	getObjects    = 100000
	getNamespaces = 100
	getKeys       = 1024
)

// benchGet times Cache.Get on the workload of bench/cache_bench.cc: object i
// is ns-<i%100>/obj-<i> with labels app, tier and env and a 256-byte payload
// at resourceVersion i+1, and the keys are objects (k*7919)%100000 for
// k < 1024, cycled. Each Get also reads the view's payload length, so the
// view cannot be optimized away.
func benchGet(d time.Duration) (nsPerOp, allocs float64) {
	c, err := berth.NewCache(berth.CacheOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	payload := bytes.Repeat([]byte{'p'}, 256)
	tiers := [...]string{"a", "b", "c", "d"}
	objs := make([]berth.Object, getObjects)
	for i := range objs {
		app := fmt.Sprintf("app-%d", i%97)
		if i%500 == 0 {
			app = "x"
		}
		env := "dev"
		if i%2 == 0 {
			env = "prod"
		}
		objs[i] = berth.Object{
			Namespace:       fmt.Sprintf("ns-%d", i%getNamespaces),
			Name:            fmt.Sprintf("obj-%d", i),
			ResourceVersion: uint64(i + 1),
			Labels:          map[string]string{"app": app, "tier": tiers[(i/3)%4], "env": env},
			Payload:         payload,
		}
	}
	if err := c.Replace(objs, getObjects); err != nil {
		log.Fatal(err)
	}
	type key struct{ ns, name string }
	keys := make([]key, getKeys)
	for k := range keys {
		o := &objs[(k*7919)%getObjects]
		keys[k] = key{o.Namespace, o.Name}
	}
	objs = nil
	sink, next := 0, 0
	op := func(iters int) {
		for range iters {
			k := &keys[next&(getKeys-1)]
			next++
			v, ok, err := c.Get(k.ns, k.name)
			if err != nil || !ok {
				log.Fatalf("Get(%s/%s) = %v, %v", k.ns, k.name, ok, err)
			}
			sink += len(v.Payload())
		}
	}
	nsPerOp = measure(d, op)
	allocs = allocsPerOp(op)
	if sink == 0 {
		log.Fatal("nothing read")
	}
	return nsPerOp, allocs
}

type limiterFigure struct {
	record
	allocs float64
}

const (
	limiterThreads  = 8
	limiterCapacity = 4
)

// benchLimiter measures the two limiter figures (see the package comment).
func benchLimiter(d time.Duration) (unc, con limiterFigure) {
	l1, err := berth.NewLimiter(1)
	if err != nil {
		log.Fatal(err)
	}
	defer l1.Close()
	pair := func(iters int) {
		for range iters {
			if ok, reason, err := l1.TryAcquire(1); !ok || err != nil {
				log.Fatalf("TryAcquire: %v, %v, %v", ok, reason, err)
			}
			if err := l1.Release(1); err != nil {
				log.Fatal(err)
			}
		}
	}
	sem := make(chan struct{}, 1)
	chanPair := func(iters int) {
		for range iters {
			select {
			case sem <- struct{}{}:
			default:
				log.Fatal("channel semaphore full")
			}
			<-sem
		}
	}
	unc.record = record{Name: "limiter_uncontended_go", N: 1, Threads: 1,
		BerthNsPerOp: measure(d, pair), BaselineNs: measure(d, chanPair)}
	unc.Ratio = unc.BaselineNs / unc.BerthNsPerOp
	unc.allocs = allocsPerOp(pair)

	ctx := context.Background()
	l4, err := berth.NewLimiter(limiterCapacity)
	if err != nil {
		log.Fatal(err)
	}
	defer l4.Close()
	berthLoop := contended(func() {
		if err := l4.Acquire(ctx, 1); err != nil {
			log.Fatal(err)
		}
		runtime.Gosched()
		if err := l4.Release(1); err != nil {
			log.Fatal(err)
		}
	})
	w := semaphore.NewWeighted(limiterCapacity)
	semLoop := contended(func() {
		if err := w.Acquire(ctx, 1); err != nil {
			log.Fatal(err)
		}
		runtime.Gosched()
		w.Release(1)
	})
	con.record = record{Name: "limiter_contended_go", N: limiterCapacity, Threads: limiterThreads}
	con.BerthNsPerOp, con.BaselineNs = measurePair(d, berthLoop, semLoop)
	con.Ratio = con.BaselineNs / con.BerthNsPerOp
	con.allocs = allocsPerOp(berthLoop)
	if s, err := l4.Stats(); err != nil || s.InUse != 0 || s.Waiting != 0 {
		log.Fatalf("limiter drifted: %+v, %v", s, err)
	}
	return unc, con
}

// contended returns an op running iters iterations of one, split over
// limiterThreads goroutines.
func contended(one func()) func(iters int) {
	return func(iters int) {
		per := max(1, iters/limiterThreads)
		var wg sync.WaitGroup
		for range limiterThreads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range per {
					one()
				}
			}()
		}
		wg.Wait()
	}
}

func allocsPerOp(op func(iters int)) float64 {
	var before, after runtime.MemStats
	const iters = 1 << 16
	runtime.ReadMemStats(&before)
	op(iters)
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / iters
}
