#include "daemon_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>

extern char** environ;

namespace troupe::test {
namespace {

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

daemon_process::~daemon_process() {
  if (running()) kill_hard();
  if (reader_.joinable()) reader_.join();
  if (pidfd_ >= 0) ::close(pidfd_);
}

bool daemon_process::start(const std::string& program, const std::vector<std::string>& args,
                           const std::string& log_path, std::string& why) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    why = std::string("pipe2 failed: ") + std::strerror(errno);
    return false;
  }
  std::vector<std::string> storage;
  storage.push_back(program);
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 clears close-on-exec on the target, so only fds 1 and 2 reach the child.
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    why = "posix_spawn " + program + " failed: " + std::strerror(rc);
    return false;
  }
  pid_ = pid;
  exit_status_.reset();
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  {
    std::lock_guard lock{mu_};
    out_.clear();
    eof_ = false;
  }
  reader_ = std::thread([this, fd = fds[0], log_path] { read_loop(fd, log_path); });
  return true;
}

void daemon_process::read_loop(int fd, std::string log_path) {
  std::ofstream log;
  if (!log_path.empty()) log.open(log_path, std::ios::app);
  char buf[8192];
  for (;;) {
    const auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (log) log.write(buf, n).flush();
    std::lock_guard lock{mu_};
    out_.append(buf, static_cast<std::size_t>(n));
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock{mu_};
  eof_ = true;
  cv_.notify_all();
}

bool daemon_process::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout,
                                     std::size_t from) {
  std::unique_lock lock{mu_};
  return cv_.wait_for(
             lock, timeout,
             [&] {
               return (out_.size() > from && out_.find(needle, from) != std::string::npos) || eof_;
             }) &&
         out_.size() > from && out_.find(needle, from) != std::string::npos;
}

std::optional<std::uint16_t> daemon_process::wait_until_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
  };
  const std::string marker = "troupe listening on http://";
  if (!wait_for_output(marker, left())) return std::nullopt;
  if (!wait_for_output("ready pid=", left())) return std::nullopt;
  std::lock_guard lock{mu_};
  auto pos = out_.find(marker) + marker.size();
  auto colon = out_.find(':', pos);
  if (colon == std::string::npos) return std::nullopt;
  return static_cast<std::uint16_t>(std::stoul(out_.substr(colon + 1, 5)));
}

void daemon_process::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> daemon_process::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_status_) return exit_status_;
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = decode_status(status);
      break;
    }
    if (r < 0 && errno != EINTR) return std::nullopt;  // not our child (any more)
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    // A pidfd becomes readable when the child exits: wait on it instead of sleeping.
    // Without pidfd support, poll() with no fds just bounds the wait to 20 ms.
    pollfd p{pidfd_, POLLIN, 0};
    ::poll(pidfd_ >= 0 ? &p : nullptr, pidfd_ >= 0 ? 1 : 0,
           static_cast<int>(pidfd_ >= 0 ? left.count() : std::min<long long>(20, left.count())));
  }
  // The pipe ends when the child (its only writer) is gone: let the reader drain it.
  if (reader_.joinable()) reader_.join();
  return exit_status_;
}

std::optional<int> daemon_process::kill_hard(std::chrono::milliseconds timeout) {
  signal(SIGKILL);
  return wait_exit(timeout);
}

std::string daemon_process::output() const {
  std::lock_guard lock{mu_};
  return out_;
}

std::size_t daemon_process::output_size() const {
  std::lock_guard lock{mu_};
  return out_.size();
}

command_result run_command(const std::string& program, const std::vector<std::string>& args,
                           std::chrono::milliseconds timeout) {
  command_result r;
  daemon_process p;
  std::string why;
  if (!p.start(program, args, {}, why)) {
    r.output = why;
    return r;
  }
  auto code = p.wait_exit(timeout);
  if (!code) p.kill_hard();
  r.exit_code = code ? *code : -1;
  r.output = p.output();
  return r;
}

}  // namespace troupe::test
