// One consumer reading several producers (docs/DESIGN.md, "Many
// producers"): an endpoint that lists them, a DNS name that resolves to
// them (and later to one more), a producer named twice, a producer killed
// with -9 while the others go on, the epoch barrier, and a checkpoint taken
// across two producers restored by a new consumer; several gRPC streams to
// one producer (grpc_streams): N connections, every batch once, a checkpoint
// of N positions restored. Every test counts batch identities per run: each
// exactly once, nothing else.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/transport/transport.h"
#include "multi/multi_reader_internal.h"
#include "peer_util.h"
#include "run_util.h"
#include "test_util.h"

namespace datafeed {
namespace {

using testing::AllKeys;
using testing::CheckRunBatch;
using testing::KeyOf;
using testing::KeyTally;
using testing::Peer;
using testing::ServeThread;
using testing::TestRun;

constexpr uint64_t kFpA = 0xA0A0'0000'0000'000AULL;
constexpr uint64_t kFpB = 0xB0B0'0000'0000'000BULL;

std::unique_ptr<BatchWriter> RunWriter(const std::string& uri, const RunInfo& run) {
  WriterOptions o;
  o.shm.slot_count = 4;
  o.shm.slot_bytes = 1 << 20;
  o.run = run;
  o.consumer_timeout_ms = 10'000;
  auto w = OpenWriter(ParseEndpoint(uri).value(), o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

int PortOf(const BatchWriter& w) { return ParseEndpoint(w.endpoint()).value().port; }

// SCHEME://127.0.0.1:A,127.0.0.1:B: an endpoint listing two local producers.
std::string ListOf(const std::string& scheme, int a, int b) {
  return scheme + "://127.0.0.1:" + std::to_string(a) + ",127.0.0.1:" + std::to_string(b);
}

std::unique_ptr<BatchReader> Reader(const std::string& uri, ReaderOptions o = {}) {
  o.connect_timeout_ms = 10'000;
  auto r = OpenReader(ParseEndpoint(uri).value(), o);
  EXPECT_TRUE(r.ok()) << uri << ": " << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

// A batch as the tally counts it: its run and its identity.
struct Seen {
  uint64_t fingerprint;
  BatchKey key;
};

// Hands out batches until the stream ends (or `limit`), checking each
// batch's content against its run. `end`: the status that ended it.
std::vector<Seen> ReadAll(BatchReader& r, const std::map<uint64_t, RunInfo>& runs, Status* end,
                          size_t limit = SIZE_MAX) {
  std::vector<Seen> out;
  while (out.size() < limit) {
    Result<BatchView> v = r.Next(Deadline::AfterMillis(20'000));
    if (!v.ok()) {
      *end = v.status();
      break;
    }
    auto run = runs.find(v->meta().fingerprint);
    if (run == runs.end()) {
      ADD_FAILURE() << "a batch of no run of this test: " << BatchIdString(v->meta());
      continue;
    }
    EXPECT_EQ(CheckRunBatch(*v, run->second), "");
    out.push_back({v->meta().fingerprint, KeyOf(v->meta())});
  }
  return out;
}

// Per run: every key exactly once ("" when so).
std::string CheckRuns(const std::vector<Seen>& seen, const std::map<uint64_t, RunInfo>& runs) {
  std::string out;
  for (const auto& [fp, run] : runs) {
    KeyTally tally;
    for (const Seen& s : seen) {
      if (s.fingerprint == fp) tally.Add(s.key, "consumer");
    }
    const std::string one = tally.Check(AllKeys(run));
    if (!one.empty()) out += "run " + std::to_string(fp) + ": " + one;
  }
  return out;
}

class Multi : public ::testing::TestWithParam<std::string> {};

TEST_P(Multi, AListedEndpointReadsEveryProducerExactlyOnceThenEnds) {
  const RunInfo a = TestRun(6, 2, kFpA), b = TestRun(6, 2, kFpB);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  auto wb = RunWriter("grpc://127.0.0.1:0", b);
  ASSERT_TRUE(wa && wb);
  ServeThread sa(*wa), sb(*wb);
  const std::string uri = ListOf(GetParam(), PortOf(*wa), PortOf(*wb));
  auto r = Reader(uri);
  ASSERT_TRUE(r);
  Status end;
  const std::map<uint64_t, RunInfo> runs{{kFpA, a}, {kFpB, b}};
  std::vector<Seen> seen = ReadAll(*r, runs, &end);
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, runs), "");
  const std::vector<ProducerLink> links = r->links();
  ASSERT_EQ(links.size(), 2u);
  for (const ProducerLink& l : links) {
    EXPECT_EQ(l.state, "ended") << l.endpoint;
    EXPECT_EQ(l.batches, 12u) << l.endpoint;
    EXPECT_EQ(l.transport, GetParam() == "auto" ? Scheme::kShm : Scheme::kGrpc) << l.endpoint;
  }
  // Both producers are live and quick: the barrier keeps the epochs in order.
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_LE(seen[i - 1].key.epoch, seen[i].key.epoch) << "batch " << i << " came from an earlier epoch";
  }
  EXPECT_TRUE(sa.Join().ok());
  EXPECT_TRUE(sb.Join().ok());
}

TEST_P(Multi, AProducerNamedTwiceIsReadOnce) {
  const RunInfo a = TestRun(5, 1, kFpA);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  ASSERT_TRUE(wa);
  ServeThread sa(*wa);
  const std::string port = std::to_string(PortOf(*wa));
  auto r = Reader(GetParam() + "://127.0.0.1:" + port + ",localhost:" + port);
  ASSERT_TRUE(r);
  Status end;
  std::vector<Seen> seen = ReadAll(*r, {{kFpA, a}}, &end);
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, {{kFpA, a}}), "");
  EXPECT_EQ(r->links().size(), 1u);
  EXPECT_TRUE(sa.Join().ok());
}

TEST_P(Multi, AProducerKilledLeavesTheOthersReadAndTheEndNamesIt) {
  const RunInfo a = TestRun(8, 1, kFpA), b = TestRun(200, 1, kFpB);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  ASSERT_TRUE(wa);
  ServeThread sa(*wa);
  Peer doomed({"serve", "grpc://127.0.0.1:0", "bpe=200", "fp=" + std::to_string(kFpB), "timeout=10000"});
  const std::string doomed_uri = doomed.Serving();
  const int doomed_port = ParseEndpoint(doomed_uri).value().port;
  // Killed below: its ring (named after its pid and port) is stale then.
  testing::RemoveStaleAtEnd cleanup{"-" + std::to_string(doomed_port)};
  auto r = Reader(ListOf(GetParam(), PortOf(*wa), doomed_port));
  ASSERT_TRUE(r);
  const std::map<uint64_t, RunInfo> runs{{kFpA, a}, {kFpB, b}};
  std::vector<Seen> seen;
  // Read until the doomed producer gave us a few batches, then kill it.
  Status end;
  for (int i = 0; i < 400; ++i) {
    std::vector<Seen> one = ReadAll(*r, runs, &end, 1);
    ASSERT_EQ(one.size(), 1u) << end.ToString();
    seen.push_back(one[0]);
    size_t from_b = 0;
    for (const Seen& s : seen) from_b += s.fingerprint == kFpB ? 1 : 0;
    if (from_b >= 3) break;
  }
  doomed.Kill();
  std::vector<Seen> rest = ReadAll(*r, runs, &end);
  seen.insert(seen.end(), rest.begin(), rest.end());
  // The end is loud: the stream does not simply end while a producer was lost.
  EXPECT_EQ(end.code(), StatusCode::kUnavailable) << end.ToString();
  EXPECT_NE(end.message().find(std::to_string(doomed_port)), std::string::npos) << end.ToString();
  // Everything of the live producer, exactly once; of the dead one, no repeats.
  EXPECT_EQ(CheckRuns(seen, {{kFpA, a}}), "");
  std::vector<BatchKey> b_keys;
  for (const Seen& s : seen) {
    if (s.fingerprint == kFpB) b_keys.push_back(s.key);
  }
  std::set<BatchKey> distinct(b_keys.begin(), b_keys.end());
  EXPECT_EQ(distinct.size(), b_keys.size()) << "a batch of the killed producer came twice";
  EXPECT_GE(b_keys.size(), 3u);
  size_t lost = 0;
  for (const ProducerLink& l : r->links()) lost += l.state.rfind("lost: ", 0) == 0 ? 1 : 0;
  EXPECT_EQ(lost, 1u);
  EXPECT_TRUE(sa.Join().ok());
}

// A DNS name resolved to every producer; resolved again, it finds one that
// appeared after the consumer started.
TEST(MultiDns, ANameResolvesToEveryProducerAndNewOnesAreFound) {
  const RunInfo a = TestRun(6, 1, kFpA), b = TestRun(6, 1, kFpB);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  ASSERT_TRUE(wa);
  ServeThread sa(*wa);
  const int port = PortOf(*wa);
  std::atomic<bool> second{false};
  std::atomic<int> lookups{0};
  internal::SetHostResolverForTesting([&](const std::string& host) -> Result<std::vector<std::string>> {
    EXPECT_EQ(host, "producers.datafeed.test");
    ++lookups;
    if (second.load()) return std::vector<std::string>{"127.0.0.1", "127.0.0.2"};
    return std::vector<std::string>{"127.0.0.1"};
  });
  struct Restore {
    ~Restore() { internal::SetHostResolverForTesting(nullptr); }
  } restore;
  ReaderOptions o;
  o.resolve_every_ms = 100;
  o.epoch_barrier_ms = 500;
  auto r = Reader("grpc://producers.datafeed.test:" + std::to_string(port), o);
  ASSERT_TRUE(r);
  const std::map<uint64_t, RunInfo> runs{{kFpA, a}, {kFpB, b}};
  Status end;
  // A's first batch, before B exists: A's run does not end while this
  // consumer holds batches it did not acknowledge, so the stream cannot end
  // before B is found.
  std::vector<Seen> seen = ReadAll(*r, runs, &end, 1);
  ASSERT_EQ(seen.size(), 1u) << end.ToString();
  // B: the same port on another loopback address, as a second pod would be.
  auto wb = RunWriter("grpc://127.0.0.2:" + std::to_string(port), b);
  ASSERT_TRUE(wb);
  ServeThread sb(*wb);
  second.store(true);
  // Found within a few resolves (bounded wait).
  const Deadline give_up = Deadline::AfterMillis(20'000);
  while (r->links().size() < 2 && !give_up.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(r->links().size(), 2u) << "the producer that appeared was not found (" << lookups.load() << " lookups)";
  std::vector<Seen> rest = ReadAll(*r, runs, &end);
  seen.insert(seen.end(), rest.begin(), rest.end());
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, runs), "");
  for (const ProducerLink& l : r->links()) {
    EXPECT_NE(l.endpoint.find("producers.datafeed.test"), std::string::npos) << l.endpoint;
  }
  EXPECT_TRUE(sa.Join().ok());
  EXPECT_TRUE(sb.Join().ok());
}

// A consumer of two producers checkpoints (one position per producer); a
// new consumer restores it and gets the rest of both runs: nothing twice,
// nothing missing.
TEST_P(Multi, ACheckpointAcrossTwoProducersRestoresEach) {
  // Runs longer than what the first consumer reads: a producer whose run
  // was all acknowledged ends, and cannot give batches back after that.
  const RunInfo a = TestRun(20, 1, kFpA), b = TestRun(20, 1, kFpB);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  auto wb = RunWriter("grpc://127.0.0.1:0", b);
  ASSERT_TRUE(wa && wb);
  ServeThread sa(*wa), sb(*wb);
  const std::string uri = ListOf(GetParam(), PortOf(*wa), PortOf(*wb));
  const std::map<uint64_t, RunInfo> runs{{kFpA, a}, {kFpB, b}};
  std::vector<Seen> seen;
  ConsumerState checkpoint;
  {
    auto first = Reader(uri);
    ASSERT_TRUE(first);
    Status end;
    seen = ReadAll(*first, runs, &end, 6);
    ASSERT_EQ(seen.size(), 6u) << end.ToString();
    checkpoint = first->state();
    // A few more that the checkpoint does not cover: given again after the restore.
    std::vector<Seen> after = ReadAll(*first, runs, &end, 3);
    ASSERT_EQ(after.size(), 3u) << end.ToString();
    first->Cancel();
  }
  ASSERT_EQ(checkpoint.streams.size(), 2u) << checkpoint.ToJson();
  uint64_t positions = 0;
  for (const StreamPosition& p : checkpoint.streams) positions += p.position;
  EXPECT_EQ(positions, 6u) << checkpoint.ToJson();
  ReaderOptions o;
  o.session.restore = checkpoint.streams;
  auto second = Reader(uri, o);
  ASSERT_TRUE(second);
  Status end;
  std::vector<Seen> rest = ReadAll(*second, runs, &end);
  seen.insert(seen.end(), rest.begin(), rest.end());
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, runs), "");
  EXPECT_TRUE(sa.Join().ok());
  EXPECT_TRUE(sb.Join().ok());
}

// A checkpoint of runs none of the producers serves is refused by name.
TEST(MultiRestore, ACheckpointOfAnotherRunIsRefused) {
  const RunInfo a = TestRun(4, 1, kFpA), b = TestRun(4, 1, kFpB);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  auto wb = RunWriter("grpc://127.0.0.1:0", b);
  ASSERT_TRUE(wa && wb);
  StreamPosition other;
  other.fingerprint = 0x1234;
  other.consumer_id = 77;
  other.position = 2;
  ReaderOptions o;
  o.connect_timeout_ms = 10'000;
  o.session.restore = {other};
  auto r = OpenReader(ParseEndpoint(ListOf("grpc", PortOf(*wa), PortOf(*wb))).value(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << r.status().ToString();
  EXPECT_NE(r.status().message().find("another run"), std::string::npos) << r.status().ToString();
}

INSTANTIATE_TEST_SUITE_P(Transports, Multi, ::testing::Values("grpc", "auto"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// ---- Several streams to one producer (ReaderOptions::grpc_streams) ----------
//
// One consumer, N gRPC streams to the same producer: N TCP connections, N
// delivery sessions, merged as a list of producers is.

// ESTABLISHED TCP connections of this host whose remote port is `port`
// (/proc/net/tcp and tcp6, what `ss -tn` reads): with producer and consumer
// in one process, the consumer's ends of its connections to the producer.
int ConnectionsTo(int port) {
  int n = 0;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::FILE* f = std::fopen(path, "r");
    if (f == nullptr) continue;
    char line[512];
    bool header = true;
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (header) {
        header = false;
        continue;
      }
      // "  0: 0100007F:A3F2 0100007F:1F90 01 ...": local, remote, state.
      char local[128] = {0}, remote[128] = {0};
      unsigned state = 0;
      if (std::sscanf(line, "%*d: %127s %127s %x", local, remote, &state) != 3) continue;
      const char* colon = std::strrchr(remote, ':');
      if (colon != nullptr && std::strtol(colon + 1, nullptr, 16) == port && state == 0x01) ++n;
    }
    std::fclose(f);
  }
  return n;
}

ReaderOptions Streams(int n) {
  ReaderOptions o;
  o.grpc_streams = n;
  return o;
}

TEST(GrpcStreams, ThreeStreamsToOneProducerAreThreeConnectionsAndDeliverEveryBatchOnce) {
  const RunInfo a = TestRun(30, 2, kFpA);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  ASSERT_TRUE(wa);
  ServeThread sa(*wa);
  const int port = PortOf(*wa);
  auto r = Reader("grpc://127.0.0.1:" + std::to_string(port), Streams(3));
  ASSERT_TRUE(r);
  // Three sessions at the producer, over three TCP connections (gRPC would
  // carry them all on one connection if the channels shared a subchannel).
  // The handshake's probe connection may still be closing: wait (bounded)
  // until only the streams' connections are left.
  EXPECT_EQ(wa->delivery_stats().live_sessions, 3u);
  const Deadline give_up = Deadline::AfterMillis(10'000);
  while (ConnectionsTo(port) != 3 && !give_up.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(ConnectionsTo(port), 3);
  // One producer's epoch, not three.
  EXPECT_EQ(r->batches_per_epoch(), 30u);
  Status end;
  std::vector<Seen> seen = ReadAll(*r, {{kFpA, a}}, &end);
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, {{kFpA, a}}), "");
  // The streams are held to each other as producers are: epochs in order.
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_LE(seen[i - 1].key.epoch, seen[i].key.epoch) << "batch " << i << " came from an earlier epoch";
  }
  const std::vector<ProducerLink> links = r->links();
  ASSERT_EQ(links.size(), 3u);
  uint64_t total = 0;
  for (const ProducerLink& l : links) {
    EXPECT_EQ(l.state, "ended") << l.endpoint;
    EXPECT_EQ(l.transport, Scheme::kGrpc) << l.endpoint;
    EXPECT_NE(l.endpoint.find("/3"), std::string::npos) << l.endpoint;
    // The producer splits its batches between the sessions: each carried some.
    EXPECT_GT(l.batches, 0u) << l.endpoint;
    total += l.batches;
  }
  EXPECT_EQ(total, 60u);
  EXPECT_TRUE(sa.Join().ok());
}

// A checkpoint of a consumer with three streams has a position per stream;
// a new consumer restores it (with three streams, or two: a group restore
// of the positions; or one, given rank and world size as a group's
// checkpoint needs) and gets exactly the batches after it.
class GrpcStreamsRestore : public ::testing::TestWithParam<int> {};

TEST_P(GrpcStreamsRestore, ACheckpointOfThreeStreamsRestoresExactlyTheBatchesAfterIt) {
  const RunInfo a = TestRun(40, 1, kFpA);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  ASSERT_TRUE(wa);
  ServeThread sa(*wa);
  const std::string uri = "grpc://127.0.0.1:" + std::to_string(PortOf(*wa));
  std::vector<Seen> seen;
  ConsumerState checkpoint;
  {
    auto first = Reader(uri, Streams(3));
    ASSERT_TRUE(first);
    Status end;
    seen = ReadAll(*first, {{kFpA, a}}, &end, 10);
    ASSERT_EQ(seen.size(), 10u) << end.ToString();
    checkpoint = first->state();
    // Handed out after the checkpoint: they come again after the restore.
    std::vector<Seen> after = ReadAll(*first, {{kFpA, a}}, &end, 4);
    ASSERT_EQ(after.size(), 4u) << end.ToString();
    first->Cancel();
  }
  ASSERT_EQ(checkpoint.streams.size(), 3u) << checkpoint.ToJson();
  std::set<uint64_t> ids;
  uint64_t positions = 0;
  for (const StreamPosition& p : checkpoint.streams) {
    ids.insert(p.consumer_id);
    positions += p.position;
  }
  EXPECT_EQ(ids.size(), 3u) << "one session (consumer id) per stream: " << checkpoint.ToJson();
  EXPECT_EQ(positions, 10u) << checkpoint.ToJson();
  ReaderOptions o = Streams(GetParam());
  o.session.restore = checkpoint.streams;
  if (GetParam() == 1) {
    // Three positions onto one stream: as a group's checkpoint, a group
    // restore (here of one rank).
    o.session.rank = 0;
    o.session.world_size = 1;
  }
  auto second = Reader(uri, o);
  ASSERT_TRUE(second);
  if (GetParam() > 1) {
    EXPECT_EQ(second->links().size(), static_cast<size_t>(GetParam()));
  }
  Status end;
  std::vector<Seen> rest = ReadAll(*second, {{kFpA, a}}, &end);
  seen.insert(seen.end(), rest.begin(), rest.end());
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, {{kFpA, a}}), "");
  EXPECT_TRUE(sa.Join().ok());
}

INSTANTIATE_TEST_SUITE_P(Streams, GrpcStreamsRestore, ::testing::Values(3, 2, 1),
                         [](const ::testing::TestParamInfo<int>& info) { return "to" + std::to_string(info.param); });

// auto:// on the producer's host reads its ring: one reader, whatever N.
TEST(GrpcStreams, AutoThatPicksSharedMemoryOpensOneReader) {
  const RunInfo a = TestRun(6, 1, kFpA);
  auto wa = RunWriter("grpc://127.0.0.1:0", a);
  ASSERT_TRUE(wa);
  ServeThread sa(*wa);
  auto r = Reader("auto://127.0.0.1:" + std::to_string(PortOf(*wa)), Streams(4));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->transport(), Scheme::kShm);
  EXPECT_EQ(r->links().size(), 1u);
  Status end;
  std::vector<Seen> seen = ReadAll(*r, {{kFpA, a}}, &end);
  EXPECT_TRUE(end.IsEndOfStream()) << end.ToString();
  EXPECT_EQ(CheckRuns(seen, {{kFpA, a}}), "");
  EXPECT_TRUE(sa.Join().ok());
}

TEST(GrpcStreams, ACountOutOfRangeIsRefusedByName) {
  for (int n : {0, ReaderOptions::kMaxGrpcStreams + 1}) {
    auto r = OpenReader(ParseEndpoint("grpc://127.0.0.1:5000").value(), Streams(n));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("grpc_streams"), std::string::npos) << r.status().ToString();
  }
}

}  // namespace
}  // namespace datafeed
