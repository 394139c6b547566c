// The protocol document (protocols/control/troupe.v1.md) is part of the
// contract: every JSON example must parse, and every op, event and public
// error code must have one.
#include <fstream>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "troupe/protocols/control/access.hpp"

namespace troupe::protocols::control {
namespace {

using nlohmann::json;

struct doc_examples {
  std::vector<json> examples;
  std::vector<std::string> failures;
};

doc_examples load_examples() {
  doc_examples out;
  std::ifstream in(std::string(TROUPE_SOURCE_DIR) + "/protocols/control/troupe.v1.md");
  EXPECT_TRUE(in) << "cannot open protocols/control/troupe.v1.md";
  std::string line, block;
  bool inside = false;
  int line_no = 0, start = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!inside && line.rfind("```json", 0) == 0) {
      inside = true;
      start = line_no;
      block.clear();
    } else if (inside && line.rfind("```", 0) == 0) {
      inside = false;
      try {
        out.examples.push_back(json::parse(block));
      } catch (const json::parse_error& e) {
        out.failures.push_back("example at line " + std::to_string(start) + ": " + e.what());
      }
    } else if (inside) {
      block += line + "\n";
    }
  }
  EXPECT_FALSE(inside) << "unterminated ```json block starting at line " << start;
  return out;
}

TEST(protocol_doc, every_json_example_parses) {
  auto doc = load_examples();
  EXPECT_GE(doc.examples.size(), 30u);
  for (const auto& f : doc.failures) ADD_FAILURE() << f;
}

TEST(protocol_doc, documents_every_op_event_and_error_code) {
  auto doc = load_examples();
  std::set<std::string> ops, events, codes;
  std::size_t batches = 0;
  for (const auto& e : doc.examples) {
    if (!e.is_object()) continue;
    // A batched frame: events in order, each a full event frame, seqs without holes.
    if (e.contains("events")) {
      ++batches;
      ASSERT_TRUE(e["events"].is_array());
      ASSERT_FALSE(e["events"].empty());
      std::int64_t prev = -1;
      for (const auto& ev : e["events"]) {
        ASSERT_TRUE(ev.contains("event") && ev.contains("seq") && ev.contains("ts") && ev.contains("data")) << ev;
        if (prev >= 0) {
          EXPECT_EQ(ev["seq"].get<std::int64_t>(), prev + 1) << e;
        }
        prev = ev["seq"].get<std::int64_t>();
        events.insert(ev["event"].get<std::string>());
      }
    }
    if (e.contains("op") && e["op"].is_string()) ops.insert(e["op"].get<std::string>());
    if (e.contains("event") && e["event"].is_string()) events.insert(e["event"].get<std::string>());
    if (e.contains("error") && e["error"].is_object() && e["error"].contains("code"))
      codes.insert(e["error"]["code"].get<std::string>());
  }
  EXPECT_GE(batches, 1u) << "the batched event frame has no example";
  for (const auto& rule : op_table())
    EXPECT_TRUE(ops.count(std::string(rule.op))) << "op '" << rule.op << "' has no example request";
  for (const char* ev : {"snapshot", "task.update", "agent.status", "decision.pending", "decision.resolved",
                         "llm.call", "system.metrics", "stream.gap"})
    EXPECT_TRUE(events.count(ev)) << "event '" << ev << "' has no example";
  for (auto code : {base::errc::bad_request, base::errc::unauthorized, base::errc::forbidden, base::errc::not_found,
                    base::errc::conflict, base::errc::overloaded, base::errc::unavailable,
                    base::errc::budget_exceeded, base::errc::internal})
    EXPECT_TRUE(codes.count(std::string(base::to_string(code))))
        << "error code '" << base::to_string(code) << "' has no example";
}

}  // namespace
}  // namespace troupe::protocols::control
