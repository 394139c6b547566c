#include "troupe/protocols/control/ws_protocol.hpp"

#include <algorithm>
#include <charconv>

#include "troupe/base/clock.hpp"

namespace troupe::protocols::control {

using nlohmann::json;

namespace {
// Messages may quote client bytes that are not UTF-8 (a parse error's "last
// read"); replace them rather than throw while answering.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

tl::unexpected<frame_error> frame_fail(json id, std::string message) {
  return tl::unexpected<frame_error>(
      frame_error{std::move(id), base::make_error(base::errc::bad_request, std::move(message))});
}
}  // namespace

tl::expected<ws_request, frame_error> parse_request_frame(std::string_view text) {
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what = what.substr(pos + 2);
    return frame_fail(nullptr, "frame is not valid JSON: " + what + " at byte " +
                                   std::to_string(e.byte));
  }
  if (!doc.is_object())
    return frame_fail(nullptr, std::string("frame must be a JSON object, got ") + doc.type_name());
  ws_request req;
  auto id = doc.find("id");
  if (id == doc.end()) return frame_fail(nullptr, "frame has no 'id' (integer or string)");
  if (!id->is_number_integer() && !id->is_string())
    return frame_fail(nullptr, std::string("field 'id' must be an integer or a string, got ") +
                                   id->type_name());
  req.id = *id;
  auto op = doc.find("op");
  if (op == doc.end()) return frame_fail(req.id, "frame has no 'op' (string)");
  if (!op->is_string())
    return frame_fail(req.id, std::string("field 'op' must be a string, got ") + op->type_name());
  req.op = op->get<std::string>();
  doc.erase("id");
  doc.erase("op");
  req.args = std::move(doc);
  return req;
}

std::string render_ok(const json& id, const json& result) {
  std::string out = R"({"id":)";
  out += dump(id);
  out += R"(,"ok":true,"result":)";
  out += dump(result);
  out += '}';
  return out;
}

std::string render_error(const json& id, const base::error& e) {
  json doc = {{"id", id},
              {"ok", false},
              {"error", {{"code", base::to_string(e.code)}, {"message", e.message}}}};
  return dump(doc);
}

std::shared_ptr<const prepared_event> prepare_event(std::shared_ptr<const event> ev) {
  auto p = std::make_shared<prepared_event>();
  p->text = R"({"event":)" + dump(json(ev->name)) + R"(,"seq":)";
  p->seq_at = static_cast<std::uint32_t>(p->text.size());
  const auto ts = ev->ts_ms > 0 ? ev->ts_ms : base::now_ms();
  p->text += R"(,"ts":")" + base::format_rfc3339(ts) + R"(","data":)" +
             (ev->data.is_null() ? std::string("{}") : dump(ev->data)) + "}";
  p->topic = topic_bit(ev->topic);
  p->source = std::move(ev);
  return p;
}

std::string render_event(const prepared_event& ev, std::uint64_t seq) {
  std::string out;
  out.reserve(ev.text.size() + 20);
  append_event(out, ev, seq);
  return out;
}

void append_event(std::string& out, const prepared_event& ev, std::uint64_t seq) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, seq);
  const std::string_view text(ev.text);
  out.append(text.substr(0, ev.seq_at));
  out.append(digits, r.ptr);
  out.append(text.substr(ev.seq_at));
}

std::string render_gap(std::uint64_t seq, std::uint64_t dropped, std::int64_t ts_ms) {
  return R"({"event":"stream.gap","seq":)" + std::to_string(seq) + R"(,"ts":")" +
         base::format_rfc3339(ts_ms) + R"(","data":{"dropped":)" + std::to_string(dropped) + "}}";
}

std::string render_snapshot(std::uint64_t seq, const json& data, std::int64_t ts_ms) {
  return R"({"event":"snapshot","seq":)" + std::to_string(seq) + R"(,"ts":")" +
         base::format_rfc3339(ts_ms) + R"(","data":)" + dump(data) + "}";
}

bool is_topic(std::string_view topic) {
  return topic == "agents" || topic == "tasks" || topic == "decisions" || topic == "llm" ||
         topic == "system";
}

std::uint8_t topic_bit(std::string_view topic) {
  if (topic == "agents") return 1;
  if (topic == "tasks") return 2;
  if (topic == "decisions") return 4;
  if (topic == "llm") return 8;
  if (topic == "system") return 16;
  return 0;
}

namespace {
bool fields_match(const subscription_filter& f, const event& ev) {
  if (!f.team.empty() && ev.team != f.team) return false;
  if (!f.agent.empty() && ev.agent != f.agent) return false;
  if (!f.task.empty() && ev.task != f.task) return false;
  return true;
}
}  // namespace

bool subscription_filter::matches(const event& ev) const {
  if (topics.count(ev.topic) == 0) return false;
  return ev.topic == "system" || fields_match(*this, ev);
}

bool subscription_filter::matches(const prepared_event& ev) const {
  if ((topic_mask() & ev.topic) == 0) return false;
  return ev.topic == topic_bit("system") || fields_match(*this, *ev.source);
}

std::uint8_t subscription_filter::topic_mask() const {
  std::uint8_t m = 0;
  for (const auto& t : topics) m = static_cast<std::uint8_t>(m | topic_bit(t));
  return m;
}

base::result<subscription_filter> parse_subscription(const json& args) {
  subscription_filter f;
  auto topics = args.find("topics");
  if (topics == args.end() || !topics->is_array() || topics->empty())
    return base::fail(base::errc::bad_request,
                      "subscribe needs 'topics': a non-empty array of agents|tasks|decisions|llm|system");
  for (const auto& t : *topics) {
    if (!t.is_string() || !is_topic(t.get<std::string>()))
      return base::fail(base::errc::bad_request,
                        "unknown topic " + dump(t) + " in 'topics'; expected agents|tasks|decisions|llm|system");
    f.topics.insert(t.get<std::string>());
  }
  if (auto filter = args.find("filter"); filter != args.end() && !filter->is_null()) {
    if (!filter->is_object())
      return base::fail(base::errc::bad_request, "'filter' must be an object with team/agent/task");
    for (const auto& [key, value] : filter->items()) {
      if (key != "team" && key != "agent" && key != "task")
        return base::fail(base::errc::bad_request,
                          "unknown filter field 'filter." + key + "'; expected team, agent or task");
      if (!value.is_string())
        return base::fail(base::errc::bad_request, "'filter." + key + "' must be a string");
      (key == "team" ? f.team : key == "agent" ? f.agent : f.task) = value.get<std::string>();
    }
  }
  if (auto batch = args.find("batch"); batch != args.end()) {
    if (!batch->is_boolean())
      return base::fail(base::errc::bad_request,
                        std::string("'batch' must be true or false, got ") + batch->type_name());
    f.batch = batch->get<bool>();
  }
  return f;
}

token_bucket::token_bucket(double rate, double burst)
    : rate_(rate), burst_(std::max(1.0, burst)), tokens_(std::max(1.0, burst)),
      last_(std::chrono::steady_clock::now()) {}

bool token_bucket::take(std::chrono::steady_clock::time_point now) {
  if (rate_ <= 0) return true;  // 0 disables the limit
  const std::chrono::duration<double> elapsed = now - last_;
  last_ = now;
  tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

}  // namespace troupe::protocols::control
