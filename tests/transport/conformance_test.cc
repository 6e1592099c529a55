// The transport conformance suite: every transport runs the same tests.
// A new transport adds one line to TransportKinds.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "datafeed/transport/transport.h"
#include "test_util.h"

namespace datafeed {
namespace {

using namespace std::chrono_literals;
using testing::CheckBatch;
using testing::FillBatch;
using testing::TestLayout;

// Each kind says how a writer is addressed, how readers reach it, and what
// differs between transports.
struct ShmKind {
  static std::string WriterUri(const std::string& name) { return "shm://" + name; }
  static std::string ReaderUri(const std::string& writer_uri) { return writer_uri; }
  // Whether a reader's held views pin producer memory (the reader maps it).
  static constexpr bool kViewsPinProducerMemory = true;
  static constexpr StatusCode kNoWriter = StatusCode::kNotFound;
  static constexpr StatusCode kSecondWriter = StatusCode::kAlreadyExists;
};
struct InProcKind {
  static std::string WriterUri(const std::string& name) { return "inproc://" + name; }
  static std::string ReaderUri(const std::string& writer_uri) { return writer_uri; }
  static constexpr bool kViewsPinProducerMemory = true;
  static constexpr StatusCode kNoWriter = StatusCode::kNotFound;
  static constexpr StatusCode kSecondWriter = StatusCode::kAlreadyExists;
};
// A gRPC stream over loopback.
struct GrpcKind {
  static std::string WriterUri(const std::string&) { return "grpc://127.0.0.1:0"; }
  static std::string ReaderUri(const std::string& writer_uri) { return writer_uri; }
  static constexpr bool kViewsPinProducerMemory = false;  // frames are received into reader memory
  static constexpr StatusCode kNoWriter = StatusCode::kUnavailable;
  static constexpr StatusCode kSecondWriter = StatusCode::kUnavailable;  // the port is taken
};
// auto:// on one host: the handshake hands the reader the shared-memory ring.
struct AutoColocatedKind {
  static std::string WriterUri(const std::string&) { return "auto://127.0.0.1:0"; }
  static std::string ReaderUri(const std::string& writer_uri) { return writer_uri; }
  static constexpr bool kViewsPinProducerMemory = true;
  static constexpr StatusCode kNoWriter = StatusCode::kUnavailable;
  static constexpr StatusCode kSecondWriter = StatusCode::kUnavailable;
};
// auto:// with DATAFEED_TRANSPORT=grpc: the stream although colocated.
struct AutoForcedGrpcKind {
  static std::string WriterUri(const std::string&) { return "auto://127.0.0.1:0"; }
  static std::string ReaderUri(const std::string& writer_uri) {
    setenv("DATAFEED_TRANSPORT", "grpc", 1);
    auto ep = ResolveEndpoint(writer_uri);
    unsetenv("DATAFEED_TRANSPORT");
    return ep.value().ToString();
  }
  static constexpr bool kViewsPinProducerMemory = false;
  static constexpr StatusCode kNoWriter = StatusCode::kUnavailable;
  static constexpr StatusCode kSecondWriter = StatusCode::kUnavailable;
};

template <typename Kind>
class TransportConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = ParseEndpoint(Kind::WriterUri(testing::UniqueName("conf"))).value();
    reader_endpoint_ = ParseEndpoint(Kind::ReaderUri(endpoint_.ToString())).value();
  }

  // `slots` batches may be loaned, queued or held at once; each up to `slot_bytes`.
  std::unique_ptr<BatchWriter> Writer(size_t slots = 4, size_t slot_bytes = 1 << 20) {
    WriterOptions o;
    o.shm.slot_count = slots;
    o.shm.slot_bytes = slot_bytes;
    o.inproc_capacity = slots;
    auto w = OpenWriter(endpoint_, o);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    // The actual address (a kernel-chosen port for grpc://HOST:0).
    writer_endpoint_ = ParseEndpoint((*w)->endpoint()).value();
    reader_endpoint_ = ParseEndpoint(Kind::ReaderUri(writer_endpoint_.ToString())).value();
    return std::move(w).value();
  }
  std::unique_ptr<BatchReader> Reader() {
    auto r = OpenReader(reader_endpoint_, ReaderOptions{});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }
  static void Publish(BatchWriter& w, const std::shared_ptr<const BatchLayout>& layout, uint64_t id) {
    auto b = w.Loan(layout, Deadline::AfterMillis(5000));
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    FillBatch(*b, id);
    ASSERT_TRUE(w.Publish(std::move(*b)).ok());
  }

  Endpoint endpoint_;         // what the writer was asked to serve
  Endpoint writer_endpoint_;  // what it serves
  Endpoint reader_endpoint_;  // what readers open
};

using TransportKinds =
    ::testing::Types<ShmKind, InProcKind, GrpcKind, AutoColocatedKind, AutoForcedGrpcKind>;
TYPED_TEST_SUITE(TransportConformance, TransportKinds);

TYPED_TEST(TransportConformance, DeliversInOrderWithContentAndSequence) {
  auto w = this->Writer();
  auto r = this->Reader();
  auto layout = TestLayout(16, 300);
  std::thread producer([&] {
    for (uint64_t id = 0; id < 40; ++id) this->Publish(*w, layout, id);
    ASSERT_TRUE(w->Close().ok());
  });
  for (uint64_t id = 0; id < 40; ++id) {
    auto v = r->Next(Deadline::AfterMillis(10000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    EXPECT_EQ(v->meta().sequence, id);
    EXPECT_EQ(CheckBatch(*v), "");
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->Find("payload")->data) % kFrameAlignment, 0u);
  }
  producer.join();
  auto end = r->Next(Deadline::AfterMillis(1000));
  EXPECT_EQ(end.status().code(), StatusCode::kEndOfStream) << end.status().ToString();
  // EndOfStream stays.
  EXPECT_EQ(r->Next(Deadline::Now()).status().code(), StatusCode::kEndOfStream);
}

TYPED_TEST(TransportConformance, EachBatchGoesToExactlyOneOfSeveralReaders) {
  auto w = this->Writer(4);
  constexpr int kReaders = 3;
  constexpr uint64_t kBatches = 300;
  std::vector<std::unique_ptr<BatchReader>> readers;
  for (int i = 0; i < kReaders; ++i) readers.push_back(this->Reader());
  std::vector<std::vector<uint64_t>> got(kReaders);
  std::vector<std::string> errors(kReaders);
  std::vector<std::thread> threads;
  for (int i = 0; i < kReaders; ++i) {
    threads.emplace_back([&, i] {
      for (;;) {
        auto v = readers[i]->Next(Deadline::AfterMillis(10000));
        if (v.status().IsEndOfStream()) return;
        if (!v.ok()) { errors[i] = v.status().ToString(); return; }
        std::string bad = CheckBatch(*v);
        if (!bad.empty()) { errors[i] = bad; return; }
        got[i].push_back(v->meta().first_index);
      }
    });
  }
  auto layout = TestLayout(4, 64);
  for (uint64_t id = 0; id < kBatches; ++id) this->Publish(*w, layout, id);
  ASSERT_TRUE(w->Close().ok());
  for (auto& t : threads) t.join();
  std::multiset<uint64_t> all;
  for (int i = 0; i < kReaders; ++i) {
    EXPECT_EQ(errors[i], "") << "reader " << i;
    EXPECT_TRUE(std::is_sorted(got[i].begin(), got[i].end())) << "reader " << i << " out of order";
    all.insert(got[i].begin(), got[i].end());
  }
  ASSERT_EQ(all.size(), kBatches);
  uint64_t expect = 0;
  for (uint64_t id : all) EXPECT_EQ(id, expect++);  // each exactly once
}

TYPED_TEST(TransportConformance, TinyAndFullSizeFrames) {
  // A frame of the reference batch: 8192 x 1 x 28 x 28 float32 + 8192 int64 labels.
  auto w = this->Writer(2, ShmOptions{}.slot_bytes);
  auto r = this->Reader();
  auto tiny = std::make_shared<const BatchLayout>(
      BatchLayout::Make({{"x", DType::kUInt8, {1}}}).value());
  auto big = std::make_shared<const BatchLayout>(
      BatchLayout::Make({{"image", DType::kFloat32, {8192, 1, 28, 28}},
                         {"label", DType::kInt64, {8192}}}).value());
  ASSERT_LE(big->frame_bytes(), ShmOptions{}.slot_bytes);
  ASSERT_GE(big->frame_bytes(), 25'690'112u + 65'536u);

  auto t = w->Loan(tiny, Deadline::AfterMillis(1000));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  t->data(0)[0] = 42;
  ASSERT_TRUE(w->Publish(std::move(*t)).ok());

  Result<WritableBatch> b = w->Loan(big, Deadline::AfterMillis(1000));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  float* img = b->data<float>(0);
  const size_t n = big->nbytes(0) / sizeof(float);
  for (size_t i = 0; i < n; ++i) img[i] = static_cast<float>(i % 1000) * 0.5f;
  auto* lab = b->data<int64_t>(1);
  for (int i = 0; i < 8192; ++i) lab[i] = i % 10;
  ASSERT_TRUE(w->Publish(std::move(*b)).ok());

  auto v1 = r->Next(Deadline::AfterMillis(5000));
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  ASSERT_EQ(v1->frame().num_tensors(), 1u);
  EXPECT_EQ(v1->Find("x")->data[0], 42);

  Result<BatchView> v2 = r->Next(Deadline::AfterMillis(5000));
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  const TensorView* image = v2->Find("image");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->shape, (std::vector<int64_t>{8192, 1, 28, 28}));
  const float* got = image->as<float>();
  size_t mismatches = 0;
  for (size_t i = 0; i < n; ++i) mismatches += got[i] != static_cast<float>(i % 1000) * 0.5f;
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(v2->Find("label")->as<int64_t>()[8191], 8191 % 10);
}

TYPED_TEST(TransportConformance, NextHonoursDeadlineAndSleepsWhileIdle) {
  auto w = this->Writer();
  auto r = this->Reader();
  EXPECT_EQ(r->Next(Deadline::Now()).status().code(), StatusCode::kDeadlineExceeded);
  struct rusage before {}, after {};
  getrusage(RUSAGE_THREAD, &before);
  auto start = std::chrono::steady_clock::now();
  auto v = r->Next(Deadline::After(300ms));
  auto waited = std::chrono::steady_clock::now() - start;
  getrusage(RUSAGE_THREAD, &after);
  EXPECT_EQ(v.status().code(), StatusCode::kDeadlineExceeded) << v.status().ToString();
  EXPECT_GE(waited, 300ms);
  auto cpu_us = [](const struct rusage& u) {
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
  };
  // A blocked reader sleeps in the kernel: far below the 300 ms it waited.
  EXPECT_LT(cpu_us(after) - cpu_us(before), 30'000);
}

TYPED_TEST(TransportConformance, LoanBlocksWhenFullAndAbandonReturnsMemory) {
  auto w = this->Writer(2);
  auto layout = TestLayout(4, 64);
  auto a = w->Loan(layout, Deadline::AfterMillis(1000));
  auto b = w->Loan(layout, Deadline::AfterMillis(1000));
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = w->Loan(layout, Deadline::After(50ms));
  EXPECT_EQ(c.status().code(), StatusCode::kDeadlineExceeded) << c.status().ToString();
  { WritableBatch dropped = std::move(*a); }  // dropped unpublished
  auto d = w->Loan(layout, Deadline::AfterMillis(1000));
  EXPECT_TRUE(d.ok()) << d.status().ToString();
}

TYPED_TEST(TransportConformance, HeldViewsPinMemoryUntilDestroyed) {
  if (!TypeParam::kViewsPinProducerMemory) {
    GTEST_SKIP() << "stream readers receive into their own memory; see SlowReaderBoundsProducerMemory";
  }
  auto w = this->Writer(2);
  auto r = this->Reader();
  auto layout = TestLayout(4, 64);
  this->Publish(*w, layout, 0);
  this->Publish(*w, layout, 1);
  auto v0 = r->Next(Deadline::AfterMillis(1000));
  auto v1 = r->Next(Deadline::AfterMillis(1000));
  ASSERT_TRUE(v0.ok() && v1.ok());
  BatchView copy = *v0;  // copies share the memory
  EXPECT_EQ(w->Loan(layout, Deadline::After(50ms)).status().code(), StatusCode::kDeadlineExceeded);
  v0 = Status::Cancelled("drop");
  EXPECT_EQ(w->Loan(layout, Deadline::After(50ms)).status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(CheckBatch(copy), "");  // still readable
  copy = BatchView();
  auto again = w->Loan(layout, Deadline::AfterMillis(1000));
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TYPED_TEST(TransportConformance, CloseDrainsThenEndsAndRefusesMore) {
  auto w = this->Writer();
  auto r = this->Reader();
  auto layout = TestLayout(2, 8);
  for (uint64_t id = 0; id < 3; ++id) this->Publish(*w, layout, id);
  ASSERT_TRUE(w->Close().ok());
  ASSERT_TRUE(w->Close().ok());  // idempotent
  EXPECT_EQ(w->Loan(layout, Deadline::Now()).status().code(), StatusCode::kFailedPrecondition);
  for (uint64_t id = 0; id < 3; ++id) {
    auto v = r->Next(Deadline::AfterMillis(1000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
  }
  EXPECT_EQ(r->Next(Deadline::AfterMillis(1000)).status().code(), StatusCode::kEndOfStream);
}

TYPED_TEST(TransportConformance, DestroyingTheWriterEndsTheStream) {
  auto w = this->Writer();
  auto r = this->Reader();
  this->Publish(*w, TestLayout(2, 8), 7);
  w.reset();
  auto v = r->Next(Deadline::AfterMillis(1000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 7u);
  EXPECT_EQ(r->Next(Deadline::AfterMillis(1000)).status().code(), StatusCode::kEndOfStream);
}

TYPED_TEST(TransportConformance, CancelWakesABlockedReader) {
  auto w = this->Writer();
  auto r = this->Reader();
  Status got;
  std::thread t([&] { got = r->Next(Deadline::Infinite()).status(); });
  std::this_thread::sleep_for(50ms);
  r->Cancel();
  t.join();
  EXPECT_EQ(got.code(), StatusCode::kCancelled) << got.ToString();
}

TYPED_TEST(TransportConformance, SecondWriterOnALiveNameIsRefused) {
  auto w = this->Writer();
  WriterOptions o;
  o.shm.slot_bytes = 1 << 20;
  auto second = OpenWriter(this->writer_endpoint_, o);
  EXPECT_EQ(second.status().code(), TypeParam::kSecondWriter) << second.status().ToString();
}

TYPED_TEST(TransportConformance, ReaderWithoutWriterFailsClearly) {
  {
    auto w = this->Writer();  // learn an address, then stop serving it
  }
  ReaderOptions o;
  o.connect_timeout_ms = 200;
  auto r = OpenReader(this->reader_endpoint_, o);
  EXPECT_EQ(r.status().code(), TypeParam::kNoWriter) << r.status().ToString();
  EXPECT_NE(r.status().message().find(this->reader_endpoint_.ToString()), std::string::npos)
      << r.status().ToString();
}

TYPED_TEST(TransportConformance, SlowReaderBoundsProducerMemory) {
  // A reader that stops reading: the writer must block, not buffer without end.
  auto w = this->Writer(2);
  auto r = this->Reader();
  // 1 MB frames, 200 of them: more than any transport may buffer in between
  // (a gRPC stream's HTTP/2 window is 64 MB).
  auto layout = TestLayout(256, 4000);
  int loaned = 0;
  for (; loaned < 200; ++loaned) {
    auto b = w->Loan(layout, Deadline::AfterMillis(300));
    if (!b.ok()) {
      EXPECT_EQ(b.status().code(), StatusCode::kDeadlineExceeded) << b.status().ToString();
      break;
    }
    FillBatch(*b, static_cast<uint64_t>(loaned));
    ASSERT_TRUE(w->Publish(std::move(*b)).ok());
  }
  EXPECT_LT(loaned, 200) << "the writer never blocked";
  // Nothing was lost: the reader gets every published batch in order.
  for (int id = 0; id < loaned; ++id) {
    auto v = r->Next(Deadline::AfterMillis(5000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, static_cast<uint64_t>(id));
  }
}

}  // namespace
}  // namespace datafeed
