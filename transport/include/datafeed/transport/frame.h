// The batch frame: the one in-memory format of a batch, on every transport.
//
//   [ size-prefixed BatchHeader flatbuffer, padded to 64 B | tensor 0 | tensor 1 | ... ]
//
// Every tensor payload starts at a 64-byte-aligned offset from the frame's
// start. The header (schemas/batch.fbs) names each tensor, its dtype, shape,
// offset and byte count, plus the batch metadata. A frame is self-contained:
// it can be memcpy'd, mapped or sent over a socket and parsed again.
//
// Producers describe a batch with a BatchLayout, get frame memory from a
// BatchWriter (transport.h) and fill tensors in place. Consumers get a
// FrameView from ParseFrame(), which verifies every byte of the header and
// every tensor's bounds before handing out a pointer.
#ifndef DATAFEED_TRANSPORT_FRAME_H_
#define DATAFEED_TRANSPORT_FRAME_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/transport/finish.h"
#include "datafeed/transport/status.h"

namespace datafeed {

// Values match schemas/batch.fbs; never renumber.
enum class DType : uint8_t {
  kUInt8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kFloat16 = 6,
  kBFloat16 = 7,
  kFloat32 = 8,
  kFloat64 = 9,
  kBool = 10,
};

// 0 for a value that is not a known DType.
size_t DTypeSize(DType dtype);
// "float32", "int64", ...; "unknown" for a value that is not a known DType.
const char* DTypeName(DType dtype);
// Parses "float32", "uint8", ... (the names DTypeName returns).
Result<DType> DTypeFromName(std::string_view name);

template <typename T> constexpr DType DTypeOf();
template <> constexpr DType DTypeOf<uint8_t>() { return DType::kUInt8; }
template <> constexpr DType DTypeOf<int8_t>() { return DType::kInt8; }
template <> constexpr DType DTypeOf<int16_t>() { return DType::kInt16; }
template <> constexpr DType DTypeOf<int32_t>() { return DType::kInt32; }
template <> constexpr DType DTypeOf<int64_t>() { return DType::kInt64; }
template <> constexpr DType DTypeOf<float>() { return DType::kFloat32; }
template <> constexpr DType DTypeOf<double>() { return DType::kFloat64; }
template <> constexpr DType DTypeOf<bool>() { return DType::kBool; }

// Alignment of every tensor payload inside a frame (cache line, AVX-512).
inline constexpr size_t kFrameAlignment = 64;
// Version written into every header; a reader rejects other versions.
// 2: BatchMeta carries the batch identity.
inline constexpr uint16_t kFrameVersion = 2;

// Per-batch metadata, carried in the header.
//
// A batch's identity is (fingerprint, shard, epoch, batch_index): the run it
// belongs to (fingerprint: dataset, pipeline, seed, batch size and sampler
// knobs, shard included), and where in that run it sits. A producer makes
// a batch's bytes as a pure function of its identity, so a batch whose
// lease was lost is made again bit-identical (attempt then counts the
// re-makes). fingerprint 0 means "no identity" (a writer used directly,
// without a Producer).
struct BatchMeta {
  uint64_t sequence = 0;     // stamped by the transport at Publish, 0-based per writer
  uint64_t first_index = 0;  // dataset index of the batch's first sample (sampler order)
  uint64_t producer_id = 0;  // identifies the producer process/instance
  uint32_t epoch = 0;
  uint32_t flags = 0;        // reserved; 0
  uint64_t fingerprint = 0;  // the run (see above); 0: none
  uint64_t batch_index = 0;  // index of the batch within its shard's epoch
  uint32_t shard = 0;
  uint32_t num_shards = 1;
  uint32_t attempt = 0;      // how many times this identity was published before
};

// "run 3f2a...:shard 0/1:epoch 2:batch 17" for messages.
std::string BatchIdString(const BatchMeta& meta);

// One named tensor of a batch, as a producer declares it.
struct TensorSpec {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  // Empty, or the finish of a split pipeline (see Finish below): the tensor
  // is then uint8 [..., C, H, W] and the consumer turns it into float32 of
  // the same shape by running this spec, e.g. "to_tensor,normalize(0.1307,0.3081)".
  std::string finish = {};
};

// The fixed shape of a frame: tensor names, dtypes, shapes and where each
// payload sits. Built once by a producer and reused for every batch with the
// same shapes. Immutable after Make(); safe to share across threads.
class BatchLayout {
 public:
  // Fails with InvalidArgument on an empty or duplicate name, an unknown
  // dtype, a negative dimension, sizes that overflow 64 bits, or a finish
  // that is not a valid Finish spec for a uint8 [..., C, H, W] tensor.
  static Result<BatchLayout> Make(std::vector<TensorSpec> tensors);

  size_t num_tensors() const { return tensors_.size(); }
  const TensorSpec& spec(size_t i) const { return tensors_[i]; }
  // Index of the tensor called `name`, or -1.
  int IndexOf(std::string_view name) const;
  // Byte offset of tensor i's payload from the frame start (multiple of 64).
  size_t offset(size_t i) const { return offsets_[i]; }
  size_t nbytes(size_t i) const { return nbytes_[i]; }
  // Bytes of the padded header; the first payload starts here.
  size_t header_bytes() const { return header_bytes_; }
  // Total bytes of a frame with this layout.
  size_t frame_bytes() const { return frame_bytes_; }

  // Writes the header for `meta` into frame[0, header_bytes()). `frame` must
  // hold at least frame_bytes() bytes. Payload bytes are not touched.
  void WriteHeader(uint8_t* frame, const BatchMeta& meta) const;
  // Rewrites only the metadata of a header written by WriteHeader(), in place.
  static void UpdateMeta(uint8_t* frame, const BatchMeta& meta);

 private:
  BatchLayout() = default;
  std::vector<TensorSpec> tensors_;
  std::vector<size_t> offsets_;
  std::vector<size_t> nbytes_;
  // The finished header bytes for meta == {} (padding included); WriteHeader
  // copies them and patches the metadata.
  std::shared_ptr<const std::vector<uint8_t>> header_template_;
  size_t header_bytes_ = 0;
  size_t frame_bytes_ = 0;
};

// A verified, read-only tensor inside a frame. Does not own memory: valid
// while the frame's memory is (see BatchView in transport.h).
struct TensorView {
  std::string_view name;
  DType dtype = DType::kUInt8;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // 64-byte aligned relative to the frame start
  size_t nbytes = 0;
  // Empty, or the finish of a split pipeline (see Finish): the tensor is
  // uint8 [..., C, H, W] and Finish::Parse(finish) turns it into the float32
  // tensor the producer would otherwise have sent. ParseFrame has checked it.
  std::string_view finish = {};

  int64_t numel() const;
  // Typed access; nullptr if T does not match dtype.
  template <typename T>
  const T* as() const {
    return DTypeOf<T>() == dtype ? reinterpret_cast<const T*>(data) : nullptr;
  }
};

// A verified frame. Does not own memory.
class FrameView {
 public:
  FrameView() = default;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const BatchMeta& meta() const { return meta_; }
  size_t num_tensors() const { return tensors_.size(); }
  const TensorView& tensor(size_t i) const { return tensors_[i]; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // The tensor called `name`, or nullptr.
  const TensorView* Find(std::string_view name) const;

 private:
  friend Result<FrameView> ParseFrameFromCopy(const uint8_t* header, size_t header_len, const uint8_t* frame,
                                              size_t size);
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  BatchMeta meta_;
  std::vector<TensorView> tensors_;
};

// Verifies and parses the frame at [data, data + size). Never reads outside
// that range and never trusts a byte before it is checked: the flatbuffers
// Verifier runs first, then every tensor is checked (known dtype, shape
// multiplies out to nbytes without overflow, payload inside the frame and
// past the header, 64-byte aligned, no two payloads overlapping, names
// non-empty and unique, a finish spec only on a uint8 tensor of rank >= 3
// whose channel count it fits, at most kMaxFinishSpecBytes and parseable).
// `size` may exceed the header's frame_bytes (a
// frame inside a larger slot); it may not be smaller.
// A malformed frame gives DataLoss with a message saying what is wrong.
Result<FrameView> ParseFrame(const uint8_t* data, size_t size);

// The same for a frame whose memory another process may write while it is
// parsed (a shared-memory slot): `header` holds a private copy of the
// frame's first header_len bytes (at least the size prefix and the header
// it announces), `frame` is where the frame lies (`size` bytes). Every
// check runs on the copy and nothing is read from `frame`, so a writer
// racing the reader cannot change what was verified. Tensor data points
// into `frame`; names and finish specs point into `header`, which must
// outlive the view.
Result<FrameView> ParseFrameFromCopy(const uint8_t* header, size_t header_len, const uint8_t* frame,
                                     size_t size);
// Bytes a frame header may take at most (size prefix included).
size_t MaxFrameHeaderBytes();

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_FRAME_H_
