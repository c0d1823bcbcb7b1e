// Command example fills a warm pool over a few nodes, hands keys out with
// PopSpread, puts one back and prints the pool's counters; then it feeds an
// object cache a relist and a watch event and lists it by label selector
// (cache.go); then it caps concurrent sandbox starts with a limiter, and
// with a limiter shared by every process of the host (limiter.go).
package main

import (
	"fmt"
	"log"

	berth "github.com/berth-sched/berth/bindings/go"
)

func main() {
	e, err := berth.NewEngine()
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	const pool = "default/warm-pool"
	var keys []berth.Key
	for i := range 9 {
		keys = append(keys, berth.Key{
			Namespace: "default",
			Name:      fmt.Sprintf("sandbox-%d", i),
			Node:      fmt.Sprintf("node-%d", i%3),
			Ready:     i != 4, // one key is still starting
		})
	}
	if _, err := e.AddBatch(pool, keys); err != nil {
		log.Fatal(err)
	}

	// Claims spread over the nodes: the fullest node gives up a key first.
	var claimed []berth.HandedOut
	for range 4 {
		h, ok, err := e.PopSpread(pool)
		if err != nil || !ok {
			log.Fatalf("PopSpread: %v, %v", ok, err)
		}
		fmt.Printf("claimed %s on %s (seq %d)\n", h.Name, h.Node, h.Seq)
		claimed = append(claimed, h)
	}

	// The last claim could not be used: return it at its original age.
	restored, err := e.PutBack(pool, claimed[len(claimed)-1])
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("put back:", restored)

	s, err := e.Stats(pool)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("stats: %d keys, %d ready, %d nodes\n", s.Keys, s.ReadyKeys, s.Nodes)
	nodes, err := e.NodeStats(pool)
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range nodes {
		fmt.Printf("  %s: %d keys (%d ready)\n", n.Node, n.Keys, n.ReadyKeys)
	}

	cacheExample()
	limiterExample()
	sharedLimiterExample()
}
