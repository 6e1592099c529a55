// Deadlines for blocking calls: an absolute point on the monotonic clock.
#ifndef DATAFEED_TRANSPORT_DEADLINE_H_
#define DATAFEED_TRANSPORT_DEADLINE_H_

#include <chrono>
#include <cstdint>

namespace datafeed {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // Waits forever.
  static Deadline Infinite() { return Deadline(Clock::time_point::max()); }
  // Does not wait: a blocking call polls once.
  static Deadline Now() { return Deadline(Clock::now()); }
  static Deadline After(std::chrono::nanoseconds d) {
    auto now = Clock::now();
    if (d >= Clock::time_point::max() - now) return Infinite();
    return Deadline(now + d);
  }
  static Deadline AfterMillis(int64_t ms) { return After(std::chrono::milliseconds(ms)); }

  explicit Deadline(Clock::time_point when) : when_(when) {}

  Clock::time_point when() const { return when_; }
  bool infinite() const { return when_ == Clock::time_point::max(); }
  bool expired() const { return !infinite() && Clock::now() >= when_; }
  // Time left, never negative; a very large value when infinite.
  std::chrono::nanoseconds remaining() const {
    if (infinite()) return std::chrono::nanoseconds::max();
    auto left = when_ - Clock::now();
    return left.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                            : std::chrono::nanoseconds(0);
  }

 private:
  Clock::time_point when_;
};

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_DEADLINE_H_
