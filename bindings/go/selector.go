//go:build cgo

package berth

/*
#cgo noescape bg_selector_parse
#cgo nocallback bg_selector_parse
#cgo noescape bg_selector_matches
#cgo nocallback bg_selector_matches
#cgo nocallback bg_selector_free

#include "bg.h"

// Parses text and, in the same call, asks for its canonical form, so that
// String needs no call into the library (and works after Close).
static berth_status bg_selector_parse(uintptr_t* out, berth_buffer** out_buf,
                                      const uint8_t** out_data, size_t* out_len,
                                      bg_res* res, const char* text, size_t text_len) {
  berth_selector* s = NULL;
  berth_status st = berth_selector_parse(&s, text, text_len);
  if (st != BERTH_OK) return bg_done(st, res);
  berth_buffer* b = NULL;
  st = berth_selector_string(&b, s);
  if (st == BERTH_OK) st = bg_expose(out_buf, out_data, out_len, res, b);
  else st = bg_done(st, res);
  if (st != BERTH_OK) {
    berth_selector_free(s);
    return st;
  }
  *out = (uintptr_t)s;
  return BERTH_OK;
}

static void bg_selector_free(uintptr_t s) { berth_selector_free(BG_SELECTOR(s)); }

static berth_status bg_selector_matches(bg_res* res, uintptr_t s, const char* blob,
                                        const bg_label* labels, size_t n) {
  berth_label stack[BG_STACK_LABELS];
  berth_label* heap;
  berth_label* ls = bg_labels(stack, &heap, blob, labels, n);
  if (ls == NULL) return bg_no_memory(res);
  berth_status st = berth_selector_matches(&res->flag, BG_SELECTOR(s), ls, n);
  free(heap);
  return bg_done(st, res);
}
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Selector is a parsed Kubernetes label selector: the full grammar of
// k8s.io/apimachinery's labels.Parse (key=value, key==value, key!=value,
// key in (a,b), key notin (a,b), key, !key, key>N, key<N, comma for AND),
// with keys and values validated as Kubernetes validates them.
//
// A Selector is immutable and safe for concurrent use. It holds a handle in
// libberth: call Close when done with it. (A Selector that becomes
// unreachable without Close is freed by a cleanup eventually, but do not rely
// on that for memory accounting.) Methods after Close return ErrClosed,
// except String, which keeps working.
//
// A nil *Selector is the selector that matches everything: its String is ""
// and Cache.List with a nil selector lists every object.
type Selector struct {
	guard          // berth_selector*; Matches and Cache.List hold it
	text    string // canonical form
	cleanup runtime.Cleanup
}

// ParseSelector parses a label selector. A selector Kubernetes would reject
// is an error wrapping ErrBadSelector whose message names the byte offset and
// what was expected, for example "at byte 4: found end of string, expected:
// identifier after ','". The empty selector (or only whitespace) is valid and
// matches everything.
func ParseSelector(text string) (*Selector, error) {
	if err := checkABI(); err != nil {
		return nil, err
	}
	var (
		h    C.uintptr_t
		b    *C.berth_buffer
		data *C.uint8_t
		n    C.size_t
		r    C.bg_res
	)
	tp, tn := cstr(text)
	if st := C.bg_selector_parse(&h, &b, &data, &n, &r, tp, tn); st != C.BERTH_OK {
		return nil, resError(st, &r)
	}
	canon := takeBuffer(b, data, n)
	s := &Selector{guard: guard{h: h}, text: unsafe.String(unsafe.SliceData(canon), len(canon))}
	s.cleanup = runtime.AddCleanup(s, func(h C.uintptr_t) { C.bg_selector_free(h) }, h)
	return s, nil
}

// MustParseSelector is ParseSelector that panics on error, for selectors
// that are constants of the program.
func MustParseSelector(text string) *Selector {
	s, err := ParseSelector(text)
	if err != nil {
		panic(err)
	}
	return s
}

// String returns the canonical form Kubernetes prints for the selector:
// requirements sorted by key, values sorted, no optional whitespace. Parsing
// it gives an equal selector. It works after Close; for nil it is "".
func (s *Selector) String() string {
	if s == nil {
		return ""
	}
	return s.text
}

// Matches reports whether labels satisfy every requirement of the selector.
// Labels are not validated: any strings compare as Kubernetes would compare
// them. A nil selector matches everything.
func (s *Selector) Matches(labels map[string]string) (bool, error) {
	if s == nil {
		return true, nil
	}
	// Up to 16 labels and 1 KiB of label text are encoded on the stack.
	var labBuf [16]C.bg_label
	var blobBuf [1024]byte
	labs, blob := encodeLabels(labels, labBuf[:0], blobBuf[:0])
	bp, lp := labelPtrs(labs, blob)
	var r C.bg_res
	hnd, err := s.enter("Matches")
	if err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	if st := C.bg_selector_matches(&r, hnd, bp, lp, C.size_t(len(labs))); st != C.BERTH_OK {
		return false, resError(st, &r)
	}
	return r.flag != 0, nil
}

// Close frees the selector. It waits for calls using it (Matches, Cache.List)
// to finish. Calling Close again is a no-op that returns nil.
func (s *Selector) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.h == 0 {
		return nil
	}
	s.cleanup.Stop()
	C.bg_selector_free(s.h)
	s.h = 0
	return nil
}

// encodeLabels appends labels to labs and their bytes to blob, each label as
// offsets into blob, and returns both. With labs and blob backed by arrays on
// the caller's stack, small label sets need no allocation. Map order is
// irrelevant to the library.
func encodeLabels(labels map[string]string, labs []C.bg_label, blob []byte) ([]C.bg_label, []byte) {
	for k, v := range labels {
		labs = append(labs, C.bg_label{
			key_off:   C.size_t(len(blob)),
			key_len:   C.size_t(len(k)),
			value_off: C.size_t(len(blob) + len(k)),
			value_len: C.size_t(len(v)),
		})
		blob = append(blob, k...)
		blob = append(blob, v...)
	}
	return labs, blob
}

// labelPtrs returns the C pointers of encoded labels; nil for empty slices.
// Both point to pointer-free Go memory, which cgo lets C read during a call.
func labelPtrs(labs []C.bg_label, blob []byte) (*C.char, *C.bg_label) {
	var bp *C.char
	var lp *C.bg_label
	if len(blob) > 0 {
		bp = (*C.char)(unsafe.Pointer(unsafe.SliceData(blob)))
	}
	if len(labs) > 0 {
		lp = unsafe.SliceData(labs)
	}
	return bp, lp
}
