// RateLimitedLog: one line per interval at most, the rest counted.
//
// A dataset with ten thousand corrupt files must not print ten thousand
// lines (nor stall the workers on stderr), yet nothing may go unreported:
// lines that arrive within `interval` of the last written one are held back
// and counted, and the next written line (or Flush) says how many were.
//
// Thread safety: Log and Flush may be called from any thread at once.
#ifndef DATAFEED_PRODUCER_RATE_LIMITED_LOG_H_
#define DATAFEED_PRODUCER_RATE_LIMITED_LOG_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace datafeed {
namespace internal {

class RateLimitedLog {
 public:
  using Sink = std::function<void(const std::string& line)>;
  using Clock = std::chrono::steady_clock;

  // `sink` receives whole lines without a trailing newline; null writes
  // them to stderr. The sink is called under a lock: never two at once.
  explicit RateLimitedLog(Sink sink, Clock::duration interval = std::chrono::seconds(1));

  // Writes `line` now if `interval` has passed since the last written line
  // (the first is always written), else counts it. Returns whether it was
  // written. `make_line` is only called when it is.
  bool Log(const std::function<std::string()>& make_line);
  // Writes "(N more like this not shown)" when lines were held back since
  // the last written one.
  void Flush();
  // Lines held back so far, in total.
  uint64_t suppressed() const;

 private:
  void Write(const std::string& line);  // under mu_

  Sink sink_;
  Clock::duration interval_;
  mutable std::mutex mu_;
  bool wrote_ = false;
  Clock::time_point last_;
  uint64_t held_ = 0;   // since the last written line
  uint64_t total_held_ = 0;
};

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_RATE_LIMITED_LOG_H_
