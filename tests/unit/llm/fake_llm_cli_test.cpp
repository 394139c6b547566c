// The fake-llm executable as other suites use it: flags in, port on the first
// line of stdout, serves until SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "one_call.hpp"

namespace troupe::protocols::llm {
namespace {

using namespace std::chrono_literals;

TEST(fake_llm_cli, prints_its_port_serves_with_knobs_and_stops_on_sigterm) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(TROUPE_FAKE_LLM_BIN, TROUPE_FAKE_LLM_BIN, "--port", "0", "--latency-ms", "1", "--key", "k-1",
          "--status", "503", "--retry-after-ms", "5", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char c;
  while (read(out[0], &c, 1) == 1 && c != '\n') line.push_back(c);
  close(out[0]);
  ASSERT_FALSE(line.empty()) << "fake-llm printed no port";
  int port = std::stoi(line);
  ASSERT_GT(port, 0);

  config::provider p;
  p.name = "cli";
  p.kind = config::provider_kind::anthropic;
  p.base_url = "http://127.0.0.1:" + std::to_string(port);
  p.api_key = "k-1";
  p.retry = {2, 1, 1};
  auto res = test::one_call(p).result;
  ASSERT_FALSE(res);
  EXPECT_NE(res.error().message.find("HTTP 503"), std::string::npos) << res.error().message;
  EXPECT_NE(res.error().message.find("after 2 attempts"), std::string::npos) << res.error().message;

  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace troupe::protocols::llm
