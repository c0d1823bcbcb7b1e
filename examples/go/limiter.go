package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	berth "github.com/berth-sched/berth/bindings/go"
)

// limiterExample caps how many sandboxes start at once: each start holds
// permits (a large sandbox holds more) for as long as it runs. Waiting
// goroutines are served in arrival order, and one that gives up (its
// context ends) holds nothing.
func limiterExample() {
	l, err := berth.NewLimiter(4)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	var wg sync.WaitGroup
	for i, weight := range []int64{1, 2, 4, 1, 2} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := l.Acquire(ctx, weight); err != nil {
				log.Printf("sandbox-%d: gave up: %v", i, err)
				return
			}
			defer l.Release(weight)
			time.Sleep(10 * time.Millisecond) // the start itself
		})
	}
	wg.Wait()

	// A caller that cannot wait long: the limiter is full, so the deadline
	// passes and nothing is taken.
	if ok, _, err := l.TryAcquire(4); !ok || err != nil {
		log.Fatalf("TryAcquire(4): %v, %v", ok, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	err = l.Acquire(ctx, 1)
	fmt.Println("limiter: acquire on a full limiter:", errors.Is(err, context.DeadlineExceeded))
	if err := l.Release(4); err != nil {
		log.Fatal(err)
	}

	s, err := l.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("limiter: %d granted, %d in use, %d waiting\n", s.Granted, s.InUse, s.Waiting)
}
