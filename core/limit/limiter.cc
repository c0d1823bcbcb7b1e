#include "core/limit/limiter.h"

#include <string>

namespace berth {

ConcurrencyLimiter::ConcurrencyLimiter(int64_t capacity) : capacity_(capacity) {}
ConcurrencyLimiter::~ConcurrencyLimiter() = default;

void ConcurrencyLimiter::GrantLocked() {
  while (!queue_.empty() && FitsLocked(queue_.front().n)) {
    Waiter& w = queue_.front();
    in_use_ += w.n;
    waiting_permits_ -= w.n;
    ++granted_;
    by_ticket_.erase(w.ticket);
    if (w.cv != nullptr) {
      w.granted = true;
      w.cv->notify_one();  // the blocked thread removes nothing: it is gone from the queue
      queue_.pop_front();
    } else {
      unclaimed_.emplace(w.ticket, w.n);
      w.notifier->Post(w.token);
      queue_.pop_front();
    }
  }
}

Status ConcurrencyLimiter::TryAcquireChecked(int64_t n, Refusal* refusal) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n > capacity_) {
    return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                        std::to_string(capacity_) + ")"};
  }
  *refusal = TryAcquireLocked(n);
  return {};
}

Refusal ConcurrencyLimiter::TryAcquire(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  return TryAcquireLocked(n);
}

Refusal ConcurrencyLimiter::TryAcquireLocked(int64_t n) {
  if (!queue_.empty()) {
    ++rejected_;
    return Refusal::kWaitersQueued;
  }
  if (!FitsLocked(n)) {
    ++rejected_;
    return Refusal::kAtCapacity;
  }
  in_use_ += n;
  ++granted_;
  return Refusal::kNone;
}

Status ConcurrencyLimiter::Acquire(int64_t n, std::optional<Clock::time_point> deadline,
                                   bool* acquired) {
  std::unique_lock<std::mutex> lock(mu_);
  if (n > capacity_) {
    return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                        std::to_string(capacity_) + ")"};
  }
  if (queue_.empty() && FitsLocked(n)) {
    in_use_ += n;
    ++granted_;
    *acquired = true;
    return {};
  }
  std::condition_variable cv;
  const uint64_t ticket = next_ticket_++;
  auto it = queue_.insert(queue_.end(), Waiter{ticket, n, nullptr, 0, &cv});
  by_ticket_.emplace(ticket, it);
  waiting_permits_ += n;
  // `it` stays valid while the waiter is queued; once granted, GrantLocked
  // erased it and set `granted` through the waiter we can no longer touch,
  // so track the outcome through the ticket map instead.
  auto still_queued = [&] { return by_ticket_.count(ticket) != 0; };
  if (deadline) {
    cv.wait_until(lock, *deadline, [&] { return !still_queued(); });
  } else {
    cv.wait(lock, [&] { return !still_queued(); });
  }
  if (still_queued()) {  // deadline passed while queued
    waiting_permits_ -= n;
    queue_.erase(it);
    by_ticket_.erase(ticket);
    ++timed_out_;
    GrantLocked();  // those behind it may fit now
    *acquired = false;
    return {};
  }
  *acquired = true;
  return {};
}

Status ConcurrencyLimiter::Enqueue(int64_t n, std::shared_ptr<Notifier> notifier, uint64_t token,
                                   bool* granted_now, uint64_t* ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n > capacity_) {
    return {Code::kInvalidArgument, "n (" + std::to_string(n) + ") exceeds the capacity (" +
                                        std::to_string(capacity_) + ")"};
  }
  if (queue_.empty() && FitsLocked(n)) {
    in_use_ += n;
    ++granted_;
    *granted_now = true;
    *ticket = 0;
    return {};
  }
  const uint64_t t = next_ticket_++;
  auto it = queue_.insert(queue_.end(), Waiter{t, n, std::move(notifier), token, nullptr});
  by_ticket_.emplace(t, it);
  waiting_permits_ += n;
  *granted_now = false;
  *ticket = t;
  return {};
}

bool ConcurrencyLimiter::Claim(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  return unclaimed_.erase(ticket) != 0;
}

CancelOutcome ConcurrencyLimiter::Cancel(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = by_ticket_.find(ticket); it != by_ticket_.end()) {
    waiting_permits_ -= it->second->n;
    queue_.erase(it->second);
    by_ticket_.erase(it);
    ++cancelled_;
    GrantLocked();  // a large waiter leaving the head can unblock smaller ones
    return CancelOutcome::kWasWaiting;
  }
  if (auto it = unclaimed_.find(ticket); it != unclaimed_.end()) {
    in_use_ -= it->second;
    unclaimed_.erase(it);
    ++cancelled_;
    GrantLocked();
    return CancelOutcome::kWasGranted;
  }
  return CancelOutcome::kUnknown;
}

Status ConcurrencyLimiter::Release(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  if (n > in_use_) {
    return {Code::kInvalidArgument, "releasing " + std::to_string(n) + " permits but only " +
                                        std::to_string(in_use_) + " are in use"};
  }
  in_use_ -= n;
  GrantLocked();
  return {};
}

void ConcurrencyLimiter::SetCapacity(int64_t capacity) {
  std::lock_guard<std::mutex> lock(mu_);
  capacity_ = capacity;
  GrantLocked();
}

LimiterStats ConcurrencyLimiter::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  LimiterStats s;
  s.capacity = capacity_;
  s.in_use = in_use_;
  s.waiting = static_cast<int64_t>(queue_.size());
  s.waiting_permits = waiting_permits_;
  s.granted = granted_;
  s.rejected = rejected_;
  s.timed_out = timed_out_;
  s.cancelled = cancelled_;
  return s;
}

}  // namespace berth
