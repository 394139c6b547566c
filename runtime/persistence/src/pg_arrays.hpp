#pragma once
/// Builders for PostgreSQL array literals ('{"a","b"}', '{1,2}'), used to send
/// a whole column of a batch as one parameter to `unnest($1::text[], ...)`.
/// The literal travels as a bound parameter, never spliced into SQL text.
#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "troupe/base/store_port.hpp"

namespace troupe::persistence::detail {

/// A text[] literal. Every element is double-quoted; inside quotes only '"'
/// and '\' need a backslash, so any text (JSON, unicode, commas, braces)
/// round-trips exactly.
class text_array {
 public:
  void add(std::string_view value) {
    out_ += out_.size() > 1 ? ",\"" : "\"";
    // Copy the runs between quotes and backslashes whole: a 1 KiB snapshot
    // usually has a few dozen of them, and a per-byte append was the largest
    // client-side cost of a snapshot batch.
    std::size_t run = 0;
    for (std::size_t i = 0; i < value.size(); ++i) {
      const char c = value[i];
      if (c != '"' && c != '\\') continue;
      out_.append(value.data() + run, i - run);
      out_ += '\\';
      run = i;  // the special character itself starts the next run
    }
    value.remove_prefix(run);
    out_.append(value);
    out_ += '"';
  }
  /// The finished literal: closes the array in place (add nothing after it).
  const std::string& str() {
    if (!closed_) out_ += '}', closed_ = true;
    return out_;
  }

 private:
  std::string out_ = "{";
  bool closed_ = false;
};

/// A bigint[] or int[] literal.
class int_array {
 public:
  void add(std::int64_t value) {
    if (out_.size() > 1) out_ += ',';
    out_ += std::to_string(value);
  }
  const std::string& str() {
    if (!closed_) out_ += '}', closed_ = true;
    return out_;
  }

 private:
  std::string out_ = "{";
  bool closed_ = false;
};

/// A float8[] literal; to_chars gives the shortest text that reads back to the
/// same double.
class float_array {
 public:
  void add(double value) {
    if (out_.size() > 1) out_ += ',';
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
    out_.append(buf, ec == std::errc{} ? end : buf);
  }
  const std::string& str() {
    if (!closed_) out_ += '}', closed_ = true;
    return out_;
  }

 private:
  std::string out_ = "{";
  bool closed_ = false;
};

/// A column of large texts as one binary blob (a bytea parameter) with the
/// 1-based offset and the length of each value: the server cuts the values out
/// with substring() instead of parsing a quoted array literal (`array_in`
/// took 1.75 ms for 512 snapshots of 1 KiB, a third of the batch), and the
/// client copies the bytes instead of escaping them.
class blob_column {
 public:
  void add(std::string_view value) {
    offset.add(static_cast<std::int64_t>(bytes_.size()) + 1);
    length.add(static_cast<std::int64_t>(value.size()));
    bytes_.append(value);
  }
  const std::string& bytes() const { return bytes_; }
  int_array offset, length;

 private:
  std::string bytes_;
};

/// The ten task columns as arrays, in table order.
struct task_arrays {
  text_array id, team, agent;
  int_array priority;
  text_array state, key;
  blob_column snapshot;
  int_array seq, created, updated;
  void add(const base::task_row& t) {
    id.add(t.id), team.add(t.team), agent.add(t.agent), priority.add(t.priority);
    state.add(t.state), key.add(t.idempotency_key), snapshot.add(t.snapshot);
    seq.add(t.seq), created.add(t.created_ms), updated.add(t.updated_ms);
  }
};

}  // namespace troupe::persistence::detail
