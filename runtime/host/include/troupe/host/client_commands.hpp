#pragma once
/// The client subcommands of the troupe binary: `submit`, `watch`, `decide`,
/// `cancel`. They talk to a running daemon over the control plane (HTTP and
/// the troupe.v1 WebSocket) with the clients of protocols/client; nothing here
/// touches actors. main() hands over the subcommand name and the arguments that
/// follow it.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::host {

/// True for the names run_client_command handles.
bool is_client_command(const std::string& name);

/// Runs a client subcommand with the process's stdin/stdout/stderr and
/// environment ($TROUPE_URL, $TROUPE_TOKEN). Returns the exit code: 0 success,
/// 1 the operation failed (error printed to stderr), 2 usage error.
int run_client_command(const std::string& name, const std::vector<std::string>& args);

/// Where a command reads and writes; tests substitute their own.
struct client_io {
  std::ostream& out;
  std::ostream& err;
  /// Environment lookup; empty optional when unset.
  std::function<std::optional<std::string>(const std::string&)> getenv;
  /// Set from another thread or a signal handler (lock-free) to make `watch`
  /// and `submit --wait` stop.
  const std::atomic<bool>* stop = nullptr;
  /// `watch` with a terminal: raw mode, alternate screen, 'q' quits.
  bool terminal = false;
};

/// Same as above with explicit I/O.
int run_client_command(const std::string& name, const std::vector<std::string>& args, client_io& io);

/// Parses "low|normal|high|urgent|0-9" into a priority; nullopt when invalid.
std::optional<int> parse_priority(const std::string& text);

/// The state behind `troupe watch`: built from the snapshot, then updated by
/// each event frame; render() draws it. Tolerant of missing fields.
class watch_model {
 public:
  /// Applies one frame (snapshot, event, stream.gap); other frames are ignored.
  void apply(const nlohmann::json& frame);
  /// The screen as lines (no trailing newlines), at most `height` lines, each
  /// cut to `width` visible columns; `color` adds ANSI colours.
  std::vector<std::string> render(int width, int height, bool color) const;

  const std::map<std::string, nlohmann::json>& agents() const { return agents_; }
  const std::map<std::string, nlohmann::json>& tasks() const { return tasks_; }
  const std::map<std::string, nlohmann::json>& decisions() const { return decisions_; }
  const std::deque<std::string>& errors() const { return errors_; }
  double cost_usd() const { return cost_usd_; }
  std::uint64_t gaps() const { return dropped_; }
  std::string header;  ///< first line (URL, principal)

 private:
  void apply_task(const nlohmann::json& task);
  void note_error(std::string line);

  std::map<std::string, nlohmann::json> agents_;
  std::map<std::string, nlohmann::json> tasks_;      // not yet terminal
  std::map<std::string, nlohmann::json> decisions_;  // pending
  std::map<std::string, std::uint64_t> finished_;    // terminal state -> count
  std::deque<std::string> errors_;
  nlohmann::json system_;
  double cost_usd_ = 0;
  std::int64_t tokens_in_ = 0, tokens_out_ = 0, calls_ = 0;
  std::uint64_t dropped_ = 0;
};

}  // namespace troupe::host
