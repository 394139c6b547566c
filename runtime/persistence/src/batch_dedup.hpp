#pragma once
/// Helpers shared by both stores for shaping a write_batch before it is written.
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace troupe::persistence::detail {

/// Indices of the last row for each key, in batch order. Upserts keep the
/// newest row of a key; PostgreSQL also refuses to touch one row twice in a
/// single INSERT ... ON CONFLICT DO UPDATE, so duplicates must go first.
template <class Row, class KeyFn>
std::vector<std::size_t> last_of_each(const std::vector<Row>& rows, KeyFn key) {
  std::unordered_map<std::string, std::size_t> last;
  last.reserve(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) last[key(rows[i])] = i;
  std::vector<std::size_t> keep;
  keep.reserve(last.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (last[key(rows[i])] == i) keep.push_back(i);
  }
  return keep;
}

}  // namespace troupe::persistence::detail
