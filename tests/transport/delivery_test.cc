// The delivery contract's bookkeeping, unit by unit (delivery.h): the
// producer's ledger (transport/src/delivery/ledger_internal.h) with its
// journal, checkpoint restores and group restores, and the consumer's
// session checks (session_internal.h). The multi-process tests in
// delivery_mp_test.cc run the same rules through real transports.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/transport/delivery.h"
#include "datafeed/transport/frame.h"
#include "delivery/ledger_internal.h"
#include "delivery/session_internal.h"
#include "run_util.h"
#include "test_util.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;
using internal::CloseKind;
using internal::ConsumerSession;
using internal::Hello;
using internal::JournalRecord;
using internal::Ledger;
using internal::LedgerClock;
using testing::KeyTally;
using testing::TestRun;
using testing::UniqueName;
using namespace std::chrono_literals;

// A fresh directory, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) : path_(fs::path(::testing::TempDir()) / UniqueName("df-" + tag)) {
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::unique_ptr<Ledger> MakeLedger(const std::string& state_dir, int64_t timeout_ms = 60'000) {
  Ledger::Options o;
  o.name = "test://ledger";
  o.state_dir = state_dir;
  o.consumer_timeout_ms = timeout_ms;
  auto l = Ledger::Create(o);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return std::move(l).value();
}

Hello NewHello(uint64_t id) {
  Hello h;
  h.mode = Hello::Mode::kNew;
  h.consumer_id = id;
  return h;
}

Hello ResumeHello(uint64_t id, uint64_t fingerprint, uint64_t received, uint64_t acked,
                  std::vector<BatchKey> tail) {
  Hello h;
  h.mode = Hello::Mode::kResume;
  h.consumer_id = id;
  h.fingerprint = fingerprint;
  h.received = received;
  h.acked = acked;
  h.tail = std::move(tail);
  return h;
}

Hello RestoreHello(std::vector<StreamPosition> positions, uint32_t rank = 0, uint32_t world_size = 0,
                   uint64_t generation = 0) {
  Hello h;
  h.mode = Hello::Mode::kRestore;
  h.fingerprint = positions.front().fingerprint;
  h.restore = std::move(positions);
  h.rank = rank;
  h.world_size = world_size;
  h.generation = generation;
  return h;
}

StreamPosition Checkpoint(const RunInfo& run, uint64_t consumer_id, std::vector<BatchKey> handed) {
  StreamPosition p;
  p.fingerprint = run.fingerprint;
  p.consumer_id = consumer_id;
  p.position = handed.size();
  p.tail = std::move(handed);
  return p;
}

std::vector<BatchKey> Keys(uint64_t epoch, std::vector<uint64_t> indices) {
  std::vector<BatchKey> out;
  for (uint64_t i : indices) out.push_back({epoch, i});
  return out;
}

// Every batch TakeRemake hands out now (each marked as being made).
std::vector<BatchKey> DrainRemakes(Ledger& l) {
  std::vector<BatchKey> out;
  while (std::optional<BatchKey> k = l.TakeRemake()) out.push_back(*k);
  return out;
}

// Plays the producer and its transport against a ledger: publishes the next
// batch (one to make again first, as datafeed::Producer does) and delivers
// it to a session at once.
class Feeder {
 public:
  Feeder(Ledger* ledger, const RunInfo& run, BatchKey next = {0, 0}) : l_(ledger), run_(run), next_(next) {}

  // The batch delivered, or nullopt when the run has nothing to give now.
  std::optional<BatchKey> Deliver(uint64_t session) {
    std::optional<BatchKey> key = l_->TakeRemake();
    bool fresh = false;
    if (!key) {
      if (!(next_ < BatchKey{run_.first_epoch + run_.num_epochs, 0})) return std::nullopt;
      key = next_;
      fresh = true;
      next_ = next_.index + 1 < run_.batches_per_epoch ? BatchKey{next_.epoch, next_.index + 1}
                                                       : BatchKey{next_.epoch + 1, 0};
    }
    Status st = l_->Published(*key, fresh);
    EXPECT_TRUE(st.ok()) << st.ToString();
    st = l_->Delivered(session, *key);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return key;
  }

 private:
  Ledger* l_;
  RunInfo run_;
  BatchKey next_;
};

// One consumer as a trainer drives it: Next() acknowledges what it handed
// out before and takes one more.
struct Trainer {
  uint64_t session = 0;
  uint64_t base = 0;               // the welcome's delivery position
  std::vector<BatchKey> consumed;  // handed out, in order
  bool Step(Ledger& l, Feeder& feed) {
    l.Progress(session, base + consumed.size(), LedgerClock::now());
    std::optional<BatchKey> k = feed.Deliver(session);
    if (!k) return false;
    consumed.push_back(*k);
    return true;
  }
};

// The journal file a ledger writes for shard 0 of 1.
fs::path JournalIn(const TempDir& dir) { return dir.path() / "journal-shard0-of-1.dfj"; }

// A copy of a live ledger's state directory, as the files are when the
// producer is killed with -9 at this instant: what write() gave the kernel.
void CopyStateDir(const TempDir& from, const TempDir& to) {
  fs::copy_file(JournalIn(from), JournalIn(to), fs::copy_options::overwrite_existing);
}

// ---------------------------------------------------------------- journal

TEST(LedgerJournal, ARestartedProducerContinuesTheEpochAndMakesAgainOnlyWhatNoConsumerKept) {
  TempDir live("live"), killed("killed");
  const RunInfo run = TestRun(10, 2);
  auto l = MakeLedger(live.str());
  ASSERT_TRUE(l->BeginRun(run).ok());
  auto a = l->Open(NewHello(0xA), "a", LedgerClock::now());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(l->Published({0, i}, true).ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(l->Delivered(a->session, {0, i}).ok());
  l->Progress(a->session, 2, LedgerClock::now());  // batches 0 and 1 consumed; 2, 3 leased
  CopyStateDir(live, killed);

  auto restarted = MakeLedger(killed.str());
  Result<RunStart> start = restarted->BeginRun(run);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_TRUE(start->resumed);
  EXPECT_EQ(start->next, (BatchKey{0, 6})) << "the same epoch goes on after the last batch published";
  EXPECT_EQ(start->remakes, 2u) << start->summary;  // 4 and 5 were in the dead producer's ring
  // The consumer connected at the kill may hold batches the journal does not
  // show yet: nothing is made again until it has reconnected.
  EXPECT_EQ(restarted->TakeRemake(), std::nullopt);
  auto back = restarted->Open(ResumeHello(0xA, run.fingerprint, 4, 2, Keys(0, {0, 1, 2, 3})), "a",
                              LedgerClock::now());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->position, 4u);
  // What was in the ring comes again; nothing the consumer committed or still holds.
  EXPECT_EQ(DrainRemakes(*restarted), Keys(0, {4, 5}));
}

// A consumer away longer than the grace period lost its leases; when it
// comes back holding batches the producer gave to others, the refusal names
// them and says why and what to change.
TEST(LedgerJournal, AConsumerBackAfterItsLeasesWereTakenIsToldWhichAndWhy) {
  const RunInfo run = TestRun(10, 1);
  auto l = MakeLedger("", 100);
  ASSERT_TRUE(l->BeginRun(run).ok());
  auto a = l->Open(NewHello(0xA), "a", LedgerClock::now());
  ASSERT_TRUE(a.ok());
  for (uint64_t i = 0; i < 6; ++i) {
    ASSERT_TRUE(l->Published({0, i}, true).ok());
    ASSERT_TRUE(l->Delivered(a->session, {0, i}).ok());
  }
  l->Progress(a->session, 2, LedgerClock::now());
  l->Close(a->session, CloseKind::kLostConnection, LedgerClock::now());
  l->Tick(LedgerClock::now() + std::chrono::milliseconds(1000));  // past the 100 ms grace
  EXPECT_EQ(DrainRemakes(*l), Keys(0, {2, 3, 4, 5}));
  auto back = l->Open(ResumeHello(0xA, run.fingerprint, 6, 2, Keys(0, {4, 5})), "a", LedgerClock::now());
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), StatusCode::kDataLoss);
  const std::string& m = back.status().message();
  EXPECT_NE(m.find("epoch 0 batch 4, epoch 0 batch 5"), std::string::npos) << m;
  EXPECT_NE(m.find("taken back"), std::string::npos) << m;
  EXPECT_NE(m.find("--consumer-timeout"), std::string::npos) << m;
}

TEST(LedgerJournal, LeasesOfAConsumerThatDoesNotComeBackAreMadeAgainAfterTheGracePeriod) {
  TempDir live("live"), killed("killed");
  const RunInfo run = TestRun(10, 1);
  auto l = MakeLedger(live.str(), 100);
  ASSERT_TRUE(l->BeginRun(run).ok());
  auto a = l->Open(NewHello(0xA), "a", LedgerClock::now());
  ASSERT_TRUE(a.ok());
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(l->Published({0, i}, true).ok());
    ASSERT_TRUE(l->Delivered(a->session, {0, i}).ok());
  }
  l->Progress(a->session, 2, LedgerClock::now());
  CopyStateDir(live, killed);

  auto restarted = MakeLedger(killed.str(), 100);
  ASSERT_TRUE(restarted->BeginRun(run).ok());
  // Bounded polling: the hold ends 100 ms after the restart.
  std::vector<BatchKey> remade;
  const Deadline give_up = Deadline::AfterMillis(10'000);
  while (!give_up.expired()) {
    restarted->Tick(LedgerClock::now());
    std::vector<BatchKey> got = DrainRemakes(*restarted);
    remade.insert(remade.end(), got.begin(), got.end());
    if (remade.size() >= 2) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(remade, Keys(0, {2, 3})) << "the leased batches come again; the two it committed never do";
}

TEST(LedgerJournal, ATornTailIsIgnoredAndADeliveryItLostIsLearnedFromTheConsumer) {
  TempDir live("live"), killed("killed");
  const RunInfo run = TestRun(10, 1);
  auto l = MakeLedger(live.str());
  ASSERT_TRUE(l->BeginRun(run).ok());
  auto a = l->Open(NewHello(0xA), "a", LedgerClock::now());
  ASSERT_TRUE(a.ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(l->Published({0, i}, true).ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(l->Delivered(a->session, {0, i}).ok());
  CopyStateDir(live, killed);
  // The last record (the delivery of batch 3) was half written, and a
  // partial record follows it: a producer killed in the middle of write().
  const fs::path journal = JournalIn(killed);
  const auto whole = fs::file_size(journal);
  ASSERT_EQ(whole % 32, 0u);
  {
    std::fstream f(journal, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(whole - 32 + 20));
    f.put('\x5a');
    f.seekp(0, std::ios::end);
    f.write("\x05\x00\x00\x00torn", 8);
  }

  auto restarted = MakeLedger(killed.str());
  Result<RunStart> start = restarted->BeginRun(run);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(fs::file_size(journal) % 32, 0u) << "the torn end is cut off before appending";
  EXPECT_EQ(start->next, (BatchKey{0, 4}));
  // The consumer received batch 3; its tail says so, and it keeps it.
  auto back = restarted->Open(ResumeHello(0xA, run.fingerprint, 4, 0, Keys(0, {0, 1, 2, 3})), "a",
                              LedgerClock::now());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->position, 4u);
  EXPECT_EQ(DrainRemakes(*restarted), std::vector<BatchKey>{}) << "batch 3 is the consumer's, not made again";
}

TEST(LedgerJournal, AJournalOfAnotherRunIsRefusedNamingBothRunsAndTheFix) {
  TempDir dir("run");
  const RunInfo run = TestRun(10, 1);
  {
    auto l = MakeLedger(dir.str());
    ASSERT_TRUE(l->BeginRun(run).ok());
    ASSERT_TRUE(l->Published({0, 0}, true).ok());
  }
  RunInfo other_seed = run;
  other_seed.fingerprint = run.fingerprint + 1;
  RunInfo other_size = run;
  other_size.batches_per_epoch = 11;
  for (const RunInfo& other : {other_seed, other_size}) {
    auto l = MakeLedger(dir.str());
    Result<RunStart> start = l->BeginRun(other);
    ASSERT_EQ(start.status().code(), StatusCode::kFailedPrecondition) << start.status().ToString();
    const std::string msg = start.status().message();
    char want[32];
    std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(run.fingerprint));
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
    std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(other.fingerprint));
    EXPECT_NE(msg.find(want), std::string::npos) << msg;
    EXPECT_NE(msg.find("--state-dir"), std::string::npos) << msg;
  }
  // The refused producers left the journal as it was: the run still resumes.
  auto l = MakeLedger(dir.str());
  Result<RunStart> start = l->BeginRun(run);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_TRUE(start->resumed);
  EXPECT_EQ(start->next, (BatchKey{0, 1}));
}

// Found by tests/fuzz/journal_fuzz.cc (corpus/journal/repro-far-epoch): a
// journal whose last published batch lies 2^48 epochs on made the restarted
// producer queue every batch in between (it never finished starting). A
// damaged journal is DataLoss naming it; the run's own journal still resumes.
TEST(LedgerJournal, AJournalNamingAFarEpochIsDataLossNotAnEndlessReplay) {
  const RunInfo run = TestRun(10, 1);
  const uint64_t far_epochs[] = {uint64_t{3} << 48, uint64_t{1} << 32, 1'000'000};
  for (const uint64_t epoch : far_epochs) {
    TempDir dir("far");
    {
      auto l = MakeLedger(dir.str());
      ASSERT_TRUE(l->BeginRun(run).ok());
      ASSERT_TRUE(l->Published({0, 0}, true).ok());
    }
    {
      const auto rec = JournalRecord(4, epoch, 0, 0);  // published: epoch, index 0
      std::ofstream f(JournalIn(dir), std::ios::binary | std::ios::app);
      f.write(reinterpret_cast<const char*>(rec.data()), static_cast<std::streamsize>(rec.size()));
    }
    auto l = MakeLedger(dir.str());
    Result<RunStart> start = l->BeginRun(run);
    ASSERT_EQ(start.status().code(), StatusCode::kDataLoss) << epoch << ": " << start.status().ToString();
    EXPECT_NE(start.status().message().find(JournalIn(dir).string()), std::string::npos) << start.status().message();
    EXPECT_NE(start.status().message().find("Move it away"), std::string::npos) << start.status().message();
  }
}

TEST(LedgerJournal, TwoLiveProducersCannotShareAStateDirectory) {
  TempDir dir("lock");
  auto first = MakeLedger(dir.str());
  ASSERT_TRUE(first->BeginRun(TestRun(4, 1)).ok());
  auto second = MakeLedger(dir.str());
  Result<RunStart> start = second->BeginRun(TestRun(4, 1));
  EXPECT_EQ(start.status().code(), StatusCode::kAlreadyExists) << start.status().ToString();
  EXPECT_NE(start.status().message().find(dir.str()), std::string::npos) << start.status().ToString();
}

// ---------------------------------------------------------------- restores

TEST(LedgerRestore, ARestoredConsumerGetsExactlyTheBatchesAfterItsCheckpoint) {
  const RunInfo run = TestRun(8, 1);
  auto l = MakeLedger("");
  ASSERT_TRUE(l->BeginRun(run).ok());
  Feeder feed(l.get(), run);
  Trainer a;
  a.session = l->Open(NewHello(0xA), "a", LedgerClock::now()).value().session;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(a.Step(*l, feed));
  const StreamPosition checkpoint = Checkpoint(run, 0xA, a.consumed);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(a.Step(*l, feed));
  l->Progress(a.session, a.consumed.size(), LedgerClock::now());
  l->Close(a.session, CloseKind::kClean, LedgerClock::now());  // the trainer crashed after step 5

  Trainer b;
  auto w = l->Open(RestoreHello({checkpoint}), "b", LedgerClock::now());
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  EXPECT_EQ(w->consumer_id, 0xAu);
  EXPECT_EQ(w->position, 3u);
  b.session = w->session;
  b.base = w->position;
  while (b.Step(*l, feed)) {
  }
  // What it consumed after the checkpoint comes again, first; nothing before it.
  EXPECT_EQ(std::vector<BatchKey>(b.consumed.begin(), b.consumed.begin() + 2), Keys(0, {3, 4}));
  KeyTally tally;
  tally.Add(std::vector<BatchKey>(a.consumed.begin(), a.consumed.begin() + 3), "before the checkpoint");
  tally.Add(b.consumed, "restored");
  EXPECT_EQ(tally.Check(testing::AllKeys(run)), "");
}

TEST(LedgerRestore, ACheckpointWhoseBatchesWentToOthersIsDataLossNamingThem) {
  // The trainer checkpointed 3 batches, then stalled before acknowledging
  // the third: the producer took that lease back and gave the batch to
  // another consumer. Restoring the checkpoint would repeat it.
  const RunInfo run = TestRun(8, 1);
  auto l = MakeLedger("", 1000);
  ASSERT_TRUE(l->BeginRun(run).ok());
  Feeder feed(l.get(), run);
  const auto t0 = LedgerClock::now();
  auto a = l->Open(NewHello(0xA), "a", t0);
  ASSERT_TRUE(a.ok());
  std::vector<BatchKey> handed;
  for (int i = 0; i < 3; ++i) handed.push_back(feed.Deliver(a->session).value());
  l->Progress(a->session, 2, t0);
  const StreamPosition checkpoint = Checkpoint(run, 0xA, handed);
  auto revoked = l->Tick(t0 + 2s);
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_EQ(revoked[0].keys, Keys(0, {2}));
  auto b = l->Open(NewHello(0xB), "b", t0 + 2s);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(feed.Deliver(b->session), (BatchKey{0, 2}));

  auto w = l->Open(RestoreHello({checkpoint}), "a again", t0 + 3s);
  ASSERT_EQ(w.status().code(), StatusCode::kDataLoss) << w.status().ToString();
  EXPECT_NE(w.status().message().find("epoch 0 batch 2"), std::string::npos)
      << "the error must name the batch that would be repeated: " << w.status().ToString();
}

TEST(LedgerRestore, ACheckpointOfAnotherRunIsRefused) {
  const RunInfo run = TestRun(8, 1);
  auto l = MakeLedger("");
  ASSERT_TRUE(l->BeginRun(run).ok());
  StreamPosition p = Checkpoint(TestRun(8, 1, run.fingerprint ^ 0xFF), 0xA, Keys(0, {0}));
  auto w = l->Open(RestoreHello({p}), "a", LedgerClock::now());
  ASSERT_EQ(w.status().code(), StatusCode::kFailedPrecondition) << w.status().ToString();
  EXPECT_NE(w.status().message().find("another"), std::string::npos) << w.status().ToString();
}

// Two trainers, A and B, checkpoint after two batches each, consume two
// more, and the job dies. The group restarts from that checkpoint: every
// rank passes both states.
class GroupRestore : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(l_->BeginRun(run_).ok());
    a_.session = l_->Open(NewHello(0xA), "a", LedgerClock::now()).value().session;
    b_.session = l_->Open(NewHello(0xB), "b", LedgerClock::now()).value().session;
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(a_.Step(*l_, feed_));
      ASSERT_TRUE(b_.Step(*l_, feed_));
    }
    checkpoint_ = {Checkpoint(run_, 0xA, a_.consumed), Checkpoint(run_, 0xB, b_.consumed)};
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(a_.Step(*l_, feed_));
      ASSERT_TRUE(b_.Step(*l_, feed_));
    }
    for (Trainer* t : {&a_, &b_}) {
      l_->Progress(t->session, t->consumed.size(), LedgerClock::now());
      l_->Close(t->session, CloseKind::kDied, LedgerClock::now(), t->consumed.size());
    }
  }

  Result<internal::Welcome> OpenRank(uint32_t rank, uint32_t world_size, uint64_t generation = 0) {
    return l_->Open(RestoreHello(checkpoint_, rank, world_size, generation), "rank " + std::to_string(rank),
                    LedgerClock::now());
  }

  // What the job consumed before the checkpoint.
  void TallyCheckpoint(KeyTally* tally) {
    tally->Add(std::vector<BatchKey>(a_.consumed.begin(), a_.consumed.begin() + 2), "A");
    tally->Add(std::vector<BatchKey>(b_.consumed.begin(), b_.consumed.begin() + 2), "B");
  }

  const RunInfo run_ = TestRun(20, 1);
  std::unique_ptr<Ledger> l_ = MakeLedger("");
  Feeder feed_{l_.get(), run_};
  Trainer a_, b_;
  std::vector<StreamPosition> checkpoint_;
};

TEST_F(GroupRestore, ThreeRanksShareWhatRemainsOfTheEpochOfATwoTrainerCheckpoint) {
  std::vector<Trainer> ranks(3);
  std::set<uint64_t> ids;
  for (uint32_t r = 0; r < 3; ++r) {
    auto w = OpenRank(r, 3);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ(w->position, 0u);
    ids.insert(w->consumer_id);
    ranks[r].session = w->session;
  }
  EXPECT_EQ(ids.size(), 3u) << "each rank is its own consumer";
  EXPECT_EQ(ids.count(0xA) + ids.count(0xB), 0u);
  // Round robin until the epoch is out.
  for (bool any = true; any;) {
    any = false;
    for (Trainer& t : ranks) any = t.Step(*l_, feed_) || any;
  }
  KeyTally tally;
  TallyCheckpoint(&tally);
  for (uint32_t r = 0; r < 3; ++r) {
    EXPECT_FALSE(ranks[r].consumed.empty()) << "rank " << r << " got no share";
    tally.Add(ranks[r].consumed, "rank " + std::to_string(r));
  }
  EXPECT_EQ(tally.Check(testing::AllKeys(run_)), "");
}

TEST_F(GroupRestore, LaterRanksLeaveEarlierOnesAloneAndARankThatOpensAgainStartsOver) {
  auto r0 = OpenRank(0, 2);
  ASSERT_TRUE(r0.ok()) << r0.status().ToString();
  Trainer t0;
  t0.session = r0->session;
  // Rank 0 consumes the four batches A and B had after the checkpoint
  // (made again, oldest first) before rank 1 even starts.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(t0.Step(*l_, feed_));
  EXPECT_EQ(std::set<BatchKey>(t0.consumed.begin(), t0.consumed.end()),
            std::set<BatchKey>({a_.consumed[2], a_.consumed[3], b_.consumed[2], b_.consumed[3]}));
  l_->Progress(t0.session, t0.consumed.size(), LedgerClock::now());
  auto r1 = OpenRank(1, 2);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(DrainRemakes(*l_), std::vector<BatchKey>{}) << "rank 1 must not undo what rank 0 consumed";
  EXPECT_TRUE(l_->Live(r0->session));
  // The same rank opening again (it restarted from the same checkpoint) is
  // the same consumer, started over: what it consumed comes again.
  auto again = OpenRank(0, 2);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->consumer_id, r0->consumer_id);
  EXPECT_FALSE(l_->Live(r0->session)) << "the old session of rank 0 is superseded";
  std::vector<BatchKey> remade = DrainRemakes(*l_);
  EXPECT_EQ(std::set<BatchKey>(remade.begin(), remade.end()),
            std::set<BatchKey>(t0.consumed.begin(), t0.consumed.end()));
}

TEST_F(GroupRestore, ARestartWithAnotherWorldSizeUndoesTheAbandonedRestart) {
  // The job restarts with 3 ranks, which consume a little, then dies before
  // its next checkpoint; it restarts again from the same checkpoint with 2.
  std::vector<Trainer> three(3);
  for (uint32_t r = 0; r < 3; ++r) {
    auto w = OpenRank(r, 3);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    three[r].session = w->session;
  }
  for (int i = 0; i < 2; ++i) {
    for (Trainer& t : three) ASSERT_TRUE(t.Step(*l_, feed_));
  }
  for (Trainer& t : three) l_->Progress(t.session, t.consumed.size(), LedgerClock::now());

  std::vector<Trainer> two(2);
  std::set<uint64_t> ids;
  for (uint32_t r = 0; r < 2; ++r) {
    auto w = OpenRank(r, 2, /*generation=*/1);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    ids.insert(w->consumer_id);
    two[r].session = w->session;
  }
  EXPECT_EQ(ids.size(), 2u);
  for (const Trainer& t : three) EXPECT_FALSE(l_->Live(t.session)) << "the abandoned ranks are fenced";
  for (bool any = true; any;) {
    any = false;
    for (Trainer& t : two) any = t.Step(*l_, feed_) || any;
  }
  KeyTally tally;
  TallyCheckpoint(&tally);
  for (uint32_t r = 0; r < 2; ++r) tally.Add(two[r].consumed, "rank " + std::to_string(r) + " of 2");
  EXPECT_EQ(tally.Check(testing::AllKeys(run_)), "") << "the 3-rank restart's batches count for nothing";
}

TEST_F(GroupRestore, ConsumerIdsAreAFunctionOfTheCheckpointRankWorldSizeAndGeneration) {
  auto first = OpenRank(1, 3);
  auto same = OpenRank(1, 3);
  auto other_rank = OpenRank(2, 3);
  auto other_size = OpenRank(1, 4);
  auto other_generation = OpenRank(1, 3, 7);
  for (auto* w : {&first, &same, &other_rank, &other_size, &other_generation}) {
    ASSERT_TRUE(w->ok()) << w->status().ToString();
  }
  EXPECT_EQ(first->consumer_id, same->consumer_id);
  EXPECT_NE(first->consumer_id, other_rank->consumer_id);
  EXPECT_NE(first->consumer_id, other_size->consumer_id);
  EXPECT_NE(first->consumer_id, other_generation->consumer_id);
  auto bad = OpenRank(3, 3);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
}

// ---------------------------------------------------------------- consumer session

BatchMeta Meta(uint64_t epoch, uint64_t index, uint64_t fingerprint = testing::kTestFingerprint) {
  BatchMeta m;
  m.fingerprint = fingerprint;
  m.epoch = static_cast<uint32_t>(epoch);
  m.batch_index = index;
  return m;
}

std::unique_ptr<ConsumerSession> StartedSession(uint64_t position = 0) {
  auto s = std::make_unique<ConsumerSession>("test://session", SessionOptions{});
  EXPECT_TRUE(s->Welcomed(0xC, position, testing::kTestFingerprint, 0, 1).ok());
  return s;
}

TEST(ConsumerSessionChecks, KeepsTheWelcomesBatchesPerEpoch) {
  ConsumerSession s("test://session", SessionOptions{});
  EXPECT_EQ(s.batches_per_epoch(), 0u);  // unknown before the handshake
  ASSERT_TRUE(s.Welcomed(0xC, 0, testing::kTestFingerprint, 0, 1, 7).ok());
  EXPECT_EQ(s.batches_per_epoch(), 7u);
  ASSERT_TRUE(s.Welcomed(0xC, 0, testing::kTestFingerprint, 0, 1, 7).ok());  // a resume
  EXPECT_EQ(s.batches_per_epoch(), 7u);
}

TEST(ConsumerSessionChecks, ABatchHandedOutTwiceIsDataLossNamingIt) {
  auto s_owner = StartedSession();
  ConsumerSession& s = *s_owner;
  auto p0 = s.Received(Meta(0, 3), ~uint64_t{0});
  ASSERT_TRUE(p0.ok());
  ASSERT_TRUE(s.Hand(*p0, Meta(0, 3)).ok());
  auto p1 = s.Received(Meta(0, 3), ~uint64_t{0});
  ASSERT_TRUE(p1.ok());
  Status st = s.Hand(*p1, Meta(0, 3));
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("epoch 0 batch 3"), std::string::npos) << st.ToString();
  EXPECT_EQ(s.handed(), 1u);
}

TEST(ConsumerSessionChecks, ABatchOfAnotherRunIsDataLossNamingIt) {
  auto s_owner = StartedSession();
  ConsumerSession& s = *s_owner;
  auto p = s.Received(Meta(0, 5, 0xBAD), ~uint64_t{0});
  ASSERT_TRUE(p.ok());
  Status st = s.Hand(*p, Meta(0, 5, 0xBAD));
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("epoch 0 batch 5"), std::string::npos) << st.ToString();
}

TEST(ConsumerSessionChecks, AGapOrARepeatInDeliveryPositionsIsDataLoss) {
  auto s_owner = StartedSession(4);
  ConsumerSession& s = *s_owner;
  auto gap = s.Received(Meta(0, 0), 5);
  EXPECT_EQ(gap.status().code(), StatusCode::kDataLoss) << gap.status().ToString();
  EXPECT_NE(gap.status().message().find("lost"), std::string::npos) << gap.status().ToString();
  auto ok = s.Received(Meta(0, 0), 4);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, 4u);
  auto repeat = s.Received(Meta(0, 1), 4);
  EXPECT_EQ(repeat.status().code(), StatusCode::kDataLoss) << repeat.status().ToString();
  EXPECT_NE(repeat.status().message().find("twice"), std::string::npos) << repeat.status().ToString();
}

TEST(ConsumerSessionChecks, RevokedReadAheadIsDroppedButRevokedHandedBatchesAbortNamingThem) {
  auto s_owner = StartedSession();
  ConsumerSession& s = *s_owner;
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(s.Received(Meta(0, i), ~uint64_t{0}).ok());
  ASSERT_TRUE(s.Hand(0, Meta(0, 0)).ok());
  const uint64_t generation = s.generation();
  // Positions 1 and 2 were only read ahead: a new generation starts at 1.
  ASSERT_TRUE(s.Revoked(1, "stalled").ok());
  EXPECT_FALSE(s.Current(generation, 1)) << "a view read ahead before the revocation is stale";
  EXPECT_EQ(s.received(), 1u);
  ASSERT_TRUE(s.Received(Meta(0, 7), ~uint64_t{0}).ok());
  EXPECT_TRUE(s.Current(s.generation(), 1));
  ASSERT_TRUE(s.Hand(1, Meta(0, 7)).ok());
  // Taking back a batch the trainer had is the end of the session.
  Status st = s.Revoked(1, "stalled");
  EXPECT_EQ(st.code(), StatusCode::kAborted) << st.ToString();
  EXPECT_NE(st.message().find("epoch 0 batch 7"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("consumer-timeout"), std::string::npos) << st.ToString();
}

TEST(ConsumerSessionChecks, AWelcomeThatTakesBackHandedBatchesAbortsNamingThem) {
  auto s_owner = StartedSession();
  ConsumerSession& s = *s_owner;
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(s.Received(Meta(0, i), ~uint64_t{0}).ok());
    ASSERT_TRUE(s.Hand(i, Meta(0, i)).ok());
  }
  Status st = s.Welcomed(0xC, 1, testing::kTestFingerprint, 0, 1);
  EXPECT_EQ(st.code(), StatusCode::kAborted) << st.ToString();
  EXPECT_NE(st.message().find("epoch 0 batch 1"), std::string::npos) << st.ToString();
  EXPECT_NE(st.message().find("epoch 0 batch 2"), std::string::npos) << st.ToString();
  // A resume against a producer now serving another run is refused too.
  auto t_owner = StartedSession();
  ConsumerSession& t = *t_owner;
  EXPECT_EQ(t.Welcomed(0xC, 0, testing::kTestFingerprint + 1, 0, 1).code(), StatusCode::kDataLoss);
}

TEST(ConsumerSessionChecks, ACheckpointCountsHandedBatchesAndNamesTheLastOnes) {
  auto s_owner = StartedSession(10);
  ConsumerSession& s = *s_owner;
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(s.Received(Meta(2, i), ~uint64_t{0}).ok());
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(s.Hand(10 + i, Meta(2, i)).ok());
  const StreamPosition p = s.position();
  EXPECT_EQ(p.position, 13u) << "read ahead (position 13) is not the trainer's";
  EXPECT_EQ(p.consumer_id, 0xCu);
  EXPECT_EQ(p.fingerprint, testing::kTestFingerprint);
  EXPECT_EQ(p.tail, Keys(2, {0, 1, 2}));
  // And it survives JSON (64-bit values as hex).
  ConsumerState state;
  state.streams.push_back(p);
  auto back = ConsumerState::FromJson(state.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->streams.size(), 1u);
  EXPECT_EQ(back->streams[0].fingerprint, p.fingerprint);
  EXPECT_EQ(back->streams[0].position, 13u);
  EXPECT_EQ(back->streams[0].tail, p.tail);
  auto missing = ConsumerState::FromJson(R"({"version":1,"streams":[{"fingerprint":"0x1","shard":0,)"
                                         R"("num_shards":1,"consumer":"0x2"}]})");
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("position"), std::string::npos) << missing.status().ToString();
}

}  // namespace
}  // namespace datafeed
