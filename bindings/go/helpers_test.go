//go:build cgo

package berth

import (
	"errors"
	"slices"
	"testing"
)

func newEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine()
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func mustAdd(t testing.TB, e *Engine, pool string, keys ...Key) {
	t.Helper()
	for _, k := range keys {
		if _, err := e.Add(pool, k); err != nil {
			t.Fatalf("Add(%q, %+v): %v", pool, k, err)
		}
	}
}

func ready(name, node string) Key   { return Key{Namespace: "ns", Name: name, Node: node, Ready: true} }
func unready(name, node string) Key { return Key{Namespace: "ns", Name: name, Node: node} }

type popFunc func(pool string) (HandedOut, bool, error)

// popNames pops until the pool is empty and returns the names in order.
func popNames(t testing.TB, pop popFunc, pool string) []string {
	t.Helper()
	var names []string
	for {
		h, ok, err := pop(pool)
		if err != nil {
			t.Fatalf("pop(%q): %v", pool, err)
		}
		if !ok {
			return names
		}
		names = append(names, h.Name)
	}
}

func wantNames(t testing.TB, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("got keys %q, want %q", got, want)
	}
}

func wantStatus(t testing.TB, err error, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("got error %v, want %v", err, sentinel)
	}
}

func snapshotNames(t testing.TB, e *Engine, pool string) []string {
	t.Helper()
	s, err := e.Snapshot(pool)
	if err != nil {
		t.Fatalf("Snapshot(%q): %v", pool, err)
	}
	var names []string
	for _, k := range s.All() {
		names = append(names, k.Name)
	}
	return names
}
