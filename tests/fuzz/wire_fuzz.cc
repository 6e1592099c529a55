// The gRPC client's StreamBatches deserializer (grpc/wire.cc) on arbitrary
// bytes cut into up to four slices (the header may straddle slices as it
// does off the network), then TakePayload and ParseFrame on what it kept:
// a malformed message is DATA_LOSS with a reason, never a read past the
// slices.
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <cstdint>
#include <vector>

#include "datafeed/transport/frame.h"
#include "fuzz_util.h"
#include "grpc/wire_internal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // The first byte says where to cut the rest into slices.
  const uint8_t cuts = data[0];
  ++data;
  --size;
  std::vector<grpc::Slice> slices;
  size_t start = 0;
  for (int k = 0; k < 3; ++k) {
    const size_t at = std::min(size, start + ((cuts >> (2 * k)) & 3) * 3);
    if (at > start) slices.emplace_back(data + start, at - start);
    start = at;
  }
  slices.emplace_back(data + start, size - start);  // possibly empty
  grpc::ByteBuffer bb(slices.data(), slices.size());
  datafeed::internal::WireFrame msg;
  const grpc::Status st = grpc::SerializationTraits<datafeed::internal::WireFrame>::Deserialize(&bb, &msg);
  const std::string why = datafeed::internal::TakeWireError();
  if (!st.ok()) {
    datafeed::fuzz::Require(st.error_code() == grpc::StatusCode::DATA_LOSS, "a malformed message that is not DATA_LOSS");
    datafeed::fuzz::Require(!why.empty(), "a malformed message with no reason noted");
    return 0;
  }
  if (msg.end || msg.revoked || msg.confirms) return 0;
  datafeed::fuzz::Require(msg.size <= size, "a frame larger than the message");
  auto pool = std::make_shared<datafeed::internal::FramePool>(2);
  datafeed::fuzz::Require(datafeed::internal::TakePayload(&msg, pool.get()), "TakePayload out of memory");
  datafeed::Result<datafeed::FrameView> v = datafeed::ParseFrame(msg.buffer->data, msg.size);
  datafeed::fuzz::CheckRefusal(v.status(), "ParseFrame");
  return 0;
}
