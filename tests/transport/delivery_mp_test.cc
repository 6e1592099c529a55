// The delivery contract (delivery.h) across processes and failures, over
// shared memory, the gRPC stream and auto:// alike: a consumer killed with
// -9, a consumer that stalls, a broken gRPC connection, a producer killed
// with -9 and restarted (with its state directory, without it, with
// another run). Producers and consumers in other processes are
// datafeed_test_peer (test_peer.cc); every test checks what each batch
// identity became: consumed exactly once, nothing lost, nothing repeated.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "datafeed/transport/transport.h"
#include "peer_util.h"
#include "proxy_util.h"
#include "run_util.h"
#include "test_util.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
using testing::AllKeys;
using testing::CheckRunBatch;
using testing::KeyOf;
using testing::KeyTally;
using testing::Peer;
using testing::ServeThread;
using testing::TestRun;
using testing::UniqueName;

// A fresh directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() : path_(fs::path(::testing::TempDir()) / UniqueName("df-state")) { fs::create_directories(path_); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Removes /dev/shm/datafeed.NAME at the end (a producer killed with -9
// leaves its segment behind).
struct SegmentCleanup {
  std::string name;
  ~SegmentCleanup() { ::unlink(("/dev/shm/datafeed." + name).c_str()); }
};

std::unique_ptr<BatchWriter> RunWriter(const std::string& uri, const RunInfo& run, int64_t consumer_timeout_ms) {
  WriterOptions o;
  o.shm.slot_count = 4;
  o.shm.slot_bytes = 1 << 20;
  o.run = run;
  o.consumer_timeout_ms = consumer_timeout_ms;
  auto w = OpenWriter(ParseEndpoint(uri).value(), o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

ReaderOptions SessionReaderOptions(bool reconnect = false) {
  ReaderOptions o;
  o.connect_timeout_ms = 10'000;
  o.reconnect = reconnect;
  o.reconnect_timeout_ms = 20'000;
  return o;
}

std::unique_ptr<BatchReader> Reader(const std::string& uri, const ReaderOptions& o = SessionReaderOptions()) {
  auto r = OpenReader(ParseEndpoint(uri).value(), o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// Hands out batches until the end of the stream, checking each one's
// identity and content. `limit`: stop after that many.
std::vector<BatchKey> ReadKeys(BatchReader& r, const RunInfo& run, size_t limit = SIZE_MAX,
                               Status* end = nullptr) {
  std::vector<BatchKey> keys;
  while (keys.size() < limit) {
    Result<BatchView> v = r.Next(Deadline::AfterMillis(20'000));
    if (!v.ok()) {
      if (end != nullptr) {
        *end = v.status();
      } else {
        EXPECT_TRUE(v.status().IsEndOfStream()) << "after " << keys.size() << " batches: " << v.status().ToString();
      }
      break;
    }
    EXPECT_EQ(CheckRunBatch(*v, run), "");
    keys.push_back(KeyOf(v->meta()));
  }
  return keys;
}

// Waits (bounded polling of the producer's GetStats) until its gRPC streams
// have sent at least `n` frames; false if they have not within 10 s.
bool WaitStreamed(const std::string& grpc_endpoint, uint64_t n) {
  const Endpoint ep = ParseEndpoint(grpc_endpoint).value();
  auto channel = grpc::CreateChannel(ep.name + ":" + std::to_string(ep.port), grpc::InsecureChannelCredentials());
  auto stub = ::datafeed::v1::DataFeed::NewStub(channel);
  const Deadline give_up = Deadline::AfterMillis(10'000);
  while (!give_up.expired()) {
    grpc::ClientContext ctx;
    ::datafeed::v1::StatsRequest req;
    ::datafeed::v1::StatsResponse resp;
    if (stub->GetStats(&ctx, req, &resp).ok() && resp.batches_streamed() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// A "EPOCH INDEX" line of a read peer.
BatchKey ParseKey(const std::string& line) {
  unsigned long long e = 0, i = 0;
  EXPECT_EQ(std::sscanf(line.c_str(), "%llu %llu", &e, &i), 2) << "the peer said: '" << line << "'";
  return {e, i};
}

// The transports a test runs over. Readers open what the writer reports.
class DeliveryMp : public ::testing::TestWithParam<std::string> {
 protected:
  std::string WriterUri() const {
    if (GetParam() == "shm") return "shm://" + UniqueName("dmp");
    return GetParam() + "://127.0.0.1:0";
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, DeliveryMp, ::testing::Values("shm", "grpc", "auto"),
                         [](const auto& info) { return info.param; });

// ---------------------------------------------------------------- rule 3: dead and stalled consumers

TEST_P(DeliveryMp, AKilledConsumersUnacknowledgedBatchesGoToTheLiveConsumer) {
  const RunInfo run = TestRun(10, 2);
  auto w = RunWriter(WriterUri(), run, 1000);
  ASSERT_NE(w, nullptr);
  // The doomed consumer attaches first and takes the first batches alone;
  // it stops after its third (the trainer's step never ends) and is killed.
  Peer doomed({"read", w->endpoint(), "stall=3"});
  ASSERT_EQ(doomed.ReadLine(), "attached");
  ServeThread serve(*w);
  std::vector<BatchKey> doomed_keys;
  for (int i = 0; i < 3; ++i) doomed_keys.push_back(ParseKey(doomed.ReadLine()));
  doomed.Kill();
  auto live = Reader(w->endpoint());
  ASSERT_NE(live, nullptr);
  const std::vector<BatchKey> got = ReadKeys(*live, run);
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  // It acknowledged its first two batches (by asking for the third); the
  // third, and whatever it had read ahead, went back to the queue.
  KeyTally tally;
  tally.Add(std::vector<BatchKey>{doomed_keys[0], doomed_keys[1]}, "killed consumer");
  tally.Add(got, "live consumer");
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
}

TEST_P(DeliveryMp, AStalledConsumerLosesItsLeasesAndIsToldSoWhenItComesBack) {
  const RunInfo run = TestRun(8, 1);
  auto w = RunWriter(WriterUri(), run, 500);
  ASSERT_NE(w, nullptr);
  auto stalled = Reader(w->endpoint());
  ASSERT_NE(stalled, nullptr);
  ServeThread serve(*w);
  BatchKey held;
  {
    Result<BatchView> v = stalled->Next(Deadline::AfterMillis(10'000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    held = KeyOf(v->meta());
  }
  // On the stream, the frames the producer sent ahead (its window) are
  // leased to the stalled consumer too: wait until they are on their way,
  // so that they, not only the batch it holds, are taken back.
  if (GetParam() == "grpc") {
    ASSERT_TRUE(WaitStreamed(w->endpoint(), 3));
  }
  // The live consumer gets everything, the stalled one's batch included:
  // nobody starves because another consumer stopped.
  auto live = Reader(w->endpoint());
  ASSERT_NE(live, nullptr);
  KeyTally tally;
  tally.Add(ReadKeys(*live, run), "live consumer");
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
  Result<BatchView> back = stalled->Next(Deadline::AfterMillis(10'000));
  if (back.ok()) {
    ADD_FAILURE() << "the stalled consumer was handed " << BatchIdString(back->meta())
                  << " after its leases were taken back (the live consumer had every batch)";
  }
  EXPECT_EQ(back.status().code(), StatusCode::kAborted) << back.status().ToString();
  EXPECT_NE(back.status().message().find(ToString(held)), std::string::npos) << back.status().ToString();
  EXPECT_NE(back.status().message().find("consumer-timeout"), std::string::npos) << back.status().ToString();
}

// ---------------------------------------------------------------- rule 4: reconnects

TEST(DeliveryReconnect, ABrokenGrpcConnectionResumesTheSessionWithoutGapOrDuplicate) {
  const RunInfo run = TestRun(15, 2);
  auto w = RunWriter("grpc://127.0.0.1:0", run, 20'000);
  ASSERT_NE(w, nullptr);
  testing::TcpProxy proxy(static_cast<uint16_t>(ParseEndpoint(w->endpoint()).value().port));
  ASSERT_NE(proxy.port(), 0);
  ReaderOptions o = SessionReaderOptions(/*reconnect=*/true);
  o.grpc_prefetch = 4;  // frames in flight when the connection breaks
  auto r = Reader("grpc://127.0.0.1:" + std::to_string(proxy.port()), o);
  ASSERT_NE(r, nullptr);
  ServeThread serve(*w);
  KeyTally tally;
  tally.Add(ReadKeys(*r, run, 5), "before the first cut");
  proxy.Cut();
  tally.Add(ReadKeys(*r, run, 10), "before the second cut");
  proxy.Cut();
  tally.Add(ReadKeys(*r, run), "after the cuts");
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
  EXPECT_GE(proxy.accepted(), 3) << "the consumer did not reconnect after each cut";
}

// Frames that were queued in the consumer, not yet taken by its trainer,
// when the connection broke: the resumed stream must not count them as
// taken. It did (the chaos test's stall): the producer sent a full window
// on top of them, the consumer's queue reached its limit and stopped
// reading, so the confirmation its Next() waits for sat unread behind the
// frames for 10 s, longer than the consumer timeout, and the consumer lost
// its leases (and its trainer the step it held: Aborted).
TEST(DeliveryReconnect, FramesQueuedWhenTheConnectionBrokeDoNotStallTheResumedStream) {
  const RunInfo run = TestRun(24, 1);
  auto w = RunWriter("grpc://127.0.0.1:0", run, 4'000);
  ASSERT_NE(w, nullptr);
  testing::TcpProxy proxy(static_cast<uint16_t>(ParseEndpoint(w->endpoint()).value().port));
  ASSERT_NE(proxy.port(), 0);
  ReaderOptions o = SessionReaderOptions(/*reconnect=*/true);
  o.grpc_prefetch = 4;
  auto r = Reader("grpc://127.0.0.1:" + std::to_string(proxy.port()), o);
  ASSERT_NE(r, nullptr);
  ServeThread serve(*w);
  KeyTally tally;
  tally.Add(ReadKeys(*r, run, 1), "before the cut");
  // The producer fills the window: frames on their way to, or queued in,
  // the consumer, which takes none of them before the cut.
  ASSERT_TRUE(WaitStreamed(w->endpoint(), 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let them arrive (no assertion on time)
  proxy.Cut();
  // The trainer takes nothing until the consumer has reconnected and the
  // producer has sent on the resumed stream (frames beyond the first 7).
  ASSERT_TRUE(WaitStreamed(w->endpoint(), 10)) << "the consumer did not resume the stream";
  EXPECT_GE(proxy.accepted(), 2) << "the consumer did not reconnect after the cut";
  tally.Add(ReadKeys(*r, run), "after the cut");
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
  EXPECT_EQ(w->delivery_stats().leases_lost, 0u) << "the resumed consumer stalled past the consumer timeout";
}

// auto:// on the producer's host: a session the producer refuses (here a
// checkpoint of another run) is its answer, not a ring this consumer cannot
// use. It printed "not reading the shared memory its handshake named ...;
// reading its gRPC stream instead" first, then the stream refused too.
TEST(DeliveryRestore, AnAutoSessionTheProducerRefusesIsItsAnswerNotAFallbackToTheStream) {
  const RunInfo run = TestRun(4, 1);
  auto w = RunWriter("auto://127.0.0.1:0", run, 5'000);
  ASSERT_NE(w, nullptr);
  StreamPosition other;
  other.fingerprint = run.fingerprint ^ 0xFF;
  other.consumer_id = 77;
  other.position = 2;
  ReaderOptions o = SessionReaderOptions();
  o.session.restore = {other};
  ::testing::internal::CaptureStderr();
  auto r = OpenReader(ParseEndpoint(w->endpoint()).value(), o);
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("serves run"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(err.find("instead"), std::string::npos) << err;
}

// ---------------------------------------------------------------- rule 5: producer restarts

TEST_P(DeliveryMp, AProducerKilledAndRestartedWithItsStateDirContinuesWithoutLossOrRepeat) {
  TempDir state;
  SegmentCleanup ring{UniqueName("dmp-ring")};
  const RunInfo run = TestRun(10, 2);
  std::vector<std::string> args = {"serve", WriterUri(), "bpe=10", "epochs=2", "state=" + state.str(),
                                   "timeout=5000", "shm=" + ring.name};
  if (GetParam() == "shm") args[1] = "shm://" + ring.name;
  auto producer = std::make_unique<Peer>(args);
  const std::string uri = producer->Serving();
  args[1] = uri;  // the restart serves on the port the kernel gave the first one
  EXPECT_NE(producer->ReadLine().find("new run"), std::string::npos);
  auto r = Reader(uri, SessionReaderOptions(/*reconnect=*/true));
  ASSERT_NE(r, nullptr);
  KeyTally tally;
  tally.Add(ReadKeys(*r, run, 5), "before the kill");
  producer->Kill();
  producer = std::make_unique<Peer>(args);
  ASSERT_EQ(producer->Serving(), uri);
  const std::string summary = producer->ReadLine();
  EXPECT_NE(summary.find("resumed"), std::string::npos) << summary;
  tally.Add(ReadKeys(*r, run), "after the restart");
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
  if (HasFailure()) return;  // the producer may wait for acknowledgements forever: ~Peer kills it
  EXPECT_EQ(producer->ReadLine(), "done");
  EXPECT_EQ(producer->Wait(), 0);
}

TEST_P(DeliveryMp, AProducerRestartedWithoutItsStateDirIsDataLossNotARepeat) {
  SegmentCleanup ring{UniqueName("dmp-ring")};
  const RunInfo run = TestRun(10, 2);
  std::vector<std::string> args = {"serve", WriterUri(), "bpe=10", "epochs=2", "timeout=5000", "shm=" + ring.name};
  if (GetParam() == "shm") args[1] = "shm://" + ring.name;
  auto producer = std::make_unique<Peer>(args);
  const std::string uri = producer->Serving();
  args[1] = uri;
  auto r = Reader(uri, SessionReaderOptions(/*reconnect=*/true));
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(ReadKeys(*r, run, 3).size(), 3u);
  producer->Kill();
  producer = std::make_unique<Peer>(args);
  ASSERT_EQ(producer->Serving(), uri);
  // What was received before the kill may still come (read ahead); then the
  // new producer, which knows nothing of this consumer, must refuse to
  // continue its session instead of serving the run again from the start.
  Status end;
  const std::vector<BatchKey> after = ReadKeys(*r, run, 20, &end);
  EXPECT_LE(after.size(), 4u);
  EXPECT_EQ(end.code(), StatusCode::kDataLoss) << end.ToString();
  EXPECT_NE(end.message().find("--state-dir"), std::string::npos) << end.ToString();
}

TEST(DeliveryProducerRestart, ARestartWithAnotherRunRefusesTheStateDir) {
  TempDir state;
  SegmentCleanup ring{UniqueName("dmp-other")};
  {
    Peer first({"serve", ring.name, "bpe=10", "state=" + state.str()});
    first.Serving();
    first.Kill();
  }
  Peer other({"serve", ring.name, "bpe=10", "state=" + state.str(), "fp=0x1234"});
  const std::string line = other.ReadLine();
  EXPECT_EQ(line.rfind("error FailedPrecondition", 0), 0u) << line;
  EXPECT_NE(line.find("another run"), std::string::npos) << line;
  EXPECT_NE(line.find("--state-dir"), std::string::npos) << line;
  EXPECT_EQ(other.Wait(), 4);
}

}  // namespace
}  // namespace datafeed
