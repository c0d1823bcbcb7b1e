// The object cache under a realistic watch stream, against a cache without
// the version guard (the write-through fix the server this replaces used).
//
// A simulated API server holds sandboxes. This process writes some of them
// itself (create, patch, delete) and writes them through to its caches with
// the resourceVersion the server returned; other actors change them too. All
// changes also arrive on the watch, late, out of order and sometimes twice.
// After every step the process lists "app=sandbox,phase=Ready" from both
// caches and checks each object against the newest version it has already
// seen (through its own writes or the watch): a listing that returns an
// older version is stale; one that returns an object already seen deleted
// has resurrected it. Berth's version guard and tombstones make both
// impossible; the unguarded cache shows how often they happen.
//
// Usage: berth_cache_demo [--steps N] [--seed S]
#include <algorithm>
#include <cstdio>
#include <iterator>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "berth_generated.h"
#include "capi/berth.h"

namespace {

const std::string kNs = "agents";
const std::string kSelector = "app=sandbox,phase=Ready";

void Check(berth_status s, const char* what) {
  if (s != BERTH_OK && s != BERTH_EMPTY) {
    std::fprintf(stderr, "%s: %s: %s\n", what, berth_status_name(s), berth_last_error(nullptr));
    std::exit(1);
  }
}

struct Event {
  bool deleted;
  std::string name;
  uint64_t rv;
  std::string phase;
};

// What the process knows of one sandbox: the newest version it has seen.
struct Known {
  uint64_t rv = 0;
  bool deleted = false;
};

// The unguarded cache: last write wins, deletes erase, nothing remembers.
struct UnguardedCache {
  std::map<std::string, std::pair<uint64_t, std::string>> objects;  // name -> (rv, phase)
  void Apply(const Event& e) {
    if (e.deleted) {
      objects.erase(e.name);
    } else {
      objects[e.name] = {e.rv, e.phase};
    }
  }
  std::vector<std::pair<std::string, uint64_t>> List() const {
    std::vector<std::pair<std::string, uint64_t>> out;
    for (const auto& [name, o] : objects) {
      if (o.second == "Ready") out.emplace_back(name, o.first);
    }
    return out;
  }
};

class BerthCache {
 public:
  BerthCache() {
    Check(berth_cache_new(&cache_, nullptr), "cache_new");
    Check(berth_selector_parse(&sel_, kSelector.data(), kSelector.size()), "selector_parse");
  }
  ~BerthCache() {
    berth_selector_free(sel_);
    berth_cache_free(cache_);
  }
  berth_status TryList(std::vector<std::pair<std::string, uint64_t>>* out) {
    berth_buffer* buf = nullptr;
    berth_status s = berth_cache_list(&buf, cache_, kNs.data(), kNs.size(), sel_);
    if (s != BERTH_OK) return s;
    const uint8_t* data;
    size_t len;
    berth_buffer_data(&data, &len, buf);
    for (const auto* o : *flatbuffers::GetRoot<berth::fb::ObjectList>(data)->objects()) {
      out->emplace_back(o->name()->str(), o->resource_version());
    }
    berth_buffer_free(buf);
    return BERTH_OK;
  }
  void Replace(const std::vector<Event>& objects, uint64_t rv) {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<berth::fb::Object>> offs;
    for (const Event& e : objects) offs.push_back(Object(fbb, e));
    fbb.Finish(berth::fb::CreateObjectListDirect(fbb, rv, &offs), BERTH_FB_OBJECT_LIST_ID);
    Check(berth_cache_replace(cache_, fbb.GetBufferPointer(), fbb.GetSize()), "replace");
  }
  // A batch of watch events, in one call.
  void ApplyWatch(const std::vector<Event>& events) {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<berth::fb::Event>> offs;
    for (const Event& e : events) {
      offs.push_back(berth::fb::CreateEvent(
          fbb, e.deleted ? berth::fb::EventType::Deleted : berth::fb::EventType::Modified, Object(fbb, e)));
    }
    fbb.Finish(berth::fb::CreateEventBatchDirect(fbb, &offs), BERTH_FB_EVENT_BATCH_ID);
    Check(berth_cache_apply(nullptr, cache_, fbb.GetBufferPointer(), fbb.GetSize()), "apply");
  }
  // Our own successful write, written through with the server's version.
  void WriteThrough(const Event& e) {
    if (e.deleted) {
      Check(berth_cache_delete(nullptr, cache_, kNs.data(), kNs.size(), e.name.data(), e.name.size(), e.rv),
            "delete");
      return;
    }
    const berth_label labels[] = {{"app", 3, "sandbox", 7}, {"phase", 5, e.phase.data(), e.phase.size()}};
    Check(berth_cache_upsert(nullptr, cache_, kNs.data(), kNs.size(), e.name.data(), e.name.size(), e.rv,
                             labels, 2, nullptr, 0),
          "upsert");
  }
  berth_cache_stats Stats() {
    berth_cache_stats s{};
    Check(berth_cache_get_stats(&s, cache_), "stats");
    return s;
  }

 private:
  static flatbuffers::Offset<berth::fb::Object> Object(flatbuffers::FlatBufferBuilder& fbb, const Event& e) {
    std::vector<flatbuffers::Offset<berth::fb::Label>> ls = {
        berth::fb::CreateLabelDirect(fbb, "app", "sandbox"),
        berth::fb::CreateLabelDirect(fbb, "phase", e.phase.c_str())};
    return berth::fb::CreateObjectDirect(fbb, kNs.c_str(), e.name.c_str(), e.rv, &ls);
  }
  berth_cache* cache_ = nullptr;
  berth_selector* sel_ = nullptr;
};

struct Violations {
  long stale = 0, resurrected = 0, lists = 0, bad_lists = 0;
};

void Audit(const std::vector<std::pair<std::string, uint64_t>>& listed,
           const std::map<std::string, Known>& known, Violations* v) {
  ++v->lists;
  bool bad = false;
  for (const auto& [name, rv] : listed) {
    auto it = known.find(name);
    if (it == known.end()) continue;
    if (it->second.deleted && rv <= it->second.rv) {
      ++v->resurrected;
      bad = true;
    } else if (rv < it->second.rv) {
      ++v->stale;
      bad = true;
    }
  }
  v->bad_lists += bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 20000;
  uint64_t seed = 42;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
      steps = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--steps N] [--seed S]\n", argv[0]);
      return 2;
    }
  }
  std::mt19937_64 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  static const char* kPhases[] = {"Pending", "Ready", "Ready", "Claimed"};

  BerthCache berth;
  UnguardedCache unguarded;
  std::map<std::string, Event> server;  // the API server's current objects
  std::map<std::string, Known> known;   // newest version this process has seen
  uint64_t rv = 1000;
  auto see = [&](const Event& e) {
    Known& k = known[e.name];
    if (e.rv >= k.rv) k = Known{e.rv, e.deleted};
  };

  // Before the first relist the cache says so instead of answering.
  std::vector<std::pair<std::string, uint64_t>> listed;
  const berth_status before = berth.TryList(&listed);

  // Initial relist: 200 sandboxes.
  std::vector<Event> initial;
  for (int i = 0; i < 200; ++i) {
    Event e{false, "sb-" + std::to_string(i), ++rv, kPhases[pick(4)]};
    server[e.name] = e;
    initial.push_back(e);
    see(e);
    unguarded.Apply(e);
  }
  berth.Replace(initial, rv);

  std::vector<Event> in_flight;  // watch events not delivered yet
  long own_writes = 0, delivered = 0, duplicates = 0, reordered = 0;
  Violations vb, vu;
  int next_name = 200;
  for (int step = 0; step < steps; ++step) {
    // One change on the server: ours (written through) or another actor's.
    const bool ours = pick(2) == 0;
    Event e;
    const size_t kind = pick(10);
    if (kind < 2 || server.empty()) {
      e = {false, "sb-" + std::to_string(next_name++), ++rv, "Pending"};
    } else {
      auto it = std::next(server.begin(), static_cast<long>(pick(server.size())));
      e = it->second;
      e.rv = ++rv;
      if (kind < 4) {
        e.deleted = true;
      } else {
        e.phase = kPhases[pick(4)];
      }
    }
    if (e.deleted) {
      server.erase(e.name);
    } else {
      server[e.name] = e;
    }
    in_flight.push_back(e);
    if (ours) {
      ++own_writes;
      berth.WriteThrough(e);
      unguarded.Apply(e);
      see(e);
    }
    // The watch delivers one or two events, mostly in order but now and then
    // one of the next few overtakes the others, and one in five comes again
    // later (a re-delivered event, or a relist's stale copy).
    std::vector<Event> batch;
    for (size_t n = 1 + pick(2); n > 0 && !in_flight.empty(); --n) {
      const size_t i = pick(std::min<size_t>(in_flight.size(), 3));
      reordered += i > 0 ? 1 : 0;
      batch.push_back(in_flight[i]);
      if (pick(5) == 0) {
        ++duplicates;
        in_flight.push_back(in_flight[i]);  // delivered again later
      }
      in_flight.erase(in_flight.begin() + static_cast<long>(i));
    }
    if (!batch.empty()) {
      berth.ApplyWatch(batch);
      for (const Event& b : batch) {
        unguarded.Apply(b);
        see(b);
      }
      delivered += static_cast<long>(batch.size());
    }
    listed.clear();
    Check(berth.TryList(&listed), "list");
    Audit(listed, known, &vb);
    Audit(unguarded.List(), known, &vu);
  }

  const berth_cache_stats st = berth.Stats();
  std::printf("Berth cache demo: a watch stream with late, out-of-order and duplicate events,\n"
              "plus this process's own writes written through with the server's resourceVersion.\n\n");
  std::printf("Before the first relist, list says: %s (go to the API server on purpose).\n\n",
              berth_status_name(before));
  std::printf("  %-40s %10d\n", "steps (one server change each)", steps);
  std::printf("  %-40s %10ld\n", "own writes written through", own_writes);
  std::printf("  %-40s %10ld\n", "watch events delivered", delivered);
  std::printf("  %-40s %10ld\n", "  of them out of order", reordered);
  std::printf("  %-40s %10ld\n", "  of them duplicates", duplicates);
  std::printf("  %-40s %10llu\n", "events the version guard ignored", static_cast<unsigned long long>(st.ignored));
  const std::string title = "lists of '" + kSelector + "'";
  std::printf("\n  %-40s %10s %14s\n", title.c_str(), "Berth", "unguarded");
  std::printf("  %-40s %10ld %14ld\n", "lists run", vb.lists, vu.lists);
  std::printf("  %-40s %10ld %14ld\n", "lists with a stale or deleted object", vb.bad_lists, vu.bad_lists);
  std::printf("  %-40s %10ld %14ld\n", "stale objects returned", vb.stale, vu.stale);
  std::printf("  %-40s %10ld %14ld\n", "deleted objects returned", vb.resurrected, vu.resurrected);
  std::printf("\n(stale: an older version than this process had already seen; deleted: an object\n"
              " it had already seen deleted, brought back by a late add.)\n");
  return (vb.bad_lists == 0 && vu.bad_lists > 0 && before == BERTH_ERR_NOT_SYNCED) ? 0 : 1;
}
