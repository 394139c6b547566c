#pragma once
/// Where to send a team's messages: the current incarnation of each team actor.
/// Written by the root supervisor (its actor thread) whenever it (re)starts a
/// team, read by the control-plane bridge on I/O threads, hence the lock. While
/// a team is being restarted its handle is invalid and callers answer
/// `unavailable` instead of sending into the void.
#include <mutex>
#include <string>
#include <unordered_map>

#include <caf/all.hpp>

namespace troupe::actors::supervision {

class team_directory {
 public:
  void set(const std::string& team, caf::actor handle) {
    std::lock_guard guard{mutex_};
    teams_[team] = std::move(handle);
  }
  /// The current incarnation; invalid while restarting or when there is no such team.
  caf::actor get(const std::string& team) const {
    std::lock_guard guard{mutex_};
    auto it = teams_.find(team);
    return it == teams_.end() ? caf::actor{} : it->second;
  }
  void erase(const std::string& team) {
    std::lock_guard guard{mutex_};
    teams_.erase(team);
  }
  void clear() {
    std::lock_guard guard{mutex_};
    teams_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, caf::actor> teams_;
};

}  // namespace troupe::actors::supervision
