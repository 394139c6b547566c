#pragma once
/// Latency and size histograms for /metrics: fixed buckets, recorded with a
/// few relaxed atomic increments (no lock, no allocation), read by the metrics
/// scrape and written out in the Prometheus text format
/// (`_bucket{le=...}`, `_sum`, `_count`).
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::base {

class histogram {
 public:
  /// `bounds`: the buckets' upper bounds, ascending (+Inf is implicit).
  explicit histogram(std::vector<double> bounds);
  histogram(const histogram&) = delete;
  histogram& operator=(const histogram&) = delete;

  /// Any thread.
  void observe(double value) noexcept;

  struct counts {
    std::vector<std::uint64_t> cumulative;  ///< per bound, then +Inf
    double sum = 0;
    std::uint64_t count = 0;
  };
  /// Any thread; each figure is exact, together they may be a few
  /// observations apart (a scrape during recording).
  counts read() const;
  const std::vector<double>& bounds() const { return bounds_; }

  /// Appends the series of one histogram: `labels` is `a="x",b="y"` or empty.
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  /// Appends the `# HELP` and `# TYPE ... histogram` lines.
  static void render_header(std::string& out, std::string_view name, std::string_view help);

  /// Seconds, 1 ms to 2 min: LLM calls and steps.
  static std::vector<double> call_seconds();
  /// Seconds, 10 ms to 1 h: whole tasks.
  static std::vector<double> task_seconds();
  /// Seconds, 100 µs to 5 s: store commits.
  static std::vector<double> commit_seconds();
  /// Counts 1 to 4096 in powers of two: batch sizes.
  static std::vector<double> sizes();

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // not cumulative; bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<std::uint64_t> count_{0};
};

/// Histograms keyed by two label values (e.g. provider and model), created on
/// first use. Looking up an existing one takes a shared lock and no allocation.
class histogram_pair_family {
 public:
  explicit histogram_pair_family(std::vector<double> bounds) : bounds_(std::move(bounds)) {}
  histogram& at(std::string_view first, std::string_view second);
  /// Appends every series; `prefix_labels` (e.g. `team="x"`) goes first.
  void render(std::string& out, std::string_view name, std::string_view prefix_labels,
              std::string_view first_label, std::string_view second_label) const;

 private:
  std::vector<double> bounds_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::map<std::string, std::unique_ptr<histogram>, std::less<>>, std::less<>> map_;
};

/// Escapes a label value for the Prometheus text format (\\, ", newline).
std::string prometheus_label(std::string_view value);

}  // namespace troupe::base
