// Two to four threads calling the C ABI on the same handles at once: a pool,
// a cache, a limiter and its notifier, a token bucket and a shared limiter.
// The first byte says how many threads; thread i takes every n-th byte after
// it as its own sequence of calls. Tickets of asynchronous waits go on a
// board that every thread claims or cancels from, so claims and cancels of
// one ticket race.
//
// No model says what an interleaving gives, so the checks are what must hold
// whatever it is: no crash or sanitizer report; every status is one the call
// documents and agrees with berth_last_error; no limiter ever has more in
// use than the largest capacity it had; a ticket is claimed or cancelled
// once, never both; a token is drained at most once. After the threads are
// joined the end state adds up exactly: the pool holds what was inserted,
// less what was removed or handed out, plus what was put back; once every
// ticket is cancelled and every permit released, both limiters are empty;
// the notifier got the token of every granted ticket and nothing else; the
// cache lists what its counters say.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "berth_generated.h"
#include "fuzz/fuzz.h"

namespace {

using berth_fuzz::Checked;
using berth_fuzz::Expect;
using berth_fuzz::Input;
using berth_fuzz::OneOf;

constexpr int kMaxOps = 64;       // per thread
constexpr int kMaxWaits = 3;      // blocking waits per thread, each <= 1 ms
constexpr int kMaxTickets = 4 * kMaxOps;
constexpr int kMaxTokens = 8 * kMaxOps;
constexpr uint64_t kSharedToken = uint64_t{1} << 63;
constexpr int64_t kBurst = 4;

// Tickets of asynchronous waits, claimed or cancelled by any thread.
struct Board {
  struct Entry {
    uint64_t ticket = 0;
    int64_t n = 0;
    uint64_t token = 0;
    std::atomic<int> state{0};  // 0 not yet posted, 1 open, 2 done
    bool granted = false;       // claimed, or cancelled after its grant
  };
  std::atomic<int> count{0};
  Entry entry[kMaxTickets];

  void Post(uint64_t ticket, int64_t n, uint64_t token) {
    const int i = count.fetch_add(1);
    Expect(i < kMaxTickets);
    entry[i].ticket = ticket;
    entry[i].n = n;
    entry[i].token = token;
    entry[i].state.store(1, std::memory_order_release);
  }
  Entry* Pick(uint8_t b) {
    const int c = count.load(std::memory_order_acquire);
    if (c == 0) return nullptr;
    Entry* e = &entry[b % c];
    return e->state.load(std::memory_order_acquire) == 1 ? e : nullptr;
  }
  // Only one claim or cancel of a ticket may take it.
  void Done(Entry* e, bool granted) {
    int open = 1;
    Expect(e->state.compare_exchange_strong(open, 2, std::memory_order_acq_rel));
    e->granted = granted;
  }
};

// The two limiters take the same calls: these pick one by the handle's type.
berth_status TryAcquire(int* why, berth_limiter* l, int64_t n) { return berth_limiter_try_acquire(why, l, n); }
berth_status TryAcquire(int* why, berth_shared_limiter* l, int64_t n) {
  return berth_shared_limiter_try_acquire(why, l, n);
}
berth_status Acquire(berth_limiter* l, int64_t n, int64_t t) { return berth_limiter_acquire(l, n, t); }
berth_status Acquire(berth_shared_limiter* l, int64_t n, int64_t t) { return berth_shared_limiter_acquire(l, n, t); }
berth_status AcquireAsync(int* now, uint64_t* ticket, berth_limiter* l, int64_t n, berth_notifier* ntf, uint64_t token) {
  return berth_limiter_acquire_async(now, ticket, l, n, ntf, token);
}
berth_status AcquireAsync(int* now, uint64_t* ticket, berth_shared_limiter* l, int64_t n, berth_notifier* ntf,
                          uint64_t token) {
  return berth_shared_limiter_acquire_async(now, ticket, l, n, ntf, token);
}
berth_status Claim(int* claimed, berth_limiter* l, uint64_t t) { return berth_limiter_claim(claimed, l, t); }
berth_status Claim(int* claimed, berth_shared_limiter* l, uint64_t t) { return berth_shared_limiter_claim(claimed, l, t); }
berth_status Cancel(int* outcome, berth_limiter* l, uint64_t t) { return berth_limiter_cancel(outcome, l, t); }
berth_status Cancel(int* outcome, berth_shared_limiter* l, uint64_t t) {
  return berth_shared_limiter_cancel(outcome, l, t);
}
berth_status Release(berth_limiter* l, int64_t n) { return berth_limiter_release(l, n); }
berth_status Release(berth_shared_limiter* l, int64_t n) { return berth_shared_limiter_release(l, n); }
berth_status SetCapacity(berth_limiter* l, int64_t c) { return berth_limiter_set_capacity(l, c); }
berth_status SetCapacity(berth_shared_limiter* l, int64_t c) { return berth_shared_limiter_set_capacity(l, c); }

// One limiter as the threads share it: the handle, its board of tickets and
// the largest capacity it was given.
template <class H>
struct Limit {
  H* handle = nullptr;
  Board board;
  std::atomic<int64_t> cap_max{4};
  uint64_t token_tag = 0;  // on the tokens of its tickets
};

struct Shared {
  berth_engine* engine = nullptr;
  berth_cache* cache = nullptr;
  berth_selector* selector = nullptr;
  Limit<berth_limiter> limiter;
  Limit<berth_shared_limiter> shared;
  berth_notifier* notifier = nullptr;
  berth_bucket* bucket = nullptr;
  std::string shared_name;
  berth_cache* freed = nullptr;  // a handle value that is no longer live

  std::atomic<uint64_t> next_token{0}, next_rv{10};
  std::atomic<uint8_t> drained[kMaxTokens] = {};
};

// What one thread did, added up after the join.
struct Tally {
  int64_t inserted = 0, removed = 0, popped = 0, restored = 0;
  int64_t lim_held = 0, sh_held = 0;
};

std::string Key(uint8_t b) { return "k" + std::to_string(b % 6); }

void DrainInto(Shared& w) {
  uint64_t tokens[8];
  size_t count = 0;
  do {
    Expect(Checked(berth_notifier_drain(&count, w.notifier, tokens, 8)) == BERTH_OK);
    for (size_t i = 0; i < count; ++i) {
      const uint64_t id = tokens[i] & ~kSharedToken;
      Expect(id >= 1 && id < kMaxTokens && w.drained[id].fetch_add(1) == 0);  // issued, and drained once
    }
  } while (count == 8);
}

class Worker {
 public:
  Worker(Shared& w, std::vector<uint8_t> bytes) : w_(w), bytes_(std::move(bytes)), in_(bytes_.data(), bytes_.size()) {}

  const Tally& tally() const { return t_; }

  void Run() {
    for (int ops = 0; in_.more() && ops < kMaxOps; ++ops) Step(in_.byte() % 30);
  }

 private:
  void Step(uint8_t op) {
    switch (op) {
      case 0:
      case 1: {
        const std::string k = Key(in_.byte()), node = "n" + std::to_string(in_.byte() % 3);
        int flag = -1;
        Expect(Checked((op == 0 ? berth_pool_add : berth_pool_update)(&flag, w_.engine, "p", 1, "ns", 2, k.data(),
                                                                     k.size(), node.data(), node.size(), op)) ==
               BERTH_OK);
        if (op == 0) t_.inserted += flag;
        break;
      }
      case 2: {
        const std::string k = Key(in_.byte());
        int removed = -1;
        Expect(Checked(berth_pool_remove(&removed, w_.engine, "p", 1, "ns", 2, k.data(), k.size())) == BERTH_OK);
        t_.removed += removed;
        break;
      }
      case 3: {
        berth_pool_key k;
        const berth_status s = OneOf((in_.byte() % 2 ? berth_pool_pop_spread : berth_pool_pop_fifo)(&k, w_.engine, "p", 1),
                                     {BERTH_OK, BERTH_EMPTY});
        if (s == BERTH_OK) {
          ++t_.popped;
          handed_.push_back({std::string(k.name, k.name_len), k.token});
        }
        break;
      }
      case 4: {
        if (handed_.empty()) break;
        const size_t i = in_.byte() % handed_.size();
        int restored = -1;
        Expect(Checked(berth_pool_put_back(&restored, w_.engine, "p", 1, "ns", 2, handed_[i].first.data(),
                                           handed_[i].first.size(), handed_[i].second)) == BERTH_OK);
        t_.restored += restored;
        handed_.erase(handed_.begin() + static_cast<long>(i));
        break;
      }
      case 5: PoolReads(); break;
      case 6: {
        const std::string k = Key(in_.byte());
        const uint8_t l = in_.byte();
        const uint64_t rv = l % 4 == 0 ? 5 : w_.next_rv.fetch_add(1) + 1;  // some stale versions
        const berth_label label{"app", 3, l % 2 ? "web" : "db", l % 2 ? 3u : 2u};
        int applied = -1;
        Expect(Checked(berth_cache_upsert(&applied, w_.cache, "ns", 2, k.data(), k.size(), rv, &label, 1, nullptr,
                                          0)) == BERTH_OK);
        break;
      }
      case 7: {
        const std::string k = Key(in_.byte());
        int applied = -1;
        Expect(Checked(berth_cache_delete(&applied, w_.cache, "ns", 2, k.data(), k.size(),
                                          in_.byte() % 3 ? w_.next_rv.fetch_add(1) + 1 : 0)) == BERTH_OK);
        break;
      }
      case 8: CacheApply(); break;
      case 9: CacheReads(); break;
      case 10: Try(w_.limiter, t_.lim_held); break;
      case 11: Wait(w_.limiter, t_.lim_held); break;
      case 12: Async(w_.limiter, t_.lim_held); break;
      case 13: TakeTicket(w_.limiter, t_.lim_held); break;
      case 14: Give(w_.limiter, t_.lim_held); break;
      case 15: Resize(w_.limiter); break;
      case 16: {
        berth_limiter_stats st{};
        Expect(Checked(berth_limiter_get_stats(&st, w_.limiter.handle)) == BERTH_OK);
        Expect(st.in_use >= 0 && st.in_use <= w_.limiter.cap_max.load() && st.waiting >= 0 &&
               st.waiting_permits >= st.waiting);
        break;
      }
      case 17: DrainInto(w_); break;
      case 18:
      case 19: Bucket(); break;
      case 20: Try(w_.shared, t_.sh_held); break;
      case 21: Wait(w_.shared, t_.sh_held); break;
      case 22: Async(w_.shared, t_.sh_held); break;
      case 23: TakeTicket(w_.shared, t_.sh_held); break;
      case 24: Give(w_.shared, t_.sh_held); break;
      case 25: Resize(w_.shared); break;
      case 26: {
        berth_shared_limiter_stats st{};
        Expect(Checked(berth_shared_limiter_get_stats(&st, w_.shared.handle)) == BERTH_OK);
        Expect(st.in_use >= 0 && st.in_use <= w_.shared.cap_max.load() && st.waiting >= 0 && st.holders <= 1 &&
               st.reclaimed == 0);
        break;
      }
      case 27: Handles(); break;
      default: {  // a label selector of this thread's, checked while the others write
        const char* text = in_.byte() % 2 ? "app in (web)" : "!app";
        berth_selector* sel = nullptr;
        Expect(Checked(berth_selector_parse(&sel, text, std::strlen(text))) == BERTH_OK);
        berth_buffer* buf = nullptr;
        Expect(Checked(berth_cache_list(&buf, w_.cache, "ns", 2, sel)) == BERTH_OK);
        Expect(Checked(berth_buffer_free(buf)) == BERTH_OK && Checked(berth_selector_free(sel)) == BERTH_OK);
        break;
      }
    }
  }

  // A snapshot and the node counts are each taken atomically.
  void PoolReads() {
    berth_buffer* buf = nullptr;
    Expect(Checked(berth_pool_snapshot(&buf, w_.engine, "p", 1)) == BERTH_OK);
    const uint8_t* bytes = nullptr;
    size_t len = 0;
    Expect(Checked(berth_buffer_data(&bytes, &len, buf)) == BERTH_OK);
    flatbuffers::Verifier v(bytes, len);
    Expect(v.VerifyBuffer<berth::fb::PoolSnapshot>(BERTH_FB_POOL_SNAPSHOT_ID));
    uint64_t last = 0;
    for (const auto* k : *flatbuffers::GetRoot<berth::fb::PoolSnapshot>(bytes)->keys()) {
      Expect(k->seq() > last);  // oldest first, no key twice
      last = k->seq();
    }
    Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
    Expect(Checked(berth_pool_node_stats(&buf, w_.engine, "p", 1)) == BERTH_OK);
    Expect(Checked(berth_buffer_data(&bytes, &len, buf)) == BERTH_OK);
    flatbuffers::Verifier vn(bytes, len);
    Expect(vn.VerifyBuffer<berth::fb::PoolNodeStats>(BERTH_FB_POOL_NODE_STATS_ID));
    for (const auto* n : *flatbuffers::GetRoot<berth::fb::PoolNodeStats>(bytes)->nodes()) {
      Expect(n->keys() >= 1 && n->ready_keys() <= n->keys());
    }
    Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
    berth_pool_stats st{};
    Expect(Checked(berth_pool_get_stats(&st, w_.engine, "p", 1)) == BERTH_OK);
    Expect(st.ready_keys <= st.keys && st.scheduled_keys <= st.keys && st.nodes <= st.scheduled_keys);
  }

  void CacheApply() {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<berth::fb::Event>> events;
    for (int i = in_.byte() % 4; i > 0; --i) {
      const uint8_t t = in_.byte();
      const auto object = berth::fb::CreateObject(fbb, fbb.CreateString("ns"), fbb.CreateString(Key(t >> 2)),
                                                  w_.next_rv.fetch_add(1) + 1);
      events.push_back(berth::fb::CreateEvent(fbb, static_cast<berth::fb::EventType>(t % 3), object));
    }
    fbb.Finish(berth::fb::CreateEventBatch(fbb, fbb.CreateVector(events)), BERTH_FB_EVENT_BATCH_ID);
    size_t applied = 99;
    Expect(Checked(berth_cache_apply(&applied, w_.cache, fbb.GetBufferPointer(), fbb.GetSize())) == BERTH_OK);
    Expect(applied <= events.size());
  }

  void CacheReads() {
    const std::string k = Key(in_.byte());
    berth_buffer* buf = nullptr;
    const berth_status s = OneOf(berth_cache_get(&buf, w_.cache, "ns", 2, k.data(), k.size()), {BERTH_OK, BERTH_EMPTY});
    if (s == BERTH_OK) Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
    Expect(Checked(berth_cache_list(&buf, w_.cache, nullptr, 0, w_.selector)) == BERTH_OK);
    const uint8_t* bytes = nullptr;
    size_t len = 0;
    Expect(Checked(berth_buffer_data(&bytes, &len, buf)) == BERTH_OK);
    flatbuffers::Verifier v(bytes, len);
    Expect(v.VerifyBuffer<berth::fb::ObjectList>(BERTH_FB_OBJECT_LIST_ID));
    Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);
    berth_cache_stats st{};
    Expect(Checked(berth_cache_get_stats(&st, w_.cache)) == BERTH_OK && st.synced == 1 && st.tombstones <= 4);
  }

  int64_t Permits() { return 1 + in_.byte() % 4; }
  int64_t Timeout() { return waits_++ < kMaxWaits ? (in_.byte() % 2 ? 1'000 : 1'000'000) : 0; }
  uint64_t Token() { return w_.next_token.fetch_add(1) + 1; }

  // n may exceed a capacity another thread just lowered: that is an error.
  template <class H>
  void Try(Limit<H>& l, int64_t& held) {
    const int64_t n = Permits();
    int why = -1;
    if (OneOf(TryAcquire(&why, l.handle, n), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT}) != BERTH_OK) return;
    Expect(why >= BERTH_LIMIT_GRANTED && why <= BERTH_LIMIT_WAITERS_QUEUED);
    if (why == BERTH_LIMIT_GRANTED) held += n;
  }

  template <class H>
  void Wait(Limit<H>& l, int64_t& held) {
    const int64_t n = Permits();
    const berth_status s =
        OneOf(Acquire(l.handle, n, Timeout()), {BERTH_OK, BERTH_ERR_TIMEOUT, BERTH_ERR_INVALID_ARGUMENT});
    if (s == BERTH_OK) held += n;
  }

  template <class H>
  void Async(Limit<H>& l, int64_t& held) {
    const int64_t n = Permits();
    const uint64_t token = l.token_tag | Token();
    int now = -1;
    uint64_t ticket = 0;
    if (OneOf(AcquireAsync(&now, &ticket, l.handle, n, w_.notifier, token), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT}) !=
        BERTH_OK) {
      return;
    }
    Expect((now == 1) == (ticket == 0));
    if (now == 1) {
      held += n;
    } else {
      l.board.Post(ticket, n, token);
    }
  }

  // Releases some of what this thread holds (the others hold theirs).
  template <class H>
  void Give(Limit<H>& l, int64_t& held) {
    if (held == 0) return;
    const int64_t n = 1 + in_.byte() % held;
    Expect(Checked(Release(l.handle, n)) == BERTH_OK);
    held -= n;
  }

  template <class H>
  void Resize(Limit<H>& l) {
    const int64_t c = 1 + in_.byte() % 4;
    int64_t max = l.cap_max.load();
    while (c > max && !l.cap_max.compare_exchange_weak(max, c)) {
    }
    Expect(Checked(SetCapacity(l.handle, c)) == BERTH_OK);
  }

  // Claims or cancels a ticket of any thread's.
  template <class H>
  void TakeTicket(Limit<H>& l, int64_t& held) {
    const uint8_t b = in_.byte();
    Board::Entry* e = l.board.Pick(b >> 1);
    if (e == nullptr) return;
    if (b % 2) {
      int claimed = -1;
      Expect(Checked(Claim(&claimed, l.handle, e->ticket)) == BERTH_OK && (claimed == 0 || claimed == 1));
      if (claimed == 0) return;
      l.board.Done(e, true);
      held += e->n;
    } else {
      int outcome = -1;
      Expect(Checked(Cancel(&outcome, l.handle, e->ticket)) == BERTH_OK);
      Expect(outcome >= BERTH_CANCEL_UNKNOWN && outcome <= BERTH_CANCEL_WAS_GRANTED);
      if (outcome != BERTH_CANCEL_UNKNOWN) l.board.Done(e, outcome == BERTH_CANCEL_WAS_GRANTED);
    }
  }

  void Bucket() {
    const uint8_t b = in_.byte();
    const int64_t n = 1 + b / 8 % kBurst;
    switch (b % 8) {
      case 0:
      case 1: {
        int allowed = -1;
        OneOf(berth_bucket_allow(&allowed, w_.bucket, n, BERTH_NOW), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT});
        break;
      }
      case 2:
      case 3: {
        berth_reservation r{};
        if (OneOf(berth_bucket_reserve(&r, w_.bucket, n, BERTH_NOW), {BERTH_OK, BERTH_ERR_INVALID_ARGUMENT}) ==
            BERTH_OK) {
          Expect(r.tokens == n && r.delay_ns >= 0);
          reservations_.push_back(r);
        }
        break;
      }
      case 4:
        if (!reservations_.empty()) {
          Expect(Checked(berth_bucket_cancel(w_.bucket, &reservations_.back(), BERTH_NOW)) == BERTH_OK);
          reservations_.pop_back();
        }
        break;
      case 5:
        Expect(Checked(berth_bucket_set_rate(w_.bucket, b & 0x80 ? INFINITY : 100.0 * (1 + b / 8 % 4), BERTH_NOW)) ==
               BERTH_OK);
        break;
      case 6:
        Expect(Checked(berth_bucket_set_burst(w_.bucket, n, BERTH_NOW)) == BERTH_OK);
        break;
      default: {
        berth_bucket_stats st{};
        Expect(Checked(berth_bucket_get_stats(&st, w_.bucket, BERTH_NOW)) == BERTH_OK);
        Expect(!std::isnan(st.tokens) && st.tokens <= kBurst && st.burst >= 1 && st.burst <= kBurst && st.rate > 0);
        break;
      }
    }
  }

  // Handles made and freed while the others use theirs; a freed one refused.
  void Handles() {
    switch (in_.byte() % 4) {
      case 0: {
        berth_cache_stats st{};
        Expect(Checked(berth_cache_get_stats(&st, w_.freed)) == BERTH_ERR_BAD_HANDLE);
        Expect(Checked(berth_cache_free(w_.freed)) == BERTH_ERR_BAD_HANDLE);
        break;
      }
      case 1: {
        berth_limiter* l = nullptr;
        Expect(Checked(berth_limiter_new(&l, 2)) == BERTH_OK);
        int why = -1;
        Expect(Checked(berth_limiter_try_acquire(&why, l, 2)) == BERTH_OK && why == BERTH_LIMIT_GRANTED);
        Expect(Checked(berth_limiter_free(l)) == BERTH_OK && Checked(berth_limiter_free(l)) == BERTH_ERR_BAD_HANDLE);
        break;
      }
      case 2: {
        berth_notifier* n = nullptr;
        int fd = -1;
        Expect(Checked(berth_notifier_new(&n)) == BERTH_OK && Checked(berth_notifier_fd(&fd, n)) == BERTH_OK);
        Expect(Checked(berth_notifier_free(n)) == BERTH_OK && Checked(berth_notifier_fd(&fd, n)) == BERTH_ERR_BAD_HANDLE);
        break;
      }
      default: {
        berth_bucket* b = nullptr;
        Expect(Checked(berth_bucket_new(&b, 1, 1)) == BERTH_OK);
        Expect(Checked(berth_bucket_free(b)) == BERTH_OK && Checked(berth_bucket_free(b)) == BERTH_ERR_BAD_HANDLE);
        break;
      }
    }
  }

  Shared& w_;
  std::vector<uint8_t> bytes_;
  Input in_;
  Tally t_;
  int waits_ = 0;
  std::vector<std::pair<std::string, uint64_t>> handed_;
  std::vector<berth_reservation> reservations_;
};

// Every open ticket cancelled (none may be unknown: nobody took it), then
// every permit the threads hold released.
template <class H>
void Empty(Limit<H>& l, int64_t held) {
  for (int i = 0; i < l.board.count.load(); ++i) {
    Board::Entry& e = l.board.entry[i];
    if (e.state.load() != 1) continue;
    int outcome = -1;
    Expect(Checked(Cancel(&outcome, l.handle, e.ticket)) == BERTH_OK);
    Expect(outcome == BERTH_CANCEL_WAS_WAITING || outcome == BERTH_CANCEL_WAS_GRANTED);
    l.board.Done(&e, outcome == BERTH_CANCEL_WAS_GRANTED);
  }
  if (held > 0) Expect(Checked(Release(l.handle, held)) == BERTH_OK);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int threads = 2 + data[0] % 3;
  std::vector<std::vector<uint8_t>> streams(static_cast<size_t>(threads));
  for (size_t i = 1; i < size; ++i) streams[(i - 1) % threads].push_back(data[i]);

  Shared w;
  Expect(Checked(berth_engine_new(&w.engine)) == BERTH_OK);
  size_t inserted = 0;
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(berth::fb::CreatePoolKeyBatch(fbb), BERTH_FB_POOL_KEY_BATCH_ID);  // makes the pool
  Expect(Checked(berth_pool_add_batch(&inserted, w.engine, "p", 1, fbb.GetBufferPointer(), fbb.GetSize())) == BERTH_OK);
  berth_cache_options opts{};
  opts.tombstone_limit = 4;
  Expect(Checked(berth_cache_new(&w.cache, &opts)) == BERTH_OK);
  flatbuffers::FlatBufferBuilder list;
  list.Finish(berth::fb::CreateObjectList(list, 1), BERTH_FB_OBJECT_LIST_ID);
  Expect(Checked(berth_cache_replace(w.cache, list.GetBufferPointer(), list.GetSize())) == BERTH_OK);
  Expect(Checked(berth_selector_parse(&w.selector, "app=web", 7)) == BERTH_OK);
  Expect(Checked(berth_limiter_new(&w.limiter.handle, 4)) == BERTH_OK);
  Expect(Checked(berth_notifier_new(&w.notifier)) == BERTH_OK);
  Expect(Checked(berth_bucket_new(&w.bucket, 1000, kBurst)) == BERTH_OK);
  w.shared_name = "fuzz_threads." + std::to_string(getpid());
  OneOf(berth_shared_limiter_unlink(w.shared_name.data(), w.shared_name.size()), {BERTH_OK, BERTH_ERR_NOT_FOUND});
  Expect(Checked(berth_shared_limiter_open(&w.shared.handle, w.shared_name.data(), w.shared_name.size(), 4, 1)) ==
         BERTH_OK);
  w.shared.token_tag = kSharedToken;
  Expect(Checked(berth_cache_new(&w.freed, nullptr)) == BERTH_OK && Checked(berth_cache_free(w.freed)) == BERTH_OK);

  std::vector<Worker> workers;
  workers.reserve(streams.size());
  for (auto& s : streams) workers.emplace_back(w, std::move(s));
  std::vector<std::thread> running;
  for (Worker& worker : workers) running.emplace_back([&worker] { worker.Run(); });
  for (std::thread& t : running) t.join();

  Tally sum;
  for (const Worker& worker : workers) {
    const Tally& t = worker.tally();
    sum.inserted += t.inserted, sum.removed += t.removed, sum.popped += t.popped, sum.restored += t.restored;
    sum.lim_held += t.lim_held, sum.sh_held += t.sh_held;
  }
  berth_pool_stats ps{};
  Expect(Checked(berth_pool_get_stats(&ps, w.engine, "p", 1)) == BERTH_OK);
  Expect(static_cast<int64_t>(ps.keys) == sum.inserted - sum.removed - sum.popped + sum.restored);

  berth_cache_stats cs{};
  Expect(Checked(berth_cache_get_stats(&cs, w.cache)) == BERTH_OK);
  berth_buffer* buf = nullptr;
  Expect(Checked(berth_cache_list(&buf, w.cache, nullptr, 0, nullptr)) == BERTH_OK);
  const uint8_t* bytes = nullptr;
  size_t len = 0;
  Expect(Checked(berth_buffer_data(&bytes, &len, buf)) == BERTH_OK);
  Expect(flatbuffers::GetRoot<berth::fb::ObjectList>(bytes)->objects()->size() == cs.objects);
  Expect(Checked(berth_buffer_free(buf)) == BERTH_OK);

  Empty(w.limiter, sum.lim_held);
  berth_limiter_stats ls{};
  Expect(Checked(berth_limiter_get_stats(&ls, w.limiter.handle)) == BERTH_OK);
  Expect(ls.in_use == 0 && ls.waiting == 0 && ls.waiting_permits == 0);

  Empty(w.shared, sum.sh_held);
  // The handle's thread may still be leaving the region's queue for a
  // cancelled ticket (or giving back its late grant): closing stops it.
  Expect(Checked(berth_shared_limiter_close(w.shared.handle)) == BERTH_OK);
  berth_shared_limiter_stats ss{};
  berth_shared_limiter* again = nullptr;
  Expect(Checked(berth_shared_limiter_open(&again, w.shared_name.data(), w.shared_name.size(), 0, 0)) == BERTH_OK);
  Expect(Checked(berth_shared_limiter_get_stats(&ss, again)) == BERTH_OK);
  Expect(ss.in_use == 0 && ss.waiting == 0 && ss.holders == 0);
  Expect(Checked(berth_shared_limiter_close(again)) == BERTH_OK);
  Expect(Checked(berth_shared_limiter_unlink(w.shared_name.data(), w.shared_name.size())) == BERTH_OK);

  // The notifier got exactly the tokens of the tickets that were granted.
  DrainInto(w);
  for (Board* board : {&w.limiter.board, &w.shared.board}) {
    for (int i = 0; i < board->count.load(); ++i) {
      const Board::Entry& e = board->entry[i];
      Expect(w.drained[e.token & ~kSharedToken].load() == (e.granted ? 1 : 0));
    }
  }

  Expect(Checked(berth_selector_free(w.selector)) == BERTH_OK);
  Expect(Checked(berth_bucket_free(w.bucket)) == BERTH_OK);
  Expect(Checked(berth_notifier_free(w.notifier)) == BERTH_OK);
  Expect(Checked(berth_limiter_free(w.limiter.handle)) == BERTH_OK);
  Expect(Checked(berth_cache_free(w.cache)) == BERTH_OK);
  Expect(Checked(berth_engine_free(w.engine)) == BERTH_OK);
  return 0;
}
