#include "troupe/actors/supervision/supervisor.hpp"

#include <chrono>

namespace troupe::actors::supervision {

namespace {
/// Dead children remembered for stale exit messages; those arrive right after the down message.
constexpr std::size_t recent_capacity = 16;
}  // namespace

supervisor::supervisor(restart_policy policy, restart_mode mode, intensity_scope scope, child_hooks hooks)
    : policy_(std::move(policy)), mode_(mode), scope_(scope), hooks_(std::move(hooks)) {}

std::int64_t supervisor::now_ms(caf::local_actor* self) {
  // The actor clock: virtual under CAF's test coordinator, so windows are testable.
  return std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now().time_since_epoch()).count();
}

std::size_t supervisor::find(const std::string& key) const {
  for (std::size_t i = 0; i < children_.size(); ++i)
    if (children_[i].key == key) return i;
  return children_.size();
}

caf::actor supervisor::handle(const std::string& key) const {
  auto pos = find(key);
  return pos < children_.size() ? children_[pos].handle : caf::actor{};
}

bool supervisor::knows(const caf::actor_addr& source) const {
  if (!source) return false;
  for (const auto& a : recent_)
    if (a == source) return true;
  for (const auto& c : children_)
    if (c.handle && c.handle.address() == source) return true;
  return false;
}

void supervisor::remember(const caf::actor_addr& addr) {
  if (recent_.size() < recent_capacity) {
    recent_.push_back(addr);
  } else {
    recent_[recent_next_] = addr;
    recent_next_ = (recent_next_ + 1) % recent_capacity;
  }
}

void supervisor::attach(caf::local_actor* self, std::size_t pos, caf::actor handle) {
  // Monitor before linking: a child that is already dead still yields exactly one down message.
  self->monitor(handle);
  if (link_) self->link_to(handle);
  children_[pos].handle = std::move(handle);
}

void supervisor::start(caf::local_actor* self, std::size_t pos) {
  auto key = children_[pos].key;
  auto h = hooks_.start(key);
  pos = find(key);  // the hook may have changed the child list
  if (h && pos < children_.size()) attach(self, pos, std::move(h));
}

void supervisor::add(caf::local_actor* self, std::string key, bool start_now) {
  children_.push_back(child{std::move(key), {}});
  if (scope_ == intensity_scope::per_child) per_child_.push_back(policy_);
  if (start_now) start(self, children_.size() - 1);
}

void supervisor::adopt(caf::local_actor* self, const std::string& key, caf::actor handle) {
  auto pos = find(key);
  if (pos == children_.size() || !handle) return;
  attach(self, pos, std::move(handle));
}

caf::actor supervisor::release(caf::local_actor* self, const std::string& key) {
  auto pos = find(key);
  if (pos == children_.size()) return {};
  auto h = std::move(children_[pos].handle);
  if (h) {
    self->demonitor(h);
    if (link_) self->unlink_from(h);
  }
  children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(pos));
  if (scope_ == intensity_scope::per_child) per_child_.erase(per_child_.begin() + static_cast<std::ptrdiff_t>(pos));
  return h;
}

void supervisor::stop(caf::local_actor* self, std::size_t pos, bool restarting) {
  auto h = std::move(children_[pos].handle);
  children_[pos].handle = nullptr;
  if (!h) return;
  // Unlink and demonitor first: the kill must not come back to us as a crash.
  self->demonitor(h);
  if (link_) self->unlink_from(h);
  remember(h.address());
  self->send_exit(h, caf::exit_reason::kill);
  if (hooks_.stopped) hooks_.stopped(children_[pos].key, stop_info{false, restarting, {}});
}

bool supervisor::on_down(caf::local_actor* self, const caf::down_msg& msg) {
  std::size_t pos = children_.size();
  for (std::size_t i = 0; i < children_.size(); ++i)
    if (children_[i].handle && children_[i].handle.address() == msg.source) pos = i;
  if (pos == children_.size()) {
    for (const auto& a : recent_)
      if (a == msg.source) return true;  // a stopped incarnation: already handled
    return false;
  }
  auto key = children_[pos].key;
  remember(children_[pos].handle.address());
  children_[pos].handle = nullptr;
  bool crashed = msg.reason && msg.reason != caf::exit_reason::normal;
  if (!crashed && mode_ == restart_mode::transient) {
    release(self, key);  // finished its job
    return true;
  }
  auto reason = crashed ? self->system().render(msg.reason) : std::string("exited");
  auto& policy = scope_ == intensity_scope::per_child ? per_child_[pos] : policy_;
  auto plan = scope_ == intensity_scope::per_child ? policy.on_failure(0, 1, now_ms(self))
                                                   : policy.on_failure(pos, children_.size(), now_ms(self));
  if (plan.escalate) {
    if (hooks_.stopped) hooks_.stopped(key, stop_info{true, false, reason});
    if (scope_ == intensity_scope::group) {
      escalated_ = true;
      for (std::size_t i = 0; i < children_.size(); ++i) stop(self, i, false);
    }
    if (hooks_.escalated) hooks_.escalated(key, reason);
    return true;
  }
  if (scope_ == intensity_scope::per_child) plan.restart = {pos};
  if (hooks_.stopped) hooks_.stopped(key, stop_info{true, true, reason});
  std::vector<std::string> keys;
  for (auto p : plan.restart) {
    keys.push_back(children_[p].key);
    if (p != pos) stop(self, p, true);
  }
  ++restarts_;
  for (const auto& k : keys) {
    auto p = find(k);
    if (p == children_.size() || children_[p].handle) continue;
    start(self, p);
    if (hooks_.restarted) hooks_.restarted(k);
  }
  return true;
}

void supervisor::restart_child(caf::local_actor* self, const std::string& key) {
  auto pos = find(key);
  if (pos == children_.size() || children_[pos].handle) return;
  start(self, pos);
}

void supervisor::restart_stopped(caf::local_actor* self) {
  escalated_ = false;
  policy_.reset();
  for (auto& p : per_child_) p.reset();
  for (std::size_t i = 0; i < children_.size(); ++i)
    if (!children_[i].handle) {
      auto key = children_[i].key;
      start(self, i);
      if (hooks_.restarted) hooks_.restarted(key);
    }
}

void supervisor::stop_all(caf::local_actor* self) {
  for (std::size_t i = 0; i < children_.size(); ++i) stop(self, i, false);
}

}  // namespace troupe::actors::supervision
