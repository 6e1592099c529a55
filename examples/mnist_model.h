// The MNIST CNN of PyTorch's examples/mnist (the study datafeed grew from)
// and its optimizer, behind a header that needs only the ATen core headers:
// the implementation is the one place that includes <torch/torch.h> (slow to
// compile), shared by mnist_train and the tests.
//
//   conv 1->32 3x3, relu, conv 32->64 3x3, relu, max_pool 2, dropout 0.25,
//   flatten, fc 9216->128, relu, dropout 0.5, fc 128->10, log_softmax;
//   nll_loss (ignore_index -100, datafeed's label for a skipped sample);
//   Adadelta lr 1.0, rho 0.9, eps 1e-6, as torch.optim.Adadelta.
//
// Thread safety: a MnistModel is used by one thread at a time.
#ifndef DATAFEED_EXAMPLES_MNIST_MODEL_H_
#define DATAFEED_EXAMPLES_MNIST_MODEL_H_

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>

namespace datafeed::examples {

class MnistModel {
 public:
  // Weights initialised from `seed` (libtorch's global generator is seeded
  // with it), on `device`, in training mode.
  MnistModel(c10::Device device, uint64_t seed);
  ~MnistModel();
  MnistModel(const MnistModel&) = delete;
  MnistModel& operator=(const MnistModel&) = delete;

  // One training step on image float32 [B,1,28,28] and label int64 [B], both
  // on the model's device: forward, nll_loss, backward, Adadelta update.
  // Returns the loss, detached; reading it (item()) waits for the device.
  // libtorch errors surface as c10::Error exceptions.
  at::Tensor TrainStep(const at::Tensor& image, const at::Tensor& label);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace datafeed::examples

#endif  // DATAFEED_EXAMPLES_MNIST_MODEL_H_
