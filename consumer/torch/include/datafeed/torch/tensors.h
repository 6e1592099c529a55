// The libtorch adapter: a received batch as named at::Tensors (the same type
// as torch::Tensor), with no copy.
//
//   auto consumer = Consumer::Open("shm://feed0").value();
//   for (BatchView& view : *consumer) {
//     TensorBatch batch = ToTensors(view).value();
//     at::Tensor image = batch.Get("image").value();   // float32 [B,1,28,28], in shared memory
//     at::Tensor label = batch.Get("label").value();   // int64 [B]
//     ...
//   }
//
// Each tensor is made with from_blob over the frame's bytes and a deleter
// that holds the BatchView's keepalive(): the transport memory (a
// shared-memory slot) is given back exactly when the last tensor made from
// the batch -- including views, slices and tensors autograd saved -- and
// the last BatchView copy are gone. Keep a tensor past that point only via
// clone(), or the producer loses the slot for as long as you keep it.
//
// Dtype and shape come from the frame header. Tensors are CPU, contiguous,
// requires_grad false. Their memory belongs to this consumer alone (no other
// process reads a slot once it is claimed), so in-place operations are
// allowed, though rarely a good idea on input data.
//
// Split pipelines (a '|' in the producer's spec, see transform.h): the
// image arrives as uint8 [B, C, H, W] with a finish such as
// "to_tensor,normalize(0.1307,0.3081)". ToTensors runs it by default and
// hands out the float32 tensor (a new CPU tensor; the uint8 frame is given
// back at once), identical to what an unsplit producer sends. With
// ToTensorsOptions::finish = false it hands out the zero-copy uint8 tensor
// and remembers the finish (TensorBatch::finish): move that to the GPU
// (ToDevice, a quarter of the float bytes) and finish it there
// (FinishTensors / FinishTensor, which work on any device):
//
//   TensorBatch raw = ToTensors(view, {/*finish=*/false}).value();
//   TensorBatch gpu = FinishTensors(ToDevice(raw, {c10::Device("cuda")}).value()).value();
//
// Frames of unsplit pipelines are untouched by all of this: zero-copy as before.
//
// This is the only datafeed library that includes libtorch, and only the
// light ATen core headers, not <torch/torch.h>. Link datafeed::torch.
//
// Thread safety: the free functions are thread-safe. A TensorBatch is a
// value: distinct objects may be used from distinct threads; tensors follow
// libtorch's rules.
#ifndef DATAFEED_TORCH_TENSORS_H_
#define DATAFEED_TORCH_TENSORS_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/transport/frame.h"
#include "datafeed/transport/status.h"
#include "datafeed/transport/transport.h"

namespace datafeed {

// The torch dtype of a frame dtype; every DType has one (uint8 -> kByte,
// int8 -> kChar, int16 -> kShort, int32 -> kInt, int64 -> kLong, float16 ->
// kHalf, bfloat16 -> kBFloat16, float32 -> kFloat, float64 -> kDouble, bool
// -> kBool). InvalidArgument for a value that is not a known DType.
Result<c10::ScalarType> TorchDType(DType dtype);

// A zero-copy tensor over `tensor`, which must be one of batch's tensors
// (InvalidArgument if its bytes are not inside batch's frame).
Result<at::Tensor> ToTensor(const BatchView& batch, const TensorView& tensor);
// The same for the tensor called `name`; NotFound lists the names there are.
Result<at::Tensor> ToTensor(const BatchView& batch, std::string_view name);

// A batch as named tensors, in frame order, plus its metadata.
class TensorBatch {
 public:
  TensorBatch() = default;

  const BatchMeta& meta() const { return meta_; }
  size_t size() const { return tensors_.size(); }
  const std::string& name(size_t i) const { return names_[i]; }
  const at::Tensor& tensor(size_t i) const { return tensors_[i]; }
  const std::vector<at::Tensor>& tensors() const { return tensors_; }
  // The finish still to run on tensor i ("" when it is final; see above).
  const std::string& finish(size_t i) const { return finishes_[i]; }
  // The tensor called `name`, or nullptr.
  const at::Tensor* Find(std::string_view name) const;
  // The tensor called `name`; NotFound lists the names there are.
  Result<at::Tensor> Get(std::string_view name) const;
  // Dimension 0 of the first tensor that has one (the batch size), or 0.
  int64_t num_samples() const;

  // Adds a tensor (for adapters and tests), with the finish still to run on
  // it ("" for none). InvalidArgument for a duplicate or empty name or an
  // undefined tensor.
  Status Add(std::string name, at::Tensor tensor, std::string finish = {});
  void set_meta(const BatchMeta& meta) { meta_ = meta; }

 private:
  BatchMeta meta_;
  std::vector<std::string> names_;
  std::vector<at::Tensor> tensors_;
  std::vector<std::string> finishes_;
};

struct ToTensorsOptions {
  // Run split-pipeline finishes here, on the CPU (see above); false keeps
  // those tensors uint8 and zero-copy, their finish in TensorBatch::finish.
  bool finish = true;
};

// Every tensor of `batch`: zero-copy (see ToTensor), except that a tensor
// with a finish comes out finished (float32) unless options.finish is false.
Result<TensorBatch> ToTensors(const BatchView& batch, const ToTensorsOptions& options);
Result<TensorBatch> ToTensors(const BatchView& batch);

// Runs the finish spec `finish` on a uint8 [..., C, H, W] tensor on any
// device: a float32 tensor of the same shape on the same device, with the
// values the producer would have computed (the producer's per-channel
// value tables, datafeed::Finish: applied directly to a contiguous CPU
// tensor, otherwise copied to the tensor's device and looked up there).
// InvalidArgument for a bad spec, dtype, rank or channel count.
Result<at::Tensor> FinishTensor(const at::Tensor& tensor, std::string_view finish);
// `batch` with every pending finish run, where each tensor is; tensors
// without one are passed through.
Result<TensorBatch> FinishTensors(const TensorBatch& batch);

struct DeviceOptions {
  // Where the tensors should be; "cpu", "cuda", "cuda:1" (c10::Device).
  c10::Device device = c10::Device(c10::DeviceType::CPU);
  // CUDA only. Copy each tensor into pinned (page-locked) host memory first
  // (from libtorch's caching host allocator, so buffers are reused), which
  // makes the host-to-device copy asynchronous. The pinned copy runs on the
  // calling thread; without it the device copy is synchronous and staged by
  // the CUDA driver.
  bool pin_memory = true;
  // CUDA only: queue the device copy on the current stream and return
  // before it finishes. Kernels queued later on that stream see the data.
  bool non_blocking = true;
};

// Whether this process can use CUDA: a CUDA-enabled libtorch and at least one
// GPU at run time. False with Debian's CPU-only libtorch.
bool CudaAvailable();

// `batch` on options.device. For the CPU this returns `batch` itself: still
// zero-copy, still holding the transport memory. For CUDA the returned
// tensors live on the GPU and hold no transport memory: once the host
// copies are done (pinned, or the synchronous copy) and `batch` is
// dropped, the slot is free even though the device copy may still be in
// flight. Unavailable when CUDA is asked for and CudaAvailable() is false;
// InvalidArgument for other device types.
Result<TensorBatch> ToDevice(const TensorBatch& batch, const DeviceOptions& options);

}  // namespace datafeed

#endif  // DATAFEED_TORCH_TENSORS_H_
