#include "troupe/agents/scripted.hpp"

#include <cctype>

namespace troupe::agents {

std::int64_t estimate_tokens(std::string_view text) {
  std::int64_t words = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  auto by_bytes = static_cast<std::int64_t>((text.size() + 3) / 4);
  return std::max(words, by_bytes);
}

scripted_model::scripted_model(const config::provider& p)
    : latency_(p.latency), rng_(static_cast<std::minstd_rand::result_type>(p.seed % 2147483646 + 1)) {
  for (const auto& r : p.replies) {
    entry e;
    e.reply = r;
    if (r.regex && !r.match.empty()) e.re = std::make_unique<std::regex>(r.match);
    entries_.push_back(std::move(e));
  }
}

scripted_outcome scripted_model::answer(const std::string& system, const std::string& prompt,
                                        const template_lookup& lookup) {
  scripted_outcome out;
  const config::scripted_reply* chosen = nullptr;
  std::uint64_t nth = 0;
  for (auto& e : entries_) {
    const auto& r = e.reply;
    bool hit = r.match.empty() ||
               (e.re ? std::regex_search(prompt, *e.re) : prompt.find(r.match) != std::string::npos);
    if (!hit) continue;
    if (r.times > 0 && e.matches >= static_cast<std::uint64_t>(r.times)) continue;
    nth = ++e.matches;
    chosen = &r;
    break;
  }
  auto range = chosen && chosen->latency ? *chosen->latency : latency_;
  out.latency_ms = range.min_ms;
  if (range.max_ms > range.min_ms)
    out.latency_ms = std::uniform_int_distribution<std::int64_t>(range.min_ms, range.max_ms)(rng_);
  std::string text_template = chosen ? chosen->text : std::string("{{prompt}}");
  if (chosen && chosen->fault != config::scripted_fault::none &&
      (chosen->every <= 0 || nth % static_cast<std::uint64_t>(chosen->every) == 0)) {
    out.fault = chosen->fault;
    out.error = chosen->error.empty() ? "scripted fault" : chosen->error;
  }
  out.text = render_template(text_template, [&](std::string_view name, std::string& value) {
    if (name == "prompt") {
      value = prompt;
      return true;
    }
    return lookup(name, value);
  });
  out.tokens_in = estimate_tokens(system) + estimate_tokens(prompt);
  out.tokens_out = estimate_tokens(out.text);
  return out;
}

}  // namespace troupe::agents
