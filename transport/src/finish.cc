#include "datafeed/transport/finish.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "datafeed/transport/spec.h"
#include "frame_internal.h"

namespace datafeed {

using internal::Quote;
using internal::ShapeBytes;
using internal::ShapeString;

namespace {

// A float32 as the shortest text that reads back (as a float, or as a double
// then rounded to float, the way pipeline specs are read) to the same value.
std::string FloatText(float v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string text(buf, res.ptr);
  if (static_cast<float>(std::strtod(text.c_str(), nullptr)) != v) {
    std::snprintf(buf, sizeof(buf), "%.9g", static_cast<double>(v));
    text = buf;
  }
  return text;
}

Status FinishError(std::string_view spec, const std::string& what) {
  return Status::InvalidArgument("finish spec " + Quote(spec) + ": " + what);
}

}  // namespace

Result<Finish> Finish::Make(std::vector<Normalize> normalizes) {
  size_t tables = 1;
  std::string spec = "to_tensor";
  for (const Normalize& n : normalizes) {
    if (n.mean.empty() || n.mean.size() != n.std.size()) {
      return Status::InvalidArgument("finish: normalize needs as many stds as means (at least one), got " +
                                     std::to_string(n.mean.size()) + " and " + std::to_string(n.std.size()));
    }
    if (n.mean.size() > 1) {
      if (tables != 1 && tables != n.mean.size()) {
        return Status::InvalidArgument("finish: normalize steps give " + std::to_string(tables) + " and " +
                                       std::to_string(n.mean.size()) + " channels");
      }
      tables = n.mean.size();
    }
    spec += ",normalize(";
    for (size_t i = 0; i < n.mean.size(); ++i) {
      if (!std::isfinite(n.mean[i]) || !std::isfinite(n.std[i]) || n.std[i] == 0.0f) {
        return Status::InvalidArgument("finish: normalize mean " + FloatText(n.mean[i]) + ", std " +
                                       FloatText(n.std[i]) + ": the std must be finite and non-zero, the mean finite");
      }
      spec += (i ? "," : "") + FloatText(n.mean[i]);
    }
    for (float sd : n.std) spec += "," + FloatText(sd);
    spec += ")";
  }
  Finish f;
  f.spec_ = std::move(spec);
  f.luts_.resize(tables);
  for (size_t c = 0; c < tables; ++c) {
    for (int v = 0; v < 256; ++v) {
      // torchvision: img.to(float32).div(255), then tensor.sub_(mean).div_(std)
      // per Normalize -- a division, not a multiply by 1 / std, to round the same.
      float t = static_cast<float>(v) / 255.0f;
      for (const Normalize& n : normalizes) {
        const size_t k = n.mean.size() == 1 ? 0 : c;
        t = (t - n.mean[k]) / n.std[k];
      }
      f.luts_[c][static_cast<size_t>(v)] = t;
    }
  }
  f.normalizes_ = std::move(normalizes);
  return f;
}

Result<Finish> Finish::Parse(std::string_view spec) {
  // A stream carries the same finish in every frame, and ParseFrame and the
  // consumer both parse it: remember the last spec this thread parsed.
  struct Last {
    std::string spec;
    std::optional<Finish> finish;
  };
  thread_local Last last;
  if (last.finish && last.spec == spec) return *last.finish;
  Result<Finish> parsed = ParseUncached(spec);
  if (parsed.ok()) {
    last.spec.assign(spec.data(), spec.size());
    last.finish = *parsed;
  }
  return parsed;
}

Result<Finish> Finish::ParseUncached(std::string_view spec) {
  if (spec.size() > kMaxFinishSpecBytes) {
    return FinishError(spec, "is " + std::to_string(spec.size()) + " bytes, more than the " +
                                 std::to_string(kMaxFinishSpecBytes) + " a frame may carry");
  }
  std::vector<SpecItem> items;
  if (Status st = ParseSpec(spec, &items); !st.ok()) return FinishError(spec, st.message());
  std::vector<Normalize> normalizes;
  for (size_t i = 0; i < items.size(); ++i) {
    const SpecItem& item = items[i];
    if (i == 0) {
      if (item.name != "to_tensor" || item.has_args) {
        return FinishError(spec, "must start with to_tensor (the finish turns uint8 into float32), got " +
                                     Quote(item.text));
      }
      continue;
    }
    if (item.name == "to_tensor") {
      return FinishError(spec, "to_tensor appears twice; the finish converts uint8 to float32 once");
    }
    if (item.name != "normalize") {
      return FinishError(spec, Quote(item.text) +
                                   " cannot be part of a finish: only to_tensor and normalize, which map "
                                   "each value on its own, run on the consumer");
    }
    if (!item.has_args) return FinishError(spec, Quote(item.text) + ": expected normalize(m..., s...)");
    if (item.args.empty() || item.args.size() % 2 != 0) {
      return FinishError(spec, Quote(item.text) + ": takes (mean, std) or (m1, ..., mC, s1, ..., sC), got " +
                                   std::to_string(item.args.size()) + " numbers");
    }
    const size_t n = item.args.size() / 2;
    Normalize norm;
    for (size_t k = 0; k < n; ++k) {
      norm.mean.push_back(static_cast<float>(item.args[k]));
      norm.std.push_back(static_cast<float>(item.args[n + k]));
    }
    normalizes.push_back(std::move(norm));
  }
  Result<Finish> made = Make(std::move(normalizes));
  if (!made.ok()) return FinishError(spec, made.status().message());
  return made;
}

Status Finish::CheckChannels(int64_t channels) const {
  if (channels <= 0 || (luts_.size() != 1 && luts_.size() != static_cast<size_t>(channels))) {
    return Status::InvalidArgument("finish " + Quote(spec_) + " has per-channel values for " +
                                   std::to_string(luts_.size()) + " channels but the image has " +
                                   std::to_string(channels));
  }
  return Status::OK();
}

Status Finish::FillTables(int64_t channels, float* out) const {
  DATAFEED_RETURN_NOT_OK(CheckChannels(channels));
  for (int64_t c = 0; c < channels; ++c) std::memcpy(out + c * 256, table(c), 256 * sizeof(float));
  return Status::OK();
}

void Finish::MapCHW(const uint8_t* in, int64_t channels, size_t plane, float* out) const {
  for (int64_t c = 0; c < channels; ++c) {
    const float* lut = table(c);
    const uint8_t* s = in + static_cast<size_t>(c) * plane;
    float* o = out + static_cast<size_t>(c) * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = lut[s[i]];
  }
}

void Finish::MapHWC(const uint8_t* in, int64_t channels, size_t plane, float* out) const {
  if (channels == 1) return MapCHW(in, 1, plane, out);
  const auto stride = static_cast<size_t>(channels);
  for (int64_t c = 0; c < channels; ++c) {
    const float* lut = table(c);
    const uint8_t* s = in + c;
    float* o = out + static_cast<size_t>(c) * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = lut[s[i * stride]];
  }
}

Status Finish::Apply(const uint8_t* in, const std::vector<int64_t>& shape, float* out,
                     size_t out_floats) const {
  const size_t rank = shape.size();
  if (rank < 3) {
    return Status::InvalidArgument("finish " + Quote(spec_) + ": needs a [..., C, H, W] tensor, got shape " +
                                   ShapeString(shape));
  }
  DATAFEED_RETURN_NOT_OK(CheckChannels(shape[rank - 3]));
  uint64_t n = 0;
  if (!ShapeBytes(shape, 1, &n) || n != out_floats) {
    return Status::InvalidArgument("finish " + Quote(spec_) + ": a tensor of shape " + ShapeString(shape) +
                                   " needs " + std::to_string(n) + " output floats, got room for " +
                                   std::to_string(out_floats));
  }
  if (n == 0) return Status::OK();
  if (in == nullptr || out == nullptr) return Status::InvalidArgument("finish: null input or output");
  const int64_t channels = shape[rank - 3];
  const size_t plane = static_cast<size_t>(shape[rank - 2]) * static_cast<size_t>(shape[rank - 1]);
  const size_t image = plane * static_cast<size_t>(channels);
  for (size_t off = 0; off < n; off += image) MapCHW(in + off, channels, plane, out + off);
  return Status::OK();
}

}  // namespace datafeed
