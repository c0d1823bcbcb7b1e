// Warm-pool queue: keys (namespace, name) with a node and a ready flag, handed
// out oldest-first (FIFO) or by NodeSpread. The contract is written down in
// capi/berth.h; this is its implementation.
//
// WarmPool is one pool. External synchronization needed (PoolRegistry holds a
// per-pool mutex around every call).
//
// Layout, chosen for the hand-out path:
//   entries_  hash map "ns\0name" -> Entry                       O(1) lookup
//   Node      per node: key count, and per readiness class the node's keys
//             ordered by age (std::set; new keys append with a hint and
//             entries keep their position, so both ends are O(1) amortized)
//   heap_[c]  indexed binary heaps over nodes with cached keys, O(log M):
//             ready / unready: (count desc, oldest class-c key asc) for
//             NodeSpread; any: oldest key of either class, for FIFO.
// so pop_spread is: top of heap (O(1)) + the node's oldest key + unlinking it
// (O(log M) + O(1) amortized), against the reference's O(N) snapshot-and-scan.
//
// A handed-out key keeps its Entry (state kDeparted), and the age-set node it
// occupied, for PutBack until it is added again, put back, or falls out of
// the put-back window; so a pop followed by a re-add or put_back of the same
// key allocates nothing (PoolTest.PopThenReAddAllocatesNothing counts). Departed entries
// sit in a ring indexed by token: the hand-out kPutBackWindow later lands on
// the same slot and expires the occupant, with no scan and no timer.

#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/common/alloc.h"
#include "core/common/status.h"

namespace berth {

inline constexpr size_t kMaxPoolLen = 512;
inline constexpr size_t kMaxNamespaceLen = 63;
inline constexpr size_t kMaxNameLen = 253;
inline constexpr size_t kMaxNodeLen = 253;
// Hand-outs per pool that stay eligible for PutBack (a power of two: the
// departure ring is indexed by token modulo this).
inline constexpr uint64_t kPutBackWindow = 4096;

struct KeyView {
  std::string_view ns;
  std::string_view name;
  std::string_view node;  // empty = not scheduled
  bool ready = false;
};

// Validates names against the limits above (see CheckName).
Status CheckPoolName(std::string_view pool);
Status CheckKeyName(std::string_view ns, std::string_view name);
Status CheckKey(const KeyView& key);

// A fixed-capacity text field, so a hand-out never allocates.
template <size_t N>
struct FixedText {
  uint32_t len = 0;
  char data[N];
  void assign(std::string_view s) {
    len = static_cast<uint32_t>(s.size());
    if (!s.empty()) std::memcpy(data, s.data(), s.size());  // s.data() may be null
  }
  std::string_view view() const { return {data, len}; }
};

// A key handed out by PopFifo/PopSpread.
struct HandOut {
  uint64_t seq = 0;    // age, smaller is older
  uint64_t token = 0;  // for PutBack
  bool ready = false;
  FixedText<kMaxNamespaceLen> ns;
  FixedText<kMaxNameLen> name;
  FixedText<kMaxNodeLen> node;
};

struct PoolStats {
  uint64_t keys = 0;
  uint64_t ready_keys = 0;
  uint64_t scheduled_keys = 0;
  uint64_t nodes = 0;
  uint64_t put_back_records = 0;
};

struct KeyInfo {
  std::string_view ns, name, node;
  bool ready;
  uint64_t seq;
};

struct NodeInfo {
  std::string_view node;
  uint64_t keys;
  uint64_t ready_keys;
};

class WarmPool {
 public:
  WarmPool();
  ~WarmPool();
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // All inputs must have passed CheckKey / CheckKeyName.

  // Inserts as youngest (returns true) or updates node/ready in place keeping
  // the age (returns false). O(log M) + O(1) amortized when appending.
  bool Add(const KeyView& key);
  // Updates node/ready of a key that is in the pool, keeping its age; false
  // (and no change) if the key is absent or handed out. Never inserts.
  bool Update(const KeyView& key);
  // Removes if present.
  bool Remove(std::string_view ns, std::string_view name);
  // Oldest key, ready or not. False if empty.
  bool PopFifo(HandOut* out);
  // NodeSpread rule of berth.h. False if empty.
  bool PopSpread(HandOut* out);
  // Restores a handed-out key at its age; false if the put_back is stale.
  bool PutBack(std::string_view ns, std::string_view name, uint64_t token);

  PoolStats Stats() const;
  bool Empty() const { return keys_ == 0; }
  // Roughly the bytes the pool's data takes: what dropping it frees.
  size_t ApproxBytes() const;
  // Visits every key, oldest first (O(N log N)). Views are valid during the
  // call only.
  void ForEachKey(const std::function<void(const KeyInfo&)>& f) const;
  // Visits every node holding keys, sorted by node name.
  void ForEachNode(const std::function<void(const NodeInfo&)>& f) const;

 private:
  struct Node;
  struct Entry;
  struct BySeq {
    bool operator()(const Entry* a, const Entry* b) const;
  };
  using EntrySet = std::set<Entry*, BySeq, BulkAlloc<Entry*>>;
  enum class State : uint8_t {
    kLinked,    // in the pool
    kDeparted,  // handed out; eligible for PutBack with token == stamp
  };
  struct Entry {
    uint64_t seq = 0;
    uint64_t stamp = 0;       // token of the latest hand-out
    Node* node = nullptr;     // departed entries pin their node
    EntrySet::iterator in_node;  // position in node->keys[class] when linked
    // The age-set node this entry last occupied, kept while it is not linked
    // (handed out) or moving between sets, so linking it again reuses the
    // block: a pop followed by a re-add or put_back allocates nothing.
    EntrySet::node_type spare;
    const BulkString* key = nullptr; // the map key this entry belongs to
    uint32_t ns_len = 0;      // key layout: ns '\0' name
    bool ready = false;
    State state = State::kLinked;
  };
  // Heaps: NodeSpread per class, and FIFO (oldest key of any class).
  static constexpr int kReady = 0, kUnready = 1, kAny = 2;
  struct Node {
    BulkString name;
    uint32_t count = 0;          // linked keys on this node, both classes
    uint32_t pins = 0;           // departed entries that will need it back
    EntrySet keys[2];            // per class, oldest first
    int32_t heap_pos[3] = {-1, -1, -1};
  };
  // Indexed binary heap of nodes. Each slot caches its node's ordering key,
  // so sifting compares a contiguous array and never chases pointers.
  class NodeHeap {
   public:
    explicit NodeHeap(int kind) : kind_(kind) {}
    bool empty() const { return v_.empty(); }
    Node* top() const { return v_.front().node; }
    void Update(Node* n);  // insert, reposition or drop n as its keys dictate
    void Reserve(size_t nodes) { v_.reserve(nodes); }
   private:
    struct Item {
      uint64_t count;   // 0 for the FIFO heap
      uint64_t oldest;  // seq of the node's oldest key of the heap's class
      Node* node;
    };
    static bool Better(const Item& a, const Item& b) {
      return a.count != b.count ? a.count > b.count : a.oldest < b.oldest;
    }
    void Place(size_t i, const Item& item);
    void SiftUp(size_t i);
    void SiftDown(size_t i);
    void Erase(Node* n);
    int kind_;
    std::vector<Item, BulkAlloc<Item>> v_;
  };
  using EntryMap = std::unordered_map<BulkString, Entry, StringHash, StringEq,
                                      BulkAlloc<std::pair<const BulkString, Entry>>>;
  using NodeMap = std::unordered_map<BulkString, BulkUnique<Node>, StringHash, StringEq,
                                     BulkAlloc<std::pair<const BulkString, BulkUnique<Node>>>>;

  static int Class(bool ready) { return ready ? kReady : kUnready; }
  Node* Intern(std::string_view node);
  void Unpin(Entry* e);
  void DropIfUnused(Node* n);
  // Links e into n's age set of its class; reuses e->spare when it holds a
  // node (then it cannot throw), else allocates one (may throw).
  EntrySet::iterator InsertByAge(Entry* e, Node* n, bool ready);
  void Count(Node* n, bool ready, int delta);  // counters and heaps
  void Unlink(Entry* e);
  void UpdateHeaps(Node* n);
  void Take(Entry* e, HandOut* out);
  Entry** SlotFor(uint64_t stamp);  // ring slot for a new hand-out; may grow
  void Return(Entry* e);            // out of the ring (re-added or put back)
  void Move(Entry* e, const KeyView& key);

  EntryMap entries_;
  NodeMap nodes_;
  Node unscheduled_;
  NodeHeap heap_[3] = {NodeHeap(kReady), NodeHeap(kUnready), NodeHeap(kAny)};
  uint64_t next_seq_ = 1;
  uint64_t keys_ = 0;
  uint64_t ready_keys_ = 0;
  uint64_t scheduled_keys_ = 0;
  uint64_t active_nodes_ = 0;  // nodes with count > 0
  // Departed entries by stamp % ring size; grows by doubling up to
  // kPutBackWindow slots, after which a collision is an expiry.
  std::vector<Entry*, BulkAlloc<Entry*>> ring_;
  uint64_t next_stamp_ = 1;
  uint64_t departed_ = 0;  // entries in kDeparted
};

}  // namespace berth
