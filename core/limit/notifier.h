// Notifier: how a wait that completes on another thread reaches an event
// loop without blocking it. Completions (caller-chosen 64-bit tokens) go into
// a lock-free MPMC queue (moodycamel::ConcurrentQueue: many releasing threads
// post, the loop drains), and an eventfd becomes readable when the queue goes
// from empty to non-empty, so one readiness wake-up can carry many
// completions. The loop registers the fd (asyncio add_reader, epoll) and
// drains on readiness. Thread-safe.
#pragma once

#include <concurrentqueue/concurrentqueue.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/common/alloc.h"
#include "core/common/status.h"

namespace berth {

class Notifier {
 public:
  // The queue's blocks come from mimalloc, like the rest of Berth's memory.
  struct QueueTraits : moodycamel::ConcurrentQueueDefaultTraits {
    static void* malloc(size_t size) { return Malloc(size); }
    static void free(void* p) { Free(p); }
  };

  // Creates the eventfd; kInternal with errno's text if that fails. The
  // notifier and its reference count live on mimalloc.
  static Status Make(std::shared_ptr<Notifier>* out);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  int fd() const { return fd_; }
  // Queues a completion and makes the fd readable if it was not.
  void Post(uint64_t token);
  // Takes up to `cap` completions and clears the fd's readiness. Call again
  // while it returns `cap` (more may be queued).
  size_t Drain(uint64_t* out, size_t cap);

 private:
  struct Private {};

 public:
  Notifier(Private, int fd) : fd_(fd) {}  // use Make

 private:
  void Wake();  // makes the fd readable unless it already is
  const int fd_;
  moodycamel::ConcurrentQueue<uint64_t, QueueTraits> queue_;
  std::atomic<bool> signaled_{false};
};

}  // namespace berth
