// Shared-memory specifics and multi-process behaviour: real producer and
// consumer processes (datafeed_test_peer), killed with SIGKILL.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "shm/shm_ring_internal.h"
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/transport/transport.h"
#include "peer_util.h"
#include "test_util.h"

namespace datafeed {
namespace {

using namespace std::chrono_literals;
using testing::CheckBatch;
using testing::Peer;
using testing::UniqueName;

std::unique_ptr<BatchWriter> SmallWriter(const std::string& name, size_t slots) {
  WriterOptions o;
  o.shm.slot_count = slots;
  o.shm.slot_bytes = 1 << 20;
  auto w = OpenWriter(ParseEndpoint("shm://" + name).value(), o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return std::move(w).value();
}

std::unique_ptr<BatchReader> ReaderFor(const std::string& name, int64_t connect_ms = 5000) {
  ReaderOptions o;
  o.connect_timeout_ms = connect_ms;
  auto r = OpenReader(ParseEndpoint("shm://" + name).value(), o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

TEST(ShmMultiProcess, ConsumerProcessesShareTheStreamExactlyOnce) {
  const std::string name = UniqueName("mp");
  constexpr int kBatches = 600;
  // The producer publishes only once every consumer is attached: otherwise,
  // on a loaded machine, one consumer can drain the stream before another
  // has started, which then finds no producer.
  Peer producer({"produce", name, std::to_string(kBatches), "3", "gate"});
  producer.Serving();
  std::vector<std::unique_ptr<Peer>> consumers;
  for (int i = 0; i < 3; ++i) {
    consumers.push_back(std::make_unique<Peer>(std::vector<std::string>{"consume", name, "announce"}));
  }
  for (auto& c : consumers) ASSERT_EQ(c->ReadLine(), "attached");
  producer.Signal(SIGUSR1);
  std::multiset<int> ids;
  for (auto& c : consumers) {
    for (const auto& line : c->ReadAll()) ids.insert(std::stoi(line));
    EXPECT_EQ(c->Wait(), 0);
  }
  EXPECT_EQ(producer.Wait(), 0);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kBatches));
  int expect = 0;
  for (int id : ids) EXPECT_EQ(id, expect++);
}

TEST(ShmMultiProcess, KilledProducerIsReportedWithinOneSecond) {
  const std::string name = UniqueName("kp");
  Peer producer({"produce", name, "2", "4", "sleep"});
  producer.Serving();
  ASSERT_EQ(producer.ReadLine(), "published 2");
  auto r = ReaderFor(name);
  ASSERT_NE(r, nullptr);
  for (uint64_t id = 0; id < 2; ++id) {
    auto v = r->Next(Deadline::AfterMillis(2000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
  }
  Status got;
  auto killed_at = std::chrono::steady_clock::now();
  std::thread t([&] { got = r->Next(Deadline::Infinite()).status(); });
  std::this_thread::sleep_for(20ms);
  killed_at = std::chrono::steady_clock::now();
  producer.Kill();
  t.join();
  auto took = std::chrono::steady_clock::now() - killed_at;
  EXPECT_EQ(got.code(), StatusCode::kUnavailable) << got.ToString();
  EXPECT_NE(got.message().find("producer died"), std::string::npos) << got.ToString();
  EXPECT_LT(took, 1s);
  testing::RemoveStaleSegmentsNamed(name);
}

TEST(ShmMultiProcess, BatchesPublishedBeforeTheProducerDiedAreStillDelivered) {
  const std::string name = UniqueName("kp2");
  Peer producer({"produce", name, "3", "4", "sleep"});
  producer.Serving();
  ASSERT_EQ(producer.ReadLine(), "published 3");
  auto r = ReaderFor(name);
  ASSERT_NE(r, nullptr);
  producer.Kill();
  for (uint64_t id = 0; id < 3; ++id) {
    auto v = r->Next(Deadline::AfterMillis(2000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    EXPECT_EQ(CheckBatch(*v), "");
  }
  EXPECT_EQ(r->Next(Deadline::AfterMillis(2000)).status().code(), StatusCode::kUnavailable);
  testing::RemoveStaleSegmentsNamed(name);
}

TEST(ShmMultiProcess, SlotOfAKilledConsumerIsReclaimed) {
  const std::string name = UniqueName("kc");
  auto w = SmallWriter(name, 2);
  auto layout = testing::TestLayout(8, 512);
  for (uint64_t id = 0; id < 2; ++id) {
    auto b = w->Loan(layout, Deadline::AfterMillis(1000));
    ASSERT_TRUE(b.ok());
    testing::FillBatch(*b, id);
    ASSERT_TRUE(w->Publish(std::move(*b)).ok());
  }
  Peer holder({"hold", name});
  ASSERT_EQ(holder.ReadLine(), "0");  // it holds batch 0's slot; batch 1 waits
  EXPECT_EQ(w->Loan(layout, Deadline::After(100ms)).status().code(), StatusCode::kDeadlineExceeded);
  holder.Kill();
  auto b = w->Loan(layout, Deadline::AfterMillis(2000));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  testing::FillBatch(*b, 2);
  ASSERT_TRUE(w->Publish(std::move(*b)).ok());
  // Nothing published was lost: batch 1 then 2.
  auto r = ReaderFor(name);
  ASSERT_NE(r, nullptr);
  for (uint64_t id = 1; id < 3; ++id) {
    auto v = r->Next(Deadline::AfterMillis(2000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    EXPECT_EQ(CheckBatch(*v), "");
  }
}

TEST(ShmMultiProcess, RestartedProducerReplacesTheStaleSegment) {
  const std::string name = UniqueName("rs");
  {
    Peer producer({"produce", name, "1", "2", "sleep"});
    producer.Serving();
    ASSERT_EQ(producer.ReadLine(), "published 1");
    // Alive: a second producer is refused.
    WriterOptions o;
    o.shm.slot_bytes = 1 << 20;
    auto second = OpenWriter(ParseEndpoint("shm://" + name).value(), o);
    EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists) << second.status().ToString();
    producer.Kill();
  }
  struct stat st {};
  ASSERT_EQ(stat(("/dev/shm/datafeed." + name).c_str(), &st), 0) << "stale segment expected";
  auto w = SmallWriter(name, 2);
  ASSERT_NE(w, nullptr);
  auto r = ReaderFor(name);
  ASSERT_NE(r, nullptr);
  auto layout = testing::TestLayout(8, 512);
  auto b = w->Loan(layout, Deadline::AfterMillis(1000));
  ASSERT_TRUE(b.ok());
  testing::FillBatch(*b, 77);
  ASSERT_TRUE(w->Publish(std::move(*b)).ok());
  auto v = r->Next(Deadline::AfterMillis(1000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 77u);  // the new stream, not the stale batch 0
  EXPECT_EQ(v->meta().sequence, 0u);
}

TEST(ShmSegment, IsOwnerOnlyAndRemovedWhenTheWriterCloses) {
  const std::string name = UniqueName("perm");
  const std::string path = "/dev/shm/datafeed." + name;
  {
    auto w = SmallWriter(name, 2);
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    const size_t control = (sizeof(internal::ShmControl) + 4095) / 4096 * 4096;
    EXPECT_EQ(st.st_size, static_cast<off_t>(control + 2 * (1 << 20)));
  }
  struct stat st {};
  EXPECT_NE(stat(path.c_str(), &st), 0);
}

TEST(ShmSegment, FrameLargerThanASlotIsRefusedWithTheFix) {
  auto w = SmallWriter(UniqueName("slot"), 2);
  auto b = w->Loan(testing::TestLayout(1024, 4096), Deadline::Now());
  EXPECT_EQ(b.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(b.status().message().find("raise the slot size"), std::string::npos)
      << b.status().ToString();
}

TEST(ShmSegment, BadNamesAreRejected) {
  for (const std::string& bad : std::vector<std::string>{"a/b", "..", ".hidden", "", "sp ace", std::string(201, 'x')}) {
    Endpoint ep;
    ep.name = bad;
    auto w = OpenWriter(ep, WriterOptions{});
    EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument) << "'" << bad << "'";
  }
}

TEST(ShmSegment, NotEnoughRoomInDevShmSaysHowMuchIsNeeded) {
  WriterOptions o;
  o.shm.slot_count = 1000;
  o.shm.slot_bytes = size_t{1} << 34;  // 16 TiB in all
  auto w = OpenWriter(ParseEndpoint("shm://" + UniqueName("big")).value(), o);
  ASSERT_EQ(w.status().code(), StatusCode::kResourceExhausted) << w.status().ToString();
  EXPECT_NE(w.status().message().find("MiB in /dev/shm (1000 slots x 16384.0 MiB) but only"), std::string::npos)
      << w.status().ToString();
  EXPECT_NE(w.status().message().find("lower the slot count or slot size"), std::string::npos);
}

TEST(ShmSegment, ReaderOfAMissingProducerNamesTheFix) {
  auto r = OpenReader(ParseEndpoint("shm://" + UniqueName("none")).value(), ReaderOptions{});
  ASSERT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("start one"), std::string::npos) << r.status().ToString();
}

TEST(ShmSegment, ReaderWaitsForAProducerThatStartsLater) {
  const std::string name = UniqueName("late");
  std::unique_ptr<BatchWriter> w;
  std::thread t([&] {
    std::this_thread::sleep_for(100ms);
    w = SmallWriter(name, 2);
  });
  auto r = ReaderFor(name, 5000);
  t.join();
  EXPECT_NE(r, nullptr);
}

}  // namespace
}  // namespace datafeed
