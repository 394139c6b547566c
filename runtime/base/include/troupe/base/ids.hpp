#pragma once
/// Strong ids. Teams and agents are named in the config; tasks and decisions get
/// generated ids that are unique across restarts and sort by creation time.
#include <atomic>
#include <compare>
#include <cstdint>
#include <functional>
#include <string>

namespace troupe::base {

template <class Tag>
struct strong_id {
  std::string value;
  strong_id() = default;
  explicit strong_id(std::string v) : value(std::move(v)) {}
  auto operator<=>(const strong_id&) const = default;
  bool empty() const noexcept { return value.empty(); }
  const std::string& str() const noexcept { return value; }
};

struct team_tag {};
struct agent_tag {};
struct task_tag {};
struct decision_tag {};
using team_id = strong_id<team_tag>;
using agent_id = strong_id<agent_tag>;
using task_id = strong_id<task_tag>;
using decision_id = strong_id<decision_tag>;

/// Generates ids of the form "<prefix>_<16 hex digits>": milliseconds since the
/// epoch in the high bits and a counter in the low 16, so ids never repeat across
/// restarts (the clock moves on) and sort by creation. Thread-safe.
class id_generator {
 public:
  explicit id_generator(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string next();

 private:
  std::string prefix_;
  std::atomic<std::uint64_t> last_{0};
};

}  // namespace troupe::base

template <class Tag>
struct std::hash<troupe::base::strong_id<Tag>> {
  std::size_t operator()(const troupe::base::strong_id<Tag>& id) const noexcept {
    return std::hash<std::string>{}(id.value);
  }
};
