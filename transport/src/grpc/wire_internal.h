// The StreamBatches wire format without protobuf objects in the way.
//
// A response is the protobuf encoding of `Frame { bytes frame = 1; }`: one
// tag byte (0x0A), a varint length, then the batch frame. The server side
// serializes a WireFrame as two slices: those few header bytes, and a slice
// that points straight into the frame's memory (the shared-memory slot),
// released when gRPC is done sending it. The client side reads the header
// and copies the payload once, from gRPC's receive slices into a reusable
// 64-byte-aligned buffer, which then backs the tensors. That copy is done by
// TakePayload, which the reader calls in Next(), not in its receive thread:
// the receive thread only moves slices, so it gets back to the socket at
// once, and the copy of one frame overlaps the arrival of the next. The end-of-stream
// marker is `Frame { end_of_stream: true }`: the two bytes 0x10 0x01.
#ifndef DATAFEED_TRANSPORT_SRC_GRPC_WIRE_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_GRPC_WIRE_INTERNAL_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/impl/serialization_traits.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/status.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "datafeed/transport/transport.h"

namespace datafeed::internal {

// Aligned receive buffers, reused so a steady stream does not page-fault
// fresh memory for every 25 MB frame. Thread-safe.
class FramePool : public std::enable_shared_from_this<FramePool> {
 public:
  // Keeps at most `max_free` returned buffers (the reader's prefetch depth
  // plus what a trainer holds); more would be freed and faulted in again.
  explicit FramePool(size_t max_free) : max_free_(max_free) {}
  struct Buffer {
    uint8_t* data = nullptr;
    size_t capacity = 0;
    ~Buffer();
  };
  // A buffer of at least `bytes`, returned to the pool when the last
  // shared_ptr copy is gone.
  std::shared_ptr<Buffer> Get(size_t bytes);

 private:
  void Put(std::unique_ptr<Buffer> b);
  const size_t max_free_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Buffer>> free_;
};

// One StreamBatches response.
struct WireFrame {
  // Server: the batch to send (its keepalive is held until sent).
  BatchView view;
  // Client: what was received (gRPC's slices, the frame starting `offset`
  // bytes into the first), then, after TakePayload, the frame in `buffer`.
  std::vector<grpc::Slice> slices;
  size_t offset = 0;
  std::shared_ptr<FramePool::Buffer> buffer;
  size_t size = 0;
  // Both sides: the batch's delivery position in the consumer's session
  // (protocol 3); ~0: none.
  uint64_t position = ~uint64_t{0};
  // Both sides: this is the end-of-stream marker, not a batch.
  bool end = false;
  // Both sides: a revocation, not a batch: the consumer's leases from
  // delivery position `revoked_from` on were taken back.
  bool revoked = false;
  uint64_t revoked_from = 0;
  // Both sides: a confirmation, not a batch: the producer recorded the
  // consumer's acknowledgements below `acked`.
  bool confirms = false;
  uint64_t acked = 0;
};

// The header of a `Frame` message carrying `frame_bytes` bytes.
size_t EncodeFrameHeader(size_t frame_bytes, uint8_t out[11]);
// A message the client could not decode makes gRPC's Read() return false
// like a finished stream, and the call then waits in Finish() for a producer
// that goes on sending. Deserialize notes why on the reading thread:
// TakeWireError() returns (and clears) that reason, "" when none.
void NoteWireError(const std::string& what);
std::string TakeWireError();

// A varint field: tag then value (at most 11 bytes).
size_t EncodeVarintField(uint8_t tag, uint64_t value, uint8_t out[11]);

// Client: copies a received frame out of its slices into a buffer from
// `pool` (sets `buffer`, releases `slices`). False when out of memory.
bool TakePayload(WireFrame* frame, FramePool* pool);

}  // namespace datafeed::internal

namespace grpc {

template <>
class SerializationTraits<datafeed::internal::WireFrame, void> {
 public:
  static Status Serialize(const datafeed::internal::WireFrame& msg, ByteBuffer* bb,
                          bool* own_buffer);
  static Status Deserialize(ByteBuffer* bb, datafeed::internal::WireFrame* msg);
};

}  // namespace grpc

#endif  // DATAFEED_TRANSPORT_SRC_GRPC_WIRE_INTERNAL_H_
