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
 *  - Memory returned by Berth (berth_buffer, berth_object,
 *    berth_object_list) is freed by Berth (its _free call), never by the
 *    caller's free().
 *  - Handles are checked on every call (since 0.4). A NULL handle where one
 *    is required is BERTH_ERR_INVALID_ARGUMENT; a handle that was freed, is
 *    of another type (a berth_cache* cast to berth_limiter*) or was never
 *    made by Berth is BERTH_ERR_BAD_HANDLE, and nothing happens. Every _free
 *    accepts NULL (a no-op) and answers a second free of the same handle
 *    with BERTH_ERR_BAD_HANDLE. A handle value is a key, not the address of
 *    its object: never dereference it. Freeing a handle while another thread
 *    is still inside a call on it is a caller error that Berth cannot detect.
 *    The check is exact except that a stale handle could match again after
 *    its slot has been reused 2^15 times (more than 30 million frees later).
 *  - docs/errors.md lists every way to call each function wrongly and the
 *    status each gets; a test walks that table.
 *
 * Threading: unless a function says otherwise, it is safe to call
 * concurrently from any number of threads on the same engine. There is no
 * engine-wide lock: pools are independent of each other.
 *
 * fork (since 0.5): a process may fork at any moment, even while its other
 * threads are inside berth_* calls (those threads do not exist in the
 * child). In the child:
 *  - engines, caches, limiters, buckets and notifiers made by the parent
 *    answer every call with BERTH_ERR_FORKED: their state is the parent's
 *    (a copy of a warm pool would hand out the parent's sandboxes twice, a
 *    copy of a limiter would count permits held by threads that do not
 *    exist here, a notifier's eventfd is shared with the parent), and their
 *    locks may have been held at the fork. Their _free returns BERTH_OK and
 *    ends the handle in the child without touching the object.
 *  - selectors, buffers, objects and object lists work (they are
 *    immutable), and are freed normally.
 *  - a shared limiter works as a handle of a new process: it holds none of
 *    the parent's permits or asynchronous tickets (see "Shared limiter").
 *  - new handles made in the child work normally.
 * Nothing Berth keeps process-wide is held locked across a fork.
 *
 * Loading (since 0.5): libberth carries its own allocator (mimalloc, built
 * in without replacing malloc/free/operator new: no symbol of the host
 * resolves into libberth except berth_*). dlclose never unloads it (it is
 * linked -z nodelete): threads that called into Berth keep per-thread
 * allocator state whose thread-exit hooks run its code. mimalloc's
 * MIMALLOC_* environment variables, if set for the host, also apply to
 * Berth's copy (MIMALLOC_VERBOSE and MIMALLOC_SHOW_STATS print to stderr).
 *
 * Memory (since 0.5): removing a pool, freeing an engine or a cache,
 * deleting a cache's last object and a replace that drops large old
 * contents give the memory they free back to the operating system before
 * the call returns (below about 1 MiB it stays with the allocator for
 * reuse). Two exceptions:
 *  - Memory another thread allocated (keys it added, objects it upserted)
 *    goes back when that thread next makes a berth_* call, or exits: the
 *    allocator returns a freed block to the thread that allocated it.
 *  - Data of other pools or caches made by the same thread at the same
 *    time may share allocator segments (32 MiB) with it; the free part of
 *    such a segment goes back when the allocator next works in it.
 * Berth keeps this data in mimalloc arenas of its own and never changes the
 * allocator's options, so the host's allocation is unaffected even if the
 * host uses mimalloc too (the release does also empty mimalloc's
 * process-wide cache of free segments). Builds with the system allocator
 * (sanitizer builds) leave freed memory to it.
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
#define BERTH_ABI_VERSION_MINOR 6
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
  /* Not an error: there was nothing to return (the pool has no key, the
   * cache has no such object). */
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
  BERTH_ERR_INTERNAL = 7,
  /* The cache has not completed its first sync (berth_cache_replace): go to
   * the API server on purpose. Since 0.2. */
  BERTH_ERR_NOT_SYNCED = 8,
  /* A label selector Kubernetes would reject; the message names the byte
   * offset and what was expected. Since 0.2. */
  BERTH_ERR_BAD_SELECTOR = 9,
  /* A blocking wait reached its deadline; nothing is held. Since 0.3. */
  BERTH_ERR_TIMEOUT = 10,
  /* A shared-memory region exists under the name but is not a Berth shared
   * limiter of this layout (foreign, corrupt, or another version). Nothing
   * was changed in it. Since 0.3. */
  BERTH_ERR_BAD_REGION = 11,
  /* A non-NULL handle that is not a live handle of the parameter's type: it
   * was freed already, it is another type of handle, or Berth never made it.
   * Nothing was changed. Since 0.4. */
  BERTH_ERR_BAD_HANDLE = 12,
  /* A handle made by the process this one was forked from, of a type whose
   * state stays with that process (see "fork" above). Nothing was changed;
   * _free ends the handle in this process. Since 0.5. */
  BERTH_ERR_FORKED = 13
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
#define BERTH_FB_EVENT_BATCH_ID "BEVB"      /* input of berth_cache_apply */
#define BERTH_FB_OBJECT_LIST_ID "BOBL"      /* input of berth_cache_replace; output
                                               of berth_cache_list and _get */

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                            */
/* ------------------------------------------------------------------------ */

/* An engine owns every warm pool made through it. Engines share nothing
 * with each other. (Caches, selectors, limiters and buckets are handles of
 * their own.) */
typedef struct berth_engine berth_engine;

/* Bytes produced by Berth: a FlatBuffers buffer, or text where the function
 * says so. Immutable; owned by the caller until berth_buffer_free. */
typedef struct berth_buffer berth_buffer;

/* A parsed Kubernetes label selector. Immutable: thread-safe for concurrent
 * use. Since 0.2. */
typedef struct berth_selector berth_selector;

/* An object cache (watch-fed, write-through, version-guarded, indexed by
 * namespace and labels). Since 0.2. */
typedef struct berth_cache berth_cache;
/* A counted reference to one cached object (since 0.6); see "Cached objects". */
typedef struct berth_object berth_object;
/* The objects of one list, each a counted reference (since 0.6). */
typedef struct berth_object_list berth_object_list;

/* A concurrency limiter: weighted permits, FIFO waiters. Since 0.3. */
typedef struct berth_limiter berth_limiter;

/* Where asynchronous waits report completion: an eventfd to watch plus a
 * queue of completed tokens. Since 0.3. */
typedef struct berth_notifier berth_notifier;

/* A token-bucket rate limiter. Since 0.3. */
typedef struct berth_bucket berth_bucket;

/* A handle on a concurrency limiter in named shared memory, shared by every
 * process of the host that opens the same name. Since 0.3. */
typedef struct berth_shared_limiter berth_shared_limiter;

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

/* Releases an engine and everything it owns, and returns the memory to the
 * OS (see Memory at the top). NULL is a no-op (BERTH_OK).
 * Threading: no other call may be in flight on this engine; later calls
 * with it get BERTH_ERR_BAD_HANDLE. Buffers already returned stay valid (they do not borrow from the
 * engine). Since 0.1. */
BERTH_API berth_status berth_engine_free(berth_engine* engine);

/* Stores in *out_buffer the names of the engine's pools, sorted, each
 * followed by a NUL byte ("a\0b\0"; empty if there is none): pool names
 * cannot contain NUL. A pool exists from its first add until
 * berth_pool_remove_pool, also while empty. Pools added or removed during
 * the call may or may not be listed. The caller owns the buffer.
 * Fails: BERTH_ERR_INVALID_ARGUMENT. O(pools). Since 0.6. */
BERTH_API berth_status berth_engine_list_pools(berth_buffer** out_buffer,
                                               const berth_engine* engine);

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

/* Drops a pool and frees everything it held, including its put_back records;
 * the memory goes back to the OS before the call returns (see Memory at the
 * top). *out_removed (optional) is 1 if the pool existed. Calls racing with the
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
/* Label selectors                                                           */
/*                                                                           */
/* The full grammar of Kubernetes' labels.Parse: key=value, key==value,      */
/* key!=value, key in (a,b), key notin (a,b), key, !key, key>N, key<N,       */
/* comma-AND, whitespace where Kubernetes allows it, empty values where it   */
/* allows them ("a=", "a in ()"). Keys (optional DNS-subdomain prefix of at  */
/* most 253 bytes, "/", a name of at most 63) and values (at most 63,        */
/* alphanumeric ends, '-', '_', '.' inside) are validated as Kubernetes      */
/* validates them. The empty selector matches everything. Checked against    */
/* vectors produced by k8s.io/apimachinery itself (tests/k8sref).            */
/* ------------------------------------------------------------------------ */

/* One label: key and value as pointer + length. */
typedef struct berth_label {
  const char* key;
  size_t key_len;
  const char* value;
  size_t value_len;
} berth_label;

/* Parses a selector into *out_selector (caller-owned; berth_selector_free).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULL out, NULL text with non-zero
 *   length); BERTH_ERR_BAD_SELECTOR with a message such as "at byte 7: found
 *   ')', expected: identifier". Thread-safe. Since 0.2. */
BERTH_API berth_status berth_selector_parse(berth_selector** out_selector,
                                            const char* text, size_t text_len);

/* Frees a selector. NULL is a no-op. No call may use it concurrently; later
 * calls with it get BERTH_ERR_BAD_HANDLE. Since 0.2. */
BERTH_API berth_status berth_selector_free(berth_selector* selector);

/* Stores in *out_buffer the canonical form Kubernetes prints (requirements
 * sorted by key, values sorted), as UTF-8 bytes without a NUL; parsing it
 * gives an equal selector. The caller owns the buffer. Thread-safe.
 * Since 0.2. */
BERTH_API berth_status berth_selector_string(berth_buffer** out_buffer,
                                             const berth_selector* selector);

/* Sets *out_matches to 1 if the labels satisfy every requirement, else 0.
 * A key given twice counts with its last value. Labels are not validated
 * (any bytes match as Kubernetes would compare them).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULL out or selector, labels NULL with
 *   n_labels > 0, a NULL key/value pointer with non-zero length).
 * Thread-safe. Since 0.2. */
BERTH_API berth_status berth_selector_matches(int* out_matches,
                                              const berth_selector* selector,
                                              const berth_label* labels,
                                              size_t n_labels);

/* ------------------------------------------------------------------------ */
/* Object cache                                                              */
/*                                                                           */
/* Objects are keyed by (namespace, name) and carry labels, a                */
/* resourceVersion and an opaque payload (bytes whose format the caller      */
/* owns, e.g. JSON). resourceVersion is the decimal integer Kubernetes       */
/* issues (the etcd revision), passed as uint64; larger is newer.            */
/*                                                                           */
/* Watch events and the caller's own writes (after its create/patch/delete   */
/* succeeded, with the resourceVersion the API server returned) go through   */
/* the same version guard:                                                   */
/*  - an upsert older than or equal to what the cache holds for the object   */
/*    is ignored;                                                            */
/*  - a delete leaves a tombstone carrying its resourceVersion, so an older  */
/*    add cannot bring the object back; tombstones are bounded in count      */
/*    (the oldest is forgotten first);                                       */
/*  - a delete with resourceVersion 0 deletes whatever version is cached.    */
/* berth_cache_replace swaps in a full relist atomically, like client-go's   */
/* Replace, keeping entries and tombstones newer than the list, and marks    */
/* the cache synced. Before the first replace, list and get return           */
/* BERTH_ERR_NOT_SYNCED, so the caller goes to the API server on purpose.    */
/*                                                                           */
/* list(namespace, selector) costs about the size of the smallest posting    */
/* list the selector allows (namespace, key=value, key in (...), key) plus   */
/* the result, not the cache size. get is O(1).                              */
/*                                                                           */
/* Threading: every cache call is thread-safe. Readers (get, list, stats)    */
/* never wait for each other; a writer holds readers off only for its own    */
/* O(labels) update (replace: for merging what changed during the relist).  */
/* ------------------------------------------------------------------------ */

/* Options for berth_cache_new; zero-initialise, then set what you need. */
typedef struct berth_cache_options {
  /* Tombstones kept; 0 means the default, 100000. */
  uint32_t tombstone_limit;
  uint32_t reserved_;
} berth_cache_options;

/* Counters of a cache, read atomically with respect to writes. */
typedef struct berth_cache_stats {
  uint64_t objects;
  uint64_t tombstones;
  uint64_t resource_version; /* largest resourceVersion applied so far */
  uint64_t applied;          /* upserts and deletes that changed the cache */
  uint64_t ignored;          /* stale events the version guard dropped */
  uint8_t synced;            /* 1 after the first berth_cache_replace */
  uint8_t reserved_[7];
} berth_cache_stats;

/* Limits (bytes). */
#define BERTH_MAX_PAYLOAD_LEN (64u << 20)
#define BERTH_MAX_LABELS 256

/* Creates an empty, unsynced cache. options may be NULL (defaults).
 * The caller owns it (berth_cache_free). Thread-safe. Since 0.2. */
BERTH_API berth_status berth_cache_new(berth_cache** out_cache,
                                       const berth_cache_options* options);

/* Frees a cache and everything in it, tombstones included, and returns the
 * memory to the OS (see Memory at the top). NULL is a no-op. No call may be
 * in flight on it; later calls with it get BERTH_ERR_BAD_HANDLE. Buffers
 * already returned stay valid.
 * Since 0.2. */
BERTH_API berth_status berth_cache_free(berth_cache* cache);

/* Inserts or replaces (namespace, name) unless the cache already holds that
 * object, or a tombstone of it, at resourceVersion >= resource_version.
 * *out_applied (optional) is 1 if the cache changed, 0 if the version guard
 * ignored it. Labels are validated as Kubernetes validates them; a key given
 * twice keeps its last value. The payload is copied.
 * Parameters: namespace_ (0..BERTH_MAX_NAMESPACE_LEN), name
 *   (1..BERTH_MAX_NAME_LEN), resource_version (> 0), labels
 *   (0..BERTH_MAX_LABELS), payload (0..BERTH_MAX_PAYLOAD_LEN).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULL cache, NULL pointer with non-zero
 *   length, resource_version 0, too many labels or payload too large);
 *   BERTH_ERR_INVALID_NAME (names, label keys or values).
 * Complexity: O(labels). Since 0.2. */
BERTH_API berth_status berth_cache_upsert(int* out_applied, berth_cache* cache,
                                          const char* namespace_, size_t namespace_len,
                                          const char* name, size_t name_len,
                                          uint64_t resource_version,
                                          const berth_label* labels, size_t n_labels,
                                          const uint8_t* payload, size_t payload_len);

/* Deletes (namespace, name) as of resource_version and leaves a tombstone
 * at that version, so older adds stay out. Precisely:
 *  - cached at a newer resourceVersion: ignored (*out_applied = 0);
 *  - cached otherwise: removed, tombstone at resource_version, applied;
 *  - resource_version 0 ("whatever is cached"): the cached object is removed
 *    and its tombstone carries the cached object's resourceVersion; with
 *    nothing cached it is ignored and records nothing;
 *  - absent, resource_version > 0: a tombstone is recorded (a delete that
 *    overtook its add) and *out_applied = 1, unless a tombstone at least as
 *    new exists (ignored).
 * The delete that removes the last object also drops the cache's index
 * (sized for the most objects it held) and returns the memory of the index
 * and of the deleted objects to the OS (see Memory at the top); the
 * tombstones stay, up to tombstone_limit.
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME. Since 0.2. */
BERTH_API berth_status berth_cache_delete(int* out_applied, berth_cache* cache,
                                          const char* namespace_, size_t namespace_len,
                                          const char* name, size_t name_len,
                                          uint64_t resource_version);

/* Applies a FlatBuffers berth.fb.EventBatch (identifier
 * BERTH_FB_EVENT_BATCH_ID) in order, each event as berth_cache_upsert
 * (ADDED, MODIFIED) or berth_cache_delete (DELETED) would. All or nothing:
 * the buffer and every event are validated first (the message names the bad
 * event's index). A Deleted event uses only the object's namespace, name and
 * resource_version (0 allowed, as in berth_cache_delete). *out_applied
 * (optional) counts the events that changed the cache. A batch that leaves
 * the cache without objects drops its index as berth_cache_delete does.
 * Fails: BERTH_ERR_INVALID_ARGUMENT (also: an event without an object, an
 *   unknown event type); BERTH_ERR_INVALID_NAME; BERTH_ERR_BAD_BUFFER.
 * Since 0.2. */
BERTH_API berth_status berth_cache_apply(size_t* out_applied, berth_cache* cache,
                                         const uint8_t* buf, size_t buf_len);

/* Replaces the contents with a full relist: a FlatBuffers berth.fb.ObjectList
 * (identifier BERTH_FB_OBJECT_LIST_ID) whose resource_version is the list's.
 * Cached objects and tombstones newer than the list are kept (they happened
 * after it); everything else comes from the list. An object named twice in
 * the list keeps its newer entry (the later one on a tie). Then the cache is
 * synced, and its resourceVersion is the largest of its previous one, the
 * list's and the listed objects'. The old contents are freed after the swap
 * and their memory returned to the OS (see Memory at the top). Validated
 * completely before anything changes. Fails: as berth_cache_apply.
 * Since 0.2. */
BERTH_API berth_status berth_cache_replace(berth_cache* cache,
                                           const uint8_t* buf, size_t buf_len);

/* Stores in *out_buffer a FlatBuffers berth.fb.ObjectList of the objects in
 * namespace_ (empty = every namespace) that match selector (NULL = every
 * object), sorted by (namespace, name), each object's labels sorted by key,
 * with the cache's resourceVersion. Taken atomically. No match is BERTH_OK
 * with an empty list (never BERTH_EMPTY). The caller owns the buffer.
 * Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME;
 *   BERTH_ERR_NOT_SYNCED. Since 0.2. */
BERTH_API berth_status berth_cache_list(berth_buffer** out_buffer,
                                        const berth_cache* cache,
                                        const char* namespace_, size_t namespace_len,
                                        const berth_selector* selector);

/* Stores in *out_buffer an ObjectList holding the one object (namespace,
 * name), or returns BERTH_EMPTY (not an error) if the cache does not hold
 * it. Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME;
 * BERTH_ERR_NOT_SYNCED. Since 0.2. */
BERTH_API berth_status berth_cache_get(berth_buffer** out_buffer,
                                       const berth_cache* cache,
                                       const char* namespace_, size_t namespace_len,
                                       const char* name, size_t name_len);

/* Reads the counters into *out_stats. O(1). Works before the first sync.
 * Since 0.2. */
BERTH_API berth_status berth_cache_get_stats(berth_cache_stats* out_stats,
                                             const berth_cache* cache);

/* ------------------------------------------------------------------------ */
/* Cached objects (since 0.6)                                                */
/*                                                                           */
/* The cache holds each object once, immutable and reference-counted. A get  */
/* or list by reference (berth_cache_get_object, berth_cache_list_objects)   */
/* hands out references instead of copying objects into a FlatBuffers        */
/* buffer: O(1) per object whatever its payload size. A reference keeps its  */
/* object's bytes valid and unchanged until it is freed, whatever happens to */
/* the cache afterwards (updates, deletes, relists, berth_cache_free): a     */
/* newer version of the object is a different object.                       */
/*                                                                           */
/* Threading: references are immutable; every call below is thread-safe on  */
/* the same reference, except that no call may be in flight on a reference   */
/* that is being freed.                                                      */
/* ------------------------------------------------------------------------ */

/* The fields of an object: pointers into the object, valid while the
 * reference they were read from (an object, or the list holding it) lives.
 * Strings are not NUL-terminated. */
typedef struct berth_object_fields {
  const char* namespace_;   /* "" for cluster-scoped objects */
  size_t namespace_len;
  const char* name;
  size_t name_len;
  uint64_t resource_version;
  const uint8_t* payload;   /* never NULL, even when payload_len is 0 */
  size_t payload_len;
  size_t n_labels;          /* berth_object_labels gives them */
} berth_object_fields;

/* Stores in *out_object a new reference to the object (namespace, name),
 * and in *out_fields (optional) its fields; or returns BERTH_EMPTY (not an
 * error) if the cache does not hold it, leaving *out_object NULL. The
 * caller owns the reference (berth_object_free). O(1); the cache's lock is
 * held only for the lookup. Fails: BERTH_ERR_INVALID_ARGUMENT;
 * BERTH_ERR_INVALID_NAME; BERTH_ERR_NOT_SYNCED; BERTH_ERR_NO_MEMORY (no
 * handle available). Since 0.6. */
BERTH_API berth_status berth_cache_get_object(berth_object** out_object,
                                              berth_object_fields* out_fields,
                                              const berth_cache* cache,
                                              const char* namespace_, size_t namespace_len,
                                              const char* name, size_t name_len);

/* Stores in *out_list the objects in namespace_ (empty = every namespace)
 * that match selector (NULL = every object), sorted by (namespace, name),
 * taken atomically, as berth_cache_list chooses them; and in
 * *out_resource_version (optional) the cache's resourceVersion at that
 * moment. No match is BERTH_OK with an empty list. The caller owns the list
 * (berth_object_list_free). Costs the candidate set plus one reference per
 * listed object; no object is copied. Fails: as berth_cache_list.
 * Since 0.6. */
BERTH_API berth_status berth_cache_list_objects(berth_object_list** out_list,
                                                uint64_t* out_resource_version,
                                                const berth_cache* cache,
                                                const char* namespace_, size_t namespace_len,
                                                const berth_selector* selector);

/* Reads an object's fields into *out_fields. O(1).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULL pointer). Since 0.6. */
BERTH_API berth_status berth_object_get_fields(berth_object_fields* out_fields,
                                               const berth_object* object);

/* Stores the object's labels, sorted by key, in out_labels[0..n) where
 * n = min(capacity, number of labels), and the number of labels in *out_n
 * (so a capacity of 0 asks for the count). The strings point into the
 * object, valid while the reference lives. out_labels may be NULL only with
 * capacity 0. O(n). Fails: BERTH_ERR_INVALID_ARGUMENT. Since 0.6. */
BERTH_API berth_status berth_object_labels(berth_label* out_labels, size_t capacity, size_t* out_n,
                                           const berth_object* object);

/* Drops a reference. NULL is a no-op. Pointers read from it are invalid
 * afterwards (other references to the same object keep theirs valid).
 * Since 0.6. */
BERTH_API berth_status berth_object_free(berth_object* object);

/* Stores in *out_size the number of objects in a list. O(1).
 * Fails: BERTH_ERR_INVALID_ARGUMENT. Since 0.6. */
BERTH_API berth_status berth_object_list_size(size_t* out_size, const berth_object_list* list);

/* Reads object `index` of a list: a new reference to it in *out_object
 * (optional; the caller then owns it) and its fields in *out_fields
 * (optional; valid while the list, or that reference, lives). O(1).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (index >= size, or both outputs NULL);
 * BERTH_ERR_NO_MEMORY (no handle available). Since 0.6. */
BERTH_API berth_status berth_object_list_get(berth_object** out_object,
                                             berth_object_fields* out_fields,
                                             const berth_object_list* list, size_t index);

/* Frees a list and drops its references. NULL is a no-op. References taken
 * from it with berth_object_list_get stay valid. Since 0.6. */
BERTH_API berth_status berth_object_list_free(berth_object_list* list);

/* ------------------------------------------------------------------------ */
/* Concurrency limiter                                                       */
/*                                                                           */
/* Weighted permits under a capacity that can change at run time. Waiters    */
/* are served first come, first served, and nobody barges past a waiter: a   */
/* large request at the head is not starved by small ones behind it (while   */
/* one waits, try_acquire refuses with BERTH_LIMIT_WAITERS_QUEUED). Lowering */
/* the capacity never revokes held permits: new grants wait until in-use     */
/* drops below it. n is checked against the capacity when asked (more is    */
/* BERTH_ERR_INVALID_ARGUMENT); a waiter already queued is never failed by a */
/* later lowering: it waits until the capacity is raised again.              */
/*                                                                           */
/* Three ways to wait: berth_limiter_try_acquire (never waits),              */
/* berth_limiter_acquire (blocks the calling thread, with a deadline), and   */
/* berth_limiter_acquire_async, for event loops: it either grants at once or */
/* returns a ticket; the grant later posts the caller's token to a           */
/* berth_notifier, whose fd the loop watches. A ticket is waiting, then      */
/* granted, then claimed (berth_limiter_claim: the caller now holds the      */
/* permits); berth_limiter_cancel works at every step before the claim (a    */
/* granted ticket's permits go back), so a cancelled task never leaks or     */
/* double-frees a permit, however the cancel races the grant.                */
/*                                                                           */
/* Threading: every limiter and notifier call is thread-safe.                */
/* ------------------------------------------------------------------------ */

/* Why berth_limiter_try_acquire refused. */
enum {
  BERTH_LIMIT_GRANTED = 0,
  BERTH_LIMIT_AT_CAPACITY = 1,     /* in-use + n would exceed the capacity */
  BERTH_LIMIT_WAITERS_QUEUED = 2   /* others wait first (FIFO) */
};

/* What berth_limiter_cancel found. */
enum {
  BERTH_CANCEL_UNKNOWN = 0,      /* no such ticket: claimed, cancelled, or never issued */
  BERTH_CANCEL_WAS_WAITING = 1,  /* removed from the queue; nothing was held */
  BERTH_CANCEL_WAS_GRANTED = 2   /* granted but unclaimed: its permits went back */
};

typedef struct berth_limiter_stats {
  int64_t capacity;
  int64_t in_use;
  int64_t waiting;          /* waiters queued */
  int64_t waiting_permits;  /* permits they ask for */
  uint64_t granted;         /* grants made (including ones later cancelled) */
  uint64_t rejected;        /* try_acquire refusals */
  uint64_t timed_out;       /* blocking waits that reached their deadline */
  uint64_t cancelled;       /* asynchronous waits cancelled */
} berth_limiter_stats;

/* Creates a limiter with capacity >= 1. The caller owns it.
 * Fails: BERTH_ERR_INVALID_ARGUMENT. Since 0.3. */
BERTH_API berth_status berth_limiter_new(berth_limiter** out_limiter, int64_t capacity);

/* Frees a limiter. NULL is a no-op. No call may be in flight on it (in
 * particular no thread blocked in berth_limiter_acquire); unclaimed tickets
 * are dropped, and tokens already posted to notifiers stay there to be
 * drained (and dropped). Later calls with it get BERTH_ERR_BAD_HANDLE.
 * Since 0.3. */
BERTH_API berth_status berth_limiter_free(berth_limiter* limiter);

/* Takes n permits if they are free and nobody waits; never waits.
 * *out_refusal is BERTH_LIMIT_GRANTED, or why not.
 * Fails: BERTH_ERR_INVALID_ARGUMENT (n < 1, n > capacity). Since 0.3. */
BERTH_API berth_status berth_limiter_try_acquire(int* out_refusal, berth_limiter* limiter,
                                                 int64_t n);

/* Blocks the calling thread until n permits are granted (BERTH_OK) or
 * timeout_ns passes (BERTH_ERR_TIMEOUT, nothing held); timeout_ns < 0 (or
 * beyond 2^62 ns) waits without a deadline. Nothing interrupts the wait but
 * a grant or the deadline: a binding whose close() must not hang uses
 * deadlines or the asynchronous form. Never call it from an event loop's
 * thread.
 * Fails: BERTH_ERR_INVALID_ARGUMENT (n < 1, n > capacity). Since 0.3. */
BERTH_API berth_status berth_limiter_acquire(berth_limiter* limiter, int64_t n,
                                             int64_t timeout_ns);

/* Asks for n permits without waiting: *out_granted_now = 1 if they were
 * free (the caller holds them; *out_ticket = 0), else 0 and *out_ticket
 * (never 0) names the queued wait; its grant posts `token` to `notifier`,
 * after which the caller claims (berth_limiter_claim) or cancels it. A
 * token of a ticket cancelled after its grant is still posted: drop tokens
 * you no longer expect. The limiter keeps the notifier alive while the
 * ticket may post to it.
 * Fails: BERTH_ERR_INVALID_ARGUMENT (NULLs, n < 1, n > capacity). Since 0.3. */
BERTH_API berth_status berth_limiter_acquire_async(int* out_granted_now, uint64_t* out_ticket,
                                                   berth_limiter* limiter, int64_t n,
                                                   berth_notifier* notifier, uint64_t token);

/* Takes over a granted ticket's permits: *out_claimed = 1, and the caller
 * releases them later. 0 if the ticket is not granted (still waiting,
 * cancelled, already claimed, unknown). Since 0.3. */
BERTH_API berth_status berth_limiter_claim(int* out_claimed, berth_limiter* limiter,
                                           uint64_t ticket);

/* Cancels a ticket; *out_outcome (optional) says what it found
 * (BERTH_CANCEL_*). Never an error for an unknown ticket. Since 0.3. */
BERTH_API berth_status berth_limiter_cancel(int* out_outcome, berth_limiter* limiter,
                                            uint64_t ticket);

/* Returns n permits and grants waiters that now fit, in order.
 * Fails: BERTH_ERR_INVALID_ARGUMENT (n < 1, or more than are in use:
 *   nothing changes). Since 0.3. */
BERTH_API berth_status berth_limiter_release(berth_limiter* limiter, int64_t n);

/* Changes the capacity (>= 1); see the section comment. Since 0.3. */
BERTH_API berth_status berth_limiter_set_capacity(berth_limiter* limiter, int64_t capacity);

/* Reads the counters. Since 0.3. */
BERTH_API berth_status berth_limiter_get_stats(berth_limiter_stats* out_stats,
                                               const berth_limiter* limiter);

/* Creates a notifier (an eventfd, non-blocking, close-on-exec). The caller
 * owns it. Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INTERNAL if the
 * eventfd cannot be made. Since 0.3. */
BERTH_API berth_status berth_notifier_new(berth_notifier** out_notifier);

/* Frees the caller's reference; a limiter still holding tickets that post
 * to it keeps it alive until they are done. NULL is a no-op. Since 0.3. */
BERTH_API berth_status berth_notifier_free(berth_notifier* notifier);

/* The fd to watch for readability (owned by the notifier: do not close or
 * read it, and keep it non-blocking: berth_notifier_drain reads it, and a
 * blocking fd would hang there). Since 0.3. */
BERTH_API berth_status berth_notifier_fd(int* out_fd, const berth_notifier* notifier);

/* Takes up to cap completed tokens into tokens[] (*out_count of them) and
 * clears the fd's readiness. Call again while *out_count == cap. A token is
 * drained once only; a wake-up with nothing to drain is normal. Since 0.3. */
BERTH_API berth_status berth_notifier_drain(size_t* out_count, berth_notifier* notifier,
                                            uint64_t* tokens, size_t cap);

/* ------------------------------------------------------------------------ */
/* Shared limiter                                                            */
/*                                                                           */
/* A concurrency limiter in the POSIX shared-memory region "/berth.<name>",  */
/* so one capacity holds across every worker process that opens it. Permits  */
/* belong to processes, not handles: a process releases what it acquired,   */
/* through any of its handles; closing its last handle on the region gives  */
/* back what it still holds.                                                 */
/*                                                                           */
/* Liveness (since 0.5): each process with the region open holds a POSIX     */
/* record lock on its own slot's byte of the region file. The kernel drops   */
/* that lock when the process dies, however it dies, so a dead process's     */
/* permits and waits come back when another process looks (any acquire that  */
/* does not fit, every stats call, and every 50 ms while someone waits).     */
/* No pid is compared: this holds across pid namespaces (containers of one   */
/* pod sharing /dev/shm), after pid reuse (pid 1 in every restarted          */
/* container) and without /proc. One trap of record locks: a process that    */
/* closes any fd of the region file drops its locks, so do not open         */
/* /dev/shm/berth.<name> yourself in a process that uses the limiter.        */
/* The region's lock is robust: a process dying inside a call blocks nobody, */
/* and no call waits for it longer than 2 s while its owner is alive (then   */
/* BERTH_ERR_BAD_REGION: the owner is stopped, or the region was written by  */
/* something else). Waiters are FIFO across processes.                       */
/*                                                                           */
/* Trust (since 0.5): a region that belongs to another user, or that group   */
/* or others may write, is refused with BERTH_ERR_BAD_REGION (there is no    */
/* group-shared mode yet: processes sharing a limiter run as one uid). So is */
/* one whose header does not match this layout, and one whose checked        */
/* counters (capacity, in-use, slots, waiters carry check words, verified on */
/* every call for what decides a grant and on every stats call for the rest) */
/* were overwritten: a damaged region is refused by every process from then  */
/* on, never read as a different capacity. A process of the same user can   */
/* still truncate or rewrite the region (a shared mapping cannot prevent     */
/* it); the checks make that a refusal, and truncation kills the mapping     */
/* process with SIGBUS, as for any shared mapping.                           */
/*                                                                           */
/* fork: a handle inherited by a forked child works in the child, as a new   */
/* process: it holds no permits and no asynchronous tickets (the parent's    */
/* stay the parent's; claim/cancel of them in the child answer 0 /           */
/* BERTH_CANCEL_UNKNOWN), and takes a slot of its own on first use.          */
/*                                                                           */
/* Names: 1 to 200 bytes of [A-Za-z0-9._-]. Limits: 256 processes with the  */
/* region open and 256 waiting threads at once.                              */
/* Threading: every call is thread-safe and process-safe. Every call below   */
/* except _unlink can fail with BERTH_ERR_BAD_REGION as described above.     */
/* ------------------------------------------------------------------------ */

typedef struct berth_shared_limiter_stats {
  int64_t capacity;
  int64_t in_use;
  int64_t waiting;
  int64_t holders;     /* processes holding permits */
  uint64_t granted;    /* grants made, including grants to asynchronous
                          waits cancelled as they landed (whose permits
                          went straight back) */
  uint64_t rejected;   /* try_acquire refusals, including the first try of
                          an acquire_async that then queued */
  uint64_t timed_out;  /* blocking waits that reached their deadline */
  uint64_t reclaimed;  /* permits taken back from dead processes */
} berth_shared_limiter_stats;

/* Opens the shared limiter `name`; with create = 1 it is created with
 * `capacity` (>= 1) if it does not exist (an existing one keeps its
 * capacity: use berth_shared_limiter_set_capacity). The caller owns the
 * handle. Fails: BERTH_ERR_INVALID_ARGUMENT; BERTH_ERR_INVALID_NAME;
 * BERTH_ERR_NOT_FOUND (create = 0 and absent); BERTH_ERR_BAD_REGION;
 * BERTH_ERR_INTERNAL (the OS refused: the message says why). Since 0.3. */
BERTH_API berth_status berth_shared_limiter_open(berth_shared_limiter** out_limiter,
                                                 const char* name, size_t name_len,
                                                 int64_t capacity, int create);

/* Closes a handle (unmaps). Permits this process holds stay held while it
 * has another handle on the region open; closing its last one gives them
 * back (since 0.5). NULL is a no-op. No call may be in flight on the handle;
 * later calls with it get BERTH_ERR_BAD_HANDLE. Since 0.3. */
BERTH_API berth_status berth_shared_limiter_close(berth_shared_limiter* limiter);

/* Removes the name; processes that have it open keep using the region.
 * Fails: BERTH_ERR_INVALID_NAME; BERTH_ERR_NOT_FOUND. Since 0.3. */
BERTH_API berth_status berth_shared_limiter_unlink(const char* name, size_t name_len);

/* As berth_limiter_try_acquire, for this process. Since 0.3. */
BERTH_API berth_status berth_shared_limiter_try_acquire(int* out_refusal,
                                                        berth_shared_limiter* limiter,
                                                        int64_t n);

/* As berth_limiter_acquire (blocks; BERTH_ERR_TIMEOUT after timeout_ns;
 * < 0 waits without a deadline). Since 0.3. */
BERTH_API berth_status berth_shared_limiter_acquire(berth_shared_limiter* limiter, int64_t n,
                                                    int64_t timeout_ns);

/* As berth_limiter_acquire_async, for event loops: grants at once when it
 * can, else queues a ticket; a background thread of this handle (started on
 * first need) waits in the region for the handle's tickets in order and
 * posts each grant's token to its notifier. Claim or cancel as for the
 * in-process limiter; cancelling the ticket being waited for interrupts
 * that wait, and anything granted to a cancelled ticket goes back. Closing
 * the handle stops the thread and returns unclaimed grants. In a forked
 * child the handle starts with no tickets and its own thread. Since 0.3. */
BERTH_API berth_status berth_shared_limiter_acquire_async(int* out_granted_now,
                                                          uint64_t* out_ticket,
                                                          berth_shared_limiter* limiter,
                                                          int64_t n, berth_notifier* notifier,
                                                          uint64_t token);
BERTH_API berth_status berth_shared_limiter_claim(int* out_claimed, berth_shared_limiter* limiter,
                                                  uint64_t ticket);
BERTH_API berth_status berth_shared_limiter_cancel(int* out_outcome, berth_shared_limiter* limiter,
                                                   uint64_t ticket);

/* Returns n permits this process holds. Fails: BERTH_ERR_INVALID_ARGUMENT
 * (n < 1, or more than this process holds: nothing changes). Since 0.3. */
BERTH_API berth_status berth_shared_limiter_release(berth_shared_limiter* limiter, int64_t n);

/* Changes the capacity for every process (>= 1). Since 0.3. */
BERTH_API berth_status berth_shared_limiter_set_capacity(berth_shared_limiter* limiter,
                                                         int64_t capacity);

/* Reads the counters, reclaiming dead holders first. Since 0.3. */
BERTH_API berth_status berth_shared_limiter_get_stats(berth_shared_limiter_stats* out_stats,
                                                      berth_shared_limiter* limiter);

/* ------------------------------------------------------------------------ */
/* Token bucket                                                              */
/*                                                                           */
/* The semantics of golang.org/x/time/rate: tokens refill continuously at    */
/* `rate` per second up to `burst` (the bucket starts full); allow(n) takes  */
/* n tokens now or refuses; reserve(n) takes them now even into debt and     */
/* says how long the caller must wait before acting (Berth never sleeps);    */
/* cancelling a reservation before its time gives back the tokens nobody     */
/* reserved after it. Rate and burst change at run time, keeping the tokens  */
/* accrued (a lower burst caps them at once).                                */
/*                                                                           */
/* Time: every call takes now_ns on Berth's monotonic clock                  */
/* (berth_clock_now_ns); BERTH_NOW (any negative value) means "now".         */
/* Passing explicit times makes behaviour exact and testable. Every now_ns   */
/* from 0 to INT64_MAX is valid; a now_ns earlier than one already seen      */
/* accrues nothing (time does not run backwards), as in x/time/rate. No time */
/* a bucket hands out is past INT64_MAX: a reservation due later is refused  */
/* (since 0.5; before, its time wrapped negative).                           */
/* Tokens are doubles: with a burst above 2^53 counts are rounded.           */
/* Threading: every bucket call is thread-safe.                              */
/* ------------------------------------------------------------------------ */

#define BERTH_NOW (-1)

typedef struct berth_reservation {
  int64_t time_to_act_ns;  /* when the caller may act (monotonic ns), >= now */
  int64_t delay_ns;        /* time_to_act_ns - now: how long to wait, >= 0 */
  int64_t tokens;
  double rate;             /* the rate when reserved; used by cancel */
} berth_reservation;

typedef struct berth_bucket_stats {
  double rate;
  int64_t burst;
  double tokens;  /* now; negative while reservations are in debt */
} berth_bucket_stats;

/* Berth's monotonic clock (CLOCK_MONOTONIC), in nanoseconds. Since 0.3. */
BERTH_API int64_t berth_clock_now_ns(void);

/* Creates a bucket: rate > 0 tokens per second (INFINITY: no limit), burst
 * >= 1 (up to INT64_MAX). Fails: BERTH_ERR_INVALID_ARGUMENT for NULL
 * out_bucket, rate <= 0 or NaN, a rate so slow that one token takes more
 * than INT64_MAX ns (~292 years: below ~1.08e-10 per second; since 0.5),
 * or burst < 1. Since 0.3. */
BERTH_API berth_status berth_bucket_new(berth_bucket** out_bucket, double rate, int64_t burst);

/* Frees a bucket. NULL is a no-op; later calls with it get
 * BERTH_ERR_BAD_HANDLE. Since 0.3. */
BERTH_API berth_status berth_bucket_free(berth_bucket* bucket);

/* *out_allowed = 1 if n tokens were taken now, else 0 (nothing taken).
 * Fails: BERTH_ERR_INVALID_ARGUMENT (n < 1, n > burst). Since 0.3. */
BERTH_API berth_status berth_bucket_allow(int* out_allowed, berth_bucket* bucket, int64_t n,
                                          int64_t now_ns);

/* Takes n tokens, into debt if need be, and fills *out_reservation with when
 * the caller may act: time_to_act_ns >= now_ns, delay_ns >= 0. Fails:
 * BERTH_ERR_INVALID_ARGUMENT (n < 1, n > burst, or, since 0.5, a time to act
 * after INT64_MAX ns: the tokens owed would take that long at the current
 * rate; nothing is taken, and a cancel or a higher rate can make room).
 * Since 0.3. */
BERTH_API berth_status berth_bucket_reserve(berth_reservation* out_reservation,
                                            berth_bucket* bucket, int64_t n, int64_t now_ns);

/* Gives back what a reservation took, less the tokens reserved after it,
 * and never more than it took (unlike x/time/rate, which can give back more
 * when a later reservation was cancelled first); a no-op once its time to
 * act has passed, while the rate is INFINITY, for a reservation with tokens
 * <= 0, and (since 0.5) for one made at an infinite rate, which took
 * nothing. Works up to a time to act of INT64_MAX. Sets
 * reservation->tokens to 0, so cancelling the same reservation again gives
 * nothing back (a copy made before the first cancel is not protected:
 * cancel each reservation once). Fails: BERTH_ERR_INVALID_ARGUMENT for
 * NULL reservation, or one with tokens > 0 and a rate <= 0 or NaN.
 * Since 0.3. */
BERTH_API berth_status berth_bucket_cancel(berth_bucket* bucket, berth_reservation* reservation,
                                           int64_t now_ns);

/* Change the rate or the burst from now_ns on; tokens accrue at the old rate
 * until now_ns (any time at INFINITY fills the bucket). Each takes what
 * berth_bucket_new takes and fails as it does (since 0.5 also for a rate too
 * slow for one token in INT64_MAX ns), changing nothing. Since 0.3. */
BERTH_API berth_status berth_bucket_set_rate(berth_bucket* bucket, double rate, int64_t now_ns);
BERTH_API berth_status berth_bucket_set_burst(berth_bucket* bucket, int64_t burst,
                                              int64_t now_ns);

/* Reads rate, burst and the tokens at now_ns (never above the burst).
 * Fails: BERTH_ERR_INVALID_ARGUMENT for NULL out_stats. Since 0.3. */
BERTH_API berth_status berth_bucket_get_stats(berth_bucket_stats* out_stats,
                                              const berth_bucket* bucket, int64_t now_ns);

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
 * use the buffer concurrently; later calls with it get BERTH_ERR_BAD_HANDLE.
 * The bytes berth_buffer_data gave are gone. Since 0.1. */
BERTH_API berth_status berth_buffer_free(berth_buffer* buffer);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BERTH_H */
