#pragma once
/// Waiting line in front of a provider's limits: the highest priority goes first;
/// within a priority, teams take turns (round robin) and each team is FIFO, so
/// one busy team cannot starve another. Not thread-safe (one provider strand).
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

namespace troupe::protocols::llm {

class fair_queue {
 public:
  void push(std::uint64_t id, int priority, const std::string& team);
  /// Removes and returns the next id, or nullopt when empty.
  std::optional<std::uint64_t> pop();
  /// The id pop() would return, without removing it.
  std::optional<std::uint64_t> peek() const;
  /// Removes `id` wherever it is; false when absent.
  bool erase(std::uint64_t id);
  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

 private:
  struct level {
    std::map<std::string, std::deque<std::uint64_t>> teams;
    std::string last_served;  ///< round-robin cursor: serve the team after this one
  };
  std::map<int, level, std::greater<int>> levels_;
  std::size_t size_ = 0;
};

}  // namespace troupe::protocols::llm
