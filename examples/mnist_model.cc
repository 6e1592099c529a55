#include "mnist_model.h"

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace datafeed::examples {

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 32, 3)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3)))),
        dropout1(register_module("dropout1", torch::nn::Dropout(0.25))),
        dropout2(register_module("dropout2", torch::nn::Dropout(0.5))),
        fc1(register_module("fc1", torch::nn::Linear(9216, 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 10))) {}

  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(conv1(x));
    x = torch::relu(conv2(x));
    x = torch::max_pool2d(x, 2);
    x = dropout1(x);
    x = torch::flatten(x, 1);
    x = torch::relu(fc1(x));
    x = dropout2(x);
    x = fc2(x);
    return torch::log_softmax(x, 1);
  }

  torch::nn::Conv2d conv1, conv2;
  torch::nn::Dropout dropout1, dropout2;
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Net);

// libtorch's C++ frontend has no Adadelta; this is torch.optim.Adadelta's
// update (PyTorch 1.13; no weight decay, not maximizing):
//   v = rho v + (1 - rho) g^2
//   d = sqrt(u + eps) / sqrt(v + eps) * g
//   u = rho u + (1 - rho) d^2
//   p -= lr d
class Adadelta {
 public:
  explicit Adadelta(std::vector<torch::Tensor> params, double lr = 1.0, double rho = 0.9,
                    double eps = 1e-6)
      : params_(std::move(params)), lr_(lr), rho_(rho), eps_(eps) {
    for (const auto& p : params_) {
      square_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      acc_delta_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    }
  }

  // Gradients to none, like zero_grad(set_to_none=True): the next backward
  // writes them instead of adding to zeros.
  void ZeroGrad() {
    for (auto& p : params_) p.mutable_grad() = torch::Tensor();
  }

  void Step() {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params_.size(); ++i) {
      const torch::Tensor& g = params_[i].grad();
      if (!g.defined()) continue;
      square_avg_[i].mul_(rho_).addcmul_(g, g, 1 - rho_);
      torch::Tensor std = square_avg_[i].add(eps_).sqrt_();
      torch::Tensor delta = acc_delta_[i].add(eps_).sqrt_().div_(std).mul_(g);
      acc_delta_[i].mul_(rho_).addcmul_(delta, delta, 1 - rho_);
      params_[i].add_(delta, -lr_);
    }
  }

 private:
  std::vector<torch::Tensor> params_, square_avg_, acc_delta_;
  double lr_, rho_, eps_;
};

Net SeededNet(uint64_t seed, c10::Device device) {
  torch::manual_seed(seed);
  Net net;
  net->to(device);  // parameters move in place; take them afterwards
  return net;
}

}  // namespace

struct MnistModel::Impl {
  Impl(c10::Device device, uint64_t seed)
      : net(SeededNet(seed, device)), optimizer(net->parameters()) {
    net->train();
  }
  Net net;
  Adadelta optimizer;
};

MnistModel::MnistModel(c10::Device device, uint64_t seed)
    : impl_(std::make_unique<Impl>(device, seed)) {}

MnistModel::~MnistModel() = default;

at::Tensor MnistModel::TrainStep(const at::Tensor& image, const at::Tensor& label) {
  impl_->optimizer.ZeroGrad();
  torch::Tensor loss = torch::nll_loss(impl_->net->forward(image), label);
  loss.backward();
  impl_->optimizer.Step();
  return loss.detach();
}

}  // namespace datafeed::examples
