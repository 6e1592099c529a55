#include "rate_limited_log.h"

#include <cstdio>
#include <utility>

namespace datafeed {
namespace internal {

RateLimitedLog::RateLimitedLog(Sink sink, Clock::duration interval)
    : sink_(std::move(sink)), interval_(interval) {}

void RateLimitedLog::Write(const std::string& line) {
  if (sink_) {
    sink_(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

bool RateLimitedLog::Log(const std::function<std::string()>& make_line) {
  std::lock_guard<std::mutex> lock(mu_);
  const Clock::time_point now = Clock::now();
  if (wrote_ && now - last_ < interval_) {
    ++held_;
    ++total_held_;
    return false;
  }
  std::string line = make_line();
  if (held_ > 0) {
    line += " (" + std::to_string(held_) + " more like this not shown)";
    held_ = 0;
  }
  Write(line);
  wrote_ = true;
  last_ = now;
  return true;
}

void RateLimitedLog::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (held_ == 0) return;
  Write("(" + std::to_string(held_) + " more like this not shown)");
  held_ = 0;
}

uint64_t RateLimitedLog::suppressed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_held_;
}

}  // namespace internal
}  // namespace datafeed
