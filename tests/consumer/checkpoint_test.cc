// A trainer's checkpoint and restart through datafeed::Consumer (the
// delivery contract, delivery.h): Consumer::state() counts the batches the
// trainer was handed (not what the consumer read ahead), and a consumer
// opened with that state (ReaderOptions::session.restore) receives exactly
// the batches after it. A group of trainers restarts from all their states
// with another world size and shares what remains. Over shared memory, the
// gRPC stream and auto://.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/consumer/consumer.h"
#include "run_util.h"  // tests/transport
#include "test_util.h"

namespace datafeed {
namespace {

using testing::AllKeys;
using testing::CheckRunBatch;
using testing::KeyOf;
using testing::KeyTally;
using testing::ServeThread;
using testing::TestRun;
using testing::UniqueName;

class ConsumerCheckpoint : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<BatchWriter> Writer(const RunInfo& run, int64_t consumer_timeout_ms = 30'000) {
    WriterOptions o;
    o.shm.slot_count = 6;
    o.shm.slot_bytes = 1 << 20;
    o.run = run;
    o.consumer_timeout_ms = consumer_timeout_ms;
    const std::string uri =
        GetParam() == "shm" ? "shm://" + UniqueName("ckpt") : GetParam() + "://127.0.0.1:0";
    auto w = OpenWriter(ParseEndpoint(uri).value(), o);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? std::move(w).value() : nullptr;
  }

  // A trainer's consumer, reading ahead (prefetch) as trainers do.
  static std::unique_ptr<Consumer> Open(const std::string& endpoint, SessionOptions session = {}) {
    ConsumerOptions o;
    o.prefetch = 2;
    o.timeout_ms = 20'000;
    o.reader.connect_timeout_ms = 10'000;
    o.reader.session = std::move(session);
    auto c = Consumer::Open(ParseEndpoint(endpoint).value(), o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // `n` steps of a trainer (0: until the end of the stream).
  static std::vector<BatchKey> Steps(Consumer& c, const RunInfo& run, size_t n = 0) {
    std::vector<BatchKey> keys;
    while (n == 0 || keys.size() < n) {
      Result<BatchView> v = c.Next();
      if (!v.ok()) {
        EXPECT_TRUE(v.status().IsEndOfStream() && n == 0)
            << "after " << keys.size() << " steps: " << v.status().ToString();
        break;
      }
      EXPECT_EQ(CheckRunBatch(*v, run), "");
      keys.push_back(KeyOf(v->meta()));
    }
    return keys;
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, ConsumerCheckpoint, ::testing::Values("shm", "grpc", "auto"),
                         [](const auto& info) { return info.param; });

TEST_P(ConsumerCheckpoint, ARestartFromACheckpointGetsExactlyTheBatchesAfterIt) {
  const RunInfo run = TestRun(10, 2);
  auto w = Writer(run);
  ASSERT_NE(w, nullptr);
  ServeThread serve(*w);
  auto trainer = Open(w->endpoint());
  ASSERT_NE(trainer, nullptr);
  const std::vector<BatchKey> before = Steps(*trainer, run, 4);
  // The checkpoint after step 4, as the trainer would save it (JSON).
  const ConsumerState state = trainer->state();
  ASSERT_EQ(state.streams.size(), 1u);
  EXPECT_EQ(state.streams[0].position, 4u) << "batches read ahead are not the trainer's yet";
  EXPECT_EQ(state.streams[0].fingerprint, run.fingerprint);
  const std::string saved = state.ToJson();
  const std::vector<BatchKey> lost = Steps(*trainer, run, 3);  // steps the crash will undo
  trainer.reset();

  Result<ConsumerState> loaded = ConsumerState::FromJson(saved);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  SessionOptions session;
  session.restore = loaded->streams;
  auto restarted = Open(w->endpoint(), session);
  ASSERT_NE(restarted, nullptr);
  const std::vector<BatchKey> after = Steps(*restarted, run);
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  // What the trainer consumed after step 4 comes again (made again, so
  // after what was already waiting in the ring); nothing before it does.
  for (const BatchKey& k : lost) {
    EXPECT_NE(std::find(after.begin(), after.end(), k), after.end()) << ToString(k) << " did not come again";
  }
  KeyTally tally;
  tally.Add(before, "steps 1-4");
  tally.Add(after, "after the restart");
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
}

// A trainer that stops (Consumer::Stop, its destructor, Python's close())
// leaves: the batches it was handed are consumed, what it read ahead goes
// to the others at once. Over gRPC, Stop() cut the stream before saying
// so, and the producer held the read-ahead for its consumer timeout (here
// two minutes, far past the second trainer's 20 s wait for a batch).
TEST_P(ConsumerCheckpoint, ATrainerThatStopsLeavesItsReadAheadToOthersAtOnce) {
  const RunInfo run = TestRun(12, 1);
  auto w = Writer(run, 120'000);
  ASSERT_NE(w, nullptr);
  ServeThread serve(*w);
  auto first = Open(w->endpoint());
  ASSERT_NE(first, nullptr);
  const std::vector<BatchKey> before = Steps(*first, run, 3);
  first->Stop();
  first.reset();
  auto second = Open(w->endpoint());
  ASSERT_NE(second, nullptr);
  const std::vector<BatchKey> after = Steps(*second, run);
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  KeyTally tally;
  tally.Add(before, "the trainer that stopped");
  tally.Add(after, "the next trainer");
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
}

TEST_P(ConsumerCheckpoint, AGroupRestartsWithAnotherWorldSizeAndSharesWhatRemains) {
  const RunInfo run = TestRun(12, 2);
  auto w = Writer(run);
  ASSERT_NE(w, nullptr);
  ServeThread serve(*w);
  // Two trainers step in turn; the job checkpoints after three steps each,
  // goes on two more and dies.
  std::vector<std::unique_ptr<Consumer>> two;
  for (int i = 0; i < 2; ++i) two.push_back(Open(w->endpoint()));
  ASSERT_NE(two[0], nullptr);
  ASSERT_NE(two[1], nullptr);
  std::vector<std::vector<BatchKey>> before(2);
  for (int step = 0; step < 3; ++step) {
    for (int i = 0; i < 2; ++i) {
      std::vector<BatchKey> k = Steps(*two[i], run, 1);
      before[i].insert(before[i].end(), k.begin(), k.end());
    }
  }
  std::vector<StreamPosition> checkpoint;  // every rank's state, as all_gather_object collects them
  for (auto& c : two) {
    for (const StreamPosition& p : c->state().streams) checkpoint.push_back(p);
  }
  ASSERT_EQ(checkpoint.size(), 2u);
  for (int step = 0; step < 2; ++step) {
    for (auto& c : two) Steps(*c, run, 1);
  }
  two.clear();

  // The job restarts with three ranks, each with the same list.
  constexpr uint32_t kWorld = 3;
  std::vector<std::unique_ptr<Consumer>> three;
  for (uint32_t r = 0; r < kWorld; ++r) {
    SessionOptions session;
    session.restore = checkpoint;
    session.rank = r;
    session.world_size = kWorld;
    three.push_back(Open(w->endpoint(), session));
    ASSERT_NE(three.back(), nullptr);
  }
  std::vector<std::vector<BatchKey>> after(kWorld);
  std::vector<std::thread> ranks;
  for (uint32_t r = 0; r < kWorld; ++r) {
    ranks.emplace_back([&, r] { after[r] = Steps(*three[r], run); });
  }
  for (auto& t : ranks) t.join();
  const Status ended = serve.Join();
  EXPECT_TRUE(ended.ok()) << ended.ToString();
  KeyTally tally;
  tally.Add(before[0], "trainer 0 before the checkpoint");
  tally.Add(before[1], "trainer 1 before the checkpoint");
  for (uint32_t r = 0; r < kWorld; ++r) tally.Add(after[r], "rank " + std::to_string(r) + " of 3");
  EXPECT_EQ(tally.Check(AllKeys(run)), "");
}

}  // namespace
}  // namespace datafeed
