// Limiter benchmarks: Berth's limiters beside the baselines they replace, in
// the same process on the same workload (ratio = baseline / berth):
//  - uncontended acquire+release vs a std::mutex + condition_variable
//    semaphore (core, and through the C ABI);
//  - 8 threads contending on a capacity of 4, blocking acquire + release,
//    FIFO (the default) and the non-FIFO barging mode, each in slices
//    alternating with the baseline's;
//  - token-bucket allow vs a mutex-guarded textbook bucket;
//  - the shared-memory limiter with 4 processes vs the in-process limiter
//    with 4 threads (the baseline here is Berth's own in-process limiter:
//    the figure says what sharing across processes costs).
//
// Usage: berth_limit_bench [--out FILE] [--quick] [--only NAME-PART]
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/report.h"
#include "capi/berth.h"
#include "core/limit/bucket.h"
#include "core/limit/limiter.h"
#include "core/limit/shared.h"

namespace {

using berth::bench::Measure;
using berth::bench::Report;
using Clock = std::chrono::steady_clock;

// The baseline semaphore everyone writes first.
class CvSemaphore {
 public:
  explicit CvSemaphore(int64_t n) : free_(n) {}
  bool TryAcquire(int64_t n) {
    std::lock_guard<std::mutex> l(mu_);
    if (free_ < n) return false;
    free_ -= n;
    return true;
  }
  void Acquire(int64_t n) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return free_ >= n; });
    free_ -= n;
  }
  void Release(int64_t n) {
    {
      std::lock_guard<std::mutex> l(mu_);
      free_ += n;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t free_;
};

// The textbook token bucket: refill on every call under a mutex.
class NaiveBucket {
 public:
  NaiveBucket(double rate, double burst) : rate_(rate), burst_(burst), tokens_(burst), last_(Clock::now()) {}
  bool Allow() {
    std::lock_guard<std::mutex> l(mu_);
    const auto now = Clock::now();
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
    last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  std::mutex mu_;
  double rate_, burst_, tokens_;
  Clock::time_point last_;
};

// Wall ns per op with `threads` threads each running `op` until time is up.
template <class F>
double Threads(int threads, F&& op) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> ts;
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        op();
        ++n;
      }
      total.fetch_add(n);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(berth::bench::g_min_seconds));
  stop = true;
  for (auto& t : ts) t.join();
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
         static_cast<double>(total.load());
}

void Uncontended() {
  berth::ConcurrencyLimiter core(1000);
  CvSemaphore sem(1000);
  double b = Measure([&](size_t) {
    core.TryAcquire(1);
    (void)core.Release(1);
  });
  double base = Measure([&](size_t) {
    sem.TryAcquire(1);
    sem.Release(1);
  });
  Report("limiter_uncontended", 1, 1000, 1, b, base);
  berth_limiter* l = nullptr;
  berth_limiter_new(&l, 1000);
  int why;
  double capi = Measure([&](size_t) {
    berth_limiter_try_acquire(&why, l, 1);
    berth_limiter_release(l, 1);
  });
  Report("limiter_uncontended_capi", 1, 1000, 1, capi, base);
  berth_limiter_free(l);
}

// Berth and its baseline in alternating slices (four each) on the same
// `threads` threads, which switch workload at each slice, so load from
// elsewhere on the machine (which swung a single back-to-back pair by 5x)
// falls on both sides alike. Each side's figure is its wall time over its
// ops (an op is counted for the slice in which it started). A FIFO convoy
// (below) lasts at most a slice here, as threads leave the limiter at each
// switch; in one long run it can last the whole run.
template <class A, class B>
void Interleaved(int threads, A&& a, B&& b, double* a_ns, double* b_ns) {
  constexpr int kSlices = 4;
  std::atomic<int> phase{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops[2] = {0, 0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      uint64_t n[2] = {0, 0};
      while (!stop.load(std::memory_order_relaxed)) {
        const int p = phase.load(std::memory_order_relaxed);
        if (p == 0) {
          a();
        } else {
          b();
        }
        ++n[p];
      }
      ops[0].fetch_add(n[0]);
      ops[1].fetch_add(n[1]);
    });
  }
  double ns[2] = {0, 0};
  const auto slice = std::chrono::duration<double>(berth::bench::g_min_seconds / kSlices);
  for (int i = 0; i < 2 * kSlices; ++i) {
    const auto start = Clock::now();
    phase.store(i % 2);
    std::this_thread::sleep_for(slice);
    ns[i % 2] += std::chrono::duration<double, std::nano>(Clock::now() - start).count();
  }
  stop = true;
  for (auto& t : ts) t.join();
  *a_ns = ns[0] / static_cast<double>(ops[0].load());
  *b_ns = ns[1] / static_cast<double>(ops[1].load());
}

// 8 threads on a capacity of 4, blocking acquire + release, against the
// unfair condition-variable semaphore. limiter_contended is the FIFO
// limiter (the default, as capi/berth.h documents); with more threads than
// cores a strict FIFO hand-off must wait for the head waiter to be
// scheduled, which the unfair baseline never does: once four waiters queue
// (two holders descheduled), each release re-queues its thread behind them
// and the queue never drains (a convoy, 150-450 ns per op on 2 cores).
// limiter_contended_barging is Order::kBarging, the non-FIFO mode.
void Contended() {
  for (const berth::Order order : {berth::Order::kFifo, berth::Order::kBarging}) {
    berth::ConcurrencyLimiter core(4, order);
    CvSemaphore sem(4);
    double b = 0, base = 0;
    Interleaved(
        8,
        [&] {
          bool got;
          (void)core.Acquire(1, std::nullopt, &got);
          (void)core.Release(1);
        },
        [&] {
          sem.Acquire(1);
          sem.Release(1);
        },
        &b, &base);
    Report(order == berth::Order::kFifo ? "limiter_contended" : "limiter_contended_barging", 1, 4,
           8, b, base);
  }
}

void Bucket() {
  berth::TokenBucket bucket(1e12, 1'000'000);
  NaiveBucket naive(1e12, 1'000'000);
  double b = Measure([&](size_t) { bucket.Allow(1, berth_clock_now_ns()); });
  double base = Measure([&](size_t) { naive.Allow(); });
  Report("bucket_allow", 1, 1, 1, b, base);
}

// Four processes on one shared limiter vs four threads on an in-process
// one; each op is try_acquire + release with capacity to spare.
void Shared() {
  const std::string name = "bench-" + std::to_string(getpid());
  constexpr int kProcs = 4;
  {
    berth::MiUnique<berth::SharedLimiter> l;
    if (!berth::SharedLimiter::Open(name, 1000, true, &l).ok()) std::abort();
  }
  auto* counts = static_cast<std::atomic<uint64_t>*>(
      mmap(nullptr, sizeof(std::atomic<uint64_t>) * (kProcs + 1), PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  std::atomic<uint64_t>* stop = &counts[kProcs];
  stop->store(0);
  std::vector<pid_t> pids;
  const auto start = Clock::now();
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = fork();
    if (pid == 0) {
      berth::MiUnique<berth::SharedLimiter> l;
      if (!berth::SharedLimiter::Open(name, 1000, false, &l).ok()) _exit(1);
      uint64_t n = 0;
      berth::Refusal why;
      while (stop->load(std::memory_order_relaxed) == 0) {
        (void)l->TryAcquire(1, &why);
        (void)l->Release(1);
        ++n;
      }
      counts[p].store(n);
      _exit(0);
    }
    pids.push_back(pid);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(berth::bench::g_min_seconds));
  stop->store(1);
  uint64_t total = 0;
  for (int p = 0; p < kProcs; ++p) {
    waitpid(pids[static_cast<size_t>(p)], nullptr, 0);
    total += counts[p].load();
  }
  const double shared = std::chrono::duration<double, std::nano>(Clock::now() - start).count() /
                        static_cast<double>(total);
  munmap(counts, sizeof(std::atomic<uint64_t>) * (kProcs + 1));
  (void)berth::SharedLimiter::Unlink(name);
  berth::ConcurrencyLimiter local(1000);
  const double in_process = Threads(kProcs, [&] {
    local.TryAcquire(1);
    (void)local.Release(1);
  });
  Report("shared_limiter_4_processes", 1, 1000, kProcs, shared, in_process);
}

}  // namespace

int main(int argc, char** argv) {
  const char* out = "build/bench/limit.json";
  if (!berth::bench::ParseArgs(argc, argv, &out)) return 2;
  using berth::bench::Wanted;
  if (Wanted("limiter_uncontended limiter_uncontended_capi")) Uncontended();
  if (Wanted("limiter_contended limiter_contended_barging")) Contended();
  if (Wanted("bucket_allow")) Bucket();
  if (Wanted("shared_limiter_4_processes")) Shared();
  berth::bench::WriteJson(out);
  return 0;
}
