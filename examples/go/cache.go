package main

import (
	"fmt"
	"log"

	berth "github.com/berth-sched/berth/bindings/go"
)

// cacheExample keeps a local copy of sandboxes the way a controller's
// informer would: a relist, then watch events, then reads by selector that
// never go to the API server.
func cacheExample() {
	c, err := berth.NewCache(berth.CacheOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	sandbox := func(ns, name string, rv uint64, pool, phase string) berth.Object {
		return berth.Object{
			Namespace:       ns,
			Name:            name,
			ResourceVersion: rv,
			Labels:          map[string]string{"pool": pool, "phase": phase},
			Payload:         []byte(fmt.Sprintf(`{"metadata":{"name":%q}}`, name)),
		}
	}

	// The relist (LIST at resourceVersion 1000).
	err = c.Replace([]berth.Object{
		sandbox("team-a", "sb-1", 990, "warm", "Ready"),
		sandbox("team-a", "sb-2", 995, "warm", "Pending"),
		sandbox("team-a", "sb-3", 998, "cold", "Ready"),
		sandbox("team-b", "sb-4", 999, "warm", "Ready"),
	}, 1000)
	if err != nil {
		log.Fatal(err)
	}

	// Watch events: sb-2 becomes ready, sb-3 is deleted, and a late
	// duplicate of an old sb-1 event is dropped by the version guard.
	applied, err := c.Apply([]berth.Event{
		{Type: berth.Modified, Object: sandbox("team-a", "sb-2", 1001, "warm", "Ready")},
		{Type: berth.Deleted, Object: berth.Object{Namespace: "team-a", Name: "sb-3", ResourceVersion: 1002}},
		{Type: berth.Modified, Object: sandbox("team-a", "sb-1", 980, "warm", "Pending")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cache: applied %d of 3 watch events\n", applied)

	sel, err := berth.ParseSelector("pool = warm, phase in (Ready)")
	if err != nil {
		log.Fatal(err)
	}
	defer sel.Close()
	l, err := c.List("team-a", sel)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cache: %q in team-a at resourceVersion %d:\n", sel, l.ResourceVersion())
	for _, o := range l.All() {
		fmt.Printf("  %s/%s rv=%d %s\n", o.Namespace(), o.Name(), o.ResourceVersion(), o.Payload())
	}

	s, err := c.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("cache: %d objects, %d tombstones, %d ignored\n", s.Objects, s.Tombstones, s.Ignored)
}
