//go:build cgo

package berth

import (
	"encoding/binary"
	"iter"
	"strings"
	"sync"
	"unsafe"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/berth-sched/berth/bindings/go/internal/fb"
)

// ObjectList is the result of Cache.List: objects sorted by (namespace, name)
// and the cache's resourceVersion, taken atomically. It holds one Go copy of
// the berth.fb.ObjectList buffer the library returned and decodes fields only
// when they are read. It is immutable and safe for concurrent use.
//
// The strings and byte slices an ObjectView returns are not copies: they
// point into the list's buffer, so reading them allocates nothing, and any of
// them keeps the whole buffer alive. Use ObjectView.Object for an
// independent copy, or clone (strings.Clone, bytes.Clone) the pieces you keep
// after dropping the list. Never modify a returned Payload.
type ObjectList struct {
	buf  []byte
	root fb.ObjectList
	n    int
}

func newObjectList(buf []byte, op string) (*ObjectList, error) {
	if !hasIdentifier(buf, string(idObjectList)) {
		return nil, badIdentifier(op, string(idObjectList))
	}
	l := &ObjectList{buf: buf}
	l.root.Init(buf, flatbuffers.GetUOffsetT(buf))
	l.n = l.root.ObjectsLength()
	return l, nil
}

// Len returns the number of objects.
func (l *ObjectList) Len() int { return l.n }

// ResourceVersion returns the cache's resourceVersion when the list was
// taken: the largest resourceVersion applied so far.
func (l *ObjectList) ResourceVersion() uint64 {
	if l.buf == nil {
		return 0
	}
	return l.root.ResourceVersion()
}

// At returns the i-th object. It panics if i is out of range.
func (l *ObjectList) At(i int) ObjectView {
	if uint(i) >= uint(l.n) {
		panic("berth: ObjectList.At index out of range")
	}
	var v ObjectView
	l.root.Objects(&v.o, i)
	return v
}

// All iterates over the objects in order.
func (l *ObjectList) All() iter.Seq2[int, ObjectView] {
	return func(yield func(int, ObjectView) bool) {
		for i := range l.n {
			if !yield(i, l.At(i)) {
				return
			}
		}
	}
}

// Bytes returns the raw berth.fb.ObjectList buffer (identifier "BOBL"). The
// caller must not modify it.
func (l *ObjectList) Bytes() []byte { return l.buf }

// ObjectView reads one object of an ObjectList, or the object Cache.Get
// returned, in place. Its strings and Payload alias the bytes it reads: the
// list's buffer (see ObjectList), or for Get the view's own copy of the
// object, which nothing else references or changes. The zero ObjectView
// reads as an empty object.
type ObjectView struct {
	o   fb.Object // an object of an ObjectList; unused when got is set
	got gotObject // the copy Cache.Get made; nil for list objects
}

func (v *ObjectView) valid() bool { return v.got != nil || v.o.Table().Bytes != nil }

// aliasString returns b as a string without copying. b must never change.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// gotObject is one object as bg_cache_get_object (cache.go) lays it out: a
// 24-byte header (resourceVersion, then the namespace, name and payload
// lengths and the label count n as uint32), n (key length, value length)
// pairs, then the namespace, name and payload bytes and each label's key and
// value bytes. Native-endian, as C wrote it. Reading a field is O(1), a
// label O(n).
type gotObject []byte

const gotHeader = 24

func (g gotObject) u32(off int) int { return int(binary.NativeEndian.Uint32(g[off:])) }

func (g gotObject) resourceVersion() uint64 { return binary.NativeEndian.Uint64(g) }
func (g gotObject) labelsLen() int          { return g.u32(20) }

// text returns the bytes from off to off+n, capacity trimmed.
func (g gotObject) text(off, n int) []byte { return g[off : off+n : off+n] }

// namespaceAt is where the namespace starts; the name and payload follow it.
func (g gotObject) namespaceAt() int { return gotHeader + 8*g.labelsLen() }

func (g gotObject) namespace() []byte { return g.text(g.namespaceAt(), g.u32(8)) }
func (g gotObject) name() []byte      { return g.text(g.namespaceAt()+g.u32(8), g.u32(12)) }

func (g gotObject) payload() []byte {
	return g.text(g.namespaceAt()+g.u32(8)+g.u32(12), g.u32(16))
}

// labels calls yield with each label's key and value, in key order, until it
// returns false.
func (g gotObject) labels(yield func(k, v []byte) bool) {
	n := g.labelsLen()
	at := g.namespaceAt() + g.u32(8) + g.u32(12) + g.u32(16)
	for j := range n {
		kl, vl := g.u32(gotHeader+8*j), g.u32(gotHeader+8*j+4)
		if !yield(g.text(at, kl), g.text(at+kl, vl)) {
			return
		}
		at += kl + vl
	}
}

// Namespace returns the object's namespace ("" if it has none).
func (v ObjectView) Namespace() string {
	if v.got != nil {
		return aliasString(v.got.namespace())
	}
	if !v.valid() {
		return ""
	}
	return aliasString(v.o.Namespace())
}

// Name returns the object's name.
func (v ObjectView) Name() string {
	if v.got != nil {
		return aliasString(v.got.name())
	}
	if !v.valid() {
		return ""
	}
	return aliasString(v.o.Name())
}

// ResourceVersion returns the object's resourceVersion.
func (v ObjectView) ResourceVersion() uint64 {
	if v.got != nil {
		return v.got.resourceVersion()
	}
	if !v.valid() {
		return 0
	}
	return v.o.ResourceVersion()
}

// LabelsLen returns the number of labels.
func (v ObjectView) LabelsLen() int {
	if v.got != nil {
		return v.got.labelsLen()
	}
	if !v.valid() {
		return 0
	}
	return v.o.LabelsLength()
}

// Label returns the value of the label key and whether the object has it.
func (v ObjectView) Label(key string) (val string, ok bool) {
	if v.got != nil {
		v.got.labels(func(k, kv []byte) bool {
			if string(k) == key {
				val, ok = aliasString(kv), true
				return false
			}
			return true
		})
		return val, ok
	}
	if !v.valid() {
		return "", false
	}
	var l fb.Label
	for j, n := 0, v.o.LabelsLength(); j < n; j++ {
		v.o.Labels(&l, j)
		if string(l.Key()) == key {
			return aliasString(l.Value()), true
		}
	}
	return "", false
}

// Labels decodes every label into a new map (whose strings alias the bytes
// the view reads). An object without labels gives an empty, non-nil map.
func (v ObjectView) Labels() map[string]string {
	if v.got != nil {
		m := make(map[string]string, v.got.labelsLen())
		v.got.labels(func(k, kv []byte) bool {
			m[aliasString(k)] = aliasString(kv)
			return true
		})
		return m
	}
	if !v.valid() {
		return map[string]string{}
	}
	n := v.o.LabelsLength()
	m := make(map[string]string, n)
	var l fb.Label
	for j := range n {
		v.o.Labels(&l, j)
		m[aliasString(l.Key())] = aliasString(l.Value())
	}
	return m
}

// Payload returns the object's payload. It is a sub-slice of the bytes the
// view reads, not a copy: do not modify it. Its capacity is its length, so
// appending to it copies.
func (v ObjectView) Payload() []byte {
	if v.got != nil {
		if p := v.got.payload(); len(p) > 0 {
			return p
		}
		return nil // as a list's object without a payload reads
	}
	if !v.valid() {
		return nil
	}
	p := v.o.PayloadBytes()
	return p[:len(p):len(p)]
}

// Object returns an independent copy of the object: its strings, labels and
// payload share nothing with the bytes the view reads.
func (v ObjectView) Object() Object {
	o := Object{
		Namespace:       strings.Clone(v.Namespace()),
		Name:            strings.Clone(v.Name()),
		ResourceVersion: v.ResourceVersion(),
		Labels:          make(map[string]string, v.LabelsLen()),
	}
	if p := v.Payload(); len(p) > 0 {
		o.Payload = append([]byte(nil), p...)
	}
	for k, val := range v.Labels() {
		o.Labels[strings.Clone(k)] = strings.Clone(val)
	}
	return o
}

// objectBuilder builds berth.fb.EventBatch and berth.fb.ObjectList buffers.
// Builders are reused through objectBuilders so a steady stream of batches
// allocates little.
type objectBuilder struct {
	b     *flatbuffers.Builder
	offs  []flatbuffers.UOffsetT // events or objects
	loffs []flatbuffers.UOffsetT // labels of one object
}

var objectBuilders = sync.Pool{
	New: func() any { return &objectBuilder{b: flatbuffers.NewBuilder(4096)} },
}

func getObjectBuilder() *objectBuilder { return objectBuilders.Get().(*objectBuilder) }

func putObjectBuilder(ob *objectBuilder) {
	if cap(ob.b.Bytes) > maxPooledBuilderBytes {
		return
	}
	objectBuilders.Put(ob)
}

// object writes one Object table. With full false (a Deleted event) only
// namespace, name and resourceVersion are written. The name is always
// written, even empty, so that an empty name is reported as an invalid name
// at its index. Strings and labels are copied as they are: the library
// validates them.
func (ob *objectBuilder) object(o *Object, full bool) flatbuffers.UOffsetT {
	b := ob.b
	var labels, payload flatbuffers.UOffsetT
	if full && len(o.Labels) > 0 {
		ob.loffs = ob.loffs[:0]
		for k, v := range o.Labels {
			ko := b.CreateString(k)
			var vo flatbuffers.UOffsetT
			if v != "" {
				vo = b.CreateString(v)
			}
			fb.LabelStart(b)
			fb.LabelAddKey(b, ko)
			if vo != 0 {
				fb.LabelAddValue(b, vo)
			}
			ob.loffs = append(ob.loffs, fb.LabelEnd(b))
		}
		fb.ObjectStartLabelsVector(b, len(ob.loffs))
		for i := len(ob.loffs) - 1; i >= 0; i-- {
			b.PrependUOffsetT(ob.loffs[i])
		}
		labels = b.EndVector(len(ob.loffs))
	}
	if full && len(o.Payload) > 0 {
		payload = b.CreateByteVector(o.Payload)
	}
	var ns flatbuffers.UOffsetT
	if o.Namespace != "" {
		ns = b.CreateString(o.Namespace)
	}
	name := b.CreateString(o.Name)
	fb.ObjectStart(b)
	if ns != 0 {
		fb.ObjectAddNamespace(b, ns)
	}
	fb.ObjectAddName(b, name)
	fb.ObjectAddResourceVersion(b, o.ResourceVersion)
	if labels != 0 {
		fb.ObjectAddLabels(b, labels)
	}
	if payload != 0 {
		fb.ObjectAddPayload(b, payload)
	}
	return fb.ObjectEnd(b)
}

// vector writes ob.offs as a vector of tables.
func (ob *objectBuilder) vector() flatbuffers.UOffsetT {
	b := ob.b
	b.StartVector(4, len(ob.offs), 4)
	for i := len(ob.offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(ob.offs[i])
	}
	return b.EndVector(len(ob.offs))
}

// eventBatch encodes events as an EventBatch with identifier "BEVB". The
// returned bytes belong to ob and are valid until its next use.
func (ob *objectBuilder) eventBatch(events []Event) []byte {
	b := ob.b
	b.Reset()
	ob.offs = ob.offs[:0]
	for i := range events {
		ev := &events[i]
		obj := ob.object(&ev.Object, ev.Type != Deleted)
		fb.EventStart(b)
		fb.EventAddType(b, fb.EventType(ev.Type))
		fb.EventAddObject(b, obj)
		ob.offs = append(ob.offs, fb.EventEnd(b))
	}
	vec := ob.vector()
	fb.EventBatchStart(b)
	fb.EventBatchAddEvents(b, vec)
	b.FinishWithFileIdentifier(fb.EventBatchEnd(b), idEventBatch)
	return b.FinishedBytes()
}

// objectList encodes objects as an ObjectList at resourceVersion rv with
// identifier "BOBL". The returned bytes belong to ob and are valid until its
// next use.
func (ob *objectBuilder) objectList(objects []Object, rv uint64) []byte {
	b := ob.b
	b.Reset()
	ob.offs = ob.offs[:0]
	for i := range objects {
		ob.offs = append(ob.offs, ob.object(&objects[i], true))
	}
	vec := ob.vector()
	fb.ObjectListStart(b)
	fb.ObjectListAddResourceVersion(b, rv)
	fb.ObjectListAddObjects(b, vec)
	b.FinishWithFileIdentifier(fb.ObjectListEnd(b), idObjectList)
	return b.FinishedBytes()
}
