// Datasets: where a producer gets raw samples.
//
// A Dataset is a fixed-size, random-access collection of (image, label)
// samples. Images come out as uint8 HWC (height x width x channels,
// interleaved channels, RGB order for colour), the input a Pipeline
// (transform.h) takes.
//
// Thread safety: every Dataset method is const and safe to call from many
// threads at once without external locking; Get() takes no locks.
#ifndef DATAFEED_PRODUCER_DATASET_H_
#define DATAFEED_PRODUCER_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

// Shape of one uint8 HWC sample.
struct SampleShape {
  int height = 0;
  int width = 0;
  int channels = 0;
  size_t bytes() const {
    return static_cast<size_t>(height) * static_cast<size_t>(width) * static_cast<size_t>(channels);
  }
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  // Number of samples; indices are 0 .. size() - 1.
  virtual size_t size() const = 0;
  // Shape every sample has (Get() writes exactly shape().bytes() bytes).
  virtual SampleShape shape() const = 0;
  // Copies sample `index` into out_hwc (shape().bytes() bytes, caller-owned)
  // and its label into *label. InvalidArgument for an index >= size(); a
  // dataset that decodes files returns DataLoss naming a file it cannot read,
  // which a producer may skip and count.
  virtual Status Get(size_t index, uint8_t* out_hwc, int64_t* label) const = 0;
  // A digest of the dataset's identity (see fingerprint.h): equal for the
  // same samples in the same order, different when a file, the file list or
  // a label changes. Part of every batch's run fingerprint. Computed once
  // when the dataset is opened; cheap to call.
  virtual uint64_t Fingerprint() const = 0;
};

// MNIST in IDX format (http://yann.lecun.com/exdb/mnist/): an images file
// (magic 0x00000803: count x rows x cols uint8) and a labels file (magic
// 0x00000801: count uint8), both memory-mapped read-only for the dataset's
// lifetime. Samples are rows x cols x 1. Labels are returned as stored (any
// uint8 value).
//
// The files must not be truncated or rewritten while a dataset maps them (the
// kernel would deliver SIGBUS on access); write new files and rename instead,
// as WriteSyntheticMnist does.
class MnistDataset final : public Dataset {
 public:
  // Maps and validates both files: the magic number, the number of
  // dimensions, non-zero image sizes, a file length of exactly header +
  // product(dims) (truncated files and trailing bytes are both rejected), and
  // equal image and label counts. NotFound for a missing file, DataLoss for a
  // malformed one, IOError for other OS failures; every message names the
  // file and says how to fix it.
  static Result<std::unique_ptr<MnistDataset>> Open(const std::string& images_path,
                                                    const std::string& labels_path);
  // Opens `{dir}/{prefix}-images-idx3-ubyte` and `{dir}/{prefix}-labels-idx1-ubyte`,
  // the standard names; prefix is "train" or "t10k" for the real data set.
  static Result<std::unique_ptr<MnistDataset>> OpenDir(const std::string& dir,
                                                       const std::string& prefix);

  ~MnistDataset() override;
  MnistDataset(const MnistDataset&) = delete;
  MnistDataset& operator=(const MnistDataset&) = delete;

  size_t size() const override { return count_; }
  SampleShape shape() const override { return {rows_, cols_, 1}; }
  Status Get(size_t index, uint8_t* out_hwc, int64_t* label) const override;
  // FNV-1a over both files' bytes (about 50 ms for the 47 MB training set).
  uint64_t Fingerprint() const override { return fingerprint_; }

  // Zero-copy access: the mapped bytes of image `index` (shape().bytes()
  // bytes) and its label. index must be < size(); valid while *this lives.
  const uint8_t* image(size_t index) const { return images_ + index * image_bytes_; }
  uint8_t label(size_t index) const { return labels_[index]; }

  const std::string& images_path() const { return images_path_; }
  const std::string& labels_path() const { return labels_path_; }

 private:
  struct Mapping;
  MnistDataset() = default;

  std::unique_ptr<Mapping> images_map_;
  std::unique_ptr<Mapping> labels_map_;
  std::string images_path_;
  std::string labels_path_;
  const uint8_t* images_ = nullptr;  // first pixel, past the header
  const uint8_t* labels_ = nullptr;  // first label, past the header
  size_t count_ = 0;
  size_t image_bytes_ = 0;
  int rows_ = 0;
  int cols_ = 0;
  uint64_t fingerprint_ = 0;
};

// The standard file names inside an MNIST directory.
std::string MnistImagesFileName(const std::string& prefix);  // "{prefix}-images-idx3-ubyte"
std::string MnistLabelsFileName(const std::string& prefix);  // "{prefix}-labels-idx1-ubyte"

// Writes a deterministic MNIST-format pair `{dir}/{prefix}-images-idx3-ubyte`
// and `{dir}/{prefix}-labels-idx1-ubyte` with `count` 28x28 samples: each a
// slanted, jittered seven-segment digit drawn with soft anti-aliased strokes
// plus sparse speckle, its label the digit drawn. Both the digits and the
// drawing parameters come from std::mt19937_64(seed) through integer
// arithmetic only, so the same (count, seed) gives identical bytes on every
// platform. Files are written under a temporary name and renamed into place,
// so a reader never maps a half-written file. `dir` must exist.
Status WriteSyntheticMnist(const std::string& dir, const std::string& prefix, size_t count,
                           uint64_t seed);

// A directory of images with one subfolder per class, like torchvision's
// ImageFolder: root/<class>/<file>. Classes are the subfolder names sorted
// bytewise, class index = position in that order; files inside a class are
// sorted the same way. Files ending in .jpg .jpeg .png .bmp .pgm .ppm (any
// case) are samples; other files and hidden entries are ignored.
//
// Images are decoded with OpenCV on every access (nothing is cached):
// channels 1 decodes as grayscale, 3 as RGB, 4 as RGBA (an image without
// alpha gets alpha 255).
class ImageFolderDataset final : public Dataset {
 public:
  // Scans `root` (the file list is fixed from then on). `height` x `width` is
  // the size Get() requires; channels must be 1, 3 or 4. NotFound if root is
  // missing, has no class folders, or a class folder has no images.
  static Result<std::unique_ptr<ImageFolderDataset>> Open(const std::string& root, int height,
                                                          int width, int channels);

  size_t size() const override { return files_.size(); }
  SampleShape shape() const override { return {height_, width_, channels_}; }
  // Decodes sample `index`, which must already be height x width: an image of
  // another size is InvalidArgument naming the file and both sizes (use
  // Decode() and a resize transform for mixed sizes). DataLoss names a file
  // that cannot be decoded.
  Status Get(size_t index, uint8_t* out_hwc, int64_t* label) const override;
  // The relative file paths, their sizes and modification times and the
  // labels, in sample order (the files are not read).
  uint64_t Fingerprint() const override { return fingerprint_; }
  // Decodes sample `index` at its own size into *hwc (resized to h*w*channels;
  // reuse the vector to avoid reallocation), sets *height, *width and, when
  // not null, *label.
  Status Decode(size_t index, std::vector<uint8_t>* hwc, int* height, int* width,
                int64_t* label) const;

  const std::vector<std::string>& classes() const { return classes_; }
  const std::string& path(size_t index) const { return files_[index].path; }
  int64_t label(size_t index) const { return files_[index].label; }

 private:
  struct File {
    std::string path;
    int64_t label;
  };
  ImageFolderDataset() = default;

  std::vector<std::string> classes_;
  std::vector<File> files_;
  int height_ = 0;
  int width_ = 0;
  int channels_ = 0;
  uint64_t fingerprint_ = 0;
};

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_DATASET_H_
