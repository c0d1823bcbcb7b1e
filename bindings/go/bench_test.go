package berth

import (
	"fmt"
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
