// bg.h: C helpers shared by the cgo preambles of package berth. Every helper
// makes its berth_* call and, if it failed, copies berth_last_error() in the
// same C call (so on the same OS thread, before anything can overwrite it).
// Everything is static: each preamble that includes this is its own
// translation unit.
#ifndef BERTH_GO_BG_H
#define BERTH_GO_BG_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"

// bg_res carries the out-values of one call and, when the call failed, a
// malloc'd copy of berth_last_error(). The copy is taken inside the same C
// call as the failing berth_* function, hence on the same OS thread: the
// goroutine cannot migrate in between, and no other goroutine's call on that
// thread can overwrite the message first.
//
// The struct holds no pointer types (msg is a uintptr_t) and handles are
// passed as uintptr_t, so cgo has no pointer to check on the hot path: every
// remaining pointer argument points to pointer-free memory.
typedef struct bg_res {
  int flag;        // out_inserted / out_removed / out_restored / out_applied / out_matches /
                   // out_refusal / out_granted_now / out_claimed / out_outcome / out_allowed
  size_t count;    // out_inserted of berth_pool_add_batch, out_applied of berth_cache_apply,
                   // out_count of berth_notifier_drain
  uintptr_t msg;   // char*, 0 unless the call failed; freed by bg_msg_free
  size_t msg_len;
} bg_res;

#define BG_ENGINE(h) ((berth_engine*)(h))
#define BG_CACHE(h) ((berth_cache*)(h))
#define BG_SELECTOR(h) ((berth_selector*)(h))
#define BG_LIMITER(h) ((berth_limiter*)(h))
#define BG_NOTIFIER(h) ((berth_notifier*)(h))
#define BG_BUCKET(h) ((berth_bucket*)(h))

static void bg_set_msg(bg_res* res, const char* m, size_t n) {
  char* c = (char*)malloc(n + 1);
  if (c != NULL) {
    if (n > 0) memcpy(c, m, n);
    c[n] = '\0';
    res->msg = (uintptr_t)c;
    res->msg_len = n;
  }
}

static berth_status bg_done(berth_status st, bg_res* res) {
  if (st != BERTH_OK && st != BERTH_EMPTY) {
    size_t n = 0;
    const char* m = berth_last_error(&n);
    if (m == NULL) n = 0;
    bg_set_msg(res, m, n);
  }
  return st;
}

// A label as Go passes it: offsets into one byte blob instead of pointers, so
// the array and the blob are pointer-free Go memory that cgo lets C read
// during the call (no pinning, no C allocation per label).
typedef struct bg_label {
  size_t key_off;
  size_t key_len;
  size_t value_off;
  size_t value_len;
} bg_label;

// Labels up to this many are converted on the C stack; more need malloc.
#define BG_STACK_LABELS 256

// Converts labels into berth_label values pointing into blob: into stack
// (BG_STACK_LABELS entries) when they fit, else into a malloc'd array stored
// in *heap (free it). Returns NULL when that allocation fails.
static berth_label* bg_labels(berth_label* stack, berth_label** heap,
                              const char* blob, const bg_label* labels, size_t n) {
  berth_label* out = stack;
  *heap = NULL;
  if (n > BG_STACK_LABELS) {
    out = (berth_label*)malloc(n * sizeof(berth_label));
    if (out == NULL) return NULL;
    *heap = out;
  }
  for (size_t i = 0; i < n; i++) {
    out[i].key = labels[i].key_len ? blob + labels[i].key_off : NULL;
    out[i].key_len = labels[i].key_len;
    out[i].value = labels[i].value_len ? blob + labels[i].value_off : NULL;
    out[i].value_len = labels[i].value_len;
  }
  return out;
}

static berth_status bg_no_memory(bg_res* res) {
  static const char m[] = "go binding: out of memory converting labels";
  bg_set_msg(res, m, sizeof m - 1);
  return BERTH_ERR_NO_MEMORY;
}

// Exposes the bytes of a buffer a berth_* call returned. On success the
// caller copies *out_data and frees *out_buf with berth_buffer_free; on
// failure the buffer is freed here.
static berth_status bg_expose(berth_buffer** out_buf, const uint8_t** out_data,
                              size_t* out_len, bg_res* res, berth_buffer* b) {
  berth_status st = berth_buffer_data(out_data, out_len, b);
  if (st != BERTH_OK) {
    st = bg_done(st, res);
    berth_buffer_free(b);
    return st;
  }
  *out_buf = b;
  return BERTH_OK;
}

#endif  // BERTH_GO_BG_H
