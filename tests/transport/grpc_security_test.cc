// Who may connect to a producer (docs/DESIGN.md, "Who may connect"):
// plaintext beyond loopback refused unless asked for, bearer tokens, stream
// limits per producer and per peer, and peers that open streams and never
// read them.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "datafeed/transport/transport.h"
#include "test_util.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
namespace pb = ::datafeed::v1;
using namespace std::chrono_literals;
using testing::CheckBatch;
using testing::FillBatch;
using testing::TestLayout;

Result<std::unique_ptr<BatchWriter>> TryWriter(const std::string& uri, WriterOptions o = {}) {
  o.shm.slot_count = 4;
  o.shm.slot_bytes = 1 << 20;
  return OpenWriter(ParseEndpoint(uri).value(), o);
}

std::unique_ptr<BatchWriter> Writer(const std::string& uri, WriterOptions o = {}) {
  auto w = TryWriter(uri, o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

Result<std::unique_ptr<BatchReader>> GrpcReader(const std::string& uri, ReaderOptions o = {}) {
  DATAFEED_ASSIGN_OR_RETURN(Endpoint ep, ResolveEndpoint(uri, "grpc"));
  return OpenReader(ep, o);
}

void Publish(BatchWriter& w, uint64_t id, int64_t n = 8, int64_t bytes = 512) {
  auto b = w.Loan(TestLayout(n, bytes), Deadline::AfterMillis(10'000));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  FillBatch(*b, id);
  ASSERT_TRUE(w.Publish(std::move(*b)).ok());
}

std::string HostPort(const std::string& uri) { return uri.substr(uri.find("://") + 3); }

// A token file in the test's temporary directory.
class TokenFile {
 public:
  explicit TokenFile(const std::string& token) {
    path_ = (fs::temp_directory_path() / testing::UniqueName("df-token")).string();
    std::ofstream(path_) << "  " << token << "  \n";
  }
  ~TokenFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(GrpcSecurity, PlaintextBeyondLoopbackIsRefusedUnlessAskedFor) {
  // Refused before anything listens: the error names the address, TLS and
  // the way to accept plaintext.
  auto refused = TryWriter("grpc://0.0.0.0:0");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().ToString();
  for (const char* word : {"0.0.0.0", "--tls-cert", "--insecure"}) {
    EXPECT_NE(refused.status().message().find(word), std::string::npos) << word << ": " << refused.status().ToString();
  }
  auto auto_refused = TryWriter("auto://0.0.0.0:0");
  EXPECT_EQ(auto_refused.status().code(), StatusCode::kFailedPrecondition) << auto_refused.status().ToString();

  // Asked for: it serves (here to a consumer on loopback).
  WriterOptions o;
  o.grpc.insecure = true;
  auto w = Writer("grpc://0.0.0.0:0", o);
  ASSERT_NE(w, nullptr);
  const std::string port = w->endpoint().substr(w->endpoint().rfind(':') + 1);
  auto r = GrpcReader("grpc://127.0.0.1:" + port);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Publish(*w, 7);
  auto v = (*r)->Next(Deadline::AfterMillis(10'000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 7u);
}

TEST(GrpcSecurity, ABearerTokenIsRequiredAndNothingLeaksWithoutIt) {
  TokenFile token("s3cret-token-0123456789");
  TokenFile wrong("s3cret-token-0123456780");  // same length, last byte differs
  WriterOptions wo;
  wo.grpc.auth_token_file = token.path();
  auto w = Writer("auto://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);

  // Without a token, or with a wrong one: refused at once, the error says
  // what to give, on every transport the consumer may pick.
  ReaderOptions wrong_o;
  wrong_o.grpc.auth_token_file = wrong.path();
  for (const ReaderOptions& o : {ReaderOptions{}, wrong_o}) {
    for (const char* transport : {"grpc", "auto"}) {
      SCOPED_TRACE(std::string(transport) + (o.grpc.auth_token_file.empty() ? " no token" : " wrong token"));
      auto ep = ResolveEndpoint(w->endpoint(), transport);
      ASSERT_TRUE(ep.ok());
      auto r = OpenReader(*ep, o);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
      EXPECT_NE(r.status().message().find("bearer token"), std::string::npos) << r.status().ToString();
      EXPECT_NE(r.status().message().find("--auth-token-file"), std::string::npos) << r.status().ToString();
    }
  }

  // A raw client learns nothing: no ring name, no version, no stats.
  auto channel = grpc::CreateChannel(HostPort(w->endpoint()), grpc::InsecureChannelCredentials());
  auto control = pb::DataFeed::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    pb::HandshakeRequest req;
    req.set_protocol_version(3);
    pb::HandshakeResponse resp;
    grpc::Status st = control->Handshake(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
    EXPECT_TRUE(resp.shm_name().empty());
    EXPECT_EQ(resp.protocol_version(), 0u);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    pb::StatsResponse resp;
    grpc::Status st = control->GetStats(&ctx, pb::StatsRequest{}, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  }
  {
    auto stream = pb::BatchStream::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto call = stream->StreamBatches(&ctx);
    pb::StreamRequest req;
    req.set_protocol_version(3);
    call->Write(req);
    call->WritesDone();
    pb::Frame f;
    EXPECT_FALSE(call->Read(&f)) << "a frame reached a client without the token";
    EXPECT_EQ(call->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }

  // With the token: both transports serve it (one after the other: either
  // would take both batches).
  ReaderOptions ok_o;
  ok_o.grpc.auth_token_file = token.path();
  {
    auto local = OpenReader(ResolveEndpoint(w->endpoint(), "auto").value(), ok_o);
    ASSERT_TRUE(local.ok()) << local.status().ToString();
    EXPECT_EQ((*local)->transport(), Scheme::kShm);
    Publish(*w, 0);
    auto v = (*local)->Next(Deadline::AfterMillis(10'000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, 0u);
    EXPECT_EQ(CheckBatch(*v), "");
  }
  auto over_grpc = GrpcReader(w->endpoint(), ok_o);
  ASSERT_TRUE(over_grpc.ok()) << over_grpc.status().ToString();
  Publish(*w, 1);
  auto v = (*over_grpc)->Next(Deadline::AfterMillis(10'000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 1u);
  EXPECT_EQ(CheckBatch(*v), "");
}

TEST(GrpcSecurity, AnEmptyOrMissingTokenFileIsNamed) {
  TokenFile empty("");
  WriterOptions wo;
  wo.grpc.auth_token_file = empty.path();
  auto w = TryWriter("grpc://127.0.0.1:0", wo);
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument) << w.status().ToString();
  EXPECT_NE(w.status().message().find(empty.path()), std::string::npos) << w.status().ToString();
  wo.grpc.auth_token_file = "/nonexistent/datafeed-token";
  w = TryWriter("grpc://127.0.0.1:0", wo);
  EXPECT_EQ(w.status().code(), StatusCode::kNotFound) << w.status().ToString();
  EXPECT_NE(w.status().message().find("/nonexistent/datafeed-token"), std::string::npos);
}

TEST(GrpcSecurity, StreamsPerPeerAreLimited) {
  WriterOptions wo;
  wo.grpc.max_streams_per_peer = 2;
  auto w = Writer("grpc://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);
  auto a = GrpcReader(w->endpoint());
  auto b = GrpcReader(w->endpoint());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto c = GrpcReader(w->endpoint());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kResourceExhausted) << c.status().ToString();
  EXPECT_NE(c.status().message().find("--max-streams-per-peer"), std::string::npos) << c.status().ToString();
  EXPECT_EQ(c.status().message().find("max_frame_bytes"), std::string::npos) << c.status().ToString();
  // One goes away: its place is free again once its call ends.
  a->reset();
  Result<std::unique_ptr<BatchReader>> d = Status::Unavailable("not tried");
  for (int i = 0; i < 100 && !d.ok(); ++i) {
    d = GrpcReader(w->endpoint());
    if (!d.ok()) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(d.ok()) << d.status().ToString();
}

TEST(GrpcSecurity, StreamsInAllAreLimited) {
  WriterOptions wo;
  wo.grpc.max_streams = 1;
  auto w = Writer("grpc://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);
  auto a = GrpcReader(w->endpoint());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = GrpcReader(w->endpoint());
  EXPECT_EQ(b.status().code(), StatusCode::kResourceExhausted) << b.status().ToString();
  EXPECT_NE(b.status().message().find("--max-streams"), std::string::npos) << b.status().ToString();
  wo.grpc.max_streams = 0;
  auto bad = TryWriter("grpc://127.0.0.1:0", wo);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
}

}  // namespace
}  // namespace datafeed
