// Who may connect to a producer (docs/DESIGN.md, "Who may connect"):
// plaintext beyond loopback refused unless asked for, bearer tokens, stream
// limits per producer and per peer, and peers that open streams and never
// read them.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

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

// --- gRPC reflection and channelz (--grpc-introspection) ---------------------
//
// Called as grpcurl or a channelz viewer would, with the services' own
// message types, which libgrpc++_reflection and libgrpcpp_channelz put in
// protobuf's generated pool (their headers are not installed): built and
// read through protobuf reflection, sent as raw bytes.

constexpr char kReflectionMethod[] = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
constexpr char kTopChannelsMethod[] = "/grpc.channelz.v1.Channelz/GetTopChannels";
constexpr char kServersMethod[] = "/grpc.channelz.v1.Channelz/GetServers";

std::unique_ptr<google::protobuf::Message> NewMessage(const std::string& type) {
  const google::protobuf::Descriptor* d = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (d == nullptr) {
    ADD_FAILURE() << type << " is not in protobuf's generated pool (is libgrpc++_reflection / libgrpcpp_channelz linked?)";
    return nullptr;
  }
  return std::unique_ptr<google::protobuf::Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(d)->New());
}

grpc::ByteBuffer ToBytes(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBytes(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  (void)b.Dump(&slices);
  std::string out;
  for (const grpc::Slice& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

struct Answer {
  grpc::Status status;
  bool replied = false;  // a response message arrived
  std::string reply;
};

void Prepare(grpc::ClientContext* ctx, const std::string& token) {
  ctx->set_deadline(std::chrono::system_clock::now() + 10s);
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
}

Answer Unary(const std::shared_ptr<grpc::Channel>& channel, const char* method, const std::string& request,
             const std::string& token) {
  grpc::ClientContext ctx;
  Prepare(&ctx, token);
  grpc::ByteBuffer reply;
  Answer a;
  a.status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel.get(), grpc::internal::RpcMethod(method, grpc::internal::RpcMethod::NORMAL_RPC, channel), &ctx,
      ToBytes(request), &reply);
  a.reply = FromBytes(reply);
  a.replied = a.status.ok() || !a.reply.empty();
  return a;
}

// One request on the reflection service's stream, and its answer.
Answer Reflect(const std::shared_ptr<grpc::Channel>& channel, const google::protobuf::Message& request,
               const std::string& token) {
  grpc::ClientContext ctx;
  Prepare(&ctx, token);
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> call(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel.get(), grpc::internal::RpcMethod(kReflectionMethod, grpc::internal::RpcMethod::BIDI_STREAMING, channel),
          &ctx));
  call->Write(ToBytes(request.SerializeAsString()));
  call->WritesDone();
  Answer a;
  grpc::ByteBuffer reply;
  a.replied = call->Read(&reply);
  if (a.replied) a.reply = FromBytes(reply);
  while (call->Read(&reply)) {
  }
  a.status = call->Finish();
  return a;
}

std::unique_ptr<google::protobuf::Message> ListServicesRequest() {
  auto req = NewMessage("grpc.reflection.v1alpha.ServerReflectionRequest");
  if (req) req->GetReflection()->SetString(req.get(), req->GetDescriptor()->FindFieldByName("list_services"), "*");
  return req;
}

std::unique_ptr<google::protobuf::Message> SymbolRequest(const std::string& symbol) {
  auto req = NewMessage("grpc.reflection.v1alpha.ServerReflectionRequest");
  if (req) {
    req->GetReflection()->SetString(req.get(), req->GetDescriptor()->FindFieldByName("file_containing_symbol"),
                                    symbol);
  }
  return req;
}

std::unique_ptr<google::protobuf::Message> Parse(const std::string& type, const std::string& bytes) {
  auto m = NewMessage(type);
  if (m) {
    EXPECT_TRUE(m->ParseFromString(bytes)) << type;
  }
  return m;
}

// The service names a ServerReflectionResponse lists.
std::vector<std::string> ListedServices(const std::string& reply) {
  std::vector<std::string> names;
  auto resp = Parse("grpc.reflection.v1alpha.ServerReflectionResponse", reply);
  if (!resp) return names;
  const google::protobuf::FieldDescriptor* list = resp->GetDescriptor()->FindFieldByName("list_services_response");
  if (!resp->GetReflection()->HasField(*resp, list)) {
    ADD_FAILURE() << "no list_services_response in " << resp->ShortDebugString();
    return names;
  }
  const google::protobuf::Message& l = resp->GetReflection()->GetMessage(*resp, list);
  const google::protobuf::FieldDescriptor* service = l.GetDescriptor()->FindFieldByName("service");
  for (int i = 0; i < l.GetReflection()->FieldSize(l, service); ++i) {
    const google::protobuf::Message& s = l.GetReflection()->GetRepeatedMessage(l, service, i);
    names.push_back(s.GetReflection()->GetString(s, s.GetDescriptor()->FindFieldByName("name")));
  }
  return names;
}

bool Has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

TEST(GrpcIntrospection, ReflectionAndChannelzAnswerWhenAskedFor) {
  WriterOptions wo;
  wo.grpc.introspection = true;
  auto w = Writer("grpc://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);
  const std::string port = w->endpoint().substr(w->endpoint().rfind(':') + 1);
  auto channel = grpc::CreateChannel(HostPort(w->endpoint()), grpc::InsecureChannelCredentials());

  // Reflection lists the producer's services and describes them.
  auto list_req = ListServicesRequest();
  ASSERT_NE(list_req, nullptr);
  Answer listed = Reflect(channel, *list_req, "");
  ASSERT_TRUE(listed.status.ok()) << listed.status.error_message();
  ASSERT_TRUE(listed.replied);
  const std::vector<std::string> services = ListedServices(listed.reply);
  for (const char* name : {"datafeed.v1.DataFeed", "grpc.reflection.v1alpha.ServerReflection", "grpc.channelz.v1.Channelz"}) {
    EXPECT_TRUE(Has(services, name)) << name << " not listed";
  }
  Answer described = Reflect(channel, *SymbolRequest("datafeed.v1.DataFeed"), "");
  ASSERT_TRUE(described.status.ok()) << described.status.error_message();
  auto resp = Parse("grpc.reflection.v1alpha.ServerReflectionResponse", described.reply);
  ASSERT_NE(resp, nullptr);
  const google::protobuf::FieldDescriptor* fdr = resp->GetDescriptor()->FindFieldByName("file_descriptor_response");
  ASSERT_TRUE(resp->GetReflection()->HasField(*resp, fdr)) << resp->ShortDebugString();
  const google::protobuf::Message& files = resp->GetReflection()->GetMessage(*resp, fdr);
  const google::protobuf::FieldDescriptor* proto = files.GetDescriptor()->FindFieldByName("file_descriptor_proto");
  bool found = false;
  for (int i = 0; i < files.GetReflection()->FieldSize(files, proto); ++i) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(files.GetReflection()->GetRepeatedString(files, proto, i)));
    for (const auto& s : file.service()) {
      if (file.package() == "datafeed.v1" && s.name() == "DataFeed") found = true;
    }
  }
  EXPECT_TRUE(found) << "no DataFeed service in the descriptors reflection sent";

  // Channelz: this server, listening, and (a consumer in this process) a
  // channel to it.
  auto consumer = GrpcReader(w->endpoint());
  ASSERT_TRUE(consumer.ok()) << consumer.status().ToString();
  Answer servers = Unary(channel, kServersMethod, NewMessage("grpc.channelz.v1.GetServersRequest")->SerializeAsString(), "");
  ASSERT_TRUE(servers.status.ok()) << servers.status.error_message();
  auto s = Parse("grpc.channelz.v1.GetServersResponse", servers.reply);
  ASSERT_NE(s, nullptr);
  EXPECT_GE(s->GetReflection()->FieldSize(*s, s->GetDescriptor()->FindFieldByName("server")), 1) << s->ShortDebugString();
  EXPECT_NE(s->ShortDebugString().find("listen_socket"), std::string::npos) << s->ShortDebugString();
  Answer top = Unary(channel, kTopChannelsMethod, NewMessage("grpc.channelz.v1.GetTopChannelsRequest")->SerializeAsString(), "");
  ASSERT_TRUE(top.status.ok()) << top.status.error_message();
  auto t = Parse("grpc.channelz.v1.GetTopChannelsResponse", top.reply);
  ASSERT_NE(t, nullptr);
  EXPECT_NE(t->ShortDebugString().find("127.0.0.1:" + port), std::string::npos)
      << "no channel to the producer in " << t->ShortDebugString();

  // A producer that did not ask, in the same process after one that did
  // (gRPC registers both plugins process-wide): neither service.
  auto plain = Writer("grpc://127.0.0.1:0");
  ASSERT_NE(plain, nullptr);
  auto plain_channel = grpc::CreateChannel(HostPort(plain->endpoint()), grpc::InsecureChannelCredentials());
  EXPECT_EQ(Reflect(plain_channel, *list_req, "").status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Unary(plain_channel, kTopChannelsMethod, "", "").status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_EQ(Unary(plain_channel, kServersMethod, "", "").status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

TEST(GrpcIntrospection, ATokenGuardsThemAndNothingLeaksWithoutIt) {
  const std::string secret = "introspect-token-0123456789";
  TokenFile token(secret);
  WriterOptions wo;
  wo.grpc.introspection = true;
  wo.grpc.auth_token_file = token.path();
  auto w = Writer("grpc://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);
  auto channel = grpc::CreateChannel(HostPort(w->endpoint()), grpc::InsecureChannelCredentials());
  auto list_req = ListServicesRequest();
  ASSERT_NE(list_req, nullptr);

  // Without the token, or with a wrong one of the same length: refused
  // with the fix, and not one response message.
  for (const std::string& wrong : {std::string(), std::string("introspect-token-0123456780")}) {
    SCOPED_TRACE(wrong.empty() ? "no token" : "wrong token");
    std::vector<Answer> answers = {Reflect(channel, *list_req, wrong),
                                   Unary(channel, kTopChannelsMethod, "", wrong),
                                   Unary(channel, kServersMethod, "", wrong),
                                   Unary(channel, "/datafeed.v1.DataFeed/GetStats", "", wrong)};
    for (const Answer& a : answers) {
      EXPECT_EQ(a.status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << a.status.error_message();
      EXPECT_NE(a.status.error_message().find("--auth-token-file"), std::string::npos) << a.status.error_message();
      EXPECT_FALSE(a.replied) << "a response reached a caller without the token (" << a.reply.size() << " bytes)";
    }
  }
  // The health service stays open (it says SERVING and nothing else; the
  // kubelet's gRPC probe sends no token).
  Answer health = Unary(channel, "/grpc.health.v1.Health/Check", "", "");
  EXPECT_TRUE(health.status.ok()) << health.status.error_message();
  EXPECT_EQ(health.reply, std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}

  // With the token: answered.
  Answer listed = Reflect(channel, *list_req, secret);
  ASSERT_TRUE(listed.status.ok()) << listed.status.error_message();
  EXPECT_TRUE(Has(ListedServices(listed.reply), "grpc.channelz.v1.Channelz"));
  Answer servers = Unary(channel, kServersMethod, "", secret);
  EXPECT_TRUE(servers.status.ok()) << servers.status.error_message();
  EXPECT_TRUE(servers.replied);
  // The producer's own consumers, which send the token, are served as before.
  ReaderOptions ro;
  ro.grpc.auth_token_file = token.path();
  auto r = GrpcReader(w->endpoint(), ro);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Publish(*w, 5);
  auto v = (*r)->Next(Deadline::AfterMillis(10'000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 5u);
}

TEST(GrpcIntrospection, BeyondLoopbackItNeedsToKnowWhoCalls) {
  WriterOptions wo;
  wo.grpc.introspection = true;
  wo.grpc.insecure = true;
  auto refused = TryWriter("grpc://0.0.0.0:0", wo);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().ToString();
  for (const char* word : {"--grpc-introspection", "--auth-token-file", "--tls-client-ca"}) {
    EXPECT_NE(refused.status().message().find(word), std::string::npos) << word << ": " << refused.status().ToString();
  }
  TokenFile token("introspect-token-abc");
  wo.grpc.auth_token_file = token.path();
  auto w = TryWriter("grpc://0.0.0.0:0", wo);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
}

}  // namespace
}  // namespace datafeed
