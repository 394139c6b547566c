#include "troupe/base/histogram.hpp"

#include <algorithm>
#include <charconv>
#include <mutex>

namespace troupe::base {

namespace {
void append_number(std::string& out, double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}
}  // namespace

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  std::sort(bounds_.begin(), bounds_.end());
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double value) noexcept {
  const auto i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

histogram::counts histogram::read() const {
  counts c;
  c.cumulative.resize(bounds_.size() + 1);
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    c.cumulative[i] = running;
  }
  c.sum = sum_.load(std::memory_order_relaxed);
  // The +Inf bucket and _count must agree for Prometheus; take the buckets'.
  c.count = running;
  return c;
}

void histogram::render_header(std::string& out, std::string_view name, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" histogram\n");
}

void histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const auto c = read();
  const std::string sep = labels.empty() ? "" : ",";
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    out.append(name).append("_bucket{").append(labels).append(sep).append("le=\"");
    if (i < bounds_.size()) append_number(out, bounds_[i]);
    else out.append("+Inf");
    out.append("\"} ");
    append_number(out, c.cumulative[i]);
    out.push_back('\n');
  }
  const std::string braces = labels.empty() ? "" : "{" + std::string(labels) + "}";
  out.append(name).append("_sum").append(braces).push_back(' ');
  append_number(out, c.sum);
  out.push_back('\n');
  out.append(name).append("_count").append(braces).push_back(' ');
  append_number(out, c.count);
  out.push_back('\n');
}

std::vector<double> histogram::call_seconds() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}
std::vector<double> histogram::task_seconds() {
  return {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}
std::vector<double> histogram::commit_seconds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
}
std::vector<double> histogram::sizes() {
  std::vector<double> b;
  for (double v = 1; v <= 4096; v *= 2) b.push_back(v);
  return b;
}

histogram& histogram_pair_family::at(std::string_view first, std::string_view second) {
  {
    std::shared_lock lock(mu_);
    if (auto a = map_.find(first); a != map_.end())
      if (auto b = a->second.find(second); b != a->second.end()) return *b->second;
  }
  std::unique_lock lock(mu_);
  auto& inner = map_[std::string(first)];
  auto b = inner.find(second);
  if (b == inner.end()) b = inner.emplace(std::string(second), std::make_unique<histogram>(bounds_)).first;
  return *b->second;
}

void histogram_pair_family::render(std::string& out, std::string_view name, std::string_view prefix_labels,
                                   std::string_view first_label, std::string_view second_label) const {
  std::shared_lock lock(mu_);
  for (const auto& [a, inner] : map_)
    for (const auto& [b, h] : inner) {
      std::string labels(prefix_labels);
      if (!labels.empty()) labels += ",";
      labels.append(first_label).append("=\"").append(prometheus_label(a)).append("\",");
      labels.append(second_label).append("=\"").append(prometheus_label(b)).append("\"");
      h->render(out, name, labels);
    }
}

std::string prometheus_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char ch : value) {
    if (ch == '\\') out += "\\\\";
    else if (ch == '"') out += "\\\"";
    else if (ch == '\n') out += "\\n";
    else out += ch;
  }
  return out;
}

}  // namespace troupe::base
