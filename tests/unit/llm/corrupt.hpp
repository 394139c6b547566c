#pragma once
// Random damage for the reader tests: one edit at a random place of `s`.
#include <random>
#include <string>
#include <string_view>

namespace troupe::protocols::llm::testing {

/// Cuts `s` short, overwrites or inserts one byte taken from `alphabet`, or deletes up
/// to `max_erase` bytes: one of the four, at a random place.
inline std::string corrupt(std::string s, std::mt19937& rng, std::string_view alphabet, std::size_t max_erase = 8) {
  if (s.empty()) return s;
  const std::size_t pos = rng() % s.size();
  switch (rng() % 4) {
    case 0: s.resize(pos); break;
    case 1: s[pos] = alphabet[rng() % alphabet.size()]; break;
    case 2: s.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
    default: s.erase(pos, 1 + rng() % max_erase); break;
  }
  return s;
}

}  // namespace troupe::protocols::llm::testing
