//go:build cgo

package berth

import (
	"iter"

	"github.com/berth-sched/berth/bindings/go/internal/fb"
)

// Snapshot is every key of a pool at one instant, oldest first. It holds a
// Go copy of the berth.fb.PoolSnapshot buffer the library returned and
// decodes keys on access. It is immutable and safe for concurrent use.
type Snapshot struct {
	buf  []byte
	root *fb.PoolSnapshot
}

// SnapshotKey is one key of a Snapshot with its age.
type SnapshotKey struct {
	Key
	Seq uint64 // age: smaller is older
}

// Snapshot returns every key of pool, oldest first, taken atomically.
func (e *Engine) Snapshot(pool string) (*Snapshot, error) {
	buf, err := e.poolBuffer(pool, 0, "Snapshot", idSnapshot)
	if err != nil {
		return nil, err
	}
	return &Snapshot{buf: buf, root: fb.GetRootAsPoolSnapshot(buf, 0)}, nil
}

// Pool returns the name of the pool the snapshot was taken of.
func (s *Snapshot) Pool() string { return string(s.root.Pool()) }

// Len returns the number of keys.
func (s *Snapshot) Len() int { return s.root.KeysLength() }

// Key returns the i-th oldest key. It panics if i is out of range.
func (s *Snapshot) Key(i int) SnapshotKey {
	if i < 0 || i >= s.Len() {
		panic("berth: Snapshot.Key index out of range")
	}
	var k fb.PoolKey
	s.root.Keys(&k, i)
	return SnapshotKey{
		Key: Key{
			Namespace: string(k.Namespace()),
			Name:      string(k.Name()),
			Node:      string(k.Node()),
			Ready:     k.Ready(),
		},
		Seq: k.Seq(),
	}
}

// All iterates over the keys, oldest first.
func (s *Snapshot) All() iter.Seq2[int, SnapshotKey] {
	return func(yield func(int, SnapshotKey) bool) {
		for i, n := 0, s.Len(); i < n; i++ {
			if !yield(i, s.Key(i)) {
				return
			}
		}
	}
}

// Keys decodes every key, oldest first.
func (s *Snapshot) Keys() []SnapshotKey {
	out := make([]SnapshotKey, s.Len())
	for i := range out {
		out[i] = s.Key(i)
	}
	return out
}

// Bytes returns the raw berth.fb.PoolSnapshot buffer (identifier "BPSN").
// The caller must not modify it.
func (s *Snapshot) Bytes() []byte { return s.buf }

// NodeStat is the key count of one node in a pool.
type NodeStat struct {
	Node      string
	Keys      uint64 // keys of the pool on this node, ready or not
	ReadyKeys uint64
}

// NodeStats returns, for each node holding keys of pool, its key counts,
// sorted by node name. Unscheduled keys are not listed (see Stats).
func (e *Engine) NodeStats(pool string) ([]NodeStat, error) {
	buf, err := e.poolBuffer(pool, 1, "NodeStats", idNodeStats)
	if err != nil {
		return nil, err
	}
	root := fb.GetRootAsPoolNodeStats(buf, 0)
	out := make([]NodeStat, root.NodesLength())
	var n fb.NodeStat
	for i := range out {
		root.Nodes(&n, i)
		out[i] = NodeStat{Node: string(n.Node()), Keys: n.Keys(), ReadyKeys: n.ReadyKeys()}
	}
	return out, nil
}
