#pragma once
/// The offline `scripted` provider (DESIGN §4): ordered replies matched by
/// substring or regex, templated text, simulated latency, token counts computed
/// from the text, and scripted faults. Deterministic for a given seed and call
/// order. Not thread-safe: one instance per agent.
#include <cstdint>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "troupe/agents/template.hpp"
#include "troupe/config/config.hpp"

namespace troupe::agents {

struct scripted_outcome {
  std::string text;
  std::int64_t latency_ms = 0;
  config::scripted_fault fault = config::scripted_fault::none;
  std::string error;
  std::int64_t tokens_in = 0;
  std::int64_t tokens_out = 0;
};

/// Rough token count of a text: one token per 4 bytes, at least one per word.
std::int64_t estimate_tokens(std::string_view text);

class scripted_model {
 public:
  explicit scripted_model(const config::provider& p);
  /// Picks the reply for `prompt` (the rendered step prompt; the system prompt
  /// counts toward tokens in) and renders its text with `lookup` ({{prompt}} is
  /// provided here).
  scripted_outcome answer(const std::string& system, const std::string& prompt,
                          const template_lookup& lookup);

 private:
  struct entry {
    config::scripted_reply reply;
    std::unique_ptr<std::regex> re;
    std::uint64_t matches = 0;
  };
  std::vector<entry> entries_;
  config::millis_range latency_;
  std::minstd_rand rng_;  ///< small state (8 bytes): one model lives in every agent
};

}  // namespace troupe::agents
