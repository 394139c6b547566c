// Entry points: parse (comments and trailing commas allowed), then run every
// pass so the user sees all problems of a config at once.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "sections.hpp"

namespace troupe::config {
namespace {

using detail::json;

/// Index of the next character after `i` that is not whitespace or a comment.
std::size_t next_significant(const std::string& t, std::size_t i) {
  while (i < t.size()) {
    if (std::isspace(static_cast<unsigned char>(t[i]))) {
      ++i;
    } else if (t.compare(i, 2, "//") == 0) {
      const auto nl = t.find('\n', i);
      i = nl == std::string::npos ? t.size() : nl + 1;
    } else if (t.compare(i, 2, "/*") == 0) {
      const auto end = t.find("*/", i + 2);
      i = end == std::string::npos ? t.size() : end + 2;
    } else {
      break;
    }
  }
  return i;
}

/// nlohmann 3.11 has no trailing-comma option: blank out a comma that is followed
/// by ']' or '}' (outside strings and comments). Replacing it with a space keeps
/// byte offsets, so parse errors still point at the right line and column.
std::string blank_trailing_commas(std::string t) {
  enum class state { normal, string, line_comment, block_comment } st = state::normal;
  char last = 0;  // last significant character in normal state
  for (std::size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    switch (st) {
      case state::string:
        if (c == '\\')
          ++i;
        else if (c == '"')
          st = state::normal;
        break;
      case state::line_comment:
        if (c == '\n') st = state::normal;
        break;
      case state::block_comment:
        if (c == '*' && i + 1 < t.size() && t[i + 1] == '/') {
          st = state::normal;
          ++i;
        }
        break;
      case state::normal:
        if (c == '"') {
          st = state::string;
          last = c;
        } else if (t.compare(i, 2, "//") == 0) {
          st = state::line_comment;
          ++i;
        } else if (t.compare(i, 2, "/*") == 0) {
          st = state::block_comment;
          ++i;
        } else if (c == ',') {
          const std::size_t n = next_significant(t, i + 1);
          // "[,]" or ",," stay errors: only a comma after a value may trail.
          const bool after_value = last != '[' && last != '{' && last != ',' && last != 0;
          if (n < t.size() && (t[n] == ']' || t[n] == '}') && after_value)
            t[i] = ' ';
          else
            last = c;
        } else if (!std::isspace(static_cast<unsigned char>(c))) {
          last = c;
        }
        break;
    }
  }
  return t;
}

/// nlohmann keeps the last of two equal keys in an object without a word; a
/// parser callback tracks the path so the duplicate can be reported instead.
class duplicate_key_finder {
 public:
  explicit duplicate_key_finder(std::vector<problem>& out) : out_(out) {}

  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        frames_.push_back({true, {}, {}, 0});
        break;
      case json::parse_event_t::array_start:
        frames_.push_back({false, {}, {}, 0});
        break;
      case json::parse_event_t::key:
        frames_.back().key = parsed.get<std::string>();
        if (!frames_.back().keys.insert(frames_.back().key).second)
          out_.push_back({path(), "duplicate key " + detail::quote(frames_.back().key) +
                                      " (only the last one would count)"});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        next_item();
        break;
      case json::parse_event_t::value:
        next_item();
        break;
    }
    return true;
  }

 private:
  struct frame {
    bool object;
    std::set<std::string> keys;
    std::string key;
    std::size_t index;
  };

  void next_item() {
    if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
  }

  std::string path() const {
    std::string p;
    for (const frame& f : frames_)
      p = f.object ? detail::member_path(p, f.key) : p + "[" + std::to_string(f.index) + "]";
    return p;
  }

  std::vector<problem>& out_;
  std::vector<frame> frames_;
};

/// "invalid JSON at line L, column C: <what the parser said>".
problem parse_problem(const std::string& text, const json::parse_error& e) {
  // e.byte counts characters read; the offending one is at e.byte - 1.
  const std::size_t at = e.byte == 0 ? 0 : std::min<std::size_t>(e.byte - 1, text.size());
  std::size_t line = 1, line_start = 0;
  for (std::size_t i = 0; i < at; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  std::string detail = e.what();
  // Drop nlohmann's "[json.exception.parse_error.101] parse error at line 1, column 2: " prefix.
  if (const auto col = detail.find("column "); col != std::string::npos)
    if (const auto colon = detail.find(": ", col); colon != std::string::npos)
      detail = detail.substr(colon + 2);
  return {"", "invalid JSON at line " + std::to_string(line) + ", column " +
                  std::to_string(at - line_start + 1) + ": " + detail};
}

}  // namespace

load_result load_config_text(const std::string& text,
                             const std::map<std::string, std::string>* env) {
  load_result out;
  json root;
  try {
    root = json::parse(blank_trailing_commas(text), duplicate_key_finder(out.problems),
                       /*allow_exceptions=*/true,
                       /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    out.problems.clear();  // duplicates found before the syntax error would only distract
    out.problems.push_back(parse_problem(text, e));
    return out;
  }
  detail::reader r(out.problems);
  if (!root.is_object()) {
    r.add("", "expected an object at the top level, got " + detail::json_type_name(root));
    return out;
  }
  config cfg;
  r.object(root, detail::where{"", ""});
  detail::load_top(r, root, cfg);
  detail::load_providers(r, root, cfg);
  detail::load_models(r, root, cfg);
  detail::load_agents(r, root, cfg);
  detail::load_teams(r, root, cfg);
  detail::check_references(r, cfg);
  detail::check_workflows(r, cfg);
  detail::resolve_env(r, cfg, env);
  detail::collect_warnings(cfg, out.warnings);
  if (out.problems.empty()) out.cfg = std::move(cfg);
  return out;
}

load_result load_config_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return {std::nullopt,
            {{"", "cannot read config file " + detail::quote(path) + ": it is a directory"}},
            {}};
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string why =
        errno != 0 ? std::strerror(errno) : "cannot open";  // NOLINT(concurrency-mt-unsafe)
    return {
        std::nullopt, {{"", "cannot read config file " + detail::quote(path) + ": " + why}}, {}};
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  load_result out = load_config_text(buf.str());
  if (out.cfg) out.cfg->source_path = path;
  return out;
}

base::result<config> load_config(const std::string& path) {
  load_result r = load_config_file(path);
  if (r.cfg) return std::move(*r.cfg);
  std::string message = "config " + detail::quote(path) + " has " +
                        std::to_string(r.problems.size()) +
                        (r.problems.size() == 1 ? " problem" : " problems") + ":";
  for (const auto& p : r.problems) message += "\n" + to_string(p);
  return base::fail(base::errc::invalid_config, std::move(message));
}

}  // namespace troupe::config
