// Warm-pool queue: keys (namespace, name) with a node and a ready flag, handed
// out oldest-first (FIFO) or by NodeSpread. The contract is written down in
// capi/berth.h; this is its implementation.
//
// WarmPool is one pool. External synchronization needed (PoolRegistry holds a
// per-pool mutex around every call).
//
// Layout, chosen for the hand-out path:
//   entries_   hash map "ns\0name" -> Entry                      O(1) lookup
//   all_       every entry ordered by age (seq)                  pop_fifo
//   Node       per node: key count, and per readiness class the node's keys
//              ordered by age (std::set; new keys append with a hint, O(1))
//   heap_[c]   indexed binary heap of the nodes holding class-c keys, ordered
//              by (count desc, oldest class-c seq asc)        O(log M) update
// so pop_spread is: top of heap (O(1)) + the node's oldest key + unlinking it
// (O(log M + log K)), against the reference's O(N) snapshot-and-scan.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
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
// Hand-outs per pool that stay eligible for PutBack.
inline constexpr uint64_t kPutBackWindow = 65536;

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
    std::memcpy(data, s.data(), s.size());
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
  // the age (returns false). O(log M + log K).
  bool Add(const KeyView& key);
  // Removes if present. O(log M + log K).
  bool Remove(std::string_view ns, std::string_view name);
  // Oldest key, ready or not. False if empty.
  bool PopFifo(HandOut* out);
  // NodeSpread rule of berth.h. False if empty.
  bool PopSpread(HandOut* out);
  // Restores a handed-out key at its age; false if the put_back is stale.
  bool PutBack(std::string_view ns, std::string_view name, uint64_t token);

  PoolStats Stats() const;
  bool Empty() const { return entries_.empty(); }
  // Visits every key, oldest first. Views are valid during the call only.
  void ForEachKey(const std::function<void(const KeyInfo&)>& f) const;
  // Visits every node holding keys, sorted by node name.
  void ForEachNode(const std::function<void(const NodeInfo&)>& f) const;

 private:
  struct Node;
  struct Entry {
    uint64_t seq;
    Node* node;
    bool ready;
    uint32_t ns_len;      // key layout: ns '\0' name
    const String* key;    // the map key this entry belongs to
  };
  struct BySeq {
    bool operator()(const Entry* a, const Entry* b) const { return a->seq < b->seq; }
  };
  using EntrySet = std::set<Entry*, BySeq, Alloc<Entry*>>;
  static constexpr int kReady = 0, kUnready = 1;
  struct Node {
    String name;
    uint32_t count = 0;        // keys on this node, both classes
    EntrySet keys[2];          // per class, oldest first
    int32_t heap_pos[2] = {-1, -1};
  };
  // Indexed max-heap of nodes for one readiness class.
  class NodeHeap {
   public:
    explicit NodeHeap(int cls) : cls_(cls) {}
    bool empty() const { return v_.empty(); }
    Node* top() const { return v_.front(); }
    void Update(Node* n);  // insert, reposition or drop n as its keys dictate
   private:
    bool Better(const Node* a, const Node* b) const;
    void Place(size_t i, Node* n);
    void SiftUp(size_t i);
    void SiftDown(size_t i);
    void Erase(Node* n);
    int cls_;
    std::vector<Node*, Alloc<Node*>> v_;
  };
  struct Departure {
    uint64_t stamp;  // token of the latest hand-out of this key
    uint64_t seq;
    bool ready;
    bool consumed;   // put back, or the key was added again
    String node;
  };
  using EntryMap = std::unordered_map<String, Entry, StringHash, StringEq,
                                      Alloc<std::pair<const String, Entry>>>;
  using NodeMap = std::unordered_map<String, MiUnique<Node>, StringHash, StringEq,
                                     Alloc<std::pair<const String, MiUnique<Node>>>>;
  using DepartureMap = std::unordered_map<String, Departure, StringHash, StringEq,
                                          Alloc<std::pair<const String, Departure>>>;

  static int Class(bool ready) { return ready ? kReady : kUnready; }
  Node* Intern(std::string_view node);
  void DropIfEmpty(Node* n);
  void Link(Entry* e);
  void Unlink(Entry* e);
  Entry* Insert(std::string_view composite, uint32_t ns_len, uint64_t seq, Node* node, bool ready);
  void Take(Entry* e, HandOut* out);
  void ConsumeDeparture(std::string_view composite);

  EntryMap entries_;
  NodeMap nodes_;
  Node unscheduled_;
  EntrySet all_;
  NodeHeap heap_[2] = {NodeHeap(kReady), NodeHeap(kUnready)};
  uint64_t next_seq_ = 1;
  uint64_t ready_keys_ = 0;
  uint64_t scheduled_keys_ = 0;
  // Put-back records: one per key handed out within the window, plus a FIFO
  // of (stamp, record) that expires them in hand-out order.
  DepartureMap departures_;
  std::deque<std::pair<uint64_t, DepartureMap::value_type*>,
             Alloc<std::pair<uint64_t, DepartureMap::value_type*>>>
      departure_fifo_;
  uint64_t next_stamp_ = 1;
  uint64_t live_departures_ = 0;
};

}  // namespace berth
