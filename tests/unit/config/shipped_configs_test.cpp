// Every config the project ships (examples/, config/) must pass validation, with
// each *_env variable it names given a distinct fake value.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "troupe/config/config.hpp"

namespace troupe::config {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> shipped_configs() {
  std::vector<fs::path> out;
  for (const char* dir : {"examples", "config"}) {
    const fs::path root = fs::path(TROUPE_SOURCE_DIR) / dir;
    if (!fs::exists(root)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".json" || ext == ".jsonc")) out.push_back(e.path());
    }
  }
  return out;
}

TEST(config_shipped, all_pass_validation) {
  const auto files = shipped_configs();
  if (files.empty()) GTEST_SKIP() << "no .json/.jsonc config under examples/ or config/ yet";
  const std::regex env_key(R"re("(token_env|api_key_env)"\s*:\s*"([^"]+)")re");
  for (const auto& f : files) {
    std::ifstream in(f);
    std::ostringstream buf;
    buf << in.rdbuf();
    const std::string text = buf.str();
    std::map<std::string, std::string> env;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), env_key);
         it != std::sregex_iterator(); ++it)
      env[(*it)[2]] = "fake-value-of-" + (*it)[2].str();
    const load_result r = load_config_text(text, &env);
    std::string all;
    for (const auto& p : r.problems) all += "  " + to_string(p) + "\n";
    EXPECT_TRUE(r.cfg) << f.lexically_relative(TROUPE_SOURCE_DIR) << ":\n" << all;
  }
}

}  // namespace
}  // namespace troupe::config
