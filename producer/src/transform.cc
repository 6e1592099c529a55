// The transform registry, the pipeline spec parser and Pipeline::Run.
#include <algorithm>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "datafeed/producer/transform.h"
#include "datafeed/transport/spec.h"
#include "transform_internal.h"

namespace datafeed {
namespace {

class Registry {
 public:
  static Registry& Get() {
    static Registry* registry = new Registry();  // never destroyed: used until exit
    return *registry;
  }

  Status Add(const std::string& name, TransformFactory factory) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!factories_.emplace(name, std::move(factory)).second) {
      return Status::AlreadyExists("transform '" + name + "' is already registered");
    }
    return Status::OK();
  }

  // The factory for `name`, or null.
  TransformFactory Find(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = factories_.find(name);
    return it == factories_.end() ? TransformFactory() : it->second;
  }

  std::vector<std::string> Names() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> names;
    for (const auto& kv : factories_) names.push_back(kv.first);
    return names;  // std::map keeps them sorted
  }

 private:
  Registry() {
    for (auto& kv : internal::BuiltinTransforms()) factories_.emplace(kv.first, std::move(kv.second));
  }
  mutable std::mutex mu_;
  std::map<std::string, TransformFactory> factories_;
};

std::string Join(const std::vector<std::string>& parts, const char* sep) {
  std::string s;
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? sep : "") + parts[i];
  return s;
}

bool ValidName(std::string_view name) {
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
  });
}

const char* FormName(DType dtype) {
  return dtype == DType::kUInt8 ? "uint8 HWC" : dtype == DType::kFloat32 ? "float32 CHW" : "?";
}

// Intermediate images of Run(), one pair per thread, grown to the largest
// image seen and then reused.
struct Scratch {
  std::vector<float> buf[2];
  void* Get(int which, size_t bytes) {
    std::vector<float>& b = buf[which];
    const size_t floats = (bytes + sizeof(float) - 1) / sizeof(float);
    if (b.size() < floats) b.resize(floats);
    return b.data();
  }
};

}  // namespace

std::string ToString(const ImageShape& s) {
  const std::string c = std::to_string(s.channels), h = std::to_string(s.height),
                    w = std::to_string(s.width);
  if (s.dtype == DType::kUInt8) return "uint8 HWC " + h + "x" + w + "x" + c;
  return std::string(DTypeName(s.dtype)) + " CHW " + c + "x" + h + "x" + w;
}

Status RegisterTransform(const std::string& name, TransformFactory factory) {
  if (!ValidName(name)) {
    return Status::InvalidArgument("transform name '" + name + "' must be non-empty [a-z0-9_]");
  }
  if (!factory) return Status::InvalidArgument("transform '" + name + "': the factory is empty");
  return Registry::Get().Add(name, std::move(factory));
}

std::vector<std::string> KnownTransforms() { return Registry::Get().Names(); }

namespace {

// Parses the comma-separated transforms of `spec` (part of `where`'s spec)
// into `parsed`, and their names into `names`.
Status ParseTransforms(std::string_view spec, const std::string& where,
                       std::vector<std::shared_ptr<const Transform>>* parsed,
                       std::vector<std::string>* names) {
  std::vector<SpecItem> items;
  if (Status st = ParseSpec(spec, &items); !st.ok()) return st.WithContext(where);
  for (const SpecItem& item : items) {
    if (item.text.empty()) {
      return Status::InvalidArgument(where + ": empty transform (a stray comma?); known transforms: " +
                                     Join(KnownTransforms(), ", "));
    }
    std::string name(item.name);
    const TransformFactory factory = Registry::Get().Find(name);
    if (!factory) {
      return Status::InvalidArgument(where + ": unknown transform '" + name +
                                     "'; known transforms: " + Join(KnownTransforms(), ", "));
    }
    Result<std::unique_ptr<Transform>> made = factory(item.args);
    if (!made.ok()) return made.status().WithContext(where);
    if (*made == nullptr) {
      return Status::Internal(where + ": the factory of '" + name + "' returned null");
    }
    parsed->push_back(std::shared_ptr<const Transform>(std::move(made).value()));
    names->push_back(std::move(name));
  }
  return Status::OK();
}

bool IsFinishStep(const std::string& name) { return name == "to_tensor" || name == "normalize"; }

}  // namespace

Result<Pipeline> Pipeline::Make(std::string_view spec) {
  const std::string where = "pipeline spec '" + std::string(spec) + "'";
  if (TrimSpec(spec).empty()) {
    return Status::InvalidArgument(where + ": is empty; give transforms such as "
                                   "'to_tensor,normalize(0.1307,0.3081)'; known transforms: " +
                                   Join(KnownTransforms(), ", "));
  }
  const size_t bar = spec.find('|');
  const bool split = bar != std::string_view::npos;
  if (split && spec.find('|', bar + 1) != std::string_view::npos) {
    return Status::InvalidArgument(where + ": has more than one '|'; a pipeline splits once, "
                                   "into the producer's part and the consumer's finish");
  }
  const std::string_view producer_part = split ? TrimSpec(spec.substr(0, bar)) : spec;

  std::vector<std::shared_ptr<const Transform>> parsed;
  std::vector<std::string> names;
  if (!split || !producer_part.empty()) {
    DATAFEED_RETURN_NOT_OK(ParseTransforms(producer_part, where, &parsed, &names));
  }

  // Dtype flow: uint8 HWC in, float32 CHW out; each stage must accept what it gets.
  DType dtype = DType::kUInt8;
  for (const auto& t : parsed) {
    if (!t->Accepts(dtype)) {
      const bool wants_float = t->Accepts(DType::kFloat32);
      if (split && wants_float) {
        return Status::InvalidArgument(
            where + ": " + t->ToString() + " takes float32 CHW, but the part before '|' runs on "
            "the producer and stays uint8 HWC; only to_tensor and normalize may follow '|' (the "
            "consumer's finish), so a pipeline with " + t->ToString() +
            " after to_tensor cannot be split; drop the '|'");
      }
      return Status::InvalidArgument(
          where + ": " + t->ToString() + " gets a " + FormName(dtype) + " image here but takes " +
          (wants_float ? "float32 CHW; put it after to_tensor" : "uint8 HWC; put it before to_tensor"));
    }
    if (split && t->OutputDType(dtype) != DType::kUInt8) {
      return Status::InvalidArgument(
          where + ": " + t->ToString() + " comes before '|', on the producer, and makes " +
          FormName(t->OutputDType(dtype)) + "; in a split pipeline the producer's part must stay "
          "uint8 HWC: move " + t->ToString() + " after '|'");
    }
    dtype = t->OutputDType(dtype);
  }

  Pipeline p;
  if (split) {
    // The consumer's finish: elementwise steps only.
    const std::string_view finish_part = TrimSpec(spec.substr(bar + 1));
    if (finish_part.empty()) {
      return Status::InvalidArgument(where + ": nothing follows '|'; give the consumer's finish, "
                                     "e.g. '|to_tensor,normalize(0.1307,0.3081)'");
    }
    std::vector<std::shared_ptr<const Transform>> finish_parsed;
    std::vector<std::string> finish_names;
    DATAFEED_RETURN_NOT_OK(ParseTransforms(finish_part, where, &finish_parsed, &finish_names));
    for (size_t i = 0; i < finish_names.size(); ++i) {
      if (!IsFinishStep(finish_names[i])) {
        return Status::InvalidArgument(
            where + ": " + finish_parsed[i]->ToString() + " cannot run in the consumer's finish "
            "(after '|'): only to_tensor and normalize, which map each value on its own, can; " +
            finish_names[i] + " needs the whole image on the producer. A pipeline with " +
            finish_names[i] + " after to_tensor/normalize cannot be split; drop the '|' or move " +
            finish_names[i] + " before to_tensor");
      }
    }
    if (finish_names.front() != "to_tensor") {
      return Status::InvalidArgument(where + ": the finish after '|' must start with to_tensor (the "
                                     "producer's part sends uint8), got " +
                                     finish_parsed.front()->ToString());
    }
    for (size_t i = 1; i < finish_names.size(); ++i) {
      if (finish_names[i] == "to_tensor") {
        return Status::InvalidArgument(where + ": to_tensor appears twice after '|'");
      }
    }
    Result<Finish> finish = Finish::Parse(finish_part);
    if (!finish.ok()) return finish.status().WithContext(where);
    p.finish_ = std::make_shared<const Finish>(std::move(finish).value());
  } else if (dtype != DType::kFloat32) {
    return Status::InvalidArgument(where + ": the output would be " + FormName(dtype) +
                                   "; a pipeline must produce float32, add to_tensor (or "
                                   "'|to_tensor' to have the consumer do it)");
  }

  p.spec_ = std::string(spec);
  for (size_t i = 0; i < parsed.size(); ++i) {
    if (i + 1 < parsed.size()) {
      if (auto fused = internal::Fuse(*parsed[i], *parsed[i + 1])) {
        p.stages_.push_back(std::move(fused));
        ++i;
        continue;
      }
    }
    p.stages_.push_back(parsed[i]);
  }
  return p;
}

Result<ImageShape> Pipeline::OutputShape(int height, int width, int channels) const {
  const bool any_size = height == 0 && width == 0;
  if ((!any_size && (height <= 0 || width <= 0)) || channels <= 0) {
    return Status::InvalidArgument("pipeline '" + spec_ + "': input " + std::to_string(height) +
                                   "x" + std::to_string(width) + "x" + std::to_string(channels) +
                                   " must have positive sides (or 0x0 for any size) and channels");
  }
  ImageShape shape{DType::kUInt8, channels, height, width};
  for (const auto& t : stages_) {
    Result<ImageShape> next = t->OutputShape(shape);
    if (!next.ok()) return next.status().WithContext("pipeline '" + spec_ + "'");
    shape = *next;
  }
  if (finish_) {
    if (Status st = finish_->CheckChannels(shape.channels); !st.ok()) {
      return st.WithContext("pipeline '" + spec_ + "'");
    }
  }
  return shape;
}

Result<ImageShape> Pipeline::FinishedShape(int height, int width, int channels) const {
  DATAFEED_ASSIGN_OR_RETURN(ImageShape shape, OutputShape(height, width, channels));
  shape.dtype = DType::kFloat32;
  return shape;
}

namespace {

constexpr const char* kImagenetNormalize = "to_tensor,normalize(0.485,0.456,0.406,0.229,0.224,0.225)";

struct PresetSpec {
  const char* name;
  std::string spec;
};

const std::vector<PresetSpec>& Presets() {
  // torchvision's reference ImageNet recipes (references/classification).
  static const std::vector<PresetSpec> presets = {
      {"imagenet-eval", std::string("resize(256),center_crop(224),") + kImagenetNormalize},
      {"imagenet-train",
       std::string("random_resized_crop(224),random_horizontal_flip,") + kImagenetNormalize},
  };
  return presets;
}

}  // namespace

Result<std::string> Pipeline::Preset(std::string_view name) {
  for (const PresetSpec& p : Presets()) {
    if (name == p.name) return p.spec;
  }
  return Status::InvalidArgument("unknown pipeline preset '" + std::string(name) +
                                 "'; presets: " + Join(PresetNames(), ", "));
}

std::vector<std::string> Pipeline::PresetNames() {
  std::vector<std::string> names;
  for (const PresetSpec& p : Presets()) names.push_back(p.name);
  return names;
}

Result<std::string> Pipeline::MoveFinishToConsumer(std::string_view spec) {
  const std::string where = "pipeline spec '" + std::string(spec) + "'";
  if (spec.find('|') != std::string_view::npos) return std::string(spec);
  std::vector<SpecItem> items;
  if (Status st = ParseSpec(spec, &items); !st.ok()) return st.WithContext(where);
  size_t first = items.size();
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string name(items[i].name);
    if (first == items.size()) {
      if (name == "to_tensor") first = i;
    } else if (!IsFinishStep(name)) {
      return Status::InvalidArgument(
          where + ": cannot move the float conversion to the consumer: '" + std::string(items[i].text) +
          "' runs after to_tensor, and only to_tensor and normalize (elementwise) can run on the "
          "consumer; run it unsplit, or move '" + name + "' before to_tensor");
    }
  }
  if (first == items.size()) {
    return Status::InvalidArgument(where + ": has no to_tensor to move to the consumer");
  }
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    out += i == 0 ? "" : (i == first ? "" : ",");
    if (i == first) out += "|";
    out += std::string(items[i].text);
  }
  return out;
}

bool Transform::PlanDecode(const ImageShape&, SampleRng, DecodePlan*) const { return false; }

Status Transform::ApplyFramed(const ImageView&, const ImageFrame&, const MutableImageView&,
                              SampleRng&) const {
  return Status::Unimplemented(ToString() + " cannot take a reduced decode");
}

Status Pipeline::Run(const uint8_t* hwc, int height, int width, int channels, float* out_chw,
                     SampleRng rng) const {
  if (finish_) {
    return Status::FailedPrecondition("pipeline '" + spec_ + "' is split at '|': its producer part "
                                      "writes uint8; call Run with a uint8_t* output");
  }
  return Run(PipelineInput{hwc, height, width, channels, nullptr}, out_chw, rng);
}

Status Pipeline::Run(const uint8_t* hwc, int height, int width, int channels, uint8_t* out_chw,
                     SampleRng rng) const {
  if (!finish_) {
    return Status::FailedPrecondition("pipeline '" + spec_ + "' is not split (no '|'): it writes "
                                      "float32; call Run with a float* output");
  }
  return Run(PipelineInput{hwc, height, width, channels, nullptr}, out_chw, rng);
}

Status Pipeline::Run(const PipelineInput& in, void* out, SampleRng rng) const {
  if (out == nullptr) {
    return Status::InvalidArgument("pipeline '" + spec_ + "': null output buffer");
  }
  ImageView result;
  if (!finish_) return RunStages(in, out, rng, &result);
  DATAFEED_RETURN_NOT_OK(RunStages(in, nullptr, rng, &result));
  WriteChw(result, static_cast<uint8_t*>(out));
  return Status::OK();
}

void Pipeline::WriteChw(const ImageView& result, uint8_t* out_chw) {
  // uint8 HWC -> CHW, the batch layout the consumer's finish reads.
  const ImageShape& s = result.shape;
  const size_t plane = static_cast<size_t>(s.height) * static_cast<size_t>(s.width);
  const uint8_t* src = result.as<uint8_t>();
  if (s.channels == 1) {
    std::memcpy(out_chw, src, plane);
    return;
  }
  const auto c = static_cast<size_t>(s.channels);
  for (size_t ch = 0; ch < c; ++ch) {
    uint8_t* o = out_chw + ch * plane;
    for (size_t i = 0; i < plane; ++i) o[i] = src[i * c + ch];
  }
}

bool Pipeline::PlanDecode(int height, int width, int channels, SampleRng rng,
                          DecodePlan* plan) const {
  if (stages_.empty() || height <= 0 || width <= 0 || channels <= 0) return false;
  return stages_.front()->PlanDecode(ImageShape{DType::kUInt8, channels, height, width}, rng, plan);
}

Status Pipeline::RunStages(const PipelineInput& in, void* out, SampleRng& rng,
                           ImageView* result) const {
  if (in.hwc == nullptr) {
    return Status::InvalidArgument("pipeline '" + spec_ + "': null input buffer");
  }
  if (in.height <= 0 || in.width <= 0 || in.channels <= 0) {
    return Status::InvalidArgument("pipeline '" + spec_ + "': input image " +
                                   std::to_string(in.height) + "x" + std::to_string(in.width) + "x" +
                                   std::to_string(in.channels) + " must have positive sides and channels");
  }
  if (in.frame != nullptr && stages_.empty()) {
    return Status::InvalidArgument("pipeline '" + spec_ + "': a reduced decode needs a first step "
                                   "that planned it");
  }
  thread_local Scratch scratch;
  ImageView cur{ImageShape{DType::kUInt8, in.channels, in.height, in.width}, in.hwc};
  *result = cur;
  try {
    for (size_t i = 0; i < stages_.size(); ++i) {
      const Transform& t = *stages_[i];
      // A reduced decode's first step sizes its output from the full picture.
      const bool framed = i == 0 && in.frame != nullptr;
      ImageShape in_shape = cur.shape;
      if (framed) {
        in_shape.height = in.frame->full_height;
        in_shape.width = in.frame->full_width;
      }
      Result<ImageShape> shape = t.OutputShape(in_shape);
      if (!shape.ok()) return shape.status().WithContext("pipeline '" + spec_ + "'");
      if (shape->dtype != t.OutputDType(cur.shape.dtype)) {
        return Status::Internal("pipeline '" + spec_ + "': " + t.ToString() +
                                " gave an output shape whose dtype disagrees with OutputDType");
      }
      const bool last = i + 1 == stages_.size() && out != nullptr;
      // Stages alternate between the two scratch buffers, so a stage never
      // writes the buffer it reads; the last writes the caller's memory
      // (unless the result still needs the split pipeline's transpose).
      void* dst = last ? out : scratch.Get(static_cast<int>(i % 2), shape->nbytes());
      const MutableImageView image{*shape, dst};
      DATAFEED_RETURN_NOT_OK(framed ? t.ApplyFramed(cur, *in.frame, image, rng)
                                    : t.Apply(cur, image, rng));
      cur = ImageView{*shape, dst};
    }
  } catch (const std::exception& e) {
    return Status::Internal("pipeline '" + spec_ + "': " + e.what());
  }
  *result = cur;
  return Status::OK();
}

std::string Pipeline::Describe() const {
  std::vector<std::string> parts;
  for (const auto& t : stages_) parts.push_back(t->ToString());
  std::string d = parts.empty() ? std::string("(uint8 as is)") : Join(parts, " -> ");
  if (finish_) d += " | consumer finishes: " + finish_->spec();
  return d;
}

}  // namespace datafeed
