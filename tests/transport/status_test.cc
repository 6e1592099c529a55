#include "datafeed/transport/status.h"

#include <gtest/gtest.h>

namespace datafeed {
namespace {

Result<int> Half(int v) {
  if (v % 2) return Status::InvalidArgument(std::to_string(v) + " is odd");
  return v / 2;
}

Result<int> Quarter(int v) {
  DATAFEED_ASSIGN_OR_RETURN(int h, Half(v));
  DATAFEED_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int v) {
  DATAFEED_RETURN_NOT_OK(Half(v).status());
  return Status::OK();
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status::OK().ok());
  EXPECT_EQ(Status::OK().ToString(), "OK");
  Status s = Status::DataLoss("frame is short");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.ToString(), "DataLoss: frame is short");
  EXPECT_EQ(s.WithContext("shm://a").message(), "shm://a: frame is short");
  EXPECT_TRUE(Status::OK().WithContext("x").ok());
  EXPECT_TRUE(Status::EndOfStream("done").IsEndOfStream());
  EXPECT_NE(Status::FromErrno(2, "open x").message().find("No such file"), std::string::npos);
}

TEST(Status, ResultAndMacrosPropagate) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Quarter(6).ValueOr(-1), -1);
}

}  // namespace
}  // namespace datafeed
