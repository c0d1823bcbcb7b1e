// Object-cache benchmark: Berth's ObjectCache and the naive model (a sorted
// map scanned and matched on every list) on the same workload, in the same
// process. Writes JSON records like the pool benchmark (ratio = baseline /
// berth).
//
// Usage: berth_cache_bench [--out FILE] [--quick]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "bench/report.h"
#include "berth_generated.h"
#include "capi/berth.h"
#include "core/cache/cache.h"
#include "tests/support/naive_cache.h"

namespace {

using berth::ObjectCache;
using berth::ObjectRef;
using berth::Selector;
using berth::bench::Measure;
using berth::bench::Report;
using berth::testing::NaiveCache;
using berth::testing::NaiveObject;
using Clock = std::chrono::steady_clock;

constexpr int kNamespaces = 100;
const std::string kPayload(256, 'p');

struct Spec {
  std::string ns, name;
  std::vector<std::pair<std::string, std::string>> labels;
};

// Object i: app=x on 0.2% of objects, tier a/b/c/d round-robin (so
// "tier in (a,b)" is 50%), env prod/dev, team t0..t9 (so "team=t1" is 10%,
// the shape of the Python benchmark's lists). "app=x,tier in (a,b)" is 0.1%.
Spec MakeSpec(size_t i) {
  static const char* tiers[] = {"a", "b", "c", "d"};
  return {"ns-" + std::to_string(i % kNamespaces), "obj-" + std::to_string(i),
          {{"app", i % 500 == 0 ? "x" : "app-" + std::to_string(i % 97)},
           {"tier", tiers[(i / 3) % 4]},
           {"env", i % 2 == 0 ? "prod" : "dev"},
           {"team", "t" + std::to_string((i / 7) % 10)}}};
}

ObjectRef MakeObject(const Spec& s, uint64_t rv) {
  std::vector<berth::LabelPair> ls;
  for (const auto& [k, v] : s.labels) ls.push_back({k, v});
  return berth::Object::Make(s.ns, s.name, rv, ls, kPayload);
}

NaiveObject MakeNaive(const Spec& s, uint64_t rv) {
  return {s.ns, s.name, rv, berth::Labels(s.labels), kPayload};
}

Selector Parse(const char* text) {
  Selector s;
  if (!Selector::Parse(text, &s).ok()) std::abort();
  return s;
}

void Lists(size_t n) {
  std::vector<ObjectRef> objects;
  NaiveCache naive(1000);
  std::vector<NaiveObject> naive_list;
  for (size_t i = 0; i < n; ++i) {
    Spec s = MakeSpec(i);
    objects.push_back(MakeObject(s, i + 1));
    naive_list.push_back(MakeNaive(s, i + 1));
  }
  ObjectCache cache(1000);
  cache.Replace(objects, n);
  naive.Replace(naive_list, n);
  for (const auto& [name, text] : {std::pair{"cache_list_selective", "app=x,tier in (a,b)"},
                                   std::pair{"cache_list_10pct", "team=t1"},
                                   std::pair{"cache_list_broad", "tier in (a,b)"}}) {
    Selector sel = Parse(text);
    size_t berth_count = 0, naive_count = 0;
    double b = Measure([&](size_t) {
      std::vector<ObjectRef> out;
      uint64_t rv;
      (void)cache.List("", &sel, &out, &rv);
      berth_count = out.size();
    });
    double base = Measure([&](size_t) { naive_count = naive.List("", &sel).size(); }, 1, 2000);
    if (berth_count != naive_count) {
      std::fprintf(stderr, "%s: berth listed %zu, naive %zu\n", name, berth_count, naive_count);
      std::exit(1);
    }
    Report(name, n, kNamespaces, 1, b, base);
  }
  // get: one object by (namespace, name).
  {
    std::vector<Spec> specs;
    for (size_t i = 0; i < 1024; ++i) specs.push_back(MakeSpec((i * 7919) % n));
    double b = Measure([&](size_t i) {
      ObjectRef o;
      (void)cache.Get(specs[i & 1023].ns, specs[i & 1023].name, &o);
    });
    double base = Measure([&](size_t i) { (void)naive.Get(specs[i & 1023].ns, specs[i & 1023].name); });
    Report("cache_get", n, kNamespaces, 1, b, base);
  }
  // replace: a relist of the same n objects (built beforehand), per object.
  // The old contents are dropped inside the call on both sides.
  {
    double b = Measure([&](size_t) { cache.Replace(objects, n); }) / static_cast<double>(n);
    double base = Measure([&](size_t) { naive.Replace(naive_list, n); }) / static_cast<double>(n);
    Report("cache_replace", n, kNamespaces, 1, b, base);
  }
}

// Resident set size in bytes, from /proc/self/statm (0 if unreadable).
size_t RssBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long pages = 0, resident = 0;
  const int got = std::fscanf(f, "%ld %ld", &pages, &resident);
  std::fclose(f);
  return got == 2 ? static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Memory per object: the resident growth of a relist of n prebuilt objects
// into an empty cache (its index), then of a first broad list (whatever a
// list keeps), and the objects' own allocation. Printed, not a record: it
// has no baseline. Runs first, so no freed memory of other figures is
// reused.
void Memory(size_t n) {
  std::vector<ObjectRef> objects;
  size_t object_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    objects.push_back(MakeObject(MakeSpec(i), i + 1));
    object_bytes += objects.back()->footprint();
  }
  ObjectCache cache(1000);
  const size_t before = RssBytes();
  cache.Replace(objects, n);
  const size_t replaced = RssBytes();
  Selector sel = Parse("tier in (a,b)");
  std::vector<ObjectRef> out;
  uint64_t rv;
  (void)cache.List("", &sel, &out, &rv);
  out = {};
  const size_t listed = RssBytes();
  std::printf("cache_memory                 n=%-6zu index %.1f B/object, after a broad list %.1f B/object; "
              "objects %.1f B each\n",
              n, static_cast<double>(replaced - before) / static_cast<double>(n),
              static_cast<double>(listed - before) / static_cast<double>(n),
              static_cast<double>(object_bytes) / static_cast<double>(n));
}

// Runs step(0..n-1) once; ns per step.
template <class F>
double OnePass(size_t n, F&& step) {
  const auto start = Clock::now();
  for (size_t i = 0; i < n; ++i) step(i);
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() / static_cast<double>(n);
}

// Event application through the C ABI, as a watch loop feeds it: new
// versions of existing objects in random order (every 8th event a delete
// and later a re-create), in FlatBuffers batches of 1000 events, and single
// berth_cache_upsert calls. The naive model applies the same events from
// prebuilt objects.
void Writes(size_t n) {
  std::vector<Spec> specs;
  for (size_t i = 0; i < n; ++i) specs.push_back(MakeSpec(i));
  berth_cache* cache = nullptr;
  berth_cache_new(&cache, nullptr);
  NaiveCache naive(100000);
  {
    auto list = [&] {
      flatbuffers::FlatBufferBuilder fbb;
      std::vector<flatbuffers::Offset<berth::fb::Object>> offs;
      std::vector<uint8_t> payload(kPayload.begin(), kPayload.end());
      for (size_t i = 0; i < n; ++i) {
        std::vector<flatbuffers::Offset<berth::fb::Label>> ls;
        for (const auto& [k, v] : specs[i].labels) ls.push_back(berth::fb::CreateLabelDirect(fbb, k.c_str(), v.c_str()));
        offs.push_back(berth::fb::CreateObjectDirect(fbb, specs[i].ns.c_str(), specs[i].name.c_str(), i + 1, &ls, &payload));
      }
      fbb.Finish(berth::fb::CreateObjectListDirect(fbb, n, &offs), BERTH_FB_OBJECT_LIST_ID);
      return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    }();
    if (berth_cache_replace(cache, list.data(), list.size()) != BERTH_OK) std::abort();
    std::vector<NaiveObject> objs;
    for (size_t i = 0; i < n; ++i) objs.push_back(MakeNaive(specs[i], i + 1));
    naive.Replace(objs, n);
  }
  // The event stream: batch b, event j touches a pseudo-random object.
  // Every event is applied once: a second pass would be all stale versions,
  // which the guard drops cheaply, and would flatter the figure.
  constexpr size_t kBatch = 1000, kBatches = 200;
  std::vector<std::vector<uint8_t>> batches;
  std::vector<std::vector<std::pair<bool, NaiveObject>>> naive_batches;
  uint64_t rv = n + 1;
  for (size_t b = 0; b < kBatches; ++b) {
    flatbuffers::FlatBufferBuilder fbb;
    std::vector<flatbuffers::Offset<berth::fb::Event>> evs;
    std::vector<std::pair<bool, NaiveObject>> nev;
    std::vector<uint8_t> payload(kPayload.begin(), kPayload.end());
    for (size_t j = 0; j < kBatch; ++j) {
      const Spec& s = specs[((b * kBatch + j) * 7919) % n];
      const bool del = j % 8 == 0;
      std::vector<flatbuffers::Offset<berth::fb::Label>> ls;
      for (const auto& [k, v] : s.labels) ls.push_back(berth::fb::CreateLabelDirect(fbb, k.c_str(), v.c_str()));
      auto obj = berth::fb::CreateObjectDirect(fbb, s.ns.c_str(), s.name.c_str(), rv, &ls, &payload);
      evs.push_back(berth::fb::CreateEvent(fbb, del ? berth::fb::EventType::Deleted : berth::fb::EventType::Modified, obj));
      nev.emplace_back(del, MakeNaive(s, rv));
      ++rv;
    }
    fbb.Finish(berth::fb::CreateEventBatchDirect(fbb, &evs), BERTH_FB_EVENT_BATCH_ID);
    batches.emplace_back(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    naive_batches.push_back(std::move(nev));
  }
  // The core alone: the same events with their objects already built, so
  // this is the version guard and index work (what holds the lock).
  {
    ObjectCache core(100000);
    std::vector<ObjectRef> objs;
    for (size_t i = 0; i < n; ++i) objs.push_back(MakeObject(specs[i], i + 1));
    core.Replace(objs, n);
    std::vector<std::vector<berth::CacheEvent>> events;
    for (const auto& nb : naive_batches) {
      std::vector<berth::CacheEvent> evs;
      for (const auto& [del, o] : nb) {
        berth::CacheEvent e;
        if (del) {
          e.type = berth::CacheEvent::Type::kDelete;
          e.ns = o.ns;
          e.name = o.name;
          e.rv = o.rv;
        } else {
          e.type = berth::CacheEvent::Type::kUpsert;
          std::vector<berth::LabelPair> ls;
          for (const auto& [k, v] : o.labels.pairs()) ls.push_back({k, v});
          e.object = berth::Object::Make(o.ns, o.name, o.rv, ls, o.payload);
        }
        evs.push_back(std::move(e));
      }
      events.push_back(std::move(evs));
    }
    NaiveCache naive_core(100000);
    std::vector<NaiveObject> nobjs;
    for (size_t i = 0; i < n; ++i) nobjs.push_back(MakeNaive(specs[i], i + 1));
    naive_core.Replace(nobjs, n);
    const double core_ns = OnePass(kBatches, [&](size_t i) { core.Apply(events[i]); }) / kBatch;
    const double naive_ns = OnePass(kBatches, [&](size_t i) {
      for (const auto& [del, o] : naive_batches[i]) {
        if (del) {
          naive_core.Delete(o.ns, o.name, o.rv);
        } else {
          naive_core.Upsert(o);
        }
      }
    }) / kBatch;
    Report("cache_core_apply_event", n, kNamespaces, 1, core_ns, naive_ns);

    // Deletes alone: drain a full cache in scattered order (refill untimed).
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = (i * 7919) % n;
    uint64_t drv = 1ull << 40;
    const double del_ns = berth::bench::TimeRounds(
        n, [&] { core.Replace(objs, n); },
        [&](size_t i) { core.Delete(specs[order[i]].ns, specs[order[i]].name, drv++); });
    const double naive_del_ns = berth::bench::TimeRounds(
        n, [&] { naive_core.Replace(nobjs, n); },
        [&](size_t i) { naive_core.Delete(specs[order[i]].ns, specs[order[i]].name, drv++); });
    Report("cache_core_delete", n, kNamespaces, 1, del_ns, naive_del_ns);
  }

  // Through the C ABI: verification, validation and building included.
  double b = OnePass(kBatches, [&](size_t i) {
    if (berth_cache_apply(nullptr, cache, batches[i].data(), batches[i].size()) != BERTH_OK) std::abort();
  }) / kBatch;
  double base = OnePass(kBatches, [&](size_t i) {
    for (const auto& [del, o] : naive_batches[i]) {
      if (del) {
        naive.Delete(o.ns, o.name, o.rv);
      } else {
        naive.Upsert(o);
      }
    }
  }) / kBatch;
  Report("cache_apply_event_capi", n, kNamespaces, 1, b, base);

  // Single upserts through the C ABI: a new version of one object per call.
  double single = Measure([&](size_t i) {
    const Spec& s = specs[(i * 7919) % n];
    berth_label ls[4];
    for (size_t k = 0; k < s.labels.size(); ++k) {
      ls[k] = {s.labels[k].first.data(), s.labels[k].first.size(), s.labels[k].second.data(),
               s.labels[k].second.size()};
    }
    berth_cache_upsert(nullptr, cache, s.ns.data(), s.ns.size(), s.name.data(), s.name.size(), rv++, ls, s.labels.size(),
                       reinterpret_cast<const uint8_t*>(kPayload.data()), kPayload.size());
  });
  std::vector<NaiveObject> prebuilt;
  for (size_t i = 0; i < 4096; ++i) prebuilt.push_back(MakeNaive(specs[(i * 7919) % n], 0));
  double single_base = Measure([&](size_t i) {
    NaiveObject o = prebuilt[i & 4095];
    o.rv = rv++;
    naive.Upsert(o);
  });
  Report("cache_upsert_capi", n, kNamespaces, 1, single, single_base);
  berth_cache_free(cache);
}

// Four readers list selectively while one writer applies 10k events/s; ns
// per list, per reader. The naive side guards its map with a shared_mutex.
void ReadersWithWriter(size_t n) {
  std::vector<Spec> specs;
  std::vector<ObjectRef> objects;
  std::vector<NaiveObject> naive_list;
  for (size_t i = 0; i < n; ++i) {
    specs.push_back(MakeSpec(i));
    objects.push_back(MakeObject(specs.back(), i + 1));
    naive_list.push_back(MakeNaive(specs.back(), i + 1));
  }
  ObjectCache cache(1000);
  cache.Replace(objects, n);
  NaiveCache naive(1000);
  naive.Replace(naive_list, n);
  std::shared_mutex naive_mu;
  Selector sel = Parse("app=x,tier in (a,b)");
  auto run = [&](auto&& list, auto&& write) {
    std::atomic<bool> stop{false};
    std::atomic<size_t> lists{0};
    std::thread writer([&] {
      uint64_t rv = n + 1;
      auto next = Clock::now();
      for (size_t i = 0; !stop.load(); ++i) {
        write(specs[(i * 31) % n], rv++);
        next += std::chrono::microseconds(100);  // 10k events/s
        std::this_thread::sleep_until(next);
      }
    });
    std::vector<std::thread> readers;
    auto start = Clock::now();
    for (int t = 0; t < 4; ++t) {
      readers.emplace_back([&] {
        size_t local = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          list();
          ++local;
        }
        lists.fetch_add(local);
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(berth::bench::g_min_seconds * 2));
    stop = true;
    for (auto& r : readers) r.join();
    writer.join();
    double ns = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
    return ns * 4 / static_cast<double>(lists.load());  // per list, per reader
  };
  double b = run(
      [&] {
        std::vector<ObjectRef> out;
        uint64_t rv;
        (void)cache.List("", &sel, &out, &rv);
      },
      [&](const Spec& s, uint64_t rv) { cache.Upsert(MakeObject(s, rv)); });
  double base = run(
      [&] {
        std::shared_lock l(naive_mu);
        (void)naive.List("", &sel);
      },
      [&](const Spec& s, uint64_t rv) {
        NaiveObject o = MakeNaive(s, rv);
        std::unique_lock l(naive_mu);
        naive.Upsert(o);
      });
  Report("cache_list_4readers_1writer", n, kNamespaces, 4, b, base);
}

// One list of 100 objects (one namespace) through the C ABI, reading every
// name and payload length: what the bindings' figure is compared against.
void CApiList100() {
  const size_t n = 10000;
  berth_cache* cache = nullptr;
  berth_cache_new(&cache, nullptr);
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<berth::fb::Object>> offs;
  NaiveCache naive(1000);
  std::vector<NaiveObject> naive_list;
  for (size_t i = 0; i < n; ++i) {
    // The bindings' workload: 100 namespaces of 100, two labels, 256 bytes.
    std::string ns = "ns-" + std::to_string(i / 100), name = "obj-" + std::to_string(i);
    std::string app = "app-" + std::to_string(i % 10), tier = "t" + std::to_string(i % 3);
    std::vector<flatbuffers::Offset<berth::fb::Label>> ls = {
        berth::fb::CreateLabelDirect(fbb, "app", app.c_str()),
        berth::fb::CreateLabelDirect(fbb, "tier", tier.c_str())};
    std::vector<uint8_t> payload(256, 'p');
    offs.push_back(berth::fb::CreateObjectDirect(fbb, ns.c_str(), name.c_str(), i + 1, &ls, &payload));
    naive_list.push_back({ns, name, i + 1, berth::Labels({{"app", app}, {"tier", tier}}), kPayload});
  }
  fbb.Finish(berth::fb::CreateObjectListDirect(fbb, n, &offs), BERTH_FB_OBJECT_LIST_ID);
  if (berth_cache_replace(cache, fbb.GetBufferPointer(), fbb.GetSize()) != BERTH_OK) std::abort();
  naive.Replace(naive_list, n);
  size_t sink = 0;
  double b = Measure([&](size_t) {
    berth_buffer* buf = nullptr;
    berth_cache_list(&buf, cache, "ns-7", 4, nullptr);
    const uint8_t* data;
    size_t len;
    berth_buffer_data(&data, &len, buf);
    const auto* list = flatbuffers::GetRoot<berth::fb::ObjectList>(data);
    for (const auto* o : *list->objects()) sink += o->name()->size() + o->payload()->size();
    berth_buffer_free(buf);
  });
  double base = Measure([&](size_t) {
    for (const auto& o : naive.List("ns-7", nullptr)) sink += o.name.size() + o.payload.size();
  });
  if (sink == 0) std::abort();
  Report("cache_list100_capi", n, kNamespaces, 1, b, base);
  berth_cache_free(cache);
}

}  // namespace

int main(int argc, char** argv) {
  const char* out = "build/bench/cache.json";
  if (!berth::bench::ParseArgs(argc, argv, &out)) return 2;
  using berth::bench::Wanted;
  if (Wanted("cache_memory")) Memory(200000);
  if (Wanted("cache_list_selective cache_list_10pct cache_list_broad cache_get cache_replace")) {
    for (size_t n : {10000, 100000}) Lists(n);
  }
  if (Wanted("cache_core_apply_event cache_core_delete cache_apply_event_capi cache_upsert_capi")) {
    Writes(100000);
  }
  if (Wanted("cache_list_4readers_1writer")) ReadersWithWriter(100000);
  if (Wanted("cache_list100_capi")) CApiList100();
  berth::bench::WriteJson(out);
  return 0;
}
