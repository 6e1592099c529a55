// Transforms and pipelines: per-sample preprocessing, numerically matching
// torchvision 0.14 as its transforms run on what its default loader makes:
// PIL images before ToTensor, float32 tensors after. Checked against goldens
// made by producer/tools/make_goldens.py: float outputs within 1e-5, uint8
// outputs (PIL's own fixed-point arithmetic, reproduced step for step)
// identical.
//
// A Pipeline is built from a spec string, a comma-separated list of
// transforms applied left to right:
//
//   to_tensor,normalize(0.1307,0.3081),gaussian_blur(11)
//
// A '|' splits a pipeline: the part before it runs in the producer, the
// part after it is the consumer's finish, recorded in each batch's frame
// header (TensorSpec::finish) and run by the consumer:
//
//   random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)
//   |to_tensor,normalize(0.1307,0.3081)
//
// The producer then ships uint8 images (C x H x W, 4x fewer bytes than
// float32) and the consumer (datafeed::Finish in frame.h; the torch adapter
// and the Python package apply it by default) computes the same float32
// values, bit for bit. The finish may hold only to_tensor followed by
// normalize steps (they map each value on its own); the producer's part must
// stay uint8 (no to_tensor, normalize or gaussian_blur before '|'), so a
// pipeline with gaussian_blur after to_tensor cannot be split.
// MoveFinishToConsumer() splits a spec before its trailing
// to_tensor[,normalize...] (datafeed-producer --finish-on-consumer).
//
// Images flow through a pipeline in one of two forms (the Image rule):
//   * uint8 HWC   -- the input, and the output of transforms before
//                    to_tensor: torchvision's PIL image ("L" for 1 channel,
//                    "RGB" for 3);
//   * float32 CHW -- after to_tensor, and the pipeline's output: a tensor.
// Every pipeline must convert to float32 with to_tensor (in a split
// pipeline, the finish does).
//
// Input images may differ in size (a folder of JPEGs): the pipeline's
// output must not. OutputShape(0, 0, c) gives the output for images of any
// size, 0 where it would depend on the input (resize(s) alone, or no
// geometric step at all); a producer refuses such a pipeline for a dataset
// whose images vary and says to end with center_crop, random_resized_crop or
// resize(h, w).
//
// Built-in transforms (torchvision equivalent in brackets):
//   to_tensor                  uint8 HWC -> float CHW, x / 255  [ToTensor]
//   normalize(m..., s...)      (x - m[c]) / s[c]; one (m, s) pair broadcasts to
//                              every channel, else give C means then C stds
//                              [Normalize]
//   gaussian_blur(k)           k odd; sigma = 0.15 k + 0.35 (= 0.3 ((k - 1) / 2
//                              - 1) + 0.8), torchvision's default
//                              [F.gaussian_blur(img, k)]. Reflect padding
//                              (torch "reflect" = BORDER_REFLECT_101), so
//                              each image side must exceed k / 2
//   gaussian_blur(k, s)        fixed sigma s [GaussianBlur(k, sigma=s)]
//   gaussian_blur(k, lo, hi)   sigma uniform in [lo, hi) per sample
//                              [GaussianBlur(k, sigma=(lo, hi))]; note that
//                              torchvision's GaussianBlur(k) class defaults to
//                              sigma=(0.1, 2.0), i.e. gaussian_blur(k,0.1,2)
//                              here, unlike its functional form
//   resize(s) | resize(h, w)   bilinear [Resize]; resize(s) scales the shorter
//                              edge to s, the longer to int(s * long / short).
//                              On uint8 (a PIL image): PIL's
//                              Image.resize(BILINEAR), which antialiases (the
//                              filter widens with the downscale), in PIL's
//                              22-bit fixed point, bit for bit. On float32 (a
//                              tensor): torch's bilinear without antialiasing
//                              (torchvision 0.14's tensor default), torch
//                              1.13's float rounding reproduced bit for bit
//   center_crop(s) | center_crop(h, w)   zero-pads when the image is smaller
//                              [CenterCrop]
//   random_crop(s[, pad]) | random_crop(h, w, pad)   zero padding on every
//                              side, then a uniformly placed crop [RandomCrop]
//   random_horizontal_flip[(p)]   flips with probability p (default 0.5)
//                              [RandomHorizontalFlip]
//   random_resized_crop(s[, smin, smax[, rmin, rmax]])
//   random_resized_crop(h, w[, smin, smax[, rmin, rmax]])
//                              a crop of area fraction in [smin, smax] (default
//                              0.08, 1) and aspect ratio in [rmin, rmax]
//                              (default 3/4, 4/3), drawn as torchvision's
//                              get_params does, resized to s x s (h x w)
//                              bilinearly like resize [RandomResizedCrop]
//   color_jitter(b[, c[, s[, h]]])   brightness, contrast and saturation
//                              factors uniform in [max(0, 1 - x), 1 + x], hue
//                              shift in [-h, h] (h <= 0.5), applied in a random
//                              order; 0 turns one off. uint8 only (PIL's
//                              ImageEnhance and HSV arithmetic) [ColorJitter]
// Geometric transforms work on both image forms; normalize and
// gaussian_blur need float32 (put them after to_tensor), color_jitter uint8
// (before it).
//
// Presets (Pipeline::Preset, datafeed-producer --preset) name the usual
// pipelines: imagenet-train is
//   random_resized_crop(224),random_horizontal_flip,to_tensor,
//   normalize(0.485,0.456,0.406,0.229,0.224,0.225)
// and imagenet-eval
//   resize(256),center_crop(224),to_tensor,normalize(<the same>)
// (torchvision's reference ImageNet recipes).
//
// Random transforms draw from the SampleRng passed to Run() (sample_rng.h),
// so results depend only on that stream, never on threads; the draws cannot
// reproduce torch's global RNG, so only the deterministic parts of random
// transforms are comparable with torchvision (transform_internal.h exposes
// the draws and the kernels separately for that).
//
// Thread safety: a Pipeline is immutable after Make(); Run() and OutputShape()
// are const and may be called from any number of threads at once. Run() keeps
// its intermediate images in thread_local scratch buffers that grow to the
// largest image seen and are then reused, so steady-state Run() does no heap
// allocation of its own; gaussian_blur's cv::sepFilter2D still allocates its
// own small row buffers on every call (about ten).
#ifndef DATAFEED_PRODUCER_TRANSFORM_H_
#define DATAFEED_PRODUCER_TRANSFORM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/producer/sample_rng.h"
#include "datafeed/transport/frame.h"
#include "datafeed/transport/status.h"

namespace datafeed {

// Shape of an image in a pipeline. dtype is kUInt8 (layout HWC) or kFloat32
// (layout CHW); see the Image rule above.
struct ImageShape {
  DType dtype = DType::kUInt8;
  int channels = 0;
  int height = 0;
  int width = 0;

  size_t num_elements() const {
    return static_cast<size_t>(channels) * static_cast<size_t>(height) *
           static_cast<size_t>(width);
  }
  size_t nbytes() const { return num_elements() * DTypeSize(dtype); }
  bool operator==(const ImageShape& o) const {
    return dtype == o.dtype && channels == o.channels && height == o.height && width == o.width;
  }
  bool operator!=(const ImageShape& o) const { return !(*this == o); }
};

// "uint8 HWC 28x28x1" / "float32 CHW 1x28x28".
std::string ToString(const ImageShape& shape);

// A read-only image; does not own its memory.
struct ImageView {
  ImageShape shape;
  const void* data = nullptr;
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
};

// A writable image; does not own its memory.
struct MutableImageView {
  ImageShape shape;
  void* data = nullptr;
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
};

// A reduced decode (DecodeMode::kReduced in producer.h: a JPEG decoded with
// its DCT scaled down) hands the pipeline fewer pixels than the file holds:
// the image covers [left, right) x [top, bottom) of the full picture (in the
// full picture's pixels; the picture is full_height x full_width), scaled to
// the image's own size. Steps that draw or compute positions do so in the
// full picture, so a sample's draws are the same however it was decoded.
struct ImageFrame {
  int full_height = 0;
  int full_width = 0;
  double top = 0, left = 0, bottom = 0, right = 0;
};

// What a pipeline's first step will read of a full picture: the region
// [left, right) x [top, bottom) (full-picture pixels) and the size it makes
// of it. A decode with at least that many pixels over the region loses
// nothing the step keeps.
struct DecodePlan {
  double top = 0, left = 0, bottom = 0, right = 0;
  int out_height = 0;
  int out_width = 0;
};

// A uint8 HWC image for Pipeline::Run, and where it sits in its picture when
// it is a reduced decode (null: it is the whole picture).
struct PipelineInput {
  const uint8_t* hwc = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;
  const ImageFrame* frame = nullptr;
};

// One preprocessing step. Implementations must be immutable after
// construction: Apply() is called from many threads at once.
class Transform {
 public:
  virtual ~Transform() = default;

  // The spec form with resolved parameters, e.g. "gaussian_blur(11, 2)".
  virtual std::string ToString() const = 0;
  // Whether Apply() takes images of this dtype (kUInt8 = HWC, kFloat32 = CHW).
  // Default: float32 only.
  virtual bool Accepts(DType dtype) const { return dtype == DType::kFloat32; }
  // The dtype of the output for an input of `dtype`. Default: unchanged.
  virtual DType OutputDType(DType dtype) const { return dtype; }
  // The output shape for an input of shape `in`, or InvalidArgument saying why
  // the transform cannot take it (too small, wrong channel count, ...).
  // in.height and in.width may be 0: the size varies from image to image;
  // give 0 for what depends on it, and check it when Apply runs.
  virtual Result<ImageShape> OutputShape(const ImageShape& in) const = 0;
  // Writes the transform of `in` into `out`, whose shape is OutputShape(in)
  // and whose memory never overlaps `in`. Draws randomness only from `rng`.
  // Must not call Pipeline::Run (it would reuse the running thread's scratch).
  virtual Status Apply(const ImageView& in, const MutableImageView& out, SampleRng& rng) const = 0;

  // Reduced decoding, for the first step of a pipeline. PlanDecode: for a
  // full uint8 picture of shape `full`, fill *plan with the region this step
  // reads and the size it makes of it, drawing from `rng` (a copy) exactly as
  // Apply would, and return true; false (the default) when the step needs
  // every pixel. ApplyFramed: Apply on an image `frame` describes (see
  // ImageFrame), with the same draws as Apply on the full picture; `out` has
  // OutputShape() of the full picture's shape. Called only after PlanDecode
  // said true; the default refuses.
  virtual bool PlanDecode(const ImageShape& full, SampleRng rng, DecodePlan* plan) const;
  virtual Status ApplyFramed(const ImageView& in, const ImageFrame& frame,
                             const MutableImageView& out, SampleRng& rng) const;
};

// Builds a transform from the numbers in its spec ("normalize(0.5,0.2)" ->
// {0.5, 0.2}; "to_tensor" -> {}). Returns InvalidArgument for bad arguments.
using TransformFactory =
    std::function<Result<std::unique_ptr<Transform>>(const std::vector<double>& args)>;

// Makes `name` usable in pipeline specs. name must be [a-z0-9_]+ and not taken
// (AlreadyExists otherwise, built-ins included). Thread-safe; pipelines built
// before the call are unaffected.
Status RegisterTransform(const std::string& name, TransformFactory factory);
// Sorted names of every registered transform, built-ins included.
std::vector<std::string> KnownTransforms();

class Pipeline {
 public:
  // Parses and validates `spec`. InvalidArgument names the bad part and, for
  // an unknown name, lists the known transforms. Adjacent to_tensor and
  // normalize fuse into one pass; blur kernels are computed here, once.
  static Result<Pipeline> Make(std::string_view spec);

  // The output of Run() for an h x w x c input: float32, C x H x W; for a
  // split pipeline uint8, also laid out C x H x W (the form it is sent in).
  // InvalidArgument if some transform (or the finish) cannot take that input.
  // height = width = 0 asks for images of any size: the result has 0 for a
  // side that depends on the input's (see the top of this file).
  Result<ImageShape> OutputShape(int height, int width, int channels) const;
  // The float32 C x H x W shape the consumer finally gets (OutputShape with
  // dtype float32; the same as OutputShape for an unsplit pipeline).
  Result<ImageShape> FinishedShape(int height, int width, int channels) const;

  // Runs the pipeline on the uint8 HWC image `hwc` (height x width x
  // channels) and writes the float32 CHW result to out_chw, which must hold
  // OutputShape(height, width, channels)->num_elements() floats (e.g. one
  // sample's slot of a transport batch). Random transforms draw from `rng`.
  // FailedPrecondition for a split pipeline.
  Status Run(const uint8_t* hwc, int height, int width, int channels, float* out_chw,
             SampleRng rng) const;
  // The same for a split pipeline: runs the part before '|' and writes its
  // uint8 result C x H x W (OutputShape()->num_elements() bytes).
  // FailedPrecondition for an unsplit pipeline.
  Status Run(const uint8_t* hwc, int height, int width, int channels, uint8_t* out_chw,
             SampleRng rng) const;
  // Either of the above by split(): `out` is float* for an unsplit pipeline,
  // uint8_t* for a split one, sized by OutputShape() of the full picture
  // (in.frame's, when given: a reduced decode, see ImageFrame).
  Status Run(const PipelineInput& in, void* out, SampleRng rng) const;

  // For a reduced decode: whether the first step can plan one (see
  // Transform::PlanDecode) for a full height x width x channels picture with
  // this sample's `rng`, and its plan.
  bool PlanDecode(int height, int width, int channels, SampleRng rng, DecodePlan* plan) const;

  // Whether the spec has a '|', and the consumer's finish then (else null).
  bool split() const { return finish_ != nullptr; }
  const Finish* finish() const { return finish_.get(); }

  // The spec of a named preset ("imagenet-train", "imagenet-eval"; see the
  // top of this file), or InvalidArgument listing the names.
  static Result<std::string> Preset(std::string_view name);
  // The preset names, sorted.
  static std::vector<std::string> PresetNames();

  // `spec` with a '|' put before its trailing to_tensor[,normalize...], e.g.
  // "random_crop(28,2),to_tensor,normalize(0.1307,0.3081)" ->
  // "random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)". A spec that is
  // already split comes back as is; InvalidArgument when something other
  // than normalize follows to_tensor (that pipeline cannot be split) or there
  // is no to_tensor.
  static Result<std::string> MoveFinishToConsumer(std::string_view spec);

  // The spec as given.
  const std::string& spec() const { return spec_; }
  // The executed stages, fusion applied, e.g.
  // "to_tensor+normalize(0.1307, 0.3081) -> gaussian_blur(11, 2)"; a split
  // pipeline ends with " | consumer finishes: to_tensor,normalize(...)".
  std::string Describe() const;

  Pipeline(const Pipeline&) = default;
  Pipeline(Pipeline&&) = default;
  Pipeline& operator=(const Pipeline&) = default;
  Pipeline& operator=(Pipeline&&) = default;

 private:
  Pipeline() = default;
  // Runs the stages; the last writes `out` (null: scratch) and *result
  // is the final image (the input itself when there are no stages).
  Status RunStages(const PipelineInput& in, void* out, SampleRng& rng, ImageView* result) const;
  // The uint8 HWC -> CHW transpose after a split pipeline's stages.
  static void WriteChw(const ImageView& result, uint8_t* out_chw);
  std::string spec_;
  std::vector<std::shared_ptr<const Transform>> stages_;
  std::shared_ptr<const Finish> finish_;  // split pipelines only
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_TRANSFORM_H_
