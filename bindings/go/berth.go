//go:build cgo

package berth

/*
// The header and the library come from pkg-config (berth.pc): an installed
// Berth (<prefix>/lib/pkgconfig), or, in this repository, the build tree's
// build/pkgconfig (scripts/go sets PKG_CONFIG_PATH and LD_LIBRARY_PATH).
// This is the package's only cgo flag directive: every preamble sees it.
#cgo pkg-config: berth

// The library never calls back into Go and keeps no pointer it is given past
// the call, so Go may keep out-parameters and string bytes on its stack.
#cgo noescape bg_engine_new
#cgo nocallback bg_engine_new
#cgo noescape bg_pool_add
#cgo nocallback bg_pool_add
#cgo noescape bg_pool_add_batch
#cgo nocallback bg_pool_add_batch
#cgo noescape bg_pool_remove
#cgo nocallback bg_pool_remove
#cgo noescape bg_pool_remove_pool
#cgo nocallback bg_pool_remove_pool
#cgo noescape bg_pool_pop
#cgo nocallback bg_pool_pop
#cgo noescape bg_pool_put_back
#cgo nocallback bg_pool_put_back
#cgo noescape bg_pool_stats
#cgo nocallback bg_pool_stats
#cgo noescape bg_pool_buffer
#cgo nocallback bg_pool_buffer
#cgo nocallback bg_engine_free
#cgo nocallback bg_msg
#cgo nocallback bg_msg_free
#cgo nocallback berth_buffer_free
#cgo nocallback berth_abi_version

#include "bg.h"

static berth_status bg_engine_new(uintptr_t* out, bg_res* res) {
  berth_engine* e = NULL;
  berth_status st = berth_engine_new(&e);
  *out = (uintptr_t)e;
  return bg_done(st, res);
}

static berth_status bg_engine_free(uintptr_t e) {
  return berth_engine_free(BG_ENGINE(e));
}

static const char* bg_msg(uintptr_t msg) { return (const char*)msg; }
static void bg_msg_free(uintptr_t msg) { free((void*)msg); }

// berth_pool_add (update == 0) or berth_pool_update (update == 1).
static berth_status bg_pool_add(bg_res* res, uintptr_t e, int update,
                                const char* pool, size_t pool_len,
                                const char* ns, size_t ns_len,
                                const char* name, size_t name_len,
                                const char* node, size_t node_len, int ready) {
  berth_status st =
      update ? berth_pool_update(&res->flag, BG_ENGINE(e), pool, pool_len, ns,
                                 ns_len, name, name_len, node, node_len, ready)
             : berth_pool_add(&res->flag, BG_ENGINE(e), pool, pool_len, ns,
                              ns_len, name, name_len, node, node_len, ready);
  return bg_done(st, res);
}

static berth_status bg_pool_add_batch(bg_res* res, uintptr_t e,
                                      const char* pool, size_t pool_len,
                                      const uint8_t* buf, size_t buf_len) {
  return bg_done(berth_pool_add_batch(&res->count, BG_ENGINE(e), pool, pool_len, buf,
                                      buf_len),
                 res);
}

static berth_status bg_pool_remove(bg_res* res, uintptr_t e,
                                   const char* pool, size_t pool_len,
                                   const char* ns, size_t ns_len,
                                   const char* name, size_t name_len) {
  return bg_done(berth_pool_remove(&res->flag, BG_ENGINE(e), pool, pool_len, ns, ns_len,
                                   name, name_len),
                 res);
}

static berth_status bg_pool_remove_pool(bg_res* res, uintptr_t e,
                                        const char* pool, size_t pool_len) {
  return bg_done(berth_pool_remove_pool(&res->flag, BG_ENGINE(e), pool, pool_len), res);
}

static berth_status bg_pool_pop(berth_pool_key* out, bg_res* res,
                                uintptr_t e, int spread,
                                const char* pool, size_t pool_len) {
  berth_status st = spread ? berth_pool_pop_spread(out, BG_ENGINE(e), pool, pool_len)
                           : berth_pool_pop_fifo(out, BG_ENGINE(e), pool, pool_len);
  return bg_done(st, res);
}

static berth_status bg_pool_put_back(bg_res* res, uintptr_t e,
                                     const char* pool, size_t pool_len,
                                     const char* ns, size_t ns_len,
                                     const char* name, size_t name_len,
                                     uint64_t token) {
  return bg_done(berth_pool_put_back(&res->flag, BG_ENGINE(e), pool, pool_len, ns,
                                     ns_len, name, name_len, token),
                 res);
}

static berth_status bg_pool_stats(berth_pool_stats* out, bg_res* res,
                                  uintptr_t e,
                                  const char* pool, size_t pool_len) {
  return bg_done(berth_pool_get_stats(out, BG_ENGINE(e), pool, pool_len), res);
}

// Runs berth_pool_snapshot (which == 0) or berth_pool_node_stats (which == 1)
// and exposes the bytes of the result. On success the caller copies
// *out_data and frees *out_buf with berth_buffer_free.
static berth_status bg_pool_buffer(berth_buffer** out_buf,
                                   const uint8_t** out_data, size_t* out_len,
                                   bg_res* res, uintptr_t e, int which,
                                   const char* pool, size_t pool_len) {
  berth_buffer* b = NULL;
  berth_status st = which == 0 ? berth_pool_snapshot(&b, BG_ENGINE(e), pool, pool_len)
                               : berth_pool_node_stats(&b, BG_ENGINE(e), pool, pool_len);
  if (st != BERTH_OK) return bg_done(st, res);
  return bg_expose(out_buf, out_data, out_len, res, b);
}

static const char* bg_id_batch(void) { return BERTH_FB_POOL_KEY_BATCH_ID; }
static const char* bg_id_snapshot(void) { return BERTH_FB_POOL_SNAPSHOT_ID; }
static const char* bg_id_node_stats(void) { return BERTH_FB_POOL_NODE_STATS_ID; }
static const char* bg_id_event_batch(void) { return BERTH_FB_EVENT_BATCH_ID; }
static const char* bg_id_object_list(void) { return BERTH_FB_OBJECT_LIST_ID; }
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// HeaderABIVersion is BERTH_ABI_VERSION of the berth.h this package was
// compiled against (MAJOR*10000 + MINOR*100 + PATCH).
const HeaderABIVersion uint32 = C.BERTH_ABI_VERSION

// Limits of berth.h (BERTH_MAX_*_LEN, in bytes).
const (
	MaxPoolLen      = C.BERTH_MAX_POOL_LEN      // pool name, non-empty
	MaxNamespaceLen = C.BERTH_MAX_NAMESPACE_LEN // key namespace, may be empty
	MaxNameLen      = C.BERTH_MAX_NAME_LEN      // key name, non-empty
	MaxNodeLen      = C.BERTH_MAX_NODE_LEN      // node name, empty = not scheduled
	// PutBackWindow is BERTH_POOL_PUT_BACK_WINDOW: a hand-out stays eligible
	// for PutBack until this many later hand-outs of its pool.
	PutBackWindow = C.BERTH_POOL_PUT_BACK_WINDOW
)

// FlatBuffers file identifiers, taken from berth.h.
var (
	idBatch      = []byte(C.GoStringN(C.bg_id_batch(), 4))
	idSnapshot   = C.GoStringN(C.bg_id_snapshot(), 4)
	idNodeStats  = C.GoStringN(C.bg_id_node_stats(), 4)
	idEventBatch = []byte(C.GoStringN(C.bg_id_event_batch(), 4))
	idObjectList = []byte(C.GoStringN(C.bg_id_object_list(), 4))
)

// ABIVersion returns berth_abi_version() of the loaded libberth.
func ABIVersion() uint32 { return uint32(C.berth_abi_version()) }

var checkABI = sync.OnceValue(func() error { return compatibleABI(ABIVersion(), HeaderABIVersion) })

// compatibleABI reports whether a library of ABI version lib can serve a
// binding compiled against header: the same major, and at least the header's
// version (the ABI only grows within a major).
func compatibleABI(lib, header uint32) error {
	if lib/10000 != header/10000 || lib < header {
		return fmt.Errorf("%w: loaded library is %s, binding was built against %s",
			ErrABIMismatch, versionString(lib), versionString(header))
	}
	return nil
}

func versionString(v uint32) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}

// Key is one warm-pool key. (Namespace, Name) identifies it within a pool;
// Node is the node it is scheduled on, empty if it is not scheduled yet.
type Key struct {
	Namespace string
	Name      string
	Node      string
	Ready     bool
}

// HandedOut is a key handed out by PopFIFO or PopSpread. Seq is its age
// (smaller is older); pass the whole value to PutBack to return the key.
type HandedOut struct {
	Key
	Seq   uint64
	Token uint64
}

// Stats are the counters of one pool, read atomically.
type Stats struct {
	Keys           uint64 // keys in the pool
	ReadyKeys      uint64 // of those, ready
	ScheduledKeys  uint64 // of those, with a node
	Nodes          uint64 // distinct nodes holding at least one key
	PutBackRecords uint64 // hand-outs still eligible for PutBack
}

// Engine owns pools of keys. It is safe for concurrent use by any number of
// goroutines; calls on different pools do not contend inside the library.
type Engine struct {
	guard   // berth_engine*
	cleanup runtime.Cleanup
}

// NewEngine creates an engine. It fails with ErrABIMismatch if the loaded
// libberth has another ABI major version than this package expects.
func NewEngine() (*Engine, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var h C.uintptr_t
	var r C.bg_res
	if st := C.bg_engine_new(&h, &r); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	e := &Engine{guard: guard{h: h}}
	// An engine dropped without Close is freed when it becomes unreachable.
	e.cleanup = runtime.AddCleanup(e, func(h C.uintptr_t) { C.bg_engine_free(h) }, h)
	return e, nil
}

// Close releases the engine and every pool it owns. It waits for calls in
// flight to finish. Calling Close again is a no-op that returns nil.
func (e *Engine) Close() error {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h == 0 {
		return nil
	}
	e.cleanup.Stop()
	h := e.h
	e.h = 0
	if st := C.bg_engine_free(h); st != C.BERTH_OK {
		return &Error{Status: int32(st)}
	}
	return nil
}

// cstr passes a Go string to C as pointer + length without copying. An empty
// string is passed as (NULL, 0). The bytes stay reachable for the duration
// of the call because the pointer itself is an argument of it.
func cstr(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return nil, 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// resError turns a failing status into an *Error, taking ownership of the
// message copied by the C helper.
func resError(st C.berth_status, r *C.bg_res) error {
	e := &Error{Status: int32(st)}
	if r.msg != 0 {
		e.Message = C.GoStringN(C.bg_msg(r.msg), C.int(min(r.msg_len, 1<<20)))
		C.bg_msg_free(r.msg)
		r.msg = 0
	}
	return e
}

// Add adds k to pool, creating the pool if needed. If (Namespace, Name) is
// new, the key enters as the youngest key and inserted is true; otherwise its
// Node and Ready are updated in place, it keeps its age, and inserted is
// false. Adding a key makes any outstanding PutBack of it stale.
func (e *Engine) Add(pool string, k Key) (inserted bool, err error) {
	return e.addOrUpdate(pool, &k, 0, "Add")
}

// Update changes the Node and Ready of (k.Namespace, k.Name) only if the key
// is in pool, keeping its age; updated reports whether it was there. It never
// inserts, so use it for readiness or scheduling changes of a sandbox that
// may have been handed out meanwhile: Add would bring a claimed key back.
// An absent key or pool is not an error.
func (e *Engine) Update(pool string, k Key) (updated bool, err error) {
	return e.addOrUpdate(pool, &k, 1, "Update")
}

func (e *Engine) addOrUpdate(pool string, k *Key, update C.int, op string) (bool, error) {
	hnd, err := e.enter(op)
	if err != nil {
		return false, err
	}
	defer e.mu.RUnlock()
	pp, pn := cstr(pool)
	sp, sn := cstr(k.Namespace)
	np, nn := cstr(k.Name)
	dp, dn := cstr(k.Node)
	var r C.bg_res
	st := C.bg_pool_add(&r, hnd, update, pp, pn, sp, sn, np, nn, dp, dn, cbool(k.Ready))
	if st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// AddBatch adds keys to pool in order, with the semantics of Add (a key named
// twice ends with its last values), in one call into the library. It is all
// or nothing: if any key is invalid, nothing is added and the error names
// the index of the bad key. inserted is the number of keys that were new.
func (e *Engine) AddBatch(pool string, keys []Key) (inserted int, err error) {
	bb := getBatchBuilder()
	defer putBatchBuilder(bb)
	buf := bb.build(keys)

	hnd, err := e.enter("AddBatch")
	if err != nil {
		return 0, err
	}
	defer e.mu.RUnlock()
	pp, pn := cstr(pool)
	var r C.bg_res
	st := C.bg_pool_add_batch(&r, hnd, pp, pn, (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)))
	if st != C.BERTH_OK {
		return 0, resError(st, &r)
	}
	return int(r.count), nil
}

// Remove removes (namespace, name) from pool. An absent key or pool is not an
// error: removed is false.
func (e *Engine) Remove(pool, namespace, name string) (removed bool, err error) {
	hnd, err := e.enter("Remove")
	if err != nil {
		return false, err
	}
	defer e.mu.RUnlock()
	pp, pn := cstr(pool)
	sp, sn := cstr(namespace)
	np, nn := cstr(name)
	var r C.bg_res
	if st := C.bg_pool_remove(&r, hnd, pp, pn, sp, sn, np, nn); st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// RemovePool drops pool and everything it holds, including its PutBack
// records. removed is false if the pool did not exist.
func (e *Engine) RemovePool(pool string) (removed bool, err error) {
	hnd, err := e.enter("RemovePool")
	if err != nil {
		return false, err
	}
	defer e.mu.RUnlock()
	pp, pn := cstr(pool)
	var r C.bg_res
	if st := C.bg_pool_remove_pool(&r, hnd, pp, pn); st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// PopFIFO hands out the oldest key of pool, ready or not, and removes it. ok
// is false if the pool has no key. A pool that does not exist is ErrNotFound.
func (e *Engine) PopFIFO(pool string) (h HandedOut, ok bool, err error) {
	return e.pop(pool, 0, "PopFIFO")
}

// PopSpread hands out a key of pool by the NodeSpread rule and removes it:
//  1. ready keys always win over unready ones (the rule is applied to the
//     ready keys, and only to the unready keys if there is no ready key);
//  2. among the candidate keys that are scheduled, the node holding the most
//     keys of the pool (ready or not) wins, a tie going to the node whose
//     oldest candidate key is oldest; that node's oldest candidate key is
//     handed out;
//  3. if no candidate key is scheduled, the oldest candidate key is handed out.
//
// ok is false if the pool has no key. A pool that does not exist is
// ErrNotFound.
func (e *Engine) PopSpread(pool string) (h HandedOut, ok bool, err error) {
	return e.pop(pool, 1, "PopSpread")
}

func (e *Engine) pop(pool string, spread C.int, op string) (HandedOut, bool, error) {
	var k C.berth_pool_key
	var r C.bg_res
	pp, pn := cstr(pool)
	hnd, err := e.enter(op)
	if err != nil {
		return HandedOut{}, false, err
	}
	st := C.bg_pool_pop(&k, &r, hnd, spread, pp, pn)
	e.mu.RUnlock()
	switch st {
	case C.BERTH_OK:
		return handedOutFromC(&k), true, nil
	case C.BERTH_EMPTY:
		return HandedOut{}, false, nil
	default:
		return HandedOut{}, false, resError(st, &r)
	}
}

// handedOutFromC copies the strings of k into one Go allocation.
func handedOutFromC(k *C.berth_pool_key) HandedOut {
	nsLen := min(int(k.namespace_len), len(k.namespace_))
	nameLen := min(int(k.name_len), len(k.name))
	nodeLen := min(int(k.node_len), len(k.node))
	b := make([]byte, nsLen+nameLen+nodeLen)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&k.namespace_[0])), nsLen))
	copy(b[nsLen:], unsafe.Slice((*byte)(unsafe.Pointer(&k.name[0])), nameLen))
	copy(b[nsLen+nameLen:], unsafe.Slice((*byte)(unsafe.Pointer(&k.node[0])), nodeLen))
	s := unsafe.String(unsafe.SliceData(b), len(b))
	return HandedOut{
		Key: Key{
			Namespace: s[:nsLen],
			Name:      s[nsLen : nsLen+nameLen],
			Node:      s[nsLen+nameLen:],
			Ready:     k.ready != 0,
		},
		Seq:   uint64(k.seq),
		Token: uint64(k.token),
	}
}

// PutBack returns a handed-out key that could not be used to pool, at its
// original age and with the node and ready flag it had when handed out.
// restored is false (and nothing changes) if the put-back is stale: the key
// was added again since (the newer add wins), it was already put back, the
// token is not this key's, or the hand-out is more than PutBackWindow
// hand-outs old. A pool that no longer exists is ErrNotFound.
//
// When restored is false the key is not back in the pool: the caller still
// holds it (and may Add it, which enters it as the youngest key). Under load
// a goroutine descheduled between the hand-out and PutBack can see the
// window pass, so callers must handle false.
func (e *Engine) PutBack(pool string, h HandedOut) (restored bool, err error) {
	hnd, err := e.enter("PutBack")
	if err != nil {
		return false, err
	}
	defer e.mu.RUnlock()
	pp, pn := cstr(pool)
	sp, sn := cstr(h.Namespace)
	np, nn := cstr(h.Name)
	var r C.bg_res
	if st := C.bg_pool_put_back(&r, hnd, pp, pn, sp, sn, np, nn, C.uint64_t(h.Token)); st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// Stats reads the counters of pool.
func (e *Engine) Stats(pool string) (Stats, error) {
	hnd, err := e.enter("Stats")
	if err != nil {
		return Stats{}, err
	}
	defer e.mu.RUnlock()
	pp, pn := cstr(pool)
	var s C.berth_pool_stats
	var r C.bg_res
	if st := C.bg_pool_stats(&s, &r, hnd, pp, pn); st != C.BERTH_OK {
		return Stats{}, resError(st, &r)
	}
	return Stats{
		Keys:           uint64(s.keys),
		ReadyKeys:      uint64(s.ready_keys),
		ScheduledKeys:  uint64(s.scheduled_keys),
		Nodes:          uint64(s.nodes),
		PutBackRecords: uint64(s.put_back_records),
	}, nil
}

// poolBuffer runs berth_pool_snapshot (which 0) or berth_pool_node_stats
// (which 1) and returns a Go copy of the buffer; the C buffer is freed.
func (e *Engine) poolBuffer(pool string, which C.int, op, id string) ([]byte, error) {
	var (
		b    *C.berth_buffer
		data *C.uint8_t
		n    C.size_t
		r    C.bg_res
	)
	pp, pn := cstr(pool)
	hnd, err := e.enter(op)
	if err != nil {
		return nil, err
	}
	st := C.bg_pool_buffer(&b, &data, &n, &r, hnd, which, pp, pn)
	e.mu.RUnlock()
	if st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	// The buffer does not borrow from the engine, so it is copied and freed
	// outside the lock.
	out := takeBuffer(b, data, n)
	if !hasIdentifier(out, id) {
		return nil, badIdentifier(op, id)
	}
	return out, nil
}

// takeBuffer copies the bytes of a berth_buffer into Go memory and frees the
// buffer. The copy is made by append, which does not zero the new memory
// first.
func takeBuffer(b *C.berth_buffer, data *C.uint8_t, n C.size_t) []byte {
	var out []byte
	if n > 0 {
		out = append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(data)), int(n))...)
	}
	C.berth_buffer_free(b)
	return out
}

// hasIdentifier reports whether buf is long enough for a FlatBuffers root and
// carries the file identifier id.
func hasIdentifier(buf []byte, id string) bool {
	return len(buf) >= 8 && string(buf[4:8]) == id
}

func badIdentifier(op, id string) error {
	return &Error{Status: statusInternal,
		Message: fmt.Sprintf("%s: library returned a buffer without identifier %q", op, id)}
}
