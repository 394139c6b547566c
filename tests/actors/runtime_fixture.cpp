#include "runtime_fixture.hpp"

#include <future>

namespace troupe::test {

base::result<nlohmann::json> call(host::runtime& rt, const std::string& op, nlohmann::json args,
                                  std::chrono::milliseconds timeout) {
  auto p = std::make_shared<std::promise<base::result<nlohmann::json>>>();
  auto f = p->get_future();
  rt.call(protocols::principal{}, op, std::move(args), [p](base::result<nlohmann::json> r) { p->set_value(std::move(r)); });
  if (f.wait_for(timeout) != std::future_status::ready)
    return base::fail(base::errc::timeout, "no reply to '" + op + "' within the test deadline");
  return f.get();
}

event_log::event_log(host::runtime& rt) {
  token_ = rt.listen([this](const std::shared_ptr<const protocols::event>& ev) {
    std::lock_guard guard{mutex_};
    events_.emplace_back(ev->name, ev->data);
    if (ev->name == "task.update" && ev->data.value("what", "") == "finished") {
      terminal_[ev->task] = ev->data;
      order_.push_back(ev->task);
    }
    cv_.notify_all();
  });
}

nlohmann::json event_log::wait_terminal(const std::string& id, std::chrono::milliseconds timeout) {
  std::unique_lock lock{mutex_};
  if (!cv_.wait_for(lock, timeout, [&] { return terminal_.count(id) > 0; })) {
    ADD_FAILURE() << "task " << id << " did not finish in time";
    return {};
  }
  return terminal_[id];
}

bool event_log::wait_terminal_count(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock{mutex_};
  return cv_.wait_for(lock, timeout, [&] { return terminal_.size() >= n; });
}

nlohmann::json event_log::wait_event(const std::string& name, const std::function<bool(const nlohmann::json&)>& pred,
                                     std::chrono::milliseconds timeout) {
  std::unique_lock lock{mutex_};
  nlohmann::json found;
  cv_.wait_for(lock, timeout, [&] {
    for (const auto& [n, d] : events_)
      if (n == name && pred(d)) {
        found = d;
        return true;
      }
    return false;
  });
  if (found.is_null()) ADD_FAILURE() << "no " << name << " event in time";
  return found;
}

std::vector<std::string> event_log::finish_order() {
  std::lock_guard guard{mutex_};
  return order_;
}

std::size_t event_log::count(const std::string& name, const std::function<bool(const nlohmann::json&)>& pred) {
  std::lock_guard guard{mutex_};
  std::size_t n = 0;
  for (const auto& [en, d] : events_)
    if (en == name && pred(d)) ++n;
  return n;
}

config::config load(const std::string& text) {
  auto r = config::load_config_text(text);
  std::string problems;
  for (const auto& p : r.problems) problems += p.path + ": " + p.message + "\n";
  EXPECT_TRUE(r.cfg) << problems;
  return r.cfg ? *r.cfg : config::config{};
}

}  // namespace troupe::test
