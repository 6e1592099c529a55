// The library's log (datafeed/transport/log.h): sinks, levels and the
// rate-limited helper.
#include "datafeed/transport/log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace datafeed {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = GetLogLevel();
    SetLogSink([this](LogLevel level, const std::string& line) { lines_.emplace_back(level, line); });
  }
  void TearDown() override {
    SetLogSink(nullptr);
    SetLogLevel(saved_);
  }
  LogLevel saved_ = LogLevel::kInfo;
  std::vector<std::pair<LogLevel, std::string>> lines_;
};

TEST_F(LogTest, SinkGetsTheLineAsWrittenWithItsLevel) {
  SetLogLevel(LogLevel::kInfo);
  LogWarning("datafeed: shm://x: slot 3 held 0x1");
  LogInfo(StrFormat("%s: %d batches", "datafeed-consumer", 12));
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[0].first, LogLevel::kWarning);
  EXPECT_EQ(lines_[0].second, "datafeed: shm://x: slot 3 held 0x1");
  EXPECT_EQ(lines_[1].first, LogLevel::kInfo);
  EXPECT_EQ(lines_[1].second, "datafeed-consumer: 12 batches");
}

TEST_F(LogTest, LevelFilters) {
  SetLogLevel(LogLevel::kWarning);
  EXPECT_FALSE(LogEnabled(LogLevel::kInfo));
  EXPECT_TRUE(LogEnabled(LogLevel::kError));
  LogInfo("not shown");
  LogError("shown");
  SetLogLevel(LogLevel::kOff);
  LogError("off");
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0].second, "shown");
}

TEST_F(LogTest, RateLimitedLogHoldsBackAndCounts) {
  SetLogLevel(LogLevel::kInfo);
  // An hour-long interval: every line after the first is held back.
  RateLimitedLog log(nullptr, std::chrono::hours(1));
  int made = 0;
  EXPECT_TRUE(log.Log([&] { return "bad sample " + std::to_string(++made); }));
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(log.Log([&] { return "bad sample " + std::to_string(++made); }));
  EXPECT_EQ(made, 1);  // held-back lines are never built
  EXPECT_EQ(log.suppressed(), 5u);
  log.Flush();
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[0], std::make_pair(LogLevel::kWarning, std::string("bad sample 1")));
  EXPECT_EQ(lines_[1], std::make_pair(LogLevel::kWarning, std::string("(5 more like this not shown)")));
}

TEST_F(LogTest, RateLimitedLogWritesAgainAfterTheIntervalSayingHowManyWereHeld) {
  RateLimitedLog log(nullptr, std::chrono::nanoseconds(0), LogLevel::kError);
  EXPECT_TRUE(log.Log([] { return std::string("a"); }));
  EXPECT_TRUE(log.Log([] { return std::string("b"); }));
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[1], std::make_pair(LogLevel::kError, std::string("b")));
}

}  // namespace
}  // namespace datafeed
