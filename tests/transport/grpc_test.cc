// gRPC and auto:// specifics: handshake outcomes, mixed shm/gRPC consumers,
// killed and restarted producers, TLS and mTLS, malformed and oversize
// frames from the network, protocol mismatches, compression.
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <set>
#include <thread>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "datafeed/transport/transport.h"
#include "peer_util.h"
#include "test_util.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
namespace pb = ::datafeed::v1;
using namespace std::chrono_literals;
using testing::CheckBatch;
using testing::FillBatch;
using testing::Peer;
using testing::TestLayout;

std::unique_ptr<BatchWriter> Writer(const std::string& uri, WriterOptions o = {}) {
  o.shm.slot_count = o.shm.slot_count == ShmOptions{}.slot_count ? 3 : o.shm.slot_count;
  if (o.shm.slot_bytes == ShmOptions{}.slot_bytes) o.shm.slot_bytes = 1 << 20;
  auto w = OpenWriter(ParseEndpoint(uri).value(), o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

Result<std::unique_ptr<BatchReader>> Reader(const std::string& uri, ReaderOptions o = {},
                                            const char* transport = "") {
  DATAFEED_ASSIGN_OR_RETURN(Endpoint ep, ResolveEndpoint(uri, transport));
  return OpenReader(ep, o);
}

void Publish(BatchWriter& w, uint64_t id, int64_t n = 8, int64_t bytes = 512) {
  auto b = w.Loan(TestLayout(n, bytes), Deadline::AfterMillis(5000));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  FillBatch(*b, id);
  ASSERT_TRUE(w.Publish(std::move(*b)).ok());
}

TEST(GrpcHandshake, ChoosesSharedMemoryOnThisHostAndGrpcWhenForced) {
  auto w = Writer("auto://127.0.0.1:0");
  auto local = Reader(w->endpoint());
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  EXPECT_EQ((*local)->transport(), Scheme::kShm);
  auto forced = Reader(w->endpoint(), {}, "grpc");
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ((*forced)->transport(), Scheme::kGrpc);
  auto plain = Reader("grpc://" + w->endpoint().substr(w->endpoint().find("://") + 3));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->transport(), Scheme::kGrpc);
  auto shm = Reader(w->endpoint(), {}, "shm");
  ASSERT_TRUE(shm.ok()) << shm.status().ToString();
  EXPECT_EQ((*shm)->transport(), Scheme::kShm);
}

// Counts consumers that have their first batch; they wait for each other.
class FirstBatchGate {
 public:
  explicit FirstBatchGate(int consumers) : left_(consumers) {}
  // A consumer has its first batch.
  void Arrive() {
    std::lock_guard<std::mutex> lock(mu_);
    --left_;
    cv_.notify_all();
  }
  // Waits until every consumer arrived (false after 20 s).
  bool WaitAll() {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 20s, [&] { return left_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int left_;
};

TEST(GrpcHandshake, MixedConsumersShareTheStreamExactlyOnce) {
  // Shared-memory and gRPC consumers, in this process and in others, read
  // one stream at once. Each takes one batch and then waits until all have
  // one, so every consumer, and so each transport, demonstrably carries
  // batches (a consumer that has its batch stops claiming, and the ones
  // still waiting take the next); then they all read to the end together.
  auto w = Writer("auto://127.0.0.1:0");
  std::vector<std::unique_ptr<BatchReader>> readers;
  readers.push_back(std::move(Reader(w->endpoint())).value());            // shared memory
  readers.push_back(std::move(Reader(w->endpoint(), {}, "grpc")).value());  // gRPC stream
  ASSERT_EQ(readers[0]->transport(), Scheme::kShm);
  ASSERT_EQ(readers[1]->transport(), Scheme::kGrpc);
  Peer remote({"consume", w->endpoint(), "announce", "gate"});  // another process; auto picks shm
  Peer remote_grpc({"consume", "grpc://" + w->endpoint().substr(7), "announce", "gate"});
  ASSERT_EQ(remote.ReadLine(), "attached");
  ASSERT_EQ(remote_grpc.ReadLine(), "attached");
  FirstBatchGate in_process(2);
  std::atomic<bool> released{false};
  std::vector<std::vector<uint64_t>> got(2);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < readers.size(); ++i) {
    threads.emplace_back([&, i] {
      for (;;) {
        auto v = readers[i]->Next(Deadline::AfterMillis(20'000));
        if (!v.ok()) {
          EXPECT_TRUE(v.status().IsEndOfStream()) << v.status().ToString();
          return;
        }
        EXPECT_EQ(CheckBatch(*v), "");
        got[i].push_back(v->meta().first_index);
        if (got[i].size() == 1) {
          v = Status::Cancelled("dropped");  // holds no slot while it waits
          in_process.Arrive();
          while (!released.load()) std::this_thread::sleep_for(1ms);
        }
      }
    });
  }
  constexpr uint64_t kBatches = 400;
  std::thread producer([&] {
    for (uint64_t id = 0; id < kBatches; ++id) Publish(*w, id);
    ASSERT_TRUE(w->Close().ok());
  });
  std::multiset<uint64_t> all;
  std::vector<size_t> remote_counts;
  std::vector<std::string> remote_first = {remote.ReadLine(), remote_grpc.ReadLine()};
  for (const auto& line : remote_first) EXPECT_FALSE(line.empty()) << "a consumer process got no batch";
  EXPECT_TRUE(in_process.WaitAll()) << "an in-process consumer got no batch";
  released = true;
  remote.Signal(SIGUSR1);
  remote_grpc.Signal(SIGUSR1);
  for (size_t p = 0; p < 2; ++p) {
    Peer& peer = p == 0 ? remote : remote_grpc;
    std::vector<std::string> lines = peer.ReadAll();
    lines.insert(lines.begin(), remote_first[p]);
    for (const auto& line : lines) {
      if (!line.empty()) all.insert(std::stoull(line));
    }
    remote_counts.push_back(lines.size());
    EXPECT_EQ(peer.Wait(), 0);
  }
  producer.join();
  for (auto& t : threads) t.join();
  for (auto& g : got) all.insert(g.begin(), g.end());
  ASSERT_EQ(all.size(), kBatches);
  uint64_t expect = 0;
  for (uint64_t id : all) EXPECT_EQ(id, expect++);
  EXPECT_GE(got[0].size() + remote_counts[0], 1u) << "shared memory carried nothing";
  EXPECT_GE(got[1].size() + remote_counts[1], 1u) << "the gRPC stream carried nothing";
  ::testing::Test::RecordProperty("shm_batches", static_cast<int>(got[0].size() + remote_counts[0]));
  ::testing::Test::RecordProperty("grpc_batches", static_cast<int>(got[1].size() + remote_counts[1]));
}

TEST(GrpcFaults, KilledProducerIsReportedWithinTwoSeconds) {
  Peer producer({"produce", "grpc://127.0.0.1:0", "2", "4", "sleep"});
  const std::string uri = producer.Serving();
  ASSERT_EQ(producer.ReadLine(), "published 2");
  auto r = Reader(uri);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (uint64_t id = 0; id < 2; ++id) {
    auto v = (*r)->Next(Deadline::AfterMillis(5000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
  }
  const auto t0 = std::chrono::steady_clock::now();
  producer.Kill();
  auto v = (*r)->Next(Deadline::AfterMillis(10'000));
  EXPECT_EQ(v.status().code(), StatusCode::kUnavailable) << v.status().ToString();
  EXPECT_NE(v.status().message().find(uri), std::string::npos) << v.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  testing::RemoveStaleSegmentsNamed("-" + uri.substr(uri.rfind(':') + 1));
}

TEST(GrpcFaults, ReconnectsWhenTheProducerRestarts) {
  // The kernel picks the port; the restarted producer reuses it.
  auto producer = std::make_unique<Peer>(std::vector<std::string>{"produce", "grpc://127.0.0.1:0", "2", "4", "sleep"});
  const std::string uri = producer->Serving();
  ASSERT_EQ(producer->ReadLine(), "published 2");
  ReaderOptions o;
  o.reconnect = true;
  o.reconnect_timeout_ms = 10'000;
  auto r = Reader(uri, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (uint64_t id = 0; id < 2; ++id) ASSERT_TRUE((*r)->Next(Deadline::AfterMillis(5000)).ok());
  producer->Kill();
  producer = std::make_unique<Peer>(std::vector<std::string>{"produce", uri, "3", "4", "sleep"});
  ASSERT_EQ(producer->Serving(), uri);
  for (uint64_t id = 0; id < 3; ++id) {
    auto v = (*r)->Next(Deadline::AfterMillis(10'000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);  // the new producer's stream
    EXPECT_EQ(CheckBatch(*v), "");
  }
  producer.reset();  // killed: both producers' rings are stale now
  testing::RemoveStaleSegmentsNamed("-" + uri.substr(uri.rfind(':') + 1));
}

TEST(GrpcFaults, AConsumerThatPausesKeepsItsStream) {
  // A trainer that stops reading (evaluation, checkpointing) while the
  // producer has frames waiting must find its stream alive afterwards.
  auto w = Writer("grpc://127.0.0.1:0");
  auto r = Reader(w->endpoint());
  ASSERT_TRUE(r.ok());
  std::thread producer([&] {
    for (uint64_t id = 0; id < 40; ++id) Publish(*w, id, 256, 4000);  // 1 MB frames
  });
  ASSERT_TRUE((*r)->Next(Deadline::AfterMillis(5000)).ok());
  std::this_thread::sleep_for(4s);
  for (uint64_t id = 1; id < 40; ++id) {
    auto v = (*r)->Next(Deadline::AfterMillis(10'000));
    ASSERT_TRUE(v.ok()) << "batch " << id << ": " << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
  }
  producer.join();
}

TEST(GrpcFaults, ProducerThatExitsRightAfterCloseLosesNothing) {
  // A producer process publishes its last batches, closes and exits at once:
  // every batch and the end of the stream must still reach the consumer
  // (the producer waits until the consumer has read the end-of-stream
  // marker before it tears its connections down).
  constexpr int kRounds = 40;
  constexpr uint64_t kBatches = 5;
  for (int round = 0; round < kRounds; ++round) {
    auto w = Writer("grpc://127.0.0.1:0");
    auto r = Reader(w->endpoint());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::thread producer([&] {
      for (uint64_t id = 0; id < kBatches; ++id) Publish(*w, id, 256, 4000);  // 1 MB frames
      ASSERT_TRUE(w->Close().ok());
      w.reset();
    });
    std::vector<uint64_t> got;
    Status end;
    for (;;) {
      auto v = (*r)->Next(Deadline::AfterMillis(10'000));
      if (!v.ok()) {
        end = v.status();
        break;
      }
      EXPECT_EQ(CheckBatch(*v), "");
      got.push_back(v->meta().first_index);
      if (round % 2 == 1) std::this_thread::sleep_for(10ms);  // a consumer slower than the producer
    }
    producer.join();
    ASSERT_EQ(got.size(), kBatches) << "round " << round << " ended with " << end.ToString();
    ASSERT_TRUE(end.IsEndOfStream()) << "round " << round << ": " << end.ToString();
  }
}

TEST(GrpcWire, ProducerWaitsForTheConsumerToAcknowledgeTheEnd) {
  // Speak StreamBatches with generated protobuf code, as another client
  // would: frames, then a Frame with end_of_stream; the producer does not
  // finish the call (nor, exiting, tear down the connection) until the
  // consumer half-closes.
  auto w = Writer("grpc://127.0.0.1:0");
  const std::string address = w->endpoint().substr(7);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto stub = pb::BatchStream::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->StreamBatches(&ctx);
  pb::StreamRequest req;
  req.set_protocol_version(3);
  req.mutable_hello()->set_consumer_id(0x5eed);  // a new consumer
  ASSERT_TRUE(stream->Write(req));
  stream->WaitForInitialMetadata();
  for (uint64_t id = 0; id < 3; ++id) Publish(*w, id);
  std::atomic<bool> destroyed{false};
  std::thread exiting([&] {
    ASSERT_TRUE(w->Close().ok());
    w.reset();  // what a producer does when it exits
    destroyed = true;
  });
  pb::Frame f;
  for (uint64_t id = 0; id < 3; ++id) {
    ASSERT_TRUE(stream->Read(&f));
    EXPECT_FALSE(f.end_of_stream());
    EXPECT_EQ(f.position(), id);
    auto v = ParseFrame(reinterpret_cast<const uint8_t*>(f.frame().data()), f.frame().size());
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    // Protocol 3: a consumer says what it took (the producer keeps a few
    // frames in flight beyond that) and acknowledges.
    pb::StreamRequest progress;
    progress.set_received(id + 1);
    progress.set_acked(id + 1);
    progress.set_active(true);
    ASSERT_TRUE(stream->Write(progress));
  }
  ASSERT_TRUE(stream->Read(&f));
  EXPECT_TRUE(f.end_of_stream());
  EXPECT_TRUE(f.frame().empty());
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(destroyed.load()) << "the producer finished before the consumer acknowledged the end";
  const auto acked = std::chrono::steady_clock::now();
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&f));
  EXPECT_TRUE(stream->Finish().ok());
  exiting.join();
  EXPECT_LT(std::chrono::steady_clock::now() - acked, 1500ms);
}

TEST(GrpcFaults, ConsumersWaitingBeforeTheProducerStartsAreServed) {
  // Consumers already waiting (wait-for-ready) can reach the server as soon
  // as it binds, before its ring exists; the handlers wait for the ring
  // (ServerState::WaitReady). Whether a consumer lands in that window depends
  // on gRPC's reconnect timing, so this checks the outcome, not the window.
  // A free port below the ephemeral range: a client retrying a port in that
  // range with no listener can connect to itself (TCP self-connect) and
  // hold the port.
  int port = 0;
  for (int p = 20000 + getpid() % 10000; port == 0 && p < 32000; ++p) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(p));
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) port = p;
    close(fd);
  }
  ASSERT_NE(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  std::vector<Result<std::unique_ptr<BatchReader>>> readers;
  for (int i = 0; i < 2; ++i) readers.emplace_back(Status::Internal("not opened"));
  std::vector<std::thread> waiting;
  for (size_t i = 0; i < readers.size(); ++i) {
    waiting.emplace_back([&, i] {
      ReaderOptions o;
      o.connect_timeout_ms = 20'000;
      readers[i] = Reader((i == 0 ? "auto://" : "grpc://") + address, o);
    });
  }
  std::this_thread::sleep_for(300ms);
  WriterOptions o;
  o.shm.slot_count = 4;
  o.shm.slot_bytes = 64 << 20;  // a ring that takes a while to create
  auto w = Writer("auto://" + address, o);
  ASSERT_NE(w, nullptr);
  for (auto& t : waiting) t.join();
  for (auto& r : readers) ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Both read at once: which of them takes which batch is the scheduler's
  // business (the stream's handler may take several ahead of the ring
  // reader), so each takes its first batch and waits for the other, and
  // batches are published until both have one.
  FirstBatchGate gate(2);
  std::atomic<bool> released{false};
  std::vector<std::vector<uint64_t>> got(readers.size());
  std::vector<std::thread> reading;
  for (size_t i = 0; i < readers.size(); ++i) {
    reading.emplace_back([&, i] {
      for (;;) {
        auto v = (*readers[i])->Next(Deadline::AfterMillis(20'000));
        if (!v.ok()) {
          EXPECT_TRUE(v.status().IsEndOfStream()) << v.status().ToString();
          return;
        }
        got[i].push_back(v->meta().first_index);
        if (got[i].size() == 1) {
          gate.Arrive();
          while (!released.load()) std::this_thread::sleep_for(1ms);
        }
      }
    });
  }
  constexpr uint64_t kBatches = 20;
  std::thread producer([&] {
    for (uint64_t id = 0; id < kBatches; ++id) Publish(*w, id);
    ASSERT_TRUE(w->Close().ok());
  });
  EXPECT_TRUE(gate.WaitAll()) << "a waiting consumer was not served";
  released = true;
  producer.join();
  for (auto& t : reading) t.join();
  std::multiset<uint64_t> all;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_FALSE(got[i].empty()) << (i == 0 ? "the auto (shm)" : "the gRPC") << " consumer got nothing";
    all.insert(got[i].begin(), got[i].end());
  }
  ASSERT_EQ(all.size(), kBatches);
  uint64_t expect = 0;
  for (uint64_t id : all) EXPECT_EQ(id, expect++);
}

TEST(GrpcFaults, AStreamTheProducerRefusesFailsOpenReader) {
  // The producer refuses the stream (an unknown compression): OpenReader
  // says so, rather than succeeding and failing at the first Next().
  auto w = Writer("grpc://127.0.0.1:0");
  ReaderOptions o;
  o.grpc.compression = "lz4";
  auto r = Reader(w->endpoint(), o);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("unknown compression 'lz4'"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find(w->endpoint()), std::string::npos) << r.status().ToString();
}

TEST(GrpcFaults, ReaderOfPortZeroIsExplained) {
  auto r = Reader("grpc://127.0.0.1:0");
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("port 0"), std::string::npos);
}

TEST(GrpcFaults, OversizeFrameIsRefusedNamingTheLimit) {
  auto w = Writer("grpc://127.0.0.1:0");
  ReaderOptions o;
  o.grpc.max_frame_bytes = 4096;
  auto r = Reader(w->endpoint(), o);
  ASSERT_TRUE(r.ok());
  Publish(*w, 0, 8, 65536);
  auto v = (*r)->Next(Deadline::AfterMillis(5000));
  EXPECT_EQ(v.status().code(), StatusCode::kResourceExhausted) << v.status().ToString();
  EXPECT_NE(v.status().message().find(w->endpoint()), std::string::npos) << v.status().ToString();
  EXPECT_NE(v.status().message().find("max_frame_bytes"), std::string::npos) << v.status().ToString();
}

TEST(GrpcWire, GzipCompressedStreamDeliversTheSameBytes) {
  auto w = Writer("grpc://127.0.0.1:0");
  ReaderOptions o;
  o.grpc.compression = "gzip";
  auto r = Reader(w->endpoint(), o);
  ASSERT_TRUE(r.ok());
  for (uint64_t id = 0; id < 3; ++id) Publish(*w, id, 64, 4096);
  for (uint64_t id = 0; id < 3; ++id) {
    auto v = (*r)->Next(Deadline::AfterMillis(5000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    EXPECT_EQ(CheckBatch(*v), "");
  }
}

// A fake producer that answers the handshake and streams what a test says.
class FakeProducer {
 public:
  struct Control final : pb::DataFeed::Service {
    uint32_t version = 3;
    grpc::Status Handshake(grpc::ServerContext*, const pb::HandshakeRequest*,
                           pb::HandshakeResponse* resp) override {
      resp->set_protocol_version(version);
      resp->set_transport(pb::TRANSPORT_GRPC);
      return grpc::Status::OK;
    }
  };
  struct Stream final : pb::BatchStream::Service {
    std::string payload;
    bool end_too = false;       // also set end_of_stream: not a message datafeed sends
    bool keep_open = false;     // then keep the call open until the consumer cancels it
    grpc::Status StreamBatches(grpc::ServerContext* ctx,
                               grpc::ServerReaderWriter<pb::Frame, pb::StreamRequest>* s) override {
      pb::StreamRequest req;
      s->Read(&req);
      ctx->AddInitialMetadata("datafeed-stream-accepted", "1");
      pb::SessionWelcome welcome;
      welcome.set_consumer_id(req.hello().consumer_id());
      ctx->AddInitialMetadata("datafeed-session-bin", welcome.SerializeAsString());
      pb::Frame f;
      f.set_frame(payload);
      f.set_end_of_stream(end_too);
      s->Write(f);
      for (int i = 0; keep_open && i < 1000 && !ctx->IsCancelled(); ++i) {
        std::this_thread::sleep_for(10ms);
      }
      return grpc::Status::OK;
    }
  };
  FakeProducer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&control);
    b.RegisterService(&stream);
    server_ = b.BuildAndStart();
  }
  ~FakeProducer() { server_->Shutdown(); }
  std::string uri() const { return "grpc://127.0.0.1:" + std::to_string(port_); }
  Control control;
  Stream stream;

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST(GrpcFaults, MalformedFrameFromTheNetworkIsDataLoss) {
  FakeProducer fake;
  fake.stream.payload = std::string(300, '\x07');  // not a batch frame
  auto r = Reader(fake.uri());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto v = (*r)->Next(Deadline::AfterMillis(5000));
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss) << v.status().ToString();
  EXPECT_NE(v.status().message().find(fake.uri()), std::string::npos) << v.status().ToString();
  EXPECT_NE(v.status().message().find("malformed frame"), std::string::npos);
}

TEST(GrpcFaults, AMessageThatDoesNotDecodeIsDataLossNotAHang) {
  // A message that is not a datafeed Frame (here a frame with a field
  // datafeed never puts after it) fails to decode; the producer keeps the
  // call open. The consumer must end the call and say so, not wait in
  // gRPC's Finish() for a producer that never finishes.
  FakeProducer fake;
  fake.stream.payload = std::string(128, '\x01');
  fake.stream.end_too = true;
  fake.stream.keep_open = true;
  auto r = Reader(fake.uri());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto t0 = std::chrono::steady_clock::now();
  auto v = (*r)->Next(Deadline::Infinite());
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss) << v.status().ToString();
  EXPECT_NE(v.status().message().find(fake.uri()), std::string::npos) << v.status().ToString();
  EXPECT_NE(v.status().message().find("malformed message"), std::string::npos) << v.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 8s) << "it waited for the producer to finish the call";
}

TEST(GrpcFaults, ProtocolVersionMismatchIsExplained) {
  FakeProducer fake;
  fake.control.version = 99;
  auto r = Reader(fake.uri());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("protocol 99"), std::string::npos) << r.status().ToString();
}

TEST(GrpcHandshake, ConsumersOnAnotherHostGetTheStreamAndCannotForceShm) {
  // Speak the handshake directly, as a consumer on another machine would.
  auto w = Writer("auto://127.0.0.1:0");
  auto channel = grpc::CreateChannel(w->endpoint().substr(7), grpc::InsecureChannelCredentials());
  pb::DataFeed::Stub stub(channel);
  pb::HandshakeRequest req;
  req.set_protocol_version(3);
  req.set_host_digest(std::string(32, 'x'));  // not this host's digest
  req.set_can_map_shm(true);
  {
    grpc::ClientContext ctx;
    pb::HandshakeResponse resp;
    ASSERT_TRUE(stub.Handshake(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.transport(), pb::TRANSPORT_GRPC);
    EXPECT_EQ(resp.reason(), "the consumer is on another host");
    EXPECT_TRUE(resp.shm_name().empty());
  }
  {
    req.set_preference(pb::TRANSPORT_SHM);
    grpc::ClientContext ctx;
    pb::HandshakeResponse resp;
    grpc::Status st = stub.Handshake(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(st.error_message().find("DATAFEED_TRANSPORT=shm"), std::string::npos) << st.error_message();
  }
  {
    req.set_preference(pb::TRANSPORT_AUTO);
    req.set_protocol_version(7);
    grpc::ClientContext ctx;
    pb::HandshakeResponse resp;
    grpc::Status st = stub.Handshake(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(st.error_message().find("version mismatch"), std::string::npos) << st.error_message();
  }
}

// TLS with certificates made by openssl for this test.
class GrpcTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::path(::testing::TempDir()) / ("datafeed-tls-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    const std::string d = dir_.string();
    const std::string script =
        "set -e; cd '" + d + "';"
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem;"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext;"
        "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr;"
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem;"
        "openssl req -newkey rsa:2048 -nodes -subj /CN=trainer -keyout client.key -out client.csr;"
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out client.pem;"
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.pem";
    ok_ = std::system(("bash -c \"" + script + "\" >/dev/null 2>&1").c_str()) == 0;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  void SetUp() override { ASSERT_TRUE(ok_) << "openssl could not make test certificates"; }
  static std::string F(const char* name) { return (dir_ / name).string(); }

  static fs::path dir_;
  static bool ok_;
};
fs::path GrpcTls::dir_;
bool GrpcTls::ok_ = false;

TEST_F(GrpcTls, ServerCertificateVerifiedByTheConsumer) {
  WriterOptions wo;
  wo.grpc.tls_cert = F("server.pem");
  wo.grpc.tls_key = F("server.key");
  auto w = Writer("grpc://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);
  const std::string uri = "grpc://localhost:" + w->endpoint().substr(w->endpoint().rfind(':') + 1);
  ReaderOptions ro;
  ro.grpc.tls_ca = F("ca.pem");
  auto r = Reader(uri, ro);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Publish(*w, 1);
  auto v = (*r)->Next(Deadline::AfterMillis(5000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(CheckBatch(*v), "");

  ReaderOptions plain;  // no TLS against a TLS producer
  plain.connect_timeout_ms = 500;
  EXPECT_FALSE(Reader(uri, plain).ok());
  ReaderOptions wrong_ca;
  wrong_ca.connect_timeout_ms = 500;
  wrong_ca.grpc.tls_ca = F("other.pem");
  auto bad = Reader(uri, wrong_ca);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(uri), std::string::npos) << bad.status().ToString();
}

TEST_F(GrpcTls, MutualTlsRequiresAClientCertificate) {
  WriterOptions wo;
  wo.grpc.tls_cert = F("server.pem");
  wo.grpc.tls_key = F("server.key");
  wo.grpc.tls_ca = F("ca.pem");
  auto w = Writer("grpc://127.0.0.1:0", wo);
  ASSERT_NE(w, nullptr);
  const std::string uri = "grpc://localhost:" + w->endpoint().substr(w->endpoint().rfind(':') + 1);
  ReaderOptions no_cert;
  no_cert.connect_timeout_ms = 500;
  no_cert.grpc.tls_ca = F("ca.pem");
  EXPECT_FALSE(Reader(uri, no_cert).ok());
  ReaderOptions with_cert = no_cert;
  with_cert.grpc.tls_cert = F("client.pem");
  with_cert.grpc.tls_key = F("client.key");
  auto r = Reader(uri, with_cert);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Publish(*w, 2);
  auto v = (*r)->Next(Deadline::AfterMillis(5000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 2u);
}

TEST_F(GrpcTls, MissingCertificateFileIsNamed) {
  WriterOptions wo;
  wo.grpc.tls_cert = F("nope.pem");
  wo.grpc.tls_key = F("server.key");
  auto w = OpenWriter(ParseEndpoint("grpc://127.0.0.1:0").value(), wo);
  EXPECT_EQ(w.status().code(), StatusCode::kNotFound);
  EXPECT_NE(w.status().message().find("nope.pem"), std::string::npos) << w.status().ToString();
}

}  // namespace
}  // namespace datafeed
