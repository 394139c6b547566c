#pragma once
// Shared plumbing of the client subcommands (private to runtime/host).
#include <map>
#include <set>
#include <string>
#include <vector>

#include "troupe/base/result.hpp"
#include "troupe/host/client_commands.hpp"
#include "troupe/protocols/client/http_client.hpp"

namespace troupe::host {

int run_watch(const std::vector<std::string>& args, client_io& io);

namespace detail {

struct parsed_args {
  std::map<std::string, std::string> values;  // "--team" -> "newsroom"
  std::set<std::string> flags;                // "--wait"
  std::vector<std::string> positional;
  std::string error;                          // set on a usage error
};

// "--name value", "--name=value" and flags; "--" ends the options.
parsed_args parse_args(const std::vector<std::string>& args, const std::set<std::string>& with_value,
                       const std::set<std::string>& flags);

struct connection_settings {
  std::string url = "http://127.0.0.1:7700";
  std::string token;
};

// --url / --token, else $TROUPE_URL / $TROUPE_TOKEN, else the defaults.
connection_settings settings_from(const parsed_args& p, client_io& io);
int usage_error(client_io& io, const std::string& message, const char* usage);
int fail(client_io& io, const base::error& e);
std::string url_escape(const std::string& s);
base::error error_from_reply(const protocols::client::http_reply& reply);

}  // namespace detail
}  // namespace troupe::host
