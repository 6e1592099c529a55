#include "datafeed/torch/tensors.h"

#include <ATen/ATen.h>

#include "datafeed/consumer/consumer.h"

#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>

namespace datafeed {

namespace {

// libtorch reports errors with exceptions (c10::Error); none may cross
// datafeed's API.
Status FromException(const std::exception& e, const std::string& what) {
  std::string msg = e.what();
  // c10::Error messages end with a C++ backtrace; the first line says it.
  if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
  return Status::Internal(what + ": libtorch: " + msg);
}

std::string Names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
  return out.empty() ? "none" : out;
}

}  // namespace

Result<c10::ScalarType> TorchDType(DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return c10::ScalarType::Byte;
    case DType::kInt8: return c10::ScalarType::Char;
    case DType::kInt16: return c10::ScalarType::Short;
    case DType::kInt32: return c10::ScalarType::Int;
    case DType::kInt64: return c10::ScalarType::Long;
    case DType::kFloat16: return c10::ScalarType::Half;
    case DType::kBFloat16: return c10::ScalarType::BFloat16;
    case DType::kFloat32: return c10::ScalarType::Float;
    case DType::kFloat64: return c10::ScalarType::Double;
    case DType::kBool: return c10::ScalarType::Bool;
  }
  return Status::InvalidArgument("dtype " + std::to_string(static_cast<int>(dtype)) +
                                 " has no torch equivalent (not a known datafeed dtype)");
}

Result<at::Tensor> ToTensor(const BatchView& batch, const TensorView& tensor) {
  const FrameView& frame = batch.frame();
  const uint8_t* begin = frame.data();
  if (begin == nullptr || tensor.data < begin || tensor.nbytes > frame.size() ||
      tensor.data - begin > static_cast<std::ptrdiff_t>(frame.size() - tensor.nbytes)) {
    return Status::InvalidArgument("ToTensor: tensor '" + std::string(tensor.name) +
                                   "' is not inside this batch's frame");
  }
  DATAFEED_ASSIGN_OR_RETURN(c10::ScalarType dtype, TorchDType(tensor.dtype));
  if (static_cast<size_t>(tensor.numel()) * DTypeSize(tensor.dtype) != tensor.nbytes) {
    return Status::InvalidArgument("ToTensor: tensor '" + std::string(tensor.name) +
                                   "': shape does not match its byte count");
  }
  try {
    // The deleter owns a reference to the transport memory: it is given back
    // when libtorch frees the last storage reference (the std::function, and
    // with it `keep`, is destroyed then).
    std::shared_ptr<void> keep = batch.keepalive();
    return at::from_blob(const_cast<uint8_t*>(tensor.data), tensor.shape,
                         [keep = std::move(keep)](void*) mutable { keep.reset(); },
                         at::TensorOptions().dtype(dtype).device(at::kCPU));
  } catch (const std::exception& e) {
    return FromException(e, "ToTensor '" + std::string(tensor.name) + "'");
  }
}

Result<at::Tensor> ToTensor(const BatchView& batch, std::string_view name) {
  const TensorView* t = batch.Find(name);
  if (t == nullptr) {
    std::vector<std::string> names;
    for (const TensorView& v : batch.frame().tensors()) names.emplace_back(v.name);
    return Status::NotFound("batch has no tensor '" + std::string(name) + "'; it has " +
                            Names(names));
  }
  return ToTensor(batch, *t);
}

const at::Tensor* TensorBatch::Find(std::string_view name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return &tensors_[i];
  }
  return nullptr;
}

Result<at::Tensor> TensorBatch::Get(std::string_view name) const {
  if (const at::Tensor* t = Find(name)) return *t;
  return Status::NotFound("batch has no tensor '" + std::string(name) + "'; it has " +
                          Names(names_));
}

int64_t TensorBatch::num_samples() const {
  for (const at::Tensor& t : tensors_) {
    if (t.dim() > 0) return t.size(0);
  }
  return 0;
}

Status TensorBatch::Add(std::string name, at::Tensor tensor, std::string finish) {
  if (name.empty()) return Status::InvalidArgument("TensorBatch::Add: empty name");
  if (!tensor.defined()) {
    return Status::InvalidArgument("TensorBatch::Add: tensor '" + name + "' is undefined");
  }
  if (Find(name) != nullptr) {
    return Status::InvalidArgument("TensorBatch::Add: duplicate tensor '" + name + "'");
  }
  names_.push_back(std::move(name));
  tensors_.push_back(std::move(tensor));
  finishes_.push_back(std::move(finish));
  return Status::OK();
}

Result<TensorBatch> ToTensors(const BatchView& batch) { return ToTensors(batch, ToTensorsOptions()); }

Result<TensorBatch> ToTensors(const BatchView& batch, const ToTensorsOptions& options) {
  TensorBatch out;
  out.set_meta(batch.meta());
  for (const TensorView& t : batch.frame().tensors()) {
    if (!t.finish.empty() && options.finish) {
      // Straight from the frame into a new float tensor: one pass, and the
      // frame is not held by the result.
      try {
        at::Tensor finished = at::empty(t.shape, at::TensorOptions().dtype(at::kFloat));
        DATAFEED_RETURN_NOT_OK(
            FinishTensor(t, finished.data_ptr<float>(), static_cast<size_t>(finished.numel())));
        DATAFEED_RETURN_NOT_OK(out.Add(std::string(t.name), std::move(finished)));
      } catch (const std::exception& e) {
        return FromException(e, "ToTensors: finishing '" + std::string(t.name) + "'");
      }
      continue;
    }
    DATAFEED_ASSIGN_OR_RETURN(at::Tensor tensor, ToTensor(batch, t));
    DATAFEED_RETURN_NOT_OK(out.Add(std::string(t.name), std::move(tensor), std::string(t.finish)));
  }
  return out;
}

namespace {
// A finish's tables on `device`, made once per (spec, channels, device):
// copying them for every batch would be a blocking host-to-device copy,
// which waits for everything already queued on the device.
Result<at::Tensor> DeviceTables(const Finish& finish, int64_t channels, const c10::Device& device) {
  static std::mutex mu;
  static std::map<std::tuple<std::string, int64_t, std::string>, at::Tensor> cache;
  auto key = std::make_tuple(finish.spec(), channels, device.str());
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  at::Tensor tables = at::empty({channels, 256}, at::TensorOptions().dtype(at::kFloat));
  DATAFEED_RETURN_NOT_OK(finish.FillTables(channels, tables.data_ptr<float>()));
  tables = tables.to(device).view({-1});
  if (cache.size() >= 16) cache.clear();  // a few pipelines at a time, in practice one
  cache.emplace(std::move(key), tables);
  return tables;
}
}  // namespace

Result<at::Tensor> FinishTensor(const at::Tensor& tensor, std::string_view finish_spec) {
  const std::string what = "FinishTensor('" + std::string(finish_spec) + "')";
  DATAFEED_ASSIGN_OR_RETURN(Finish finish, Finish::Parse(finish_spec));
  try {
    if (!tensor.defined() || tensor.scalar_type() != at::kByte || tensor.dim() < 3) {
      return Status::InvalidArgument(what + ": needs a uint8 [..., C, H, W] tensor, got " +
                                     (tensor.defined() ? std::string(c10::toString(tensor.scalar_type())) +
                                                             " of rank " + std::to_string(tensor.dim())
                                                       : std::string("an undefined tensor")));
    }
    const int64_t channels = tensor.size(tensor.dim() - 3);
    DATAFEED_RETURN_NOT_OK(finish.CheckChannels(channels).WithContext(what));
    if (tensor.is_cpu() && tensor.is_contiguous()) {
      at::Tensor out = at::empty(tensor.sizes(), tensor.options().dtype(at::kFloat));
      const std::vector<int64_t> shape(tensor.sizes().begin(), tensor.sizes().end());
      DATAFEED_RETURN_NOT_OK(finish.Apply(tensor.data_ptr<uint8_t>(), shape, out.data_ptr<float>(),
                                          static_cast<size_t>(out.numel())));
      return out;
    }
    // Elsewhere (a GPU; or a strided view): the same tables, built here and
    // looked up there, so no device arithmetic can round differently from
    // the producer.
    DATAFEED_ASSIGN_OR_RETURN(at::Tensor tables, DeviceTables(finish, channels, tensor.device()));
    at::Tensor index = tensor.to(at::kInt);
    if (channels > 1) {
      at::Tensor base = at::arange(channels, index.options()).mul_(256).view({channels, 1, 1});
      index = index.add_(base);
    }
    return tables.index_select(0, index.reshape({-1})).view(tensor.sizes());
  } catch (const std::exception& e) {
    return FromException(e, what);
  }
}

Result<TensorBatch> FinishTensors(const TensorBatch& batch) {
  TensorBatch out;
  out.set_meta(batch.meta());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch.finish(i).empty()) {
      DATAFEED_RETURN_NOT_OK(out.Add(batch.name(i), batch.tensor(i)));
      continue;
    }
    Result<at::Tensor> finished = FinishTensor(batch.tensor(i), batch.finish(i));
    if (!finished.ok()) return finished.status().WithContext("FinishTensors '" + batch.name(i) + "'");
    DATAFEED_RETURN_NOT_OK(out.Add(batch.name(i), std::move(finished).value()));
  }
  return out;
}

bool CudaAvailable() {
  try {
    return at::hasCUDA();
  } catch (const std::exception&) {
    return false;
  }
}

Result<TensorBatch> ToDevice(const TensorBatch& batch, const DeviceOptions& options) {
  const c10::Device& device = options.device;
  if (device.is_cpu()) return batch;
  if (!device.is_cuda()) {
    return Status::InvalidArgument("ToDevice: device '" + device.str() +
                                   "' is not supported; use cpu or cuda[:N]");
  }
  if (!CudaAvailable()) {
    return Status::Unavailable("ToDevice: asked for " + device.str() +
                               " but this libtorch has no CUDA or this machine no GPU; "
                               "use --device cpu or a CUDA-enabled libtorch");
  }
  TensorBatch out;
  out.set_meta(batch.meta());
  try {
    for (size_t i = 0; i < batch.size(); ++i) {
      at::Tensor host = batch.tensor(i);
      if (!host.is_cuda()) {
        // The pinned copy comes from the caching host allocator; a
        // non-blocking copy records an event on it, so the buffer is reused
        // only after the device copy has finished.
        if (options.pin_memory && !host.is_pinned()) host = host.pin_memory();
      }
      at::Tensor on_device = host.to(at::TensorOptions().device(device),
                                     options.non_blocking && host.is_pinned(), /*copy=*/false);
      DATAFEED_RETURN_NOT_OK(out.Add(batch.name(i), std::move(on_device), batch.finish(i)));
    }
  } catch (const std::exception& e) {
    return FromException(e, "ToDevice " + device.str());
  }
  return out;
}

}  // namespace datafeed
