#include "troupe/protocols/llm/sse_parser.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace troupe::protocols::llm {
namespace {

std::vector<sse_event> parse_in_pieces(std::string_view text, std::size_t piece) {
  sse_parser p;
  std::vector<sse_event> out;
  for (std::size_t i = 0; i < text.size(); i += piece)
    EXPECT_TRUE(p.feed(text.substr(i, piece), [&](const sse_event& e) {
      out.push_back(e);
      return true;
    }));
  return out;
}

TEST(sse_parser, splits_events_whatever_the_read_boundaries) {
  std::string text =
      "event: message_start\ndata: {\"a\":1}\n\n: keep-alive comment\n\ndata: x\r\ndata: y\r\n\r\ndata:[DONE]\n\n";
  for (std::size_t piece : {1u, 2u, 3u, 7u, 1000u}) {
    auto events = parse_in_pieces(text, piece);
    ASSERT_EQ(events.size(), 3u) << "piece " << piece;
    EXPECT_EQ(events[0].event, "message_start");
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[1].event, "");
    EXPECT_EQ(events[1].data, "x\ny");
    EXPECT_EQ(events[2].data, "[DONE]");
  }
}

TEST(sse_parser, holds_an_unterminated_event_back) {
  sse_parser p;
  int n = 0;
  EXPECT_TRUE(p.feed("data: partial\n", [&](const sse_event&) { return ++n, true; }));
  EXPECT_EQ(n, 0);
  EXPECT_TRUE(p.has_partial());
  EXPECT_TRUE(p.feed("\n", [&](const sse_event&) { return ++n, true; }));
  EXPECT_EQ(n, 1);
  EXPECT_FALSE(p.has_partial());
}

TEST(sse_parser, stops_when_the_callback_says_so_and_on_huge_lines) {
  sse_parser p;
  EXPECT_FALSE(p.feed("data: a\n\ndata: b\n\n", [](const sse_event&) { return false; }));
  sse_parser q;
  q.max_line_bytes = 16;
  EXPECT_FALSE(q.feed(std::string(100, 'x'), [](const sse_event&) { return true; }));
}

}  // namespace
}  // namespace troupe::protocols::llm
