#pragma once
/// The troupe.v1 WebSocket protocol without sockets: request frame parsing,
/// response and event rendering, subscription filters and the per-connection
/// rate limiter. Everything here is pure or owned by one session; the sockets
/// live in control_server.cpp.
#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "troupe/base/result.hpp"
#include "troupe/protocols/control_port.hpp"

namespace troupe::protocols::control {

/// Protocol name sent in the hello result.
inline constexpr std::string_view protocol_name = "troupe.v1";

/// A decoded request frame: {"id": 7, "op": "...", ...args}.
struct ws_request {
  nlohmann::json id;    ///< integer or string, echoed in the response
  std::string op;
  nlohmann::json args;  ///< the frame's other fields
};

/// Why a frame was refused, with the id when it could be read (null otherwise).
struct frame_error {
  nlohmann::json id;
  base::error err;
};

/// Decodes a text frame. Errors (errc::bad_request) say what was wrong: not
/// JSON (with the byte offset), not an object, id missing or not an
/// integer/string, op missing or not a string.
tl::expected<ws_request, frame_error> parse_request_frame(std::string_view text);

/// {"id":ID,"ok":true,"result":RESULT}
std::string render_ok(const nlohmann::json& id, const nlohmann::json& result);
/// {"id":ID,"ok":false,"error":{"code","message"}}
std::string render_error(const nlohmann::json& id, const base::error& e);

/// An event made ready for many subscribers: the name, timestamp and data are
/// serialised once; each connection only splices in its own seq.
struct prepared_event {
  std::shared_ptr<const event> source;
  /// {"event":"NAME","seq":,"ts":"...","data":{...}} with the seq left out at
  /// `seq_at` (one buffer: a subscriber renders it with two copies).
  std::string text;
  std::uint32_t seq_at = 0;
  std::uint8_t topic = 0;  ///< topic_bit(source->topic)
};

/// Serialises `ev` once (called on the runtime's listener thread).
std::shared_ptr<const prepared_event> prepare_event(std::shared_ptr<const event> ev);
/// The frame of a prepared event for one connection.
std::string render_event(const prepared_event& ev, std::uint64_t seq);
/// Appends the frame of `ev` with `seq` to `out` (no allocation once `out`
/// has grown to its working size).
void append_event(std::string& out, const prepared_event& ev, std::uint64_t seq);
/// {"event":"stream.gap","seq":N,"ts":...,"data":{"dropped":K}}
std::string render_gap(std::uint64_t seq, std::uint64_t dropped, std::int64_t ts_ms);
/// {"event":"snapshot","seq":N,"ts":...,"data":{...}}
std::string render_snapshot(std::uint64_t seq, const nlohmann::json& data, std::int64_t ts_ms);

/// Topics a client may subscribe to.
bool is_topic(std::string_view topic);
/// One bit per topic (agents 1, tasks 2, decisions 4, llm 8, system 16); 0 for
/// anything else. Lets a session test a topic without comparing strings.
std::uint8_t topic_bit(std::string_view topic);

/// One subscription: a set of topics and an optional filter. A filter field that
/// is set matches only events carrying the same value; "system" events ignore
/// filters (they concern the whole daemon).
struct subscription_filter {
  std::set<std::string> topics;
  std::string team, agent, task;
  bool batch = false;  ///< "batch": true asks for several events per frame
  bool matches(const event& ev) const;
  /// Same as matches(*ev.source), with the topic tested as a bit.
  bool matches(const prepared_event& ev) const;
  /// The topic_bit()s of `topics`, or-ed.
  std::uint8_t topic_mask() const;
};

/// Reads the args of a subscribe op: {"topics":[...], "filter":{"team","agent","task"},
/// "batch": bool}. errc::bad_request names the offending field.
base::result<subscription_filter> parse_subscription(const nlohmann::json& args);

/// Token bucket: `rate` tokens per second, at most `burst` stored. Owned by one
/// session (not thread-safe).
class token_bucket {
 public:
  token_bucket(double rate, double burst);
  /// Takes one token; false when the bucket is empty.
  bool take(std::chrono::steady_clock::time_point now);

 private:
  double rate_, burst_, tokens_;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace troupe::protocols::control
