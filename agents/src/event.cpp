#include "troupe/agents/event.hpp"

#include <algorithm>

namespace troupe::agents {

std::shared_ptr<void> event_bus::subscribe(listener fn) {
  auto s = std::make_shared<slot>(slot{std::move(fn)});
  {
    std::lock_guard guard{mutex_};
    // Copy-on-write: publishers iterate a snapshot without holding the lock.
    auto next = std::make_shared<std::vector<std::shared_ptr<slot>>>(*listeners_);
    next->push_back(s);
    listeners_ = std::move(next);
    count_.fetch_add(1, std::memory_order_relaxed);
  }
  auto* raw = s.get();
  return std::shared_ptr<void>(raw, [this, keep = s](void*) { remove(keep.get()); });
}

void event_bus::remove(const slot* s) {
  std::lock_guard guard{mutex_};
  auto next = std::make_shared<std::vector<std::shared_ptr<slot>>>(*listeners_);
  next->erase(std::remove_if(next->begin(), next->end(),
                             [s](const std::shared_ptr<slot>& x) { return x.get() == s; }),
              next->end());
  listeners_ = std::move(next);
  count_.fetch_sub(1, std::memory_order_relaxed);
}

void event_bus::publish(const event_ptr& ev) {
  std::shared_ptr<std::vector<std::shared_ptr<slot>>> snapshot;
  {
    std::lock_guard guard{mutex_};
    snapshot = listeners_;
  }
  published_.fetch_add(1, std::memory_order_relaxed);
  for (const auto& s : *snapshot) s->fn(ev);
}

}  // namespace troupe::agents
