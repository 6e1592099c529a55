// The one place gRPC's status and ours meet (transport/src/grpc/
// util_internal.h): every code in both directions, as documented there, and
// the round trip a producer's handler error makes to the consumer.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "grpc/util_internal.h"

namespace datafeed::internal {
namespace {

// Names, so a failure reads "Unavailable" vs "Internal", not raw bytes.
std::string Name(StatusCode code) { return StatusCodeName(code); }

constexpr char kUri[] = "grpc://h:1";
constexpr char kDuring[] = "handshake";

struct FromCase {
  grpc::StatusCode grpc_code;
  StatusCode code;
  const char* hint;  // appended to the message; "" for none
};

// Every grpc::StatusCode (0..16) with the code and hint FromGrpc documents.
const FromCase kFromCases[] = {
    {grpc::StatusCode::CANCELLED, StatusCode::kCancelled, ""},
    {grpc::StatusCode::UNKNOWN, StatusCode::kInternal, ""},
    {grpc::StatusCode::INVALID_ARGUMENT, StatusCode::kInvalidArgument, ""},
    {grpc::StatusCode::DEADLINE_EXCEEDED, StatusCode::kDeadlineExceeded, ""},
    {grpc::StatusCode::NOT_FOUND, StatusCode::kInternal, ""},
    {grpc::StatusCode::ALREADY_EXISTS, StatusCode::kInternal, ""},
    {grpc::StatusCode::PERMISSION_DENIED, StatusCode::kFailedPrecondition, " (TLS settings or auth token?)"},
    {grpc::StatusCode::RESOURCE_EXHAUSTED, StatusCode::kResourceExhausted,
     " (a frame larger than the consumer's max_frame_bytes?)"},
    {grpc::StatusCode::FAILED_PRECONDITION, StatusCode::kFailedPrecondition, ""},
    {grpc::StatusCode::ABORTED, StatusCode::kAborted, ""},
    {grpc::StatusCode::OUT_OF_RANGE, StatusCode::kInternal, ""},
    {grpc::StatusCode::UNIMPLEMENTED, StatusCode::kUnimplemented, " (is that a datafeed producer?)"},
    {grpc::StatusCode::INTERNAL, StatusCode::kInternal, ""},
    {grpc::StatusCode::UNAVAILABLE, StatusCode::kUnavailable,
     " (is datafeed-producer running and reachable there?)"},
    {grpc::StatusCode::DATA_LOSS, StatusCode::kDataLoss, ""},
    {grpc::StatusCode::UNAUTHENTICATED, StatusCode::kFailedPrecondition, " (TLS settings or auth token?)"},
};

TEST(GrpcStatus, FromGrpcMapsEveryCodeAndNamesTheEndpoint) {
  EXPECT_TRUE(FromGrpc(grpc::Status::OK, kUri, kDuring).ok());
  std::map<int, int> seen;
  for (const FromCase& c : kFromCases) {
    SCOPED_TRACE(static_cast<int>(c.grpc_code));
    ++seen[static_cast<int>(c.grpc_code)];
    const Status st = FromGrpc(grpc::Status(c.grpc_code, "it broke"), kUri, kDuring);
    EXPECT_EQ(Name(st.code()), Name(c.code)) << st.ToString();
    EXPECT_EQ(st.message(), std::string(kUri) + ": " + kDuring + ": it broke" + c.hint);
  }
  // The table covers every gRPC code but OK, each once.
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(seen.begin()->first, 1);
  EXPECT_EQ(seen.rbegin()->first, 16);
}

// Every StatusCode with the gRPC code ToGrpc documents, and whether
// FromGrpc(ToGrpc(s)) gives s's code back (otherwise it gives kInternal).
struct ToCase {
  StatusCode code;
  grpc::StatusCode grpc_code;
  bool round_trips;
};

const ToCase kToCases[] = {
    {StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT, true},
    {StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND, false},
    {StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS, false},
    {StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED, true},
    {StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED, true},
    {StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE, true},
    {StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS, true},
    {StatusCode::kEndOfStream, grpc::StatusCode::OUT_OF_RANGE, false},
    {StatusCode::kCancelled, grpc::StatusCode::CANCELLED, true},
    {StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION, true},
    {StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED, true},
    {StatusCode::kIOError, grpc::StatusCode::UNKNOWN, false},
    {StatusCode::kInternal, grpc::StatusCode::INTERNAL, true},
    {StatusCode::kAborted, grpc::StatusCode::ABORTED, true},
};

TEST(GrpcStatus, ToGrpcMapsEveryCodeAndKeepsTheMessage) {
  const grpc::Status ok = ToGrpc(Status::OK());
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.error_message(), "");
  std::map<int, int> seen;
  for (const ToCase& c : kToCases) {
    SCOPED_TRACE(StatusCodeName(c.code));
    ++seen[static_cast<int>(c.code)];
    const grpc::Status gs = ToGrpc(Status(c.code, "slot 3 is torn"));
    EXPECT_EQ(gs.error_code(), c.grpc_code);
    // The message alone: the consumer adds the endpoint, and the code
    // travels as the code, not as "DataLoss: ...".
    EXPECT_EQ(gs.error_message(), "slot 3 is torn");
  }
  // The table covers every StatusCode but kOk, each once.
  EXPECT_EQ(seen.size(), static_cast<size_t>(StatusCode::kAborted));
  EXPECT_EQ(seen.begin()->first, static_cast<int>(StatusCode::kOk) + 1);
  EXPECT_EQ(seen.rbegin()->first, static_cast<int>(StatusCode::kAborted));
}

TEST(GrpcStatus, AHandlersErrorReachesTheConsumerWithItsCodeWhereOneToOne) {
  for (const ToCase& c : kToCases) {
    SCOPED_TRACE(StatusCodeName(c.code));
    const Status back = FromGrpc(ToGrpc(Status(c.code, "slot 3 is torn")), kUri, kDuring);
    EXPECT_EQ(Name(back.code()), Name(c.round_trips ? c.code : StatusCode::kInternal)) << back.ToString();
    EXPECT_EQ(back.message().rfind(std::string(kUri) + ": " + kDuring + ": slot 3 is torn", 0), 0u)
        << back.message();
  }
}

TEST(GrpcStatus, ProtocolVersionChecksNameBothVersions) {
  EXPECT_TRUE(CheckConsumerProtocol(kProtocolVersion).ok());
  EXPECT_TRUE(CheckProducerProtocol(kProtocolVersion, kUri).ok());
  const Status consumer = CheckConsumerProtocol(kProtocolVersion + 5);
  EXPECT_EQ(Name(consumer.code()), "FailedPrecondition");
  EXPECT_EQ(consumer.message(), "protocol version mismatch: consumer speaks " +
                                    std::to_string(kProtocolVersion + 5) + ", producer speaks " +
                                    std::to_string(kProtocolVersion) + "; use matching datafeed builds");
  const Status producer = CheckProducerProtocol(kProtocolVersion + 5, kUri);
  EXPECT_EQ(Name(producer.code()), "FailedPrecondition");
  EXPECT_EQ(producer.message(), std::string(kUri) + ": producer speaks protocol " +
                                    std::to_string(kProtocolVersion + 5) + ", this consumer " +
                                    std::to_string(kProtocolVersion) + "; use matching datafeed builds");
}

}  // namespace
}  // namespace datafeed::internal
