// Files and folders for the producer tests: a temporary folder per test,
// whole-file reads and writes, and the error check every dataset test uses.
#ifndef DATAFEED_TESTS_PRODUCER_TEST_FILES_H_
#define DATAFEED_TESTS_PRODUCER_TEST_FILES_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {
namespace test {

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("datafeed_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
             std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline void WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// Expects `st` to have `code` and a message naming `path` and containing `what`.
inline void ExpectError(const Status& st, StatusCode code, const std::string& path,
                        const std::string& what) {
  EXPECT_EQ(st.code(), code) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(what), std::string::npos) << "missing '" << what << "' in: "
                                                        << st.message();
}

}  // namespace test
}  // namespace datafeed

#endif  // DATAFEED_TESTS_PRODUCER_TEST_FILES_H_
