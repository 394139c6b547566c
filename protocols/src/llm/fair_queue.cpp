#include "troupe/protocols/llm/fair_queue.hpp"

#include <algorithm>

namespace troupe::protocols::llm {

void fair_queue::push(std::uint64_t id, int priority, const std::string& team) {
  levels_[priority].teams[team].push_back(id);
  ++size_;
}

std::optional<std::uint64_t> fair_queue::pop() {
  if (levels_.empty()) return std::nullopt;
  auto lvl = levels_.begin();
  auto& teams = lvl->second.teams;
  // Round robin: the first team after the one served last, wrapping around.
  auto it = teams.upper_bound(lvl->second.last_served);
  if (it == teams.end()) it = teams.begin();
  auto id = it->second.front();
  it->second.pop_front();
  lvl->second.last_served = it->first;
  if (it->second.empty()) teams.erase(it);
  if (teams.empty()) levels_.erase(lvl);
  --size_;
  return id;
}

std::optional<std::uint64_t> fair_queue::peek() const {
  if (levels_.empty()) return std::nullopt;
  const auto& lvl = levels_.begin()->second;
  auto it = lvl.teams.upper_bound(lvl.last_served);
  if (it == lvl.teams.end()) it = lvl.teams.begin();
  return it->second.front();
}

bool fair_queue::erase(std::uint64_t id) {
  for (auto lvl = levels_.begin(); lvl != levels_.end(); ++lvl) {
    for (auto t = lvl->second.teams.begin(); t != lvl->second.teams.end(); ++t) {
      auto& q = t->second;
      auto pos = std::find(q.begin(), q.end(), id);
      if (pos == q.end()) continue;
      q.erase(pos);
      if (q.empty()) lvl->second.teams.erase(t);
      if (lvl->second.teams.empty()) levels_.erase(lvl);
      --size_;
      return true;
    }
  }
  return false;
}

}  // namespace troupe::protocols::llm
