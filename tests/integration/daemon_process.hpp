#pragma once
/// A child process under test (the real `troupe` binary): started with
/// posix_spawn, its stdout and stderr captured through a pipe by a reader
/// thread (and copied to a log file), waited on with deadlines, never with
/// sleeps.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace troupe::test {

/// One spawned process. Not copyable; the destructor SIGKILLs and reaps a
/// child that is still running, so a failing test never leaks a daemon.
class daemon_process {
 public:
  daemon_process() = default;
  ~daemon_process();
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;

  /// Spawns `program` with `args` (argv[1..]). Output goes to the capture
  /// buffer and, when `log_path` is not empty, is appended to that file.
  /// Returns false (with the reason in `why`) when the spawn fails.
  bool start(const std::string& program, const std::vector<std::string>& args,
             const std::string& log_path, std::string& why);

  /// Waits until the captured output contains `needle` (searching from byte
  /// `from`), the process's output ends, or the deadline passes.
  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout,
                       std::size_t from = 0);

  /// Starts `troupe run`-style daemons: waits for "troupe listening on
  /// http://HOST:PORT" and then "ready pid=" and returns the port (nullopt on
  /// timeout or early exit).
  std::optional<std::uint16_t> wait_until_ready(std::chrono::milliseconds timeout);

  /// Sends a signal to the child (no-op when it has been reaped).
  void signal(int sig);

  /// Waits for the child to end and reaps it. Returns its exit code, or 128+N
  /// when signal N ended it; nullopt when it is still running at the deadline.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  /// SIGKILL and reap (the crash tests' `kill -9`). Returns the reaped status.
  std::optional<int> kill_hard(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  /// Everything the child wrote so far (stdout and stderr interleaved).
  std::string output() const;
  std::size_t output_size() const;
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exit_status_; }

 private:
  void read_loop(int fd, std::string log_path);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  std::optional<int> exit_status_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_;
  bool eof_ = false;
};

/// The outcome of a short command (e.g. `troupe check`).
struct command_result {
  int exit_code = -1;  ///< -1 when it did not end within the timeout (it is then killed)
  std::string output;
};

/// Runs a command to completion with a deadline.
command_result run_command(const std::string& program, const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout = std::chrono::seconds(60));

}  // namespace troupe::test
