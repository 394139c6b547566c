#pragma once
/// `troupe run`: the daemon in the foreground.
#include <string>

namespace troupe::host {

struct run_options {
  std::string config_path;
  std::string log_format = "text";
  std::string log_level = "info";
  std::string listen_override;  ///< --listen HOST:PORT replaces control.listen
  std::string store_override;   ///< --store URL replaces store
};

/// Runs until SIGTERM/SIGINT (graceful drain, exit 0) or a second signal (exit
/// at once). SIGHUP reloads the config (runtime::reload). Returns the exit code.
int run_daemon(const run_options& opts);

/// `troupe migrate`: creates or upgrades the store schema. Returns the exit code.
int run_migrate(const std::string& store_url);

}  // namespace troupe::host
