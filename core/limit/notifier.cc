#include "core/limit/notifier.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/common/alloc.h"


namespace berth {

Status Notifier::Make(std::shared_ptr<Notifier>* out) {
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return {Code::kInternal, std::string("eventfd: ") + std::strerror(errno)};
  try {
    *out = std::allocate_shared<Notifier>(Alloc<Notifier>(), Private{}, fd);
  } catch (...) {
    close(fd);
    throw;
  }
  return {};
}

Notifier::~Notifier() { close(fd_); }

void Notifier::Post(uint64_t token) {
  queue_.enqueue(token);
  Wake();  // only the post that finds the notifier quiet pays for the syscall
}

size_t Notifier::Drain(uint64_t* out, size_t cap) {
  // Order matters: clear the fd, then the flag, then take. A post after the
  // flag is cleared writes the fd again; a post before it is in the queue
  // and taken below (at worst the loop wakes once more to find nothing).
  uint64_t count;
  ssize_t r;
  do {
    r = read(fd_, &count, sizeof count);
  } while (r < 0 && errno == EINTR);
  signaled_.store(false, std::memory_order_release);
  const size_t n = queue_.try_dequeue_bulk(out, cap);
  // Anything still queued (more than cap, or an enqueue the bulk dequeue did
  // not see) must not wait for a post that may never come: wake again.
  if (n < cap && queue_.size_approx() > 0) Wake();
  return n;
}

void Notifier::Wake() {
  if (!signaled_.exchange(true, std::memory_order_acq_rel)) {
    const uint64_t one = 1;
    ssize_t r;
    do {
      r = write(fd_, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
  }
}

}  // namespace berth
