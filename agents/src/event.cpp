#include "troupe/agents/event.hpp"

#include <algorithm>
#include <chrono>

namespace troupe::agents {
namespace {
/// The listener slot the current thread is calling, so that a listener which
/// drops its own token does not wait for itself.
thread_local const void* calling_slot = nullptr;
}  // namespace

std::shared_ptr<event> make_event(std::string name, std::string topic, std::string team, std::string agent,
                                  std::string task) {
  auto ev = std::make_shared<event>();
  ev->name = std::move(name);
  ev->topic = std::move(topic);
  ev->team = std::move(team);
  ev->agent = std::move(agent);
  ev->task = std::move(task);
  ev->ts_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch()).count();
  return ev;
}

std::shared_ptr<void> event_bus::subscribe(listener fn) {
  auto s = std::make_shared<slot>();
  s->fn = std::move(fn);
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

void event_bus::remove(slot* s) {
  if (calling_slot == s) {
    s->retired = true;  // dropped from inside its own call: later calls skip it
  } else {
    std::unique_lock wait_for_calls{s->calls};
    s->retired = true;
  }
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
  for (const auto& s : *snapshot) {
    std::shared_lock calling{s->calls};
    if (s->retired) continue;
    const void* outer = calling_slot;
    calling_slot = s.get();
    s->fn(ev);
    calling_slot = outer;
  }
}

}  // namespace troupe::agents
