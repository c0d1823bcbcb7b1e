//go:build cgo

package berth

import (
	"sync"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/berth-sched/berth/bindings/go/internal/fb"
)

// batchBuilder builds berth.fb.PoolKeyBatch buffers. Builders are reused
// through batchBuilders so a steady stream of batches allocates nothing.
type batchBuilder struct {
	b    *flatbuffers.Builder
	offs []flatbuffers.UOffsetT
}

// Builders that grew past this are dropped instead of pooled, so one huge
// batch does not pin its memory for the life of the process.
const maxPooledBuilderBytes = 16 << 20

var batchBuilders = sync.Pool{
	New: func() any { return &batchBuilder{b: flatbuffers.NewBuilder(4096)} },
}

func getBatchBuilder() *batchBuilder { return batchBuilders.Get().(*batchBuilder) }

func putBatchBuilder(bb *batchBuilder) {
	if cap(bb.b.Bytes) > maxPooledBuilderBytes {
		return
	}
	batchBuilders.Put(bb)
}

// build encodes keys as a PoolKeyBatch with file identifier "BPKB". The
// returned bytes belong to bb and are valid until its next use. Strings are
// copied as they are: the library validates them (UTF-8, NUL, lengths).
func (bb *batchBuilder) build(keys []Key) []byte {
	b := bb.b
	b.Reset()
	if cap(bb.offs) < len(keys) {
		bb.offs = make([]flatbuffers.UOffsetT, len(keys))
	}
	offs := bb.offs[:len(keys)]
	for i := range keys {
		k := &keys[i]
		var ns, node flatbuffers.UOffsetT
		if k.Namespace != "" {
			ns = b.CreateString(k.Namespace)
		}
		// The name is always written, even empty, so that an empty name is
		// reported as an invalid name at its index.
		name := b.CreateString(k.Name)
		if k.Node != "" {
			node = b.CreateString(k.Node)
		}
		fb.PoolKeyStart(b)
		if ns != 0 {
			fb.PoolKeyAddNamespace(b, ns)
		}
		fb.PoolKeyAddName(b, name)
		if node != 0 {
			fb.PoolKeyAddNode(b, node)
		}
		fb.PoolKeyAddReady(b, k.Ready)
		offs[i] = fb.PoolKeyEnd(b)
	}
	fb.PoolKeyBatchStartKeysVector(b, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	vec := b.EndVector(len(offs))
	fb.PoolKeyBatchStart(b)
	fb.PoolKeyBatchAddKeys(b, vec)
	b.FinishWithFileIdentifier(fb.PoolKeyBatchEnd(b), idBatch)
	return b.FinishedBytes()
}
