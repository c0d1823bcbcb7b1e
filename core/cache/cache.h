// ObjectCache: a local, watch-fed and write-through cache of Kubernetes
// objects with a resourceVersion guard, tombstones, atomic relists, and
// indexes by namespace and labels. The contract is in capi/berth.h.
//
// Thread-safe. Readers (Get, List, Stats) share a reader lock and never wait
// for each other, but for one case: broad lists after keys were added wait
// while one of them completes the key order (O(n + new keys)). A writer
// takes the lock exclusively only for the index update of an object that is
// already built (O(labels)); Replace builds the new contents (and their key
// order) outside the lock and holds it only to merge what is newer than the
// list and swap.
//
// Layout: objects live in dense slots (uint32 ids); a flat hash table from
// "ns\0name" to id (key_index.h), hash maps from namespace, "key\0value" and label key to the set of
// ids. A list costs the smallest candidate set the selector allows plus the
// result. The key order of the ids is kept too (KeyOrder), so a list comes
// out sorted by (namespace, name) without comparing keys: a broad list marks
// its matches in a bitmap by key rank and reads them out in rank order.
//
// Memory: the objects and the index live on the bulk heap, the tombstones
// on a heap of their own (core/common/alloc.h): they outlive the objects
// they record, and would otherwise keep bulk memory from going back. When
// the last object is deleted the index drops its arrays, and the memory
// goes back to the OS; so it does when the cache is destroyed, or when a
// Replace drops large old contents.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <shared_mutex>  // std::shared_lock
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/cache/key_index.h"
#include "core/cache/object.h"
#include "core/common/alloc.h"
#include "core/common/rwlock.h"
#include "core/common/status.h"
#include "core/selector/selector.h"

namespace berth {

inline constexpr size_t kDefaultTombstoneLimit = 100000;

struct CacheStats {
  uint64_t objects = 0;
  uint64_t tombstones = 0;
  uint64_t resource_version = 0;  // largest applied
  uint64_t applied = 0;
  uint64_t ignored = 0;
  bool synced = false;
};

// One write: an upsert of a built object, or a delete of (ns, name) at rv.
struct CacheEvent {
  enum class Type : uint8_t { kUpsert, kDelete };
  Type type;
  ObjectRef object;          // kUpsert
  std::string_view ns;       // kDelete
  std::string_view name;     // kDelete
  uint64_t rv = 0;           // kDelete (0: whatever is cached)
};

class ObjectCache {
 public:
  explicit ObjectCache(size_t tombstone_limit = kDefaultTombstoneLimit);
  // Frees everything and returns the memory to the OS (ReleaseFreedMemory).
  ~ObjectCache();
  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  // True if applied, false if the version guard ignored it.
  bool Upsert(ObjectRef object);
  bool Delete(std::string_view ns, std::string_view name, uint64_t rv);
  // Applies events in order under one hold of the lock; returns how many
  // were applied.
  size_t Apply(std::span<const CacheEvent> events);
  // Swaps in a full relist taken at list_rv (client-go's Replace), keeping
  // objects and tombstones newer than it; marks the cache synced.
  void Replace(std::span<const ObjectRef> objects, uint64_t list_rv);

  // Objects in `ns` (empty: all) matching `selector` (null: all), sorted by
  // (namespace, name), in *out (cleared first). kNotSynced before the first
  // Replace. O(candidates + n/64) for a broad list, O(k log k) for k
  // matches of a selective one, plus completing the key order (O(n + new
  // keys)) for a broad list after keys were added.
  Status List(std::string_view ns, const Selector* selector, std::vector<ObjectRef>* out,
              uint64_t* resource_version) const;
  // The object, or an empty ref if absent, and the cache's resourceVersion.
  // kNotSynced before the first Replace.
  Status Get(std::string_view ns, std::string_view name, ObjectRef* out,
             uint64_t* resource_version = nullptr) const;
  CacheStats Stats() const;

 private:
  template <class V, Heap H = Heap::kBulk>
  using StringMap = std::unordered_map<HeapString<H>, V, StringHash, StringEq,
                                       HeapAlloc<std::pair<const HeapString<H>, V>, H>>;
  // The objects with one namespace, one key=value or one label key,
  // unordered and contiguous. Each element also says which of its object's
  // position records points back at it, so a removal moves the last element
  // into the hole and fixes that one record without touching the object.
  // A member whose generation no longer matches its entry's belongs to a
  // deleted object: deletes leave their members behind (touching every
  // posting of the object was most of a delete's cost) and lists skip them;
  // once they outnumber the live members, one pass compacts every posting.
  struct Member {
    uint32_t id;
    uint32_t which;  // index into entries[id].pos
    uint32_t gen;    // entries[id].gen when added
  };
  using Posting = std::vector<Member, BulkAlloc<Member>>;
  using Ids = std::vector<uint32_t, BulkAlloc<uint32_t>>;

  // The ids in key order ("ns\0name"), kept lazily: a new key only joins
  // `unranked`; the next list that wants the order (Build) sorts those and
  // merges them in, in O(n + k log k) plus k log n key comparisons for k new
  // keys among n, touching no other object. A delete only unranks its id,
  // leaving a hole in `order` that the next Build drops; a new version of an
  // existing key keeps its id and so its rank. Writers: O(1) per add or
  // delete (amortized: `unranked` is pruned when it outgrows the slots).
  // Memory: 8 bytes per slot (rank and order), 4 per key added since the
  // last Build. External synchronization needed (see ObjectCache::order_mu_).
  struct KeyOrder {
    static constexpr uint32_t kUnranked = UINT32_MAX;
    Ids rank;      // per id: its position in `order`, or kUnranked
    Ids order;     // ids by key as of the last Build; i with rank[order[i]] != i is a hole
    Ids unranked;  // ids added since, in no order (may name deleted or repeated ids)
    // True when every live id has its rank.
    bool Ready() const { return unranked.empty(); }
  };

  // The objects and their indexes. External synchronization needed.
  struct Index {
    // Per id: the object, and where the id sits in each of its postings:
    // pos[0] namespace, pos[1 + 2i] label i's key=value, pos[2 + 2i] its key.
    struct Entry {
      ObjectRef object;
      std::vector<uint32_t, BulkAlloc<uint32_t>> pos;
      uint32_t gen = 0;  // bumped when the object is deleted
    };
    std::vector<Entry, BulkAlloc<Entry>> entries;
    std::vector<uint32_t, BulkAlloc<uint32_t>> free_ids;
    KeyIndex by_key;               // "ns\0name" -> id; objects owned by entries
    StringMap<Posting> by_ns;
    StringMap<Posting> by_label;   // "key\0value"
    StringMap<Posting> by_label_key;

    // Mutable: Build runs on behalf of readers (see ObjectCache::order_mu_).
    mutable KeyOrder key_order;

    size_t live_members = 0;
    size_t dead_members = 0;
    size_t object_bytes = 0;  // allocation sizes of the objects it holds
    size_t erased_bytes = 0;  // ... and of those erased from it

    // Roughly the bytes this index and its objects took and take: what
    // dropping it (with the objects erased before) frees.
    size_t ApproxBytes() const;

    const Object* Find(std::string_view key) const;
    void Put(ObjectRef object);  // inserts or replaces by key
    void Erase(std::string_view key);
    bool Live(const Member& m) const { return entries[m.id].gen == m.gen && entries[m.id].object; }
    // Ranks every live id (key_order.Ready() after). Mutates key_order only.
    void BuildOrder() const;

   private:
    void Compact();
    uint32_t Add(StringMap<Posting>& map, std::string_view key, uint32_t id, uint32_t which);
    void Remove(StringMap<Posting>& map, std::string_view key, uint32_t pos);
  };
  // Deleted keys with the resourceVersion of their deletion, forgotten
  // oldest first beyond the limit. External synchronization needed.
  struct Tombstones {
    struct Entry {
      uint64_t rv;
      uint64_t seq;  // insertion order, for eviction
    };
    using Key = HeapString<Heap::kTombstones>;
    StringMap<Entry, Heap::kTombstones> by_key;
    std::deque<std::pair<Key, uint64_t>, TombstoneAlloc<std::pair<Key, uint64_t>>> fifo;
    uint64_t next_seq = 1;

    const Entry* Find(std::string_view key) const;
    void Put(std::string_view key, uint64_t rv, size_t limit);
    void Erase(std::string_view key);
    size_t ApproxBytes() const;
  };
  // Returns `bytes` of freed memory to the OS when destroyed. Declared
  // before the contents, so it is destroyed after them.
  struct ReleaseAtEnd {
    size_t bytes = 0;
    ~ReleaseAtEnd() { ReleaseFreedMemory(bytes); }
  };

  bool UpsertLocked(ObjectRef object);
  bool DeleteLocked(std::string_view ns, std::string_view name, uint64_t rv);
  // After deletes: if the last object is gone, moves the index to *dropped
  // and starts a fresh one, unless it is small and little was deleted (then
  // keeping it beats regrowing it). A kept index would keep the bulk memory
  // around it from going back. The caller passes it to Drop after unlocking.
  void TakeIfEmptiedLocked(std::optional<Index>* dropped);
  // Frees a dropped index and returns its memory, and the memory of the
  // objects deleted from it, to the OS.
  static void Drop(std::optional<Index> dropped);
  // After a write: publishes whether index_'s key order is complete.
  void NoteOrderLocked() { order_ready_.store(index_.key_order.Ready(), std::memory_order_relaxed); }
  // Under the reader lock: completes index_'s key order if it is not. Only
  // readers that want the order wait here, and only while one of them builds.
  void EnsureOrder() const;
  // Appends a reference to each object whose rank is set in `bits` (count
  // of them), in rank order. O(count + bits).
  void TakeRefs(std::span<const uint64_t> bits, const KeyOrder& ko, size_t count,
                std::vector<ObjectRef>* out) const;

  const size_t tombstone_limit_;
  mutable RwLock mu_;
  ReleaseAtEnd release_at_end_;  // set by the destructor
  Index index_;
  // index_.key_order is written by writers (under mu_ exclusively) and by
  // the one reader that builds it (under mu_ shared and order_mu_). Readers
  // read it only after seeing order_ready_ true (acquire), and nobody
  // changes it while it is true but a writer, who excludes them.
  mutable std::mutex order_mu_;
  mutable std::atomic<bool> order_ready_{true};
  Tombstones tombstones_;
  uint64_t max_rv_ = 0;
  uint64_t applied_ = 0;
  uint64_t ignored_ = 0;
  bool synced_ = false;
};

}  // namespace berth
