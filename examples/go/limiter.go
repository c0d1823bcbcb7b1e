package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
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

// sharedLimiterExample caps sandbox starts across every worker process of
// the host: each worker opens the same name (the first creates it), and the
// permits of a worker that crashes while holding them come back. Here one
// process plays two workers, with one handle each.
func sharedLimiterExample() {
	name := fmt.Sprintf("example-starts-%d", os.Getpid())
	a, err := berth.OpenSharedLimiter(name, 2, true) // created with capacity 2
	if err != nil {
		log.Fatal(err)
	}
	defer berth.UnlinkSharedLimiter(name) // runs after the Closes below
	defer a.Close()
	b, err := berth.OpenSharedLimiter(name, 0, false) // opens the existing one
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	ctx := context.Background()
	if err := a.Acquire(ctx, 2); err != nil {
		log.Fatal(err)
	}
	// b waits for the capacity a holds, until a releases.
	done := make(chan error, 1)
	go func() { done <- b.Acquire(ctx, 1) }()
	time.Sleep(10 * time.Millisecond)
	if err := a.Release(2); err != nil {
		log.Fatal(err)
	}
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	s, err := a.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("shared limiter: %d in use by %d process, %d granted, %d reclaimed\n",
		s.InUse, s.Holders, s.Granted, s.Reclaimed)
	if err := b.Release(1); err != nil {
		log.Fatal(err)
	}
}
