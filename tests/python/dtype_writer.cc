// dtype_writer: publishes batches with one tensor of every datafeed dtype
// (plus a 0-d and an empty tensor) on an endpoint, for tests/python. The
// values are a pattern of the batch number k that the Python test
// recomputes (see test_tensors.py: expected_dtype_batch):
//
//   u8    uint8    [3,4]   (i + k) % 256
//   i8    int8     [5]     i - 2 - k
//   i16   int16    [2,3]   1000 * (i - 3) + k
//   i32   int32    [4]     -100000 * i + k
//   i64   int64    [2,2]   (1 << 40) * (i - 1) + k
//   f16   float16  [4]     bits of {1, -2, 0.5, k}          (k < 8)
//   bf16  bfloat16 [4]     bits of {1, -2, 0.5, k}          (k < 8)
//   f32   float32  [2,3]   0.25 * i - k
//   f64   float64  [3]     1e-300 * i + k
//   b     bool     [5]     (i + k) % 2
//   s     float32  []      k + 0.5     (a 0-d tensor)
//   e     float32  [0,3]   (empty)
//
// With --hold-s it stays alive that long after the last batch before
// closing the stream (a producer that has nothing more to say).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <thread>

#include "datafeed/tools/cli.h"
#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/frame.h"
#include "datafeed/transport/transport.h"

using namespace datafeed;

namespace {

int Die(const Status& st) {
  std::fprintf(stderr, "dtype_writer: %s\n", st.ToString().c_str());
  return 1;
}

// IEEE half and bfloat16 bit patterns of small exact values.
constexpr uint16_t kHalf[] = {0x3C00, 0xC000, 0x3800};  // 1, -2, 0.5
constexpr uint16_t kHalfInt[] = {0x0000, 0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700};
constexpr uint16_t kBf16[] = {0x3F80, 0xC000, 0x3F00};  // 1, -2, 0.5
constexpr uint16_t kBf16Int[] = {0x0000, 0x3F80, 0x4000, 0x4040, 0x4080, 0x40A0, 0x40C0, 0x40E0};

}  // namespace

int main(int argc, char** argv) {
  std::string endpoint_uri = "shm://dtype-writer";
  int64_t batches = 3, slots = 4, linger_ms = 5000;
  double hold_s = 0;
  CLI::App app{"Publishes batches with every dtype (tests/python).", "dtype_writer"};
  tools::Configure(app);
  app.add_option("--endpoint", endpoint_uri, "where to publish");
  app.add_option("--batches", batches, "batches to publish (k = 0, 1, ...)")->check(tools::WholeNumber(0));
  app.add_option("--slots", slots, "shared-memory slots")->check(tools::WholeNumber(1));
  app.add_option("--linger-ms", linger_ms, "at the end, wait this long for consumers")->check(tools::WholeNumber(0));
  app.add_option("--hold-s", hold_s, "stay alive this long after the last batch")->check(tools::Number(0));
  if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;

  auto endpoint = ParseEndpoint(endpoint_uri);
  if (!endpoint.ok()) return Die(endpoint.status());
  auto layout = BatchLayout::Make({
      {"u8", DType::kUInt8, {3, 4}},
      {"i8", DType::kInt8, {5}},
      {"i16", DType::kInt16, {2, 3}},
      {"i32", DType::kInt32, {4}},
      {"i64", DType::kInt64, {2, 2}},
      {"f16", DType::kFloat16, {4}},
      {"bf16", DType::kBFloat16, {4}},
      {"f32", DType::kFloat32, {2, 3}},
      {"f64", DType::kFloat64, {3}},
      {"b", DType::kBool, {5}},
      {"s", DType::kFloat32, {}},
      {"e", DType::kFloat32, {0, 3}},
  });
  if (!layout.ok()) return Die(layout.status());
  auto shared_layout = std::make_shared<const BatchLayout>(std::move(layout).value());

  WriterOptions wo;
  wo.shm.slot_count = static_cast<size_t>(slots);
  wo.shm.slot_bytes = (shared_layout->frame_bytes() + 4095) / 4096 * 4096;
  wo.linger_ms = linger_ms;
  auto writer = OpenWriter(*endpoint, wo);
  if (!writer.ok()) return Die(writer.status());

  for (int64_t k = 0; k < batches; ++k) {
    auto loaned = (*writer)->Loan(shared_layout, Deadline::Infinite());
    if (!loaned.ok()) return Die(loaned.status());
    WritableBatch b = std::move(loaned).value();
    for (int i = 0; i < 12; ++i) b.data<uint8_t>(0)[i] = static_cast<uint8_t>((i + k) % 256);
    for (int i = 0; i < 5; ++i) b.data<int8_t>(1)[i] = static_cast<int8_t>(i - 2 - k);
    for (int i = 0; i < 6; ++i) b.data<int16_t>(2)[i] = static_cast<int16_t>(1000 * (i - 3) + k);
    for (int i = 0; i < 4; ++i) b.data<int32_t>(3)[i] = static_cast<int32_t>(-100000 * i + k);
    for (int i = 0; i < 4; ++i) b.data<int64_t>(4)[i] = (int64_t{1} << 40) * (i - 1) + k;
    uint16_t* f16 = b.data<uint16_t>(5);
    uint16_t* bf16 = b.data<uint16_t>(6);
    for (int i = 0; i < 3; ++i) {
      f16[i] = kHalf[i];
      bf16[i] = kBf16[i];
    }
    f16[3] = kHalfInt[k % 8];
    bf16[3] = kBf16Int[k % 8];
    for (int i = 0; i < 6; ++i) b.data<float>(7)[i] = 0.25f * i - static_cast<float>(k);
    for (int i = 0; i < 3; ++i) b.data<double>(8)[i] = 1e-300 * i + static_cast<double>(k);
    for (int i = 0; i < 5; ++i) b.data<uint8_t>(9)[i] = static_cast<uint8_t>((i + k) % 2);
    *b.data<float>(10) = static_cast<float>(k) + 0.5f;
    b.meta().first_index = static_cast<uint64_t>(k);
    b.meta().epoch = 0;
    if (Status st = (*writer)->Publish(std::move(b)); !st.ok()) return Die(st);
  }
  if (hold_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(hold_s));
  if (Status st = (*writer)->Close(); !st.ok()) return Die(st);
  writer->reset();  // lingers until consumers took what was published
  return 0;
}
