// The troupe binary: subcommand dispatch.
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "troupe/config/config.hpp"
#include "troupe/host/client_commands.hpp"
#include "troupe/host/daemon.hpp"

namespace {

constexpr const char* usage = R"(troupe: a daemon that runs teams of LLM agents as supervised actors

usage:
  troupe run CONFIG [--log-format text|json] [--log-level LEVEL] [--listen HOST:PORT] [--store URL]
  troupe check CONFIG
  troupe migrate (CONFIG | --store URL)
  troupe submit (--team T | --agent A) [--priority P] [--wait] [--json] INPUT
  troupe watch [--json]
  troupe decide DECISION_ID OPTION [--comment TEXT]
  troupe cancel TASK_ID
  troupe version

Client commands take --url (default $TROUPE_URL or http://127.0.0.1:7700) and --token ($TROUPE_TOKEN).
)";

int check(const std::string& path) {
  auto loaded = troupe::config::load_config_file(path);
  std::cout << troupe::config::check_report(loaded);
  return loaded.cfg ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    std::cout << usage;
    return args.empty() ? 2 : 0;
  }
  auto cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  if (cmd == "version" || cmd == "--version") {
    std::cout << "troupe 0.1.0\n";
    return 0;
  }
  if (cmd == "check") {
    if (rest.size() != 1) {
      std::cerr << "usage: troupe check CONFIG\n";
      return 2;
    }
    return check(rest[0]);
  }
  if (cmd == "run") {
    troupe::host::run_options opts;
    for (std::size_t i = 0; i < rest.size(); ++i) {
      auto need = [&](const char* flag) -> const std::string* {
        if (i + 1 >= rest.size()) {
          std::cerr << "troupe run: " << flag << " needs a value\n";
          return nullptr;
        }
        return &rest[++i];
      };
      const std::string* v = nullptr;
      if (rest[i] == "--log-format") {
        if (!(v = need("--log-format"))) return 2;
        opts.log_format = *v;
      } else if (rest[i] == "--log-level") {
        if (!(v = need("--log-level"))) return 2;
        opts.log_level = *v;
      } else if (rest[i] == "--listen") {
        if (!(v = need("--listen"))) return 2;
        opts.listen_override = *v;
      } else if (rest[i] == "--store") {
        if (!(v = need("--store"))) return 2;
        opts.store_override = *v;
      } else if (rest[i].rfind("--", 0) == 0) {
        std::cerr << "troupe run: unknown option " << rest[i] << '\n';
        return 2;
      } else if (opts.config_path.empty()) {
        opts.config_path = rest[i];
      } else {
        std::cerr << "troupe run: unexpected argument " << rest[i] << '\n';
        return 2;
      }
    }
    if (opts.config_path.empty()) {
      std::cerr << "usage: troupe run CONFIG [--log-format text|json] [--log-level LEVEL]\n";
      return 2;
    }
    return troupe::host::run_daemon(opts);
  }
  if (cmd == "migrate") {
    if (rest.size() == 2 && rest[0] == "--store") return troupe::host::run_migrate(rest[1]);
    if (rest.size() == 1) {
      auto loaded = troupe::config::load_config_file(rest[0]);
      if (!loaded.cfg) return check(rest[0]);
      return troupe::host::run_migrate(loaded.cfg->store);
    }
    std::cerr << "usage: troupe migrate (CONFIG | --store URL)\n";
    return 2;
  }
  if (cmd == "submit" || cmd == "watch" || cmd == "decide" || cmd == "cancel")
    return troupe::host::run_client_command(cmd, rest);
  std::cerr << "troupe: unknown command '" << cmd << "'\n\n" << usage;
  return 2;
}
