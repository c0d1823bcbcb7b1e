//go:build cgo

package berth

/*
#cgo noescape bg_cache_new
#cgo nocallback bg_cache_new
#cgo noescape bg_cache_upsert
#cgo nocallback bg_cache_upsert
#cgo noescape bg_cache_delete
#cgo nocallback bg_cache_delete
#cgo noescape bg_cache_apply
#cgo nocallback bg_cache_apply
#cgo noescape bg_cache_buffer
#cgo nocallback bg_cache_buffer
#cgo noescape bg_cache_get_object
#cgo nocallback bg_cache_get_object
#cgo noescape bg_cache_stats
#cgo nocallback bg_cache_stats
#cgo nocallback bg_cache_free

#include "bg.h"

static berth_status bg_cache_new(uintptr_t* out, bg_res* res, uint32_t tombstone_limit) {
  berth_cache_options o;
  memset(&o, 0, sizeof o);
  o.tombstone_limit = tombstone_limit;
  berth_cache* c = NULL;
  berth_status st = berth_cache_new(&c, &o);
  *out = (uintptr_t)c;
  return bg_done(st, res);
}

static void bg_cache_free(uintptr_t c) { berth_cache_free(BG_CACHE(c)); }

static berth_status bg_cache_upsert(bg_res* res, uintptr_t c,
                                    const char* ns, size_t ns_len,
                                    const char* name, size_t name_len, uint64_t rv,
                                    const char* blob, const bg_label* labels, size_t n,
                                    const uint8_t* payload, size_t payload_len) {
  berth_label stack[BG_STACK_LABELS];
  berth_label* heap;
  berth_label* ls = bg_labels(stack, &heap, blob, labels, n);
  if (ls == NULL) return bg_no_memory(res);
  berth_status st = berth_cache_upsert(&res->flag, BG_CACHE(c), ns, ns_len, name, name_len,
                                       rv, ls, n, payload, payload_len);
  free(heap);
  return bg_done(st, res);
}

static berth_status bg_cache_delete(bg_res* res, uintptr_t c,
                                    const char* ns, size_t ns_len,
                                    const char* name, size_t name_len, uint64_t rv) {
  return bg_done(berth_cache_delete(&res->flag, BG_CACHE(c), ns, ns_len, name, name_len, rv),
                 res);
}

// berth_cache_apply (replace == 0) or berth_cache_replace (replace == 1).
static berth_status bg_cache_apply(bg_res* res, uintptr_t c, int replace,
                                   const uint8_t* buf, size_t buf_len) {
  berth_status st = replace ? berth_cache_replace(BG_CACHE(c), buf, buf_len)
                            : berth_cache_apply(&res->count, BG_CACHE(c), buf, buf_len);
  return bg_done(st, res);
}

// berth_cache_list, exposing the bytes of the result.
static berth_status bg_cache_buffer(berth_buffer** out_buf, const uint8_t** out_data,
                                    size_t* out_len, bg_res* res, uintptr_t c,
                                    const char* ns, size_t ns_len, uintptr_t sel) {
  berth_buffer* b = NULL;
  berth_status st = berth_cache_list(&b, BG_CACHE(c), ns, ns_len, BG_SELECTOR(sel));
  if (st != BERTH_OK) return bg_done(st, res);
  return bg_expose(out_buf, out_data, out_len, res, b);
}

// bg_cache_get_object copies one cached object into buf (Go memory, no
// pointers in it) in the layout below, which objects.go reads as gotObject.
// Integers are native-endian uint32 except the resourceVersion:
//   [0,8)   resourceVersion (uint64)
//   [8,12)  namespace length   [12,16) name length
//   [16,20) payload length     [20,24) number of labels n
//   [24,24+8n) per label, sorted by key: key length, value length
//   then the namespace, name and payload bytes, then each label's key and
//   value bytes.
// One cgo call does the lookup, the copy and the release of the reference,
// instead of serializing the object into a FlatBuffers buffer and making two
// more calls to read and free it. *out_need is the size of the layout; if it
// exceeds cap nothing is written and the caller retries with a larger buf.
// BERTH_EMPTY (absent) and errors come straight from berth_cache_get_object.
#define BG_GOT_HEADER 24

static void bg_put32(uint8_t* p, size_t v) {
  uint32_t u = (uint32_t)v;
  memcpy(p, &u, sizeof u);
}

static berth_status bg_cache_get_object(size_t* out_need, bg_res* res, uintptr_t c,
                                        const char* ns, size_t ns_len,
                                        const char* name, size_t name_len,
                                        uint8_t* buf, size_t cap) {
  berth_object* o = NULL;
  berth_object_fields f;
  berth_status st = berth_cache_get_object(&o, &f, BG_CACHE(c), ns, ns_len, name, name_len);
  if (st != BERTH_OK) return bg_done(st, res);
  berth_label ls[BERTH_MAX_LABELS];  // an object never has more
  size_t n = 0;
  st = berth_object_labels(ls, BERTH_MAX_LABELS, &n, o);
  if (st != BERTH_OK) {
    st = bg_done(st, res);  // before the free, which may reset the last error
    berth_object_free(o);
    return st;
  }
  if (n > BERTH_MAX_LABELS) n = BERTH_MAX_LABELS;  // cannot happen; never overrun ls
  size_t need = BG_GOT_HEADER + 8 * n + f.namespace_len + f.name_len + f.payload_len;
  for (size_t i = 0; i < n; i++) need += ls[i].key_len + ls[i].value_len;
  *out_need = need;
  if (need <= cap) {
    memcpy(buf, &f.resource_version, sizeof f.resource_version);
    bg_put32(buf + 8, f.namespace_len);
    bg_put32(buf + 12, f.name_len);
    bg_put32(buf + 16, f.payload_len);
    bg_put32(buf + 20, n);
    uint8_t* p = buf + BG_GOT_HEADER;
    for (size_t i = 0; i < n; i++, p += 8) {
      bg_put32(p, ls[i].key_len);
      bg_put32(p + 4, ls[i].value_len);
    }
    if (f.namespace_len) memcpy(p, f.namespace_, f.namespace_len);
    p += f.namespace_len;
    if (f.name_len) memcpy(p, f.name, f.name_len);
    p += f.name_len;
    if (f.payload_len) memcpy(p, f.payload, f.payload_len);
    p += f.payload_len;
    for (size_t i = 0; i < n; i++) {
      if (ls[i].key_len) memcpy(p, ls[i].key, ls[i].key_len);
      p += ls[i].key_len;
      if (ls[i].value_len) memcpy(p, ls[i].value, ls[i].value_len);
      p += ls[i].value_len;
    }
  }
  berth_object_free(o);
  return BERTH_OK;
}

static berth_status bg_cache_stats(berth_cache_stats* out, bg_res* res, uintptr_t c) {
  return bg_done(berth_cache_get_stats(out, BG_CACHE(c)), res);
}
*/
import "C"

import (
	"bytes"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// Limits of the object cache (berth.h).
const (
	MaxPayloadLen = C.BERTH_MAX_PAYLOAD_LEN // bytes of an object's payload
	MaxLabels     = C.BERTH_MAX_LABELS      // labels of one object
)

// Object is one object as it is written into the cache. (Namespace, Name)
// identifies it; ResourceVersion is the resourceVersion the API server gave
// it (a decimal integer in Kubernetes, larger is newer, never 0). Labels are
// validated as Kubernetes validates them. Payload is opaque to Berth (for
// example the object's JSON) and is copied.
type Object struct {
	Namespace       string
	Name            string
	ResourceVersion uint64
	Labels          map[string]string
	Payload         []byte
}

// EventType is the type of a watch event.
type EventType int8

// Watch event types, as in a Kubernetes watch stream.
const (
	Added    EventType = 0
	Modified EventType = 1
	Deleted  EventType = 2
)

func (t EventType) String() string {
	switch t {
	case Added:
		return "Added"
	case Modified:
		return "Modified"
	case Deleted:
		return "Deleted"
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Event is one watch event, or one write of the caller's own that the API
// server accepted (with the resourceVersion it returned). Added and Modified
// upsert Object; Deleted deletes (Object.Namespace, Object.Name) as of
// Object.ResourceVersion (0 = whatever version is cached) and ignores its
// labels and payload.
type Event struct {
	Type   EventType
	Object Object
}

// CacheOptions configure NewCache. The zero value gives the defaults.
type CacheOptions struct {
	// TombstoneLimit is how many deleted objects the cache remembers (so that
	// an older add cannot bring them back); the oldest is forgotten first.
	// 0 means the library's default, 100000.
	TombstoneLimit uint32
}

// CacheStats are the counters of a cache, read atomically.
type CacheStats struct {
	Objects         uint64
	Tombstones      uint64
	ResourceVersion uint64 // largest resourceVersion applied so far
	Applied         uint64 // upserts and deletes that changed the cache
	Ignored         uint64 // stale events the version guard dropped
	Synced          bool   // a Replace has completed
}

// Cache is an object cache fed by a watch and by the caller's own writes,
// keyed by (namespace, name), indexed by namespace and labels, and guarded by
// resourceVersion:
//   - an upsert older than or equal to what the cache holds for the object is
//     ignored;
//   - a delete leaves a tombstone carrying its resourceVersion, so an older
//     add cannot bring the object back (tombstones are bounded in number by
//     CacheOptions.TombstoneLimit, the oldest is forgotten first);
//   - a delete with resourceVersion 0 deletes whatever version is cached.
//
// Replace swaps in a full relist atomically, like client-go's Replace,
// keeping entries and tombstones newer than the list. Until the first
// Replace, List and Get return ErrNotSynced.
//
// Every method is safe for concurrent use: readers never wait for each other
// in the library. Call Close when done; every method after Close returns an
// error wrapping ErrClosed.
type Cache struct {
	guard   // berth_cache*
	cleanup runtime.Cleanup
	// getSize is the size of the buffer Get allocates first: about the size
	// the last retried (or much smaller) Get needed. Stored only when it is
	// off, so Gets of similar objects from many goroutines only read it.
	getSize atomic.Int64
}

// NewCache creates an empty, unsynced cache. It fails with ErrABIMismatch if
// the loaded libberth is older than this package needs.
func NewCache(opts CacheOptions) (*Cache, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var h C.uintptr_t
	var r C.bg_res
	if st := C.bg_cache_new(&h, &r, C.uint32_t(opts.TombstoneLimit)); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	c := &Cache{guard: guard{h: h}}
	// A cache dropped without Close is freed when it becomes unreachable.
	c.cleanup = runtime.AddCleanup(c, func(h C.uintptr_t) { C.bg_cache_free(h) }, h)
	return c, nil
}

// Close frees the cache and everything in it. It waits for calls in flight
// to finish. ObjectLists already returned stay valid (they are Go copies).
// Calling Close again is a no-op that returns nil.
func (c *Cache) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == 0 {
		return nil
	}
	c.cleanup.Stop()
	C.bg_cache_free(c.h)
	c.h = 0
	return nil
}

// Upsert inserts or replaces obj unless the cache already holds it, or a
// tombstone of it, at a resourceVersion >= obj.ResourceVersion. applied
// reports whether the cache changed (false: the version guard ignored it).
// Bad input (an empty name, a label key or value Kubernetes rejects,
// ResourceVersion 0, more than MaxLabels labels, a payload over
// MaxPayloadLen) is an error and changes nothing.
func (c *Cache) Upsert(obj Object) (applied bool, err error) {
	// Up to 16 labels and 1 KiB of label text are encoded on the stack.
	var labBuf [16]C.bg_label
	var blobBuf [1024]byte
	labs, blob := encodeLabels(obj.Labels, labBuf[:0], blobBuf[:0])
	bp, lp := labelPtrs(labs, blob)
	sp, sn := cstr(obj.Namespace)
	np, nn := cstr(obj.Name)
	var pp *C.uint8_t
	if len(obj.Payload) > 0 {
		pp = (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(obj.Payload)))
	}
	var r C.bg_res
	hnd, err := c.enter("Upsert")
	if err != nil {
		return false, err
	}
	defer c.mu.RUnlock()
	st := C.bg_cache_upsert(&r, hnd, sp, sn, np, nn, C.uint64_t(obj.ResourceVersion),
		bp, lp, C.size_t(len(labs)), pp, C.size_t(len(obj.Payload)))
	if st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// Delete deletes (namespace, name) as of resourceVersion rv (0 = whatever
// version is cached) and leaves a tombstone, so an older upsert cannot bring
// it back. applied is false if the cache holds the object at a newer
// resourceVersion or a tombstone at least as new. Deleting an absent object
// still records the tombstone (applied reports whether it did).
func (c *Cache) Delete(namespace, name string, rv uint64) (applied bool, err error) {
	sp, sn := cstr(namespace)
	np, nn := cstr(name)
	var r C.bg_res
	hnd, err := c.enter("Delete")
	if err != nil {
		return false, err
	}
	defer c.mu.RUnlock()
	if st := C.bg_cache_delete(&r, hnd, sp, sn, np, nn, C.uint64_t(rv)); st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// Apply applies events in order, each as Upsert (Added, Modified) or Delete
// (Deleted) would, in one call into the library. It is all or nothing: if
// any event is invalid, nothing is applied and the error names the index of
// the bad event. applied counts the events that changed the cache.
func (c *Cache) Apply(events []Event) (applied int, err error) {
	if c == nil {
		return 0, errClosed("Apply", "cache")
	}
	ob := getObjectBuilder()
	defer putObjectBuilder(ob)
	buf := ob.eventBatch(events)
	n, err := c.applyBuffer(buf, 0, "Apply")
	return int(n), err
}

// Replace swaps in a full relist taken at resourceVersion listRV: objects and
// tombstones the cache holds at a resourceVersion newer than listRV are kept
// (they happened after the list), everything else comes from objects. The
// swap is atomic, and afterwards the cache is synced. The input is validated
// completely first: on error nothing changes.
func (c *Cache) Replace(objects []Object, listRV uint64) error {
	if c == nil {
		return errClosed("Replace", "cache")
	}
	ob := getObjectBuilder()
	defer putObjectBuilder(ob)
	buf := ob.objectList(objects, listRV)
	_, err := c.applyBuffer(buf, 1, "Replace")
	return err
}

func (c *Cache) applyBuffer(buf []byte, replace C.int, op string) (C.size_t, error) {
	var r C.bg_res
	hnd, err := c.enter(op)
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	st := C.bg_cache_apply(&r, hnd, replace, (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)))
	if st != C.BERTH_OK {
		return 0, resError(st, &r)
	}
	return r.count, nil
}

// List returns the objects in namespace (empty = every namespace) that match
// sel (nil = every object), sorted by (namespace, name), taken atomically,
// together with the cache's resourceVersion. Before the first Replace it is
// ErrNotSynced. A closed sel is ErrClosed.
func (c *Cache) List(namespace string, sel *Selector) (*ObjectList, error) {
	buf, st, err := c.list(namespace, sel)
	if err != nil {
		return nil, err
	}
	if st == C.BERTH_EMPTY { // not documented for list; treated as no objects
		return &ObjectList{}, nil
	}
	return newObjectList(buf, "List")
}

// Get buffer sizing: the first buffer is getSize plus 1/8 of slack (so small
// variations, a longer resourceVersion or label value, still fit), at least
// minGetSize. A Get whose object does not fit retries with the exact size
// and stores it as the new getSize; one that fills less than half of a
// buffer over minGetSize is copied to its size (the view keeps no dead
// bytes alive) and stores its size too.
const minGetSize = 256

// maxGuessedGetSize caps the first guess: one large object must not make
// every later Get of small objects allocate (and zero) its size; a larger
// object costs one retry at its exact size.
const maxGuessedGetSize = 64 << 10

// Get returns the object (namespace, name). ok is false, with a nil error,
// if the cache does not hold it (absent or deleted). Before the first
// Replace it is ErrNotSynced. The view keeps its own copy of the object's
// bytes.
func (c *Cache) Get(namespace, name string) (v ObjectView, ok bool, err error) {
	sp, sn := cstr(namespace)
	np, nn := cstr(name)
	hint := c.hintedGetSize()
	size := min(max(minGetSize, hint+hint/8), maxGuessedGetSize)
	for {
		buf := make([]byte, size)
		var need C.size_t
		var r C.bg_res
		hnd, err := c.enter("Get")
		if err != nil {
			return ObjectView{}, false, err
		}
		st := C.bg_cache_get_object(&need, &r, hnd, sp, sn, np, nn,
			(*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)))
		c.mu.RUnlock()
		switch st {
		case C.BERTH_OK:
		case C.BERTH_EMPTY:
			return ObjectView{}, false, nil
		default:
			return ObjectView{}, false, resError(st, &r)
		}
		n := int(need)
		if n <= len(buf) {
			if n < len(buf)/2 && len(buf) > minGetSize {
				// Much smaller than guessed: the view must not keep the
				// rest alive, and the next Get should guess smaller.
				buf = bytes.Clone(buf[:n])
				c.getSize.Store(int64(n))
			}
			return ObjectView{got: buf[:n:n]}, true, nil
		}
		// Too small: the object is retried at its size (a newer version
		// may have been written meanwhile, hence the loop).
		c.getSize.Store(int64(n))
		size = n
	}
}

func (c *Cache) hintedGetSize() int {
	if c == nil {
		return 0
	}
	return int(c.getSize.Load())
}

func (c *Cache) list(namespace string, sel *Selector) ([]byte, C.berth_status, error) {
	const op = "List"
	var (
		b    *C.berth_buffer
		data *C.uint8_t
		n    C.size_t
		r    C.bg_res
	)
	sp, sn := cstr(namespace)
	hnd, err := c.enter(op)
	if err != nil {
		return nil, 0, err
	}
	var sh C.uintptr_t
	if sel != nil {
		// Lock order: cache, then selector (Selector.Matches takes only the
		// selector's), so Close of either cannot deadlock with a List.
		sel.mu.RLock()
		if sel.h == 0 {
			sel.mu.RUnlock()
			c.mu.RUnlock()
			return nil, 0, errClosed(op, "selector")
		}
		sh = sel.h
	}
	st := C.bg_cache_buffer(&b, &data, &n, &r, hnd, sp, sn, sh)
	if sel != nil {
		sel.mu.RUnlock()
	}
	c.mu.RUnlock()
	switch st {
	case C.BERTH_OK:
		// The buffer does not borrow from the cache: copy and free it
		// outside the lock.
		return takeBuffer(b, data, n), st, nil
	case C.BERTH_EMPTY:
		return nil, st, nil
	default:
		return nil, st, resError(st, &r)
	}
}

// Stats reads the counters of the cache. It works before the first Replace.
func (c *Cache) Stats() (CacheStats, error) {
	var s C.berth_cache_stats
	var r C.bg_res
	hnd, err := c.enter("Stats")
	if err != nil {
		return CacheStats{}, err
	}
	defer c.mu.RUnlock()
	if st := C.bg_cache_stats(&s, &r, hnd); st != C.BERTH_OK {
		return CacheStats{}, resError(st, &r)
	}
	return CacheStats{
		Objects:         uint64(s.objects),
		Tombstones:      uint64(s.tombstones),
		ResourceVersion: uint64(s.resource_version),
		Applied:         uint64(s.applied),
		Ignored:         uint64(s.ignored),
		Synced:          s.synced != 0,
	}, nil
}
