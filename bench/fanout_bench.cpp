// fanout_bench: how fast the control server fans events out to WebSocket
// subscribers. An in-process control_server with a minimal port; subscribers
// are asynchronous Beast clients on their own thread; an emitter thread paces
// events at a target rate. Latency is event creation -> receipt by a client
// (steady clock, same process).
//
//   fanout_bench [--quick] [--unbatched] [--io-threads N] [--subs N --rate R]
// Scenario 1: 1,000 subscribers at 10,000 events/s. Scenario 2: 100
// subscribers, rate raised step by step until delivery falls behind; prints
// the highest rate delivered completely (no stream.gap) with p99 under 100 ms.
// --subs/--rate run one case only (for profiling).
//
// Subscribers ask for batched frames ({"events":[...]}, troupe.v1 "batch"),
// as `troupe watch` does; --unbatched measures one event per frame instead.
// The client counts events from the seqs of the first and last element of a
// frame (the server numbers every event) and takes the latency of every
// event of every 4th frame (of each subscriber) from its creation time, into
// a histogram of 50 us buckets (p50/p99 are reported as the upper edge of
// their bucket). Each case starts with 0.5 s of warm-up at the same rate
// (1,000 fresh connections ramping their TCP buffers up): those events are
// delivered and counted but kept out of the histogram, and their worst
// latency is printed apart ("warm-up max").
//
// CPU: the server's share is the process CPU minus the client and emitter
// threads, so the load generator's cost (it shares the machine) is reported
// apart from the server's.
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <spdlog/spdlog.h>

#include "troupe/protocols/control/control_server.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using namespace troupe;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch()).count();
}

// Minimal port: replies with empty lists and broadcasts emitted events.
class bench_port : public protocols::control_port {
 public:
  void call(const protocols::principal&, const std::string&, nlohmann::json, protocols::reply_fn reply) override {
    reply(nlohmann::json::array());
  }
  std::shared_ptr<void> listen(protocols::event_fn fn) override {
    std::lock_guard lock(mu_);
    fns_.push_back(std::move(fn));
    return std::shared_ptr<void>(static_cast<void*>(this), [this](void*) {
      std::lock_guard inner(mu_);
      fns_.clear();
    });
  }
  std::string metrics_text() override { return {}; }
  void emit(const std::shared_ptr<const protocols::event>& ev) {
    std::lock_guard lock(mu_);
    for (auto& fn : fns_) fn(ev);
  }

 private:
  std::mutex mu_;
  std::vector<protocols::event_fn> fns_;
};

struct stats {
  // events and dropped are read by the main thread while the client runs.
  std::atomic<std::uint64_t> events{0}, dropped{0};
  // Only the client thread adds: no locked read-modify-write needed.
  static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t frames = 0, seq_errors = 0;
  std::int64_t last_ns = 0;  // receipt time of the latest event
  // Events created before this (the warm-up) are not in the histogram.
  std::atomic<std::int64_t> measure_from_ns{0};
  std::int64_t warmup_max_ns = 0;
  // Latency of every delivered event, in buckets of 50 us (the last one
  // collects everything from 5 s on); a histogram keeps the client cheap.
  static constexpr std::int64_t bucket_ns = 50000;
  std::vector<std::uint64_t> latency = std::vector<std::uint64_t>(100001);
  std::int64_t max_ns = 0;
  void record(std::int64_t created_ns, std::int64_t now) {
    const auto ns = now - created_ns;
    if (created_ns < measure_from_ns.load(std::memory_order_relaxed)) {
      warmup_max_ns = std::max(warmup_max_ns, ns);
      return;
    }
    max_ns = std::max(max_ns, ns);
    ++latency[static_cast<std::size_t>(std::clamp<std::int64_t>(ns / bucket_ns, 0, 100000))];
  }
};

bool batched_mode = true;
int io_threads = protocols::control::server_options{}.io_threads;  // the daemon's default

std::int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
std::int64_t process_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::uint64_t number_after(std::string_view text, std::size_t pos) {
  return static_cast<std::uint64_t>(std::strtoull(text.data() + pos, nullptr, 10));
}

class subscriber : public std::enable_shared_from_this<subscriber> {
 public:
  subscriber(asio::io_context& ioc, stats& s, std::atomic<int>& ready) : ws_(ioc), stats_(s), ready_(ready) {}
  int fd() { return beast::get_lowest_layer(ws_).socket().native_handle(); }
  bool subscribed() const { return subscribed_; }
  void start(const tcp::endpoint& ep) {
    beast::get_lowest_layer(ws_).async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return std::fprintf(stderr, "connect: %s\n", ec.message().c_str()), void();
      beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true));
      self->ws_.async_handshake("127.0.0.1", "/v1/ws", [self](beast::error_code e) {
        if (e) return std::fprintf(stderr, "handshake: %s\n", e.message().c_str()), void();
        self->out_ = batched_mode ? R"({"id":1,"op":"subscribe","topics":["tasks"],"batch":true})"
                                  : R"({"id":1,"op":"subscribe","topics":["tasks"]})";
        self->ws_.async_write(asio::buffer(self->out_), [self](beast::error_code ec2, std::size_t) {
          if (ec2) return std::fprintf(stderr, "subscribe: %s\n", ec2.message().c_str()), void();
          beast::get_lowest_layer(self->ws_).socket().non_blocking(true);
          self->subscribed_ = true;
        });
      });
    });
  }
  void close() {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().close(ec);
  }
  // After the subscribe request the subscriber reads frames straight from the
  // socket with a minimal parser (server frames are unmasked; no UTF-8 check),
  // so the load generator leaves as much of the 2 cores as possible to the
  // server: the client thread's own edge-triggered epoll loop calls this when
  // the socket turns readable (asio's async_wait would re-arm the descriptor
  // with an epoll_ctl per frame). It reads into one buffer shared by all
  // subscribers of the client thread (hot in cache) until the socket is
  // empty; only a partial frame at the end is kept per subscriber.
  void drain() {
    static thread_local std::vector<char> buf(1 << 20);
    for (;;) {
      const auto have = carry_.size();
      if (buf.size() < have + 64 * 1024) buf.resize(2 * (have + 64 * 1024));
      if (have > 0) std::memcpy(buf.data(), carry_.data(), have);
      const auto n = ::recv(fd(), buf.data() + have, buf.size() - have, 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;  // carry_ keeps the partial frame
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n < 0) std::fprintf(stderr, "subscriber read: %s\n", std::strerror(errno));
        return;
      }
      const auto end = have + static_cast<std::size_t>(n);
      const auto used = parse(buf.data(), end);
      carry_.assign(buf.data() + used, end - used);
    }
  }

 private:
  // Handles the whole frames in data[0, end); returns the bytes they took.
  std::size_t parse(const char* data, std::size_t end) {
    std::size_t pos = 0;
    for (;;) {
      const auto avail = end - pos;
      if (avail < 2) break;
      const auto* b = reinterpret_cast<const unsigned char*>(data + pos);
      std::size_t len = b[1] & 0x7f, header = 2;
      if (len == 126) {
        if (avail < 4) break;
        len = (std::size_t(b[2]) << 8) | b[3];
        header = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int k = 0; k < 8; ++k) len = (len << 8) | b[2 + k];
        header = 10;
      }
      if (avail < header + len) break;
      if ((b[0] & 0x0f) == 1) {  // text; pings (opcode 9) are not answered in a short run
        ++stats_.frames;
        on_frame(std::string_view(data + pos + header, len));
      }
      pos += header + len;
    }
    return pos;
  }
  void on_frame(std::string_view text) {
    if (text.starts_with(R"({"events":[)")) on_batch(text);
    else on_single(text);
  }
  void on_batch(std::string_view text) {
    constexpr std::string_view seq_key = R"("seq":)";
    const auto first = text.find(seq_key);
    const auto last = text.rfind(seq_key);
    if (first == std::string_view::npos) return;
    const auto first_seq = number_after(text, first + seq_key.size());
    const auto last_seq = number_after(text, last + seq_key.size());
    if (first_seq != seq_ + 1) ++stats_.seq_errors;
    seq_ = last_seq;
    std::uint64_t count = last_seq - first_seq + 1;
    const auto head = text.substr(0, first);
    if (head.find(R"("event":"snapshot")") != std::string_view::npos) {
      ready_.fetch_add(1);
      --count;
    } else if (head.find(R"("event":"stream.gap")") != std::string_view::npos) {
      if (auto p = text.find(R"("dropped":)"); p != std::string_view::npos) stats::add(stats_.dropped, number_after(text, p + 10));
      --count;
    }
    if (count == 0) return;
    const auto now = now_ns();
    stats::add(stats_.events, count);
    stats_.last_ns = now;
    // Every 4th frame of a subscriber, all its events: finding each event's
    // creation time costs a scan of the frame, and a sample of frames (taken
    // without regard to their content) gives the same distribution.
    if (++sampled_ % 4 == 0) record_latencies(text.substr(first), now);
  }
  // Every event's creation time is the first field of its data ({"_t":...}).
  void record_latencies(std::string_view text, std::int64_t now) {
    constexpr std::string_view key = R"({"_t":)";
    for (auto p = text.find(key); p != std::string_view::npos; p = text.find(key, p + key.size()))
      stats_.record(static_cast<std::int64_t>(number_after(text, p + key.size())), now);
  }
  void on_single(std::string_view text) {
    if (text.find(R"("seq":)") != std::string_view::npos) {
      const auto s = number_after(text, text.find(R"("seq":)") + 6);
      if (s != seq_ + 1) ++stats_.seq_errors;
      seq_ = s;
    }
    if (text.find(R"("event":"task.update")") != std::string_view::npos) {
      stats::add(stats_.events, 1);
      stats_.last_ns = now_ns();
      record_latencies(text, stats_.last_ns);
    } else if (text.find("stream.gap") != std::string_view::npos) {
      if (auto p = text.find(R"("dropped":)"); p != std::string_view::npos)
        stats::add(stats_.dropped, static_cast<std::uint64_t>(std::strtoll(text.data() + p + 10, nullptr, 10)));
    } else if (text.find(R"("event":"snapshot")") != std::string_view::npos) {
      ready_.fetch_add(1);
    }
  }

  websocket::stream<beast::tcp_stream> ws_;
  std::string carry_;  // a partial frame from the last read
  bool subscribed_ = false;
  std::uint64_t sampled_ = 0;  // batched frames seen (latency of every 4th)
  std::string out_;
  std::uint64_t seq_ = 0;
  stats& stats_;
  std::atomic<int>& ready_;
};

struct outcome {
  double seconds = 0;
  std::uint64_t expected = 0, delivered = 0, dropped = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0, warmup_max_ms = 0;
  double frames_per_sec = 0;  // delivered events / (last receipt - first emit)
  std::uint64_t frames = 0, seq_errors = 0;
  double server_cpu_s = 0, client_cpu_s = 0;
};

outcome run(int subscribers, int rate, double seconds) {
  bench_port port;
  protocols::control::server_options opts;
  opts.listen = "127.0.0.1:0";
  opts.settings.max_clients = subscribers + 10;
  opts.settings.send_queue = 4096;
  opts.io_threads = io_threads;
  protocols::control::control_server server(opts, port);
  if (auto ok = server.start(); !ok) {
    std::fprintf(stderr, "start: %s\n", ok.error().message.c_str());
    std::exit(1);
  }
  const auto endpoint = server.endpoint();
  const auto colon = endpoint.rfind(':');
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"),
                   static_cast<unsigned short>(std::stoi(endpoint.substr(colon + 1))));

  asio::io_context ioc;
  stats st;
  std::atomic<int> ready{0};
  std::vector<std::shared_ptr<subscriber>> subs;
  for (int i = 0; i < subscribers; ++i) {
    subs.push_back(std::make_shared<subscriber>(ioc, st, ready));
    subs.back()->start(ep);
  }
  std::atomic<std::int64_t> client_cpu_ns{0};
  std::atomic<bool> client_stop{false};
  std::thread client_thread([&] {
    pthread_setname_np(pthread_self(), "bench-client");
    ioc.run();  // connect, handshake, subscribe: returns when all are done
    const int epfd = ::epoll_create1(0);
    for (auto& s : subs) {
      if (!s->subscribed()) std::fprintf(stderr, "a subscriber failed to subscribe\n"), std::exit(1);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLET;
      ev.data.ptr = s.get();
      ::epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd(), &ev);
      s->drain();  // whatever arrived before the registration
    }
    std::vector<epoll_event> ready_events(256);
    while (!client_stop.load(std::memory_order_relaxed)) {
      const int n = ::epoll_wait(epfd, ready_events.data(), static_cast<int>(ready_events.size()), 20);
      for (int i = 0; i < n; ++i) static_cast<subscriber*>(ready_events[static_cast<std::size_t>(i)].data.ptr)->drain();
    }
    ::close(epfd);
    client_cpu_ns = thread_cpu_ns();
    for (auto& s : subs) s->close();
  });
  while (ready.load() < subscribers) std::this_thread::sleep_for(std::chrono::milliseconds(5));

  constexpr double warmup_seconds = 0.5;
  const auto total = static_cast<std::uint64_t>(rate * (warmup_seconds + seconds));
  const auto cpu_before = process_cpu_ns();
  const auto emitter_before = thread_cpu_ns();
  const auto start = clock_type::now();
  const auto start_ns = now_ns();
  st.measure_from_ns = start_ns + static_cast<std::int64_t>(warmup_seconds * 1e9);
  const std::string pad(64, 'x');
  for (std::uint64_t i = 0; i < total; ++i) {
    // Pace in steps of 1 ms worth of events.
    if (i % std::max(1, rate / 1000) == 0)
      std::this_thread::sleep_until(start + std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 * double(i) / rate)));
    auto ev = std::make_shared<protocols::event>();
    ev->name = "task.update";
    ev->topic = "tasks";
    ev->task = "t1";
    // "_t" sorts first among the keys, so clients find it cheaply.
    ev->data = {{"_t", now_ns()}, {"task", "t1"}, {"state", "running"}, {"pad", pad}};
    port.emit(ev);
  }
  const double emit_seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  const auto emitter_cpu = thread_cpu_ns() - emitter_before;
  // Wait for delivery to settle: everything counted, or no progress for 2 s
  // (on a busy machine the client thread may stall for a while), at most 60 s.
  const auto expected = total * static_cast<std::uint64_t>(subscribers);
  std::uint64_t last = ~0ULL;
  auto last_progress = clock_type::now();
  for (int i = 0; i < 600; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto seen = st.events.load() + st.dropped.load();
    if (seen >= expected) break;
    if (seen != last) last_progress = clock_type::now();
    else if (clock_type::now() - last_progress > std::chrono::seconds(2)) break;
    last = seen;
  }
  client_stop = true;
  client_thread.join();
  server.stop();
  // CPU of the process minus the client and emitter threads: the server's I/O
  // thread (plus a little setup). Unlike wall-clock rates, this does not depend
  // on how much of the machine other processes took.
  const auto process_cpu = process_cpu_ns() - cpu_before;

  outcome o;
  o.seconds = emit_seconds;
  o.expected = expected;
  o.delivered = st.events;
  o.dropped = st.dropped;
  if (st.last_ns > start_ns) o.frames_per_sec = double(st.events) / (double(st.last_ns - start_ns) / 1e9);
  o.frames = st.frames;
  o.server_cpu_s = double(process_cpu - client_cpu_ns.load() - emitter_cpu) / 1e9;
  o.client_cpu_s = double(client_cpu_ns.load()) / 1e9;
  o.seq_errors = st.seq_errors;
  std::uint64_t counted = 0;
  for (auto n : st.latency) counted += n;
  auto percentile = [&](double q) {
    const auto want = static_cast<std::uint64_t>(q * double(counted));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < st.latency.size(); ++b)
      if ((seen += st.latency[b]) >= std::max<std::uint64_t>(1, want))
        return double((std::int64_t(b) + 1) * stats::bucket_ns) / 1e6;  // bucket's upper edge
    return double(st.max_ns) / 1e6;
  };
  if (counted > 0) {
    o.p50_ms = percentile(0.50);
    o.p99_ms = percentile(0.99);
    o.max_ms = double(st.max_ns) / 1e6;
  }
  o.warmup_max_ms = double(st.warmup_max_ns) / 1e6;
  return o;
}

void print(const char* label, int subscribers, int rate, const outcome& o) {
  std::printf("%-7s subs=%5d rate=%6d ev/s emit=%.2fs events expected=%llu delivered=%llu (%.1f%%) dropped=%llu "
              "seq_errors=%llu frames=%llu (%.1f events/frame) delivered %.0f events/s  p50=%.2fms p99=%.2fms max=%.2fms (warm-up max=%.2fms)\n",
              label, subscribers, rate, o.seconds, static_cast<unsigned long long>(o.expected),
              static_cast<unsigned long long>(o.delivered), 100.0 * double(o.delivered) / double(std::max<std::uint64_t>(1, o.expected)),
              static_cast<unsigned long long>(o.dropped), static_cast<unsigned long long>(o.seq_errors),
              static_cast<unsigned long long>(o.frames),
              double(o.delivered) / double(std::max<std::uint64_t>(1, o.frames)), o.frames_per_sec, o.p50_ms, o.p99_ms,
              o.max_ms, o.warmup_max_ms);
  std::printf("        cpu: server %.2fs (%.0f ns per delivered event), client %.2fs (%.0f ns per event)\n",
              o.server_cpu_s, 1e9 * o.server_cpu_s / double(std::max<std::uint64_t>(1, o.delivered)), o.client_cpu_s,
              1e9 * o.client_cpu_s / double(std::max<std::uint64_t>(1, o.delivered)));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int only_subs = 0, only_rate = 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--unbatched") == 0) batched_mode = false;
    else if (std::strcmp(argv[i], "--subs") == 0 && i + 1 < argc) only_subs = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--rate") == 0 && i + 1 < argc) only_rate = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--io-threads") == 0 && i + 1 < argc) io_threads = std::atoi(argv[++i]);
    else
      return std::fprintf(stderr, "usage: fanout_bench [--quick] [--unbatched] [--subs N --rate EVENTS_PER_S]\n"), 2;
  }
  spdlog::set_level(spdlog::level::warn);
  const double seconds = quick ? 1.0 : 3.0;
  std::printf("mode: %s, %d server I/O threads\n", batched_mode ? "batched frames" : "one event per frame", io_threads);
  if (only_subs > 0 && only_rate > 0) {  // one case (for profiling)
    print("case", only_subs, only_rate, run(only_subs, only_rate, seconds));
    return 0;
  }
  print("fanout", 1000, 10000, run(1000, 10000, seconds));
  // Sustained: every event delivered, nothing dropped, and p99 under 100 ms
  // (the queues do not keep growing).
  int best = 0;
  const std::vector<int> rates = batched_mode
                                     ? std::vector<int>{10000, 20000, 40000, 60000, 80000, 100000, 150000, 200000, 300000}
                                     : std::vector<int>{500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 12000};
  for (int rate : rates) {
    auto o = run(100, rate, seconds);
    print("ramp", 100, rate, o);
    if (o.dropped == 0 && o.delivered == o.expected && o.seq_errors == 0 && o.p99_ms < 100) best = rate;
    else break;
  }
  std::printf("highest rate sustained to 100 subscribers: %d events/s (%lld deliveries/s)\n", best,
              static_cast<long long>(best) * 100);
  return 0;
}
