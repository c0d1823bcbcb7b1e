/*
 * berth.h — the C ABI of Berth, an embedded scheduling engine for sandbox
 * control planes. This header is the only exported surface of libberth.
 *
 * Conventions (they hold for every function below)
 * ------------------------------------------------
 *  - Names read berth_<noun>_<verb>. Handles are opaque, created by a _new
 *    call and released by the matching _free call.
 *  - Every call that can fail returns a berth_status. On anything but
 *    BERTH_OK / BERTH_EMPTY, berth_last_error() holds a message describing
 *    the failure. The message is kept per thread and stays valid until the
 *    next berth_* call on the same thread.
 *  - Out-parameters come first, then the handle, then inputs. An optional
 *    out-parameter may be NULL.
 *  - Strings are passed as pointer + length (bytes, not NUL-terminated). A
 *    NULL pointer is accepted only together with length 0. Text must be valid
 *    UTF-8 without NUL bytes.
 *  - A failed call changes nothing: a batch is validated completely before
 *    any of it is applied.
 *  - No C++ exception ever leaves a berth_* function.
 *  - Status values and struct layouts are never changed in place; the ABI only
 *    grows. Each function states the ABI version that introduced it.
 *  - Memory returned by Berth (berth_buffer) is freed by Berth
 *    (berth_buffer_free), never by the caller's free().
 *
 * Threading: unless a function says otherwise, it is safe to call
 * concurrently from any number of threads on the same engine. There is no
 * engine-wide lock: pools are independent of each other.
 */
#ifndef BERTH_H
#define BERTH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

#define BERTH_ABI_VERSION_MAJOR 0
#define BERTH_ABI_VERSION_MINOR 1
#define BERTH_ABI_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH. */
#define BERTH_ABI_VERSION                                        \
  (BERTH_ABI_VERSION_MAJOR * 10000 + BERTH_ABI_VERSION_MINOR * 100 + \
   BERTH_ABI_VERSION_PATCH)

#if defined(BERTH_BUILDING_LIBRARY)
#define BERTH_API __attribute__((visibility("default")))
#else
#define BERTH_API
#endif

/* ------------------------------------------------------------------------ */
/* Status codes. Values are stable forever.                                  */
/* ------------------------------------------------------------------------ */

typedef int32_t berth_status;
enum {
  /* Success. */
  BERTH_OK = 0,
  /* Not an error: there was nothing to hand out (the pool has no key). */
  BERTH_EMPTY = 1,
  /* A required pointer or handle is NULL, a pointer is NULL with a non-zero
   * length, or a flag is out of range. */
  BERTH_ERR_INVALID_ARGUMENT = 2,
  /* A name is empty where it must not be, longer than its limit, contains a
   * NUL byte, or is not valid UTF-8. */
  BERTH_ERR_INVALID_NAME = 3,
  /* The named pool does not exist. */
  BERTH_ERR_NOT_FOUND = 4,
  /* A FlatBuffers buffer failed verification or has the wrong identifier. */
  BERTH_ERR_BAD_BUFFER = 5,
  /* An allocation failed. */
  BERTH_ERR_NO_MEMORY = 6,
  /* An internal invariant failed; please report it. */
  BERTH_ERR_INTERNAL = 7
};

/* ------------------------------------------------------------------------ */
/* Limits (bytes). A name over its limit is BERTH_ERR_INVALID_NAME.          */
/* ------------------------------------------------------------------------ */

#define BERTH_MAX_POOL_LEN 512      /* pool name, non-empty */
#define BERTH_MAX_NAMESPACE_LEN 63  /* key namespace, may be empty */
#define BERTH_MAX_NAME_LEN 253      /* key name, non-empty */
#define BERTH_MAX_NODE_LEN 253      /* node name, empty = not scheduled */
/* Largest FlatBuffers buffer accepted by a batch call. */
#define BERTH_MAX_BUFFER_LEN (1u << 30)
/* How many hand-outs per pool stay eligible for berth_pool_put_back: the
 * record of a hand-out is forgotten after this many later hand-outs. */
#define BERTH_POOL_PUT_BACK_WINDOW 4096

/* ------------------------------------------------------------------------ */
/* FlatBuffers file identifiers (schema: capi/berth.fbs)                     */
/* ------------------------------------------------------------------------ */

#define BERTH_FB_POOL_KEY_BATCH_ID "BPKB"   /* input of berth_pool_add_batch */
#define BERTH_FB_POOL_SNAPSHOT_ID "BPSN"    /* output of berth_pool_snapshot */
#define BERTH_FB_POOL_NODE_STATS_ID "BPNS"  /* output of berth_pool_node_stats */

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */

/* An engine owns every pool (and, later, every cache and limiter) made
 * through it. Engines share nothing with each other. */
typedef struct berth_engine berth_engine;

/* Bytes produced by Berth (a FlatBuffers buffer). Immutable; owned by the
 * caller until berth_buffer_free. */
typedef struct berth_buffer berth_buffer;

/* ------------------------------------------------------------------------ */
/* Plain structs                                                             */
/* ------------------------------------------------------------------------ */

/* A key handed out by berth_pool_pop_fifo / berth_pool_pop_spread. The
 * strings are copied into the struct (not NUL-terminated; use the lengths),
 * so it stays valid for as long as the caller keeps it. Caller-owned. */
typedef struct berth_pool_key {
  /* Age: smaller is older. Unique within a pool, never reused. */
  uint64_t seq;
  /* Pass to berth_pool_put_back to return the key to its age position.
   * Never 0 (a binding may use 0 for "no hand-out"). */
  uint64_t token;
  uint32_t namespace_len;
  uint32_t name_len;
  uint32_t node_len;
  /* 1 if the key was ready when handed out, else 0. */
  uint8_t ready;
  uint8_t reserved_[3];
  char namespace_[BERTH_MAX_NAMESPACE_LEN + 1];
  char name[BERTH_MAX_NAME_LEN + 3];
  char node[BERTH_MAX_NODE_LEN + 3];
} berth_pool_key;

/* Counters of one pool, read atomically with respect to pool operations. */
typedef struct berth_pool_stats {
  uint64_t keys;           /* keys in the pool */
  uint64_t ready_keys;     /* of those, ready */
  uint64_t scheduled_keys; /* of those, with a node */
  uint64_t nodes;          /* distinct nodes holding at least one key */
  uint64_t put_back_records; /* hand-outs still eligible for put_back */
} berth_pool_stats;

/* ------------------------------------------------------------------------ */
/* Library                                                                   */
/* ------------------------------------------------------------------------ */

/* Returns BERTH_ABI_VERSION of the loaded library. A binding built against
 * this header works with a library of the same MAJOR whose version is at
 * least BERTH_ABI_VERSION (the ABI only grows within a major). Thread-safe.
 * Since 0.1. */
BERTH_API uint32_t berth_abi_version(void);

/* Returns a static, NUL-terminated name for a status ("BERTH_OK", ...), or
 * "BERTH_UNKNOWN_STATUS". Never NULL; do not free. Thread-safe. Since 0.1. */
BERTH_API const char* berth_status_name(berth_status status);

/* Returns the message of the last failed berth_* call on this thread, ""
 * if the last call succeeded. NUL-terminated; its length is also stored in
 * *out_len when out_len is not NULL. Owned by Berth; valid until the next
 * berth_* call on this thread. Never NULL. Thread-safe. Since 0.1. */
BERTH_API const char* berth_last_error(size_t* out_len);

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */
/* ------------------------------------------------------------------------ */

/* Creates an engine and stores it in *out_engine.
 * Fails: BERTH_ERR_INVALID_ARGUMENT if out_engine is NULL;
 *        BERTH_ERR_NO_MEMORY.
 * Ownership: the caller owns the engine; release it with berth_engine_free.
 * Thread-safe. Since 0.1. */
BERTH_API berth_status berth_engine_new(berth_engine** out_engine);

/* Releases an engine and everything it owns. NULL is a no-op (BERTH_OK).
 * Threading: no other call may be in flight on this engine, and none may
 * follow; buffers already returned stay valid (they do not borrow from the
 * engine). Since 0.1. */
BERTH_API berth_status berth_engine_free(berth_engine* engine);

/* ------------------------------------------------------------------------ */
/* Warm-pool queue                                                           */
/*                                                                           */
/* A pool is named by a string (for example "namespace/warmPoolName") and    */
/* holds keys identified by (namespace, name). Each key carries a node name  */
/* (empty = not yet scheduled) and a ready flag, and has an age: the order   */
/* in which it first entered the pool. There is never more than one key per  */
/* (namespace, name) in a pool.                                              */
/*                                                                           */
/* Hand-out rule of berth_pool_pop_spread (NodeSpread):                      */
/*   1. Ready keys always win over unready ones: the rule below is applied   */
/*      to the ready keys; only if the pool has no ready key is it applied   */
/*      to the unready keys.                                                 */
/*   2. Among the candidate keys that are scheduled, pick the node holding   */
/*      the most keys of the pool (counting every key on the node, ready or  */
/*      not); a tie goes to the node whose oldest candidate key is oldest.   */
/*      Hand out that node's oldest candidate key.                           */
/*   3. If no candidate key is scheduled, hand out the oldest candidate key. */
/* With every key ready this is exactly the reference controller's scan      */
/* (count keys per node, pick the first key, oldest first, on a node with    */
/* a strictly larger count), at O(log M + log K) instead of O(N) per claim   */
/* (M nodes, K keys on the chosen node).                                     */
/*                                                                           */
/* Pools are created by the first add into them. Every other call on a pool  */
/* that does not exist returns BERTH_ERR_NOT_FOUND, except the removals,     */
/* which report that nothing was removed.                                    */
/*                                                                           */
/* Threading: all pool calls are thread-safe. Each pool has its own short    */
/* critical section; calls on different pools do not contend.               */
/* ------------------------------------------------------------------------ */

/* Adds a key to a pool, creating the pool if needed.
 * If (namespace, name) is absent, the key enters as the youngest key and
 * *out_inserted = 1. If it is present, its node and ready flag are updated in
 * place, it keeps its age, and *out_inserted = 0. Adding a key also makes any
 * outstanding put_back of it stale.
 * Parameters: out_inserted (optional); pool (1..BERTH_MAX_POOL_LEN bytes);
 *   namespace_ (0..BERTH_MAX_NAMESPACE_LEN); name (1..BERTH_MAX_NAME_LEN);
 *   node (0..BERTH_MAX_NODE_LEN, empty = unscheduled); ready (0 or 1).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULL engine, NULL pointer with non-zero
 *   length, ready not 0/1); BERTH_ERR_INVALID_NAME; BERTH_ERR_NO_MEMORY.
 * Complexity: O(log M + log K) average. Since 0.1. */
BERTH_API berth_status berth_pool_add(int* out_inserted, berth_engine* engine,
                                      const char* pool, size_t pool_len,
                                      const char* namespace_, size_t namespace_len,
                                      const char* name, size_t name_len,
                                      const char* node, size_t node_len,
                                      int ready);

/* Adds every key of a FlatBuffers berth.fb.PoolKeyBatch (file identifier
 * BERTH_FB_POOL_KEY_BATCH_ID) to a pool, in order, with the semantics of
 * berth_pool_add (a key named twice in one batch ends with its last values).
 * The PoolKey.seq field is ignored. All or nothing: the buffer and every key
 * are validated before any key is applied, and the whole batch is applied
 * under one hold of the pool's critical section. (Only running out of memory
 * midway, BERTH_ERR_NO_MEMORY, can leave a prefix of the batch applied; every
 * key is then either fully added or untouched.)
 * *out_inserted (optional) receives the number of keys that were new. An
 * empty batch creates the pool, so a consumer can pop (BERTH_EMPTY) before
 * any producer has added a key.
 * The buffer is borrowed for the duration of the call.
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME (the message
 *   names the index of the bad key); BERTH_ERR_BAD_BUFFER (verification,
 *   identifier, missing name, or buf_len > BERTH_MAX_BUFFER_LEN);
 *   BERTH_ERR_NO_MEMORY. Since 0.1. */
BERTH_API berth_status berth_pool_add_batch(size_t* out_inserted,
                                            berth_engine* engine,
                                            const char* pool, size_t pool_len,
                                            const uint8_t* buf, size_t buf_len);

/* Updates the node and ready flag of (namespace, name) only if the key is in
 * the pool, keeping its age; *out_updated (optional) is 1 if it was there,
 * else 0. It never inserts: use it for readiness or scheduling changes of a
 * sandbox that may have been claimed meanwhile, so a claimed key cannot come
 * back (berth_pool_add would insert it again). Absent key or pool is not an
 * error. Parameters and failures as berth_pool_add. Since 0.1. */
BERTH_API berth_status berth_pool_update(int* out_updated, berth_engine* engine,
                                         const char* pool, size_t pool_len,
                                         const char* namespace_, size_t namespace_len,
                                         const char* name, size_t name_len,
                                         const char* node, size_t node_len,
                                         int ready);

/* Removes (namespace, name) from a pool. Absent key or absent pool is not an
 * error: *out_removed (optional) is 1 if a key was removed, else 0.
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME. Since 0.1. */
BERTH_API berth_status berth_pool_remove(int* out_removed, berth_engine* engine,
                                         const char* pool, size_t pool_len,
                                         const char* namespace_,
                                         size_t namespace_len, const char* name,
                                         size_t name_len);

/* Drops a pool and frees everything it held, including its put_back records.
 * *out_removed (optional) is 1 if the pool existed. Calls racing with the
 * removal either happen before it or see the pool as absent (an add then
 * creates a new, empty pool).
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME. Since 0.1. */
BERTH_API berth_status berth_pool_remove_pool(int* out_removed,
                                              berth_engine* engine,
                                              const char* pool, size_t pool_len);

/* Hands out the oldest key of the pool, ready or not, and removes it.
 * Returns BERTH_OK with *out_key filled, or BERTH_EMPTY (not an error,
 * *out_key untouched) if the pool has no key.
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULL out_key or engine);
 *   BERTH_ERR_INVALID_NAME; BERTH_ERR_NOT_FOUND.
 * Complexity: O(log M + log K). Since 0.1. */
BERTH_API berth_status berth_pool_pop_fifo(berth_pool_key* out_key,
                                           berth_engine* engine,
                                           const char* pool, size_t pool_len);

/* Hands out a key by the NodeSpread rule (see above) and removes it.
 * Returns BERTH_OK with *out_key filled, or BERTH_EMPTY if the pool is empty.
 * Fails: as berth_pool_pop_fifo.
 * Complexity: O(log M + log K). Since 0.1. */
BERTH_API berth_status berth_pool_pop_spread(berth_pool_key* out_key,
                                             berth_engine* engine,
                                             const char* pool, size_t pool_len);

/* Returns a handed-out key that could not be used to the pool at its
 * original age, with the node and ready flag it had when handed out.
 * *out_restored (optional) is 1 if it was restored, 0 if the put_back was
 * stale: the key was added again after the hand-out (the newer add wins), it
 * was already put back, the token does not belong to this key, or the pool
 * has made BERTH_POOL_PUT_BACK_WINDOW or more hand-outs since this one. After
 * a stale put_back the caller still holds the key.
 * A stale put_back is not an error and changes nothing.
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME;
 *   BERTH_ERR_NOT_FOUND (the pool does not exist, e.g. it was removed).
 * Since 0.1. */
BERTH_API berth_status berth_pool_put_back(int* out_restored,
                                           berth_engine* engine,
                                           const char* pool, size_t pool_len,
                                           const char* namespace_,
                                           size_t namespace_len,
                                           const char* name, size_t name_len,
                                           uint64_t token);

/* Reads the counters of a pool into *out_stats. O(1).
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME;
 *   BERTH_ERR_NOT_FOUND. Since 0.1. */
BERTH_API berth_status berth_pool_get_stats(berth_pool_stats* out_stats,
                                            berth_engine* engine,
                                            const char* pool, size_t pool_len);

/* Stores in *out_buffer a FlatBuffers berth.fb.PoolSnapshot (identifier
 * BERTH_FB_POOL_SNAPSHOT_ID) of every key in the pool, oldest first, taken
 * atomically. O(N). The caller owns the buffer (berth_buffer_free).
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME;
 *   BERTH_ERR_NOT_FOUND; BERTH_ERR_NO_MEMORY. Since 0.1. */
BERTH_API berth_status berth_pool_snapshot(berth_buffer** out_buffer,
                                           berth_engine* engine,
                                           const char* pool, size_t pool_len);

/* Stores in *out_buffer a FlatBuffers berth.fb.PoolNodeStats (identifier
 * BERTH_FB_POOL_NODE_STATS_ID): for each node holding keys of the pool, its
 * key count and ready-key count, sorted by node name. O(M log M). Unscheduled
 * keys are not listed (see berth_pool_get_stats). The caller owns the buffer.
 * Fails: as berth_pool_snapshot. Since 0.1. */
BERTH_API berth_status berth_pool_node_stats(berth_buffer** out_buffer,
                                             berth_engine* engine,
                                             const char* pool, size_t pool_len);

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */
/* ------------------------------------------------------------------------ */

/* Reads the bytes of a buffer. *out_data stays valid until the buffer is
 * freed. Fails: BERTH_ERR_INVALID_ARGUMENT if any pointer is NULL.
 * Thread-safe (buffers are immutable). Since 0.1. */
BERTH_API berth_status berth_buffer_data(const uint8_t** out_data,
                                         size_t* out_len,
                                         const berth_buffer* buffer);

/* Frees a buffer. NULL is a no-op (BERTH_OK). Threading: no other call may
 * use the buffer concurrently or afterwards. Since 0.1. */
BERTH_API berth_status berth_buffer_free(berth_buffer* buffer);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BERTH_H */
