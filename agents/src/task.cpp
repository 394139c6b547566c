#include "troupe/agents/task.hpp"

#include <array>
#include <charconv>

namespace troupe::agents {
namespace {
constexpr std::array<std::string_view, 6> task_names = {
    "queued", "running", "waiting_decision", "succeeded", "failed", "cancelled"};
constexpr std::array<std::string_view, 5> step_names = {"pending", "running", "succeeded",
                                                        "failed", "skipped"};
}  // namespace

std::string_view to_string(task_state s) noexcept { return task_names[static_cast<std::size_t>(s)]; }
std::string_view to_string(step_state s) noexcept { return step_names[static_cast<std::size_t>(s)]; }

std::optional<task_state> task_state_from(std::string_view s) noexcept {
  for (std::size_t i = 0; i < task_names.size(); ++i)
    if (task_names[i] == s) return static_cast<task_state>(i);
  return std::nullopt;
}

std::optional<step_state> step_state_from(std::string_view s) noexcept {
  for (std::size_t i = 0; i < step_names.size(); ++i)
    if (step_names[i] == s) return static_cast<step_state>(i);
  return std::nullopt;
}

std::optional<int> parse_priority(std::string_view text) noexcept {
  if (text == "low") return 2;
  if (text == "normal") return 5;
  if (text == "high") return 7;
  if (text == "urgent") return 9;
  int value = -1;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value < 0 || value > 9)
    return std::nullopt;
  return value;
}

step_run* task::find_step(std::string_view step_id) {
  for (auto& s : steps)
    if (s.id == step_id) return &s;
  return nullptr;
}

decision_record* task::find_decision(std::string_view decision_id) {
  for (auto& d : decisions)
    if (d.id == decision_id) return &d;
  return nullptr;
}

}  // namespace troupe::agents
