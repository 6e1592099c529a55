// The library's log: one logger (spdlog inside) for every line datafeed's
// libraries write. By default lines go to stderr as they always did (the
// text alone, no prefix added); SetLogSink sends them elsewhere (the C ABI's
// df_set_log_callback hands them to Python's `logging`).
//
// The level comes from $DATAFEED_LOG_LEVEL (debug, info, warning, error,
// off; default info) and SetLogLevel.
//
// Thread safety: every function here may be called from any thread at
// once. A sink is called under the logger's lock: never two lines at once.
#ifndef DATAFEED_TRANSPORT_LOG_H_
#define DATAFEED_TRANSPORT_LOG_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace datafeed {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

// "debug", "info", "warning", "error", "off".
const char* LogLevelName(LogLevel level);

// Writes one line (no trailing newline) at `level`, if the level is on.
void Log(LogLevel level, const std::string& line);
inline void LogInfo(const std::string& line) { Log(LogLevel::kInfo, line); }
inline void LogWarning(const std::string& line) { Log(LogLevel::kWarning, line); }
inline void LogError(const std::string& line) { Log(LogLevel::kError, line); }
// printf into a std::string, for building a line.
std::string StrFormat(const char* format, ...) __attribute__((format(printf, 1, 2)));
// Whether a line at `level` would be written (to skip building it).
bool LogEnabled(LogLevel level);

// Lines at or above `level` are written.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();

// Where lines go: `sink(level, line)`; null restores stderr.
using LogSink = std::function<void(LogLevel level, const std::string& line)>;
void SetLogSink(LogSink sink);

// One line per interval at most, the rest counted.
//
// A dataset with ten thousand corrupt files must not print ten thousand
// lines (nor stall the workers on stderr), yet nothing may go unreported:
// lines that arrive within `interval` of the last written one are held back
// and counted, and the next written line (or Flush) says how many were.
//
// Thread safety: Log and Flush may be called from any thread at once.
class RateLimitedLog {
 public:
  using Sink = std::function<void(const std::string& line)>;
  using Clock = std::chrono::steady_clock;

  // `sink` receives whole lines without a trailing newline; null writes
  // them to the library's log at `level`. The sink is called under a lock:
  // never two at once.
  explicit RateLimitedLog(Sink sink, Clock::duration interval = std::chrono::seconds(1),
                          LogLevel level = LogLevel::kWarning);

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
  LogLevel level_;
  mutable std::mutex mu_;
  bool wrote_ = false;
  Clock::time_point last_;
  uint64_t held_ = 0;  // since the last written line
  uint64_t total_held_ = 0;
};

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_LOG_H_
