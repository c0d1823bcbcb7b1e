// Package berth is the Go binding of Berth, an embedded scheduling engine for
// sandbox control planes. It wraps the C ABI declared in capi/berth.h
// (libberth, built by scripts/build at the root of the repository).
//
// An Engine owns named warm pools of keys. A key is identified by
// (Namespace, Name) within its pool, carries the node it is scheduled on
// (empty = not scheduled) and a ready flag, and keeps the age it had when it
// first entered the pool. PopFIFO hands out the oldest key; PopSpread hands
// out a key by the NodeSpread rule (ready keys first, then the node holding
// the most keys, a tie going to the node with the oldest candidate key).
// PutBack returns a handed-out key to its original age. Update changes a
// key's node and ready flag only while it is in the pool, so a key that was
// handed out meanwhile does not come back.
//
// A Cache (ABI 0.2) is a local copy of Kubernetes objects fed by a watch and
// by the caller's own writes: Upsert, Delete and Apply (a batch of watch
// events) go through a resourceVersion guard with tombstones, Replace swaps in
// a relist atomically, and List reads by namespace and label selector
// (ParseSelector: the full Kubernetes grammar). List returns an ObjectList
// that reads fields in place, without decoding or copying each object.
//
// A Limiter (ABI 0.3) caps concurrency with weighted permits, served FIFO
// (a large waiter at the head is not starved); Acquire(ctx, n) waits without
// holding an OS thread and never leaks a permit when ctx ends. A
// SharedLimiter (ABI 0.3) is the same in named shared memory: one capacity
// for every process of the host that opens the name, with the permits of a
// process that dies holding them reclaimed. A Bucket
// (ABI 0.3) is a token-bucket rate limiter with the semantics of
// golang.org/x/time/rate; its ...At methods take explicit Instants on Berth's
// monotonic clock.
//
// Every method of Engine, Cache, Selector, Limiter, SharedLimiter and Bucket is safe for
// concurrent use. Close releases the handle; any call after Close returns an
// error wrapping ErrClosed. Failures reported by the library are *Error
// values; test them with errors.Is against ErrInvalidArgument,
// ErrInvalidName, ErrNotFound, ErrBadBuffer, ErrNoMemory, ErrInternal,
// ErrNotSynced, ErrBadSelector, ErrTimeout and ErrBadRegion.
package berth

// The FlatBuffers code in internal/fb is generated from capi/berth.fbs and
// checked in, so building needs no flatc. TestGeneratedCodeIsUpToDate fails
// when it drifts from the schema.
//go:generate flatc --go -o internal --go-namespace fb ../../capi/berth.fbs
