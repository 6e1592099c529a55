// The library's logger: one spdlog logger (not in spdlog's registry, so a
// program's own spdlog setup is left alone) with one sink that writes the
// bare line to stderr, or hands it to the sink SetLogSink installed.
#include "datafeed/transport/log.h"

#include <spdlog/logger.h>
#include <spdlog/sinks/base_sink.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

namespace datafeed {
namespace {

spdlog::level::level_enum ToSpd(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarning: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

LogLevel FromSpd(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return LogLevel::kDebug;
    case spdlog::level::info: return LogLevel::kInfo;
    case spdlog::level::warn: return LogLevel::kWarning;
    case spdlog::level::err:
    case spdlog::level::critical: return LogLevel::kError;
    default: return LogLevel::kOff;
  }
}

class LineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void Set(LogSink sink) {
    std::lock_guard<std::mutex> lock(mutex_);
    sink_ = std::move(sink);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string line(msg.payload.data(), msg.payload.size());
    if (sink_) {
      sink_(FromSpd(msg.level), line);
    } else {
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stderr);
    }
  }
  void flush_() override { std::fflush(stderr); }

 private:
  LogSink sink_;
};

struct Logger {
  std::shared_ptr<LineSink> sink = std::make_shared<LineSink>();
  spdlog::logger logger{"datafeed", sink};
  Logger() {
    LogLevel level = LogLevel::kInfo;
    if (const char* env = std::getenv("DATAFEED_LOG_LEVEL"); env != nullptr && *env != '\0') {
      bool known = false;
      for (LogLevel l : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarning, LogLevel::kError, LogLevel::kOff}) {
        if (std::strcmp(env, LogLevelName(l)) == 0) {
          level = l;
          known = true;
        }
      }
      if (!known) {
        std::fprintf(stderr,
                     "datafeed: DATAFEED_LOG_LEVEL='%s' is not a level; give debug, info, warning, error or off "
                     "(using info)\n",
                     env);
      }
    }
    logger.set_level(ToSpd(level));
    logger.flush_on(spdlog::level::trace);  // stderr is unbuffered anyway; a sink sees every line at once
  }
};

Logger& TheLogger() {
  // Never destroyed: threads may log while static destructors run.
  static Logger* l = new Logger();
  return *l;
}

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "info";
}

std::string StrFormat(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out;
  if (n > 0) {
    out.resize(static_cast<size_t>(n) + 1);
    std::vsnprintf(out.data(), out.size(), format, again);
    out.resize(static_cast<size_t>(n));
  }
  va_end(again);
  return out;
}

void Log(LogLevel level, const std::string& line) {
  if (level == LogLevel::kOff) return;
  TheLogger().logger.log(ToSpd(level), spdlog::string_view_t(line.data(), line.size()));
}

bool LogEnabled(LogLevel level) { return level != LogLevel::kOff && TheLogger().logger.should_log(ToSpd(level)); }

void SetLogLevel(LogLevel level) { TheLogger().logger.set_level(ToSpd(level)); }

LogLevel GetLogLevel() { return FromSpd(TheLogger().logger.level()); }

void SetLogSink(LogSink sink) { TheLogger().sink->Set(std::move(sink)); }

// ----------------------------------------------------------- RateLimitedLog

RateLimitedLog::RateLimitedLog(Sink sink, Clock::duration interval, LogLevel level)
    : sink_(std::move(sink)), interval_(interval), level_(level) {}

void RateLimitedLog::Write(const std::string& line) {
  if (sink_) {
    sink_(line);
  } else {
    datafeed::Log(level_, line);
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

}  // namespace datafeed
