//go:build cgo

package berth_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	berth "github.com/berth-sched/berth/bindings/go"
)

func ExampleEngine_PopSpread() {
	e, err := berth.NewEngine()
	if err != nil {
		panic(err)
	}
	defer e.Close()

	const pool = "default/warm-pool"
	_, err = e.AddBatch(pool, []berth.Key{
		{Namespace: "default", Name: "sb-1", Node: "node-a", Ready: true},
		{Namespace: "default", Name: "sb-2", Node: "node-b", Ready: true},
		{Namespace: "default", Name: "sb-3", Node: "node-b", Ready: true},
	})
	if err != nil {
		panic(err)
	}
	h, ok, err := e.PopSpread(pool) // node-b holds the most keys
	fmt.Println(h.Name, h.Node, ok, err)

	restored, err := e.PutBack(pool, h) // could not use it after all
	fmt.Println(restored, err)

	_, _, err = e.PopSpread("no-such-pool")
	fmt.Println(errors.Is(err, berth.ErrNotFound))
	// Output:
	// sb-2 node-b true <nil>
	// true <nil>
	// true
}

func ExampleCache_List() {
	c, err := berth.NewCache(berth.CacheOptions{})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	// Before the first relist the cache cannot answer.
	_, err = c.List("", nil)
	fmt.Println(errors.Is(err, berth.ErrNotSynced))

	// The relist, at resourceVersion 100.
	err = c.Replace([]berth.Object{
		{Namespace: "default", Name: "sb-1", ResourceVersion: 90, Labels: map[string]string{"app": "web", "tier": "frontend"}},
		{Namespace: "default", Name: "sb-2", ResourceVersion: 95, Labels: map[string]string{"app": "web", "tier": "backend"}},
		{Namespace: "other", Name: "sb-3", ResourceVersion: 99, Labels: map[string]string{"app": "web"}},
	}, 100)
	if err != nil {
		panic(err)
	}
	// Watch events: one new object, and a stale modification that the
	// version guard drops.
	n, err := c.Apply([]berth.Event{
		{Type: berth.Added, Object: berth.Object{Namespace: "default", Name: "sb-4", ResourceVersion: 101,
			Labels: map[string]string{"app": "web", "tier": "frontend"}, Payload: []byte(`{"spec":{}}`)}},
		{Type: berth.Modified, Object: berth.Object{Namespace: "default", Name: "sb-1", ResourceVersion: 80}},
	})
	fmt.Println(n, err)

	sel, err := berth.ParseSelector("app = web, tier in (frontend)")
	if err != nil {
		panic(err)
	}
	defer sel.Close()
	l, err := c.List("default", sel)
	if err != nil {
		panic(err)
	}
	fmt.Println(sel, "at", l.ResourceVersion())
	for _, o := range l.All() {
		tier, _ := o.Label("tier")
		fmt.Printf("%s/%s rv=%d tier=%s payload=%q\n", o.Namespace(), o.Name(), o.ResourceVersion(), tier, o.Payload())
	}
	// Output:
	// true
	// 1 <nil>
	// app=web,tier in (frontend) at 101
	// default/sb-1 rv=90 tier=frontend payload=""
	// default/sb-4 rv=101 tier=frontend payload="{\"spec\":{}}"
}

func ExampleParseSelector() {
	_, err := berth.ParseSelector("environment in (production qa)")
	fmt.Println(errors.Is(err, berth.ErrBadSelector))
	fmt.Println(err)
	// Output:
	// true
	// berth: BERTH_ERR_BAD_SELECTOR: berth_selector_parse: at byte 27: found 'qa', expected: ',' or ')'
}

func ExampleLimiter_Acquire() {
	l, err := berth.NewLimiter(2)
	if err != nil {
		panic(err)
	}
	defer l.Close()

	ctx := context.Background()
	fmt.Println(l.Acquire(ctx, 2)) // free: granted at once

	// Full: this waiter gives up at its deadline, holding nothing.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	fmt.Println(errors.Is(l.Acquire(short, 1), context.DeadlineExceeded))

	ok, reason, _ := l.TryAcquire(1)
	fmt.Println(ok, reason)

	fmt.Println(l.Release(2))
	_, _, err = l.TryAcquire(3) // more than the capacity could ever grant
	fmt.Println(errors.Is(err, berth.ErrInvalidArgument))
	// Output:
	// <nil>
	// true
	// false RefusedAtCapacity
	// <nil>
	// true
}

func ExampleBucket_ReserveAt() {
	b, err := berth.NewBucket(10, 5) // 10 tokens per second, burst 5
	if err != nil {
		panic(err)
	}
	defer b.Close()

	t0 := berth.Now()
	ok, _ := b.AllowAt(t0, 5) // starts full
	fmt.Println(ok)
	r, _ := b.ReserveAt(t0, 2) // into debt: act in 200ms
	fmt.Println(r.DelayFrom(t0))
	r.CancelAt(t0) // changed our mind: the tokens come back
	ok, _ = b.AllowAt(t0.Add(100*time.Millisecond), 1)
	fmt.Println(ok)
	// Output:
	// true
	// 200ms
	// true
}
