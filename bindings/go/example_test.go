package berth_test

import (
	"errors"
	"fmt"

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
