// Consumer: delivery, range-for, prefetch depth, stats, timeouts, Stop() and
// error propagation, over every transport (one line in TransportKinds each).
#include "datafeed/consumer/consumer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "transport_kinds.h"

namespace datafeed {
namespace {

using namespace std::chrono_literals;
using testing::CheckBatch;
using testing::FillBatch;
using testing::TestLayout;

// Polls `pred` for up to 5 s (no speed is asserted; only that it happens).
template <typename Pred>
bool Eventually(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

// A reader that serves a scripted sequence: the batches of an underlying
// reader, then `fail_with`. Counts the batches taken from it.
class ScriptedReader final : public BatchReader {
 public:
  ScriptedReader(std::unique_ptr<BatchReader> inner, int batches, Status fail_with)
      : inner_(std::move(inner)), left_(batches), fail_with_(std::move(fail_with)) {}
  Result<BatchView> Take(Deadline deadline) override {
    if (left_.load() == 0) return fail_with_;
    auto v = inner_->Take(deadline);
    if (v.ok()) {
      --left_;
      ++taken;
    }
    return v;
  }
  Result<bool> Hand(const BatchView& batch) override { return inner_->Hand(batch); }
  Status Ack() override { return inner_->Ack(); }
  ConsumerState state() const override { return inner_->state(); }
  void Cancel() override { inner_->Cancel(); }
  Scheme transport() const override { return inner_->transport(); }
  std::atomic<int> taken{0};

 private:
  std::unique_ptr<BatchReader> inner_;
  std::atomic<int> left_;
  Status fail_with_;
};

template <typename Kind>
class ConsumerTest : public ::testing::Test {
 protected:
  // A fresh endpoint; the test opens its writer first, then readers.
  void SetUp() override { writer_uri_ = Kind::WriterUri("cons"); }
  std::unique_ptr<BatchWriter> Writer(size_t slots = 4) {
    WriterOptions o;
    o.shm.slot_count = slots;
    o.shm.slot_bytes = 1 << 16;
    o.inproc_capacity = slots;
    auto w = OpenWriter(ParseEndpoint(writer_uri_).value(), o);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    endpoint_ = ParseEndpoint((*w)->endpoint()).value();  // e.g. the port the kernel chose
    return std::move(w).value();
  }
  std::unique_ptr<Consumer> Open(ConsumerOptions options = {}) {
    auto c = Consumer::Open(endpoint_, options);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  }
  std::unique_ptr<BatchReader> Reader() { return OpenReader(endpoint_, ReaderOptions{}).value(); }
  void Publish(BatchWriter& w, uint64_t id, int64_t samples = 8) {
    auto b = w.Loan(TestLayout(samples, 32), Deadline::AfterMillis(5000));
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    FillBatch(*b, id);
    ASSERT_TRUE(w.Publish(std::move(*b)).ok());
  }

  std::string writer_uri_;
  Endpoint endpoint_;  // what readers open
};

TYPED_TEST_SUITE(ConsumerTest, testing::TransportKinds);

TYPED_TEST(ConsumerTest, NextDeliversEveryBatchInOrderThenEndOfStream) {
  for (int prefetch : {0, 1, 3}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    this->SetUp();
    auto w = this->Writer();
    ConsumerOptions o;
    o.prefetch = prefetch;
    auto c = this->Open(o);
    std::thread producer([&] {
      for (uint64_t id = 0; id < 20; ++id) this->Publish(*w, id);
      ASSERT_TRUE(w->Close().ok());
    });
    for (uint64_t id = 0; id < 20; ++id) {
      auto v = c->Next();
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      EXPECT_EQ(v->meta().first_index, id);
      EXPECT_EQ(CheckBatch(*v), "");
    }
    producer.join();
    EXPECT_EQ(c->Next().status().code(), StatusCode::kEndOfStream);
    EXPECT_EQ(c->Next().status().code(), StatusCode::kEndOfStream);  // stays ended
    EXPECT_TRUE(c->status().IsEndOfStream()) << c->status().ToString();
  }
}

TYPED_TEST(ConsumerTest, RangeForVisitsEveryBatchAndStatusSaysWhyItEnded) {
  auto w = this->Writer();
  auto c = this->Open();
  EXPECT_TRUE(c->status().ok());
  std::thread producer([&] {
    for (uint64_t id = 0; id < 12; ++id) this->Publish(*w, id);
    ASSERT_TRUE(w->Close().ok());
  });
  uint64_t expect = 0;
  for (BatchView& batch : *c) {
    EXPECT_EQ(batch.meta().first_index, expect++);
    EXPECT_EQ(CheckBatch(batch), "");
  }
  producer.join();
  EXPECT_EQ(expect, 12u);
  EXPECT_TRUE(c->status().IsEndOfStream()) << c->status().ToString();
}

TYPED_TEST(ConsumerTest, RangeForHoldsOnlyTheCurrentBatch) {
  // Two slots: a loop that kept the previous batch while waiting for the
  // next would leave the producer no slot and stall.
  auto w = this->Writer(2);
  ConsumerOptions o;
  o.prefetch = 0;
  o.timeout_ms = 5000;
  auto c = this->Open(o);
  std::thread producer([&] {
    for (uint64_t id = 0; id < 10; ++id) this->Publish(*w, id);
    ASSERT_TRUE(w->Close().ok());
  });
  int n = 0;
  for (BatchView& batch : *c) {
    (void)batch;
    ++n;
  }
  producer.join();
  EXPECT_EQ(n, 10);
  EXPECT_TRUE(c->status().IsEndOfStream()) << c->status().ToString();
}

TYPED_TEST(ConsumerTest, PrefetchReadsAheadUpToItsDepthAndEachBatchHoldsItsSlot) {
  auto w = this->Writer(4);
  auto scripted = std::make_unique<ScriptedReader>(this->Reader(), 1000, Status::OK());
  ScriptedReader* reader = scripted.get();
  ConsumerOptions o;
  o.prefetch = 2;
  auto c = Consumer::Make(std::move(scripted), o).value();
  for (uint64_t id = 0; id < 4; ++id) this->Publish(*w, id);
  // Without any Next(), the consumer takes exactly `prefetch` batches.
  ASSERT_TRUE(Eventually([&] { return reader->taken.load() == 2; }));
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(reader->taken.load(), 2);
  constexpr bool kPins = TypeParam::kViewsPinProducerMemory;
  // Every slot is used: two prefetched, two waiting in the transport.
  auto layout = TestLayout(8, 32);
  if (kPins) {
    EXPECT_EQ(w->Loan(layout, Deadline::After(50ms)).status().code(),
              StatusCode::kDeadlineExceeded);
  }
  {
    auto v = c->Next();
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, 0u);
    // Taking one lets the thread read one more: the depth stays at 2.
    ASSERT_TRUE(Eventually([&] { return reader->taken.load() == 3; }));
    std::this_thread::sleep_for(30ms);
    EXPECT_EQ(reader->taken.load(), 3);
    // Still full: batch 0 is held here.
    if (kPins) {
      EXPECT_EQ(w->Loan(layout, Deadline::After(50ms)).status().code(),
                StatusCode::kDeadlineExceeded);
    }
  }
  if (kPins) {
    // Dropping batch 0 frees its slot.
    auto loan = w->Loan(layout, Deadline::AfterMillis(5000));
    EXPECT_TRUE(loan.ok()) << loan.status().ToString();
  }
}

TYPED_TEST(ConsumerTest, StopGivesBackPrefetchedBatchesAndWakesABlockedNext) {
  auto w = this->Writer(2);
  auto scripted = std::make_unique<ScriptedReader>(this->Reader(), 1000, Status::OK());
  ScriptedReader* reader = scripted.get();
  ConsumerOptions o;
  o.prefetch = 2;
  auto c = Consumer::Make(std::move(scripted), o).value();
  this->Publish(*w, 0);
  this->Publish(*w, 1);
  auto layout = TestLayout(8, 32);
  ASSERT_TRUE(Eventually([&] { return reader->taken.load() == 2; }));
  if (TypeParam::kViewsPinProducerMemory) {
    EXPECT_EQ(w->Loan(layout, Deadline::After(30ms)).status().code(),
              StatusCode::kDeadlineExceeded);
  }
  c->Stop();
  // The prefetched batches were given back: their slots are free again.
  auto loan = w->Loan(layout, Deadline::AfterMillis(5000));
  EXPECT_TRUE(loan.ok()) << loan.status().ToString();
  EXPECT_EQ(c->Next().status().code(), StatusCode::kCancelled);
  EXPECT_EQ(c->status().code(), StatusCode::kCancelled);

  // A Next() blocked on an idle stream, with and without a prefetch thread.
  for (int prefetch : {0, 1}) {
    WriterOptions wo;
    wo.shm.slot_bytes = 1 << 16;
    auto w2 = OpenWriter(ParseEndpoint(TypeParam::WriterUri("stop")).value(), wo).value();
    ConsumerOptions o2;
    o2.prefetch = prefetch;
    auto c2 = Consumer::Open(ParseEndpoint(w2->endpoint()).value(), o2).value();
    Status got;
    std::thread t([&] { got = c2->Next().status(); });
    std::this_thread::sleep_for(30ms);
    c2->Stop();
    t.join();
    EXPECT_EQ(got.code(), StatusCode::kCancelled) << "prefetch " << prefetch << ": " << got.ToString();
    c2->Stop();  // idempotent
  }
}

TYPED_TEST(ConsumerTest, TimeoutIsDeadlineExceededAndTheStreamGoesOn) {
  for (int prefetch : {0, 1}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    this->SetUp();
    auto w = this->Writer();
    ConsumerOptions o;
    o.prefetch = prefetch;
    o.timeout_ms = 30;
    auto c = this->Open(o);
    auto v = c->Next();
    EXPECT_EQ(v.status().code(), StatusCode::kDeadlineExceeded) << v.status().ToString();
    EXPECT_TRUE(c->status().IsDeadlineExceeded());
    // A range-for ends on it too, and says so.
    for (BatchView& b : *c) (void)b;
    EXPECT_TRUE(c->status().IsDeadlineExceeded()) << c->status().ToString();
    this->Publish(*w, 5);
    auto later = c->Next();
    ASSERT_TRUE(later.ok()) << later.status().ToString();
    EXPECT_EQ(later->meta().first_index, 5u);
    EXPECT_TRUE(c->status().ok());
  }
}

TYPED_TEST(ConsumerTest, ErrorsArriveAfterEarlierBatchesAndEndTheStream) {
  for (int prefetch : {0, 2}) {
    SCOPED_TRACE("prefetch " + std::to_string(prefetch));
    this->SetUp();
    auto w = this->Writer();
    for (uint64_t id = 0; id < 3; ++id) this->Publish(*w, id);
    ConsumerOptions o;
    o.prefetch = prefetch;
    auto c = Consumer::Make(std::make_unique<ScriptedReader>(
                                this->Reader(), 2, Status::DataLoss("frame 2 is corrupt")),
                            o)
                 .value();
    std::vector<uint64_t> got;
    for (BatchView& b : *c) got.push_back(b.meta().first_index);
    EXPECT_EQ(got, (std::vector<uint64_t>{0, 1}));
    EXPECT_EQ(c->status().code(), StatusCode::kDataLoss) << c->status().ToString();
    EXPECT_NE(c->status().message().find("frame 2 is corrupt"), std::string::npos);
    // Ended: the third batch, still in the transport, is never handed out.
    EXPECT_EQ(c->Next().status().code(), StatusCode::kDataLoss);
  }
}

TYPED_TEST(ConsumerTest, ProducerLossIsReported) {
  auto w = this->Writer();
  auto c = this->Open();
  this->Publish(*w, 0);
  w.reset();  // destroyed: the stream ends after what was published
  auto v = c->Next();
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  auto end = c->Next();
  EXPECT_FALSE(end.ok());
  EXPECT_TRUE(end.status().IsEndOfStream() || end.status().code() == StatusCode::kUnavailable)
      << end.status().ToString();
}

TYPED_TEST(ConsumerTest, ViewsOutliveTheConsumer) {
  auto w = this->Writer();
  this->Publish(*w, 9);
  BatchView kept;
  {
    auto c = this->Open();
    kept = c->Next().value();
  }
  EXPECT_EQ(kept.meta().first_index, 9u);
  EXPECT_EQ(CheckBatch(kept), "");
}

TYPED_TEST(ConsumerTest, StatsCountBatchesSamplesBytesAndWaiting) {
  auto w = this->Writer();
  auto c = this->Open();
  ConsumerStats before = c->stats();
  EXPECT_EQ(before.batches, 0u);
  EXPECT_EQ(before.elapsed_s, 0);
  EXPECT_EQ(before.wait_fraction(), 0);

  // A slow producer: the trainer mostly waits.
  std::thread producer([&] {
    for (uint64_t id = 0; id < 4; ++id) {
      std::this_thread::sleep_for(40ms);
      this->Publish(*w, id, 16);
    }
  });
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(c->Next().ok());
  producer.join();
  ConsumerStats waiting = c->stats();
  EXPECT_EQ(waiting.batches, 4u);
  EXPECT_EQ(waiting.samples, 64u);
  EXPECT_GT(waiting.bytes, 4u * 16 * 32);
  EXPECT_GT(waiting.elapsed_s, 0.1);
  EXPECT_GT(waiting.wait_fraction(), 0.5) << waiting.ToString();
  EXPECT_LE(waiting.wait_fraction(), 1.0);
  EXPECT_GT(waiting.samples_per_s(), 0);

  // A slow trainer: data is always ready, so the wait share falls.
  for (uint64_t id = 4; id < 8; ++id) this->Publish(*w, id, 16);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(c->Next().ok());
    std::this_thread::sleep_for(60ms);
  }
  ConsumerStats busy = c->stats();
  EXPECT_EQ(busy.batches, 8u);
  const double interval_wait = (busy.wait_s - waiting.wait_s) / (busy.elapsed_s - waiting.elapsed_s);
  EXPECT_LT(interval_wait, 0.5) << busy.ToString();
  EXPECT_LT(busy.wait_fraction(), waiting.wait_fraction());
  EXPECT_NE(busy.ToString().find("8 batches, 128 samples"), std::string::npos) << busy.ToString();

  // The wait for the end of the stream (the producer lingering) is no wait
  // for data, and the clock stops at the end: a short run's summary said
  // "waiting 99%" for the time the producer took to close.
  std::thread closer([&] {
    std::this_thread::sleep_for(200ms);
    EXPECT_TRUE(w->Close().ok());
  });
  Result<BatchView> end = c->Next();
  closer.join();
  if (end.status().code() == StatusCode::kUnavailable) return;  // a transport that reports its end so (see above)
  ASSERT_TRUE(end.status().IsEndOfStream()) << end.status().ToString();
  const ConsumerStats after = c->stats();
  EXPECT_EQ(after.wait_s, busy.wait_s) << "the 200 ms wait for the end counted as waiting for data";
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(c->stats().elapsed_s, after.elapsed_s) << "the clock went on after the end";
}

TYPED_TEST(ConsumerTest, LogsAStatsLinePeriodically) {
  auto w = this->Writer();
  ConsumerOptions o;
  o.log_every_s = 0.01;
  o.log_name = "trainer-feed";
  auto c = this->Open(o);
  ::testing::internal::CaptureStderr();
  for (uint64_t id = 0; id < 3; ++id) {
    this->Publish(*w, id);
    ASSERT_TRUE(c->Next().ok());
    std::this_thread::sleep_for(15ms);
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("trainer-feed: "), std::string::npos) << err;
  EXPECT_NE(err.find("samples/s"), std::string::npos) << err;
  EXPECT_NE(err.find("waiting"), std::string::npos) << err;
}

TEST(ConsumerOpen, ResolvesDatafeedEndpointAndRejectsBadArguments) {
  const std::string name = testing::UniqueName("env");
  auto w = OpenWriter(ParseEndpoint("inproc://" + name).value(), WriterOptions{}).value();
  ::setenv("DATAFEED_ENDPOINT", ("inproc://" + name).c_str(), 1);
  auto c = Consumer::Open("");
  ::unsetenv("DATAFEED_ENDPOINT");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->endpoint(), "inproc://" + name);

  EXPECT_EQ(Consumer::Open("bogus://x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Consumer::Open("inproc://" + testing::UniqueName("nobody")).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(Consumer::Make(nullptr).status().code(), StatusCode::kInvalidArgument);
  ConsumerOptions bad;
  bad.prefetch = -1;
  EXPECT_EQ(Consumer::Open("inproc://" + name, bad).status().code(), StatusCode::kInvalidArgument);
}

TEST(FinishTensorTest, FinishesASplitFramesUint8ImageWithoutTorch) {
  const std::string spec = "to_tensor,normalize(0.1307,0.3081)";
  auto layout = BatchLayout::Make({{"image", DType::kUInt8, {2, 1, 3, 4}, spec}, {"label", DType::kInt64, {2}}});
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  std::vector<uint8_t> frame(layout->frame_bytes(), 0);
  layout->WriteHeader(frame.data(), {});
  for (size_t i = 0; i < layout->nbytes(0); ++i) frame[layout->offset(0) + i] = static_cast<uint8_t>(i * 11);
  auto view = ParseFrame(frame.data(), frame.size());
  ASSERT_TRUE(view.ok()) << view.status().ToString();

  Result<std::vector<float>> out = FinishTensor(view->tensor(0));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 24u);
  for (size_t i = 0; i < out->size(); ++i) {
    const float want = (static_cast<float>(static_cast<uint8_t>(i * 11)) / 255.0f - 0.1307f) / 0.3081f;
    EXPECT_EQ((*out)[i], want) << i;
  }
  std::vector<float> small(23);
  EXPECT_EQ(FinishTensor(view->tensor(0), small.data(), small.size()).code(), StatusCode::kInvalidArgument);
  Status none = FinishTensor(view->tensor(1)).status();
  EXPECT_EQ(none.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(none.message().find("has no finish"), std::string::npos) << none.message();
}

}  // namespace
}  // namespace datafeed
