#pragma once
/// Test helper: a client for one provider alone, one call, its result and how
/// long it took.
#include <chrono>
#include <future>
#include <utility>

#include "troupe/protocols/llm/llm_pool.hpp"

namespace troupe::protocols::llm::test {

struct call_result {
  base::result<base::llm_response> result;
  std::chrono::milliseconds elapsed;
};

/// Makes a client for `p` (named p.name), sends a one-message request for model
/// "m" (adjusted by `edit`, if given) and waits at most 30 s for the outcome.
template <class Edit>
call_result one_call(const config::provider& p, Edit edit) {
  using namespace std::chrono_literals;
  auto client = make_llm_client({{p.name, p}});
  base::llm_request r;
  r.provider = p.name;
  r.model = "m";
  r.messages = {{"user", "hello"}};
  edit(r);
  std::promise<base::result<base::llm_response>> done;
  auto f = done.get_future();
  auto t0 = std::chrono::steady_clock::now();
  client->call(r, nullptr, [&](base::result<base::llm_response> res) { done.set_value(std::move(res)); });
  if (f.wait_for(30s) != std::future_status::ready) return {base::fail(base::errc::internal, "test deadline"), 30s};
  auto res = f.get();
  return {std::move(res),
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)};
}

inline call_result one_call(const config::provider& p) {
  return one_call(p, [](base::llm_request&) {});
}

}  // namespace troupe::protocols::llm::test
