// fake-llm: the fake provider as a process, for integration tests and benches.
// Prints the bound port on the first line of stdout, then serves until SIGINT or
// SIGTERM.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "troupe/fake_llm/fake_llm.hpp"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: fake-llm [--port N] [--threads N] [--latency-ms N] [--error-500 P] [--error-429 P]\n"
               "                [--retry-after-ms N] [--retry-after-date] [--hang] [--malformed-json] [--truncated-stream]\n"
               "                [--status N] [--key KEY] [--token-delay-ms N] [--ignore-stream] [--seed N]\n");
}

}  // namespace

int main(int argc, char** argv) {
  troupe::fake_llm::fake_knobs k;
  long port = 0, threads = 1;
  unsigned long long seed = 42;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fake-llm: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--port") port = std::atol(next());
    else if (a == "--threads") threads = std::atol(next());
    else if (a == "--latency-ms") k.latency_ms = std::atoll(next());
    else if (a == "--error-500") k.error_rate_500 = std::atof(next());
    else if (a == "--error-429") k.error_rate_429 = std::atof(next());
    else if (a == "--retry-after-ms") k.retry_after_ms = std::atoll(next());
    else if (a == "--retry-after-date") k.retry_after_date = true;
    else if (a == "--hang") k.hang = true;
    else if (a == "--malformed-json") k.malformed_json = true;
    else if (a == "--truncated-stream") k.truncated_stream = true;
    else if (a == "--status") k.status_override = std::atoi(next());
    else if (a == "--key") k.expected_key = next();
    else if (a == "--token-delay-ms") k.token_delay_ms = std::atoll(next());
    else if (a == "--ignore-stream") k.ignore_stream = true;
    else if (a == "--seed") seed = std::strtoull(next(), nullptr, 10);
    else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "fake-llm: unknown argument '%s'\n", argv[i]);
      usage();
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "fake-llm: --port must be 0-65535\n");
    return 2;
  }
  // Block the signals before any thread starts so that only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  troupe::fake_llm::fake_llm_server server;
  server.set_knobs(k);
  server.set_seed(seed);
  auto bound = server.start(static_cast<std::uint16_t>(port), static_cast<int>(threads));
  if (!bound) {
    std::fprintf(stderr, "%s\n", bound.error().message.c_str());
    return 1;
  }
  std::printf("%u\n", static_cast<unsigned>(*bound));
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  server.stop();
  return 0;
}
