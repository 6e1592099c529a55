// Datasets: where a producer gets raw samples.
//
// A Dataset is a fixed-size, random-access collection of labelled images.
// Read() hands out one sample either as pixels (uint8 HWC: height x width x
// channels, interleaved, RGB order for colour; MNIST) or as the encoded bytes
// of an image file (JPEG, PNG, ...: image folders, list files, WebDataset
// shards), which DecodeSample() turns into pixels. The images of one dataset
// may differ in size: shape() says whether they do.
//
// Thread safety: every Dataset method is const and safe to call from many
// threads at once without external locking. A Sample is not: use one per
// thread.
#ifndef DATAFEED_PRODUCER_DATASET_H_
#define DATAFEED_PRODUCER_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

// Shape of a dataset's uint8 HWC samples. height and width are 0 when the
// samples differ in size (a folder of JPEGs); channels is always set.
struct SampleShape {
  int height = 0;
  int width = 0;
  int channels = 0;
  bool fixed_size() const { return height > 0 && width > 0; }
  // Bytes of one sample; 0 unless fixed_size().
  size_t bytes() const {
    return static_cast<size_t>(height) * static_cast<size_t>(width) * static_cast<size_t>(channels);
  }
};

// One sample as a Dataset hands it out: a label and either decoded pixels or
// an image file's encoded bytes. Reusable: pass the same Sample to Read() and
// DecodeSample() again and again (one per thread) and its buffers are kept,
// so steady-state reads and decodes allocate nothing once the buffers have
// grown to the largest sample. Move-only.
class Sample {
 public:
  Sample() = default;
  Sample(Sample&&) = default;
  Sample& operator=(Sample&&) = default;
  Sample(const Sample&) = delete;
  Sample& operator=(const Sample&) = delete;

  int64_t label() const { return label_; }
  void set_label(int64_t label) { label_ = label; }

  // Decoded pixels: height x width x channels uint8, HWC.
  bool has_pixels() const { return pixels_ != nullptr; }
  const uint8_t* pixels() const { return pixels_; }
  int height() const { return height_; }
  int width() const { return width_; }
  int channels() const { return channels_; }
  size_t pixel_bytes() const {
    return static_cast<size_t>(height_) * static_cast<size_t>(width_) * static_cast<size_t>(channels_);
  }

  // Encoded bytes (JPEG, PNG, ...); empty when the dataset gave pixels.
  const uint8_t* encoded() const { return encoded_.data(); }
  size_t encoded_size() const { return encoded_size_; }

  // For Dataset implementations and decoders.
  //
  // Storage for h x w x c pixels owned by this Sample (grown when needed,
  // contents unspecified); the pixels are those from now on.
  uint8_t* AllocatePixels(int h, int w, int c);
  // The pixels are `data` (not copied): memory the dataset owns, valid while
  // the dataset lives.
  void BorrowPixels(const uint8_t* data, int h, int w, int c);
  // Storage for `n` encoded bytes (contents unspecified); forgets the pixels.
  uint8_t* AllocateEncoded(size_t n);
  // No pixels, no encoded bytes, label 0.
  void Clear();

 private:
  int64_t label_ = 0;
  const uint8_t* pixels_ = nullptr;
  int height_ = 0, width_ = 0, channels_ = 0;
  std::vector<uint8_t> own_pixels_;  // capacity reused
  std::vector<uint8_t> encoded_;     // capacity reused; encoded_size_ bytes valid
  size_t encoded_size_ = 0;
};

// Decodes sample->encoded() into its pixels with `channels` channels (1 gray,
// 3 RGB, 4 RGBA), as torchvision's default loader does with PIL:
// Image.open(f).convert("RGB") (or "L", "RGBA"). JPEG goes through
// libjpeg-turbo's TurboJPEG API with PIL's settings (accurate integer IDCT,
// fancy upsampling), so pixels are identical to PIL's, which uses the same
// library; everything else (PNG, BMP, PPM/PGM, TIFF, WebP) through OpenCV,
// with PIL's conversions: gray to RGB replicates, RGB to gray is PIL's
// L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, alpha is dropped (or 255
// when added), 16-bit colour keeps the high byte and 16-bit gray clips at
// 255 as PIL does; EXIF orientation is ignored (PIL's loader ignores it
// too). Known differences from PIL: CMYK JPEGs (PIL's own CMYK conversion is
// reproduced, assuming Adobe-inverted data as PIL does); none otherwise for
// 8-bit images.
//
// A sample that already has pixels of `channels` channels is left alone (one
// with other channels is converted the same way). DataLoss when the bytes are
// not an image that can be decoded (truncated, corrupt, empty, an unknown
// format); the message says what is wrong, not which sample (the caller
// knows: Dataset::SampleName). Thread-safe for distinct Samples.
Status DecodeSample(Sample* sample, int channels);

// The most pixels (width x height) DecodeSample accepts in one image; a
// bigger one is DataLoss before any pixel memory is allocated. Without it a
// 1.3 KB JPEG header claiming 63222 x 65293 pixels made the decoder
// allocate more than 2 GB (a decompression bomb). The default is PIL's
// DecompressionBombError threshold, 2 x Image.MAX_IMAGE_PIXELS. Checked
// from the header for JPEG and PNG; the other formats are bounded by
// OpenCV's own limit (2^30 pixels). Process-wide; thread-safe.
inline constexpr uint64_t kDefaultMaxImagePixels = 178956970;
void SetMaxImagePixels(uint64_t pixels);
uint64_t MaxImagePixels();

class Dataset {
 public:
  virtual ~Dataset() = default;

  // Number of samples; indices are 0 .. size() - 1.
  virtual size_t size() const = 0;
  // The shape of the samples (height and width 0 when they differ in size).
  virtual SampleShape shape() const = 0;
  // Reads sample `index` into *out: pixels, or encoded bytes for
  // DecodeSample(), and the label. InvalidArgument for index >= size();
  // NotFound, IOError or DataLoss naming the file when it cannot be read.
  virtual Status Read(size_t index, Sample* out) const = 0;
  // Names sample `index` for a person: its file path, "shard.tar:key",
  // "MNIST image 12 of FILE". Called when something goes wrong, so it may
  // allocate.
  virtual std::string SampleName(size_t index) const = 0;
  // A digest of the dataset's identity (see fingerprint.h): equal for the
  // same samples in the same order, different when a file, the file list or
  // a label changes. Part of every batch's run fingerprint. Computed once
  // when the dataset is opened; cheap to call.
  virtual uint64_t Fingerprint() const = 0;

  // Read() then, for encoded samples, DecodeSample() with shape().channels;
  // a fixed-size dataset also checks the decoded size (InvalidArgument
  // naming the sample and both sizes). Errors name the sample.
  Status Get(size_t index, Sample* out) const;
  // For fixed-size datasets: Get() into a caller-owned shape().bytes()
  // buffer. FailedPrecondition when the samples differ in size.
  Status Get(size_t index, uint8_t* out_hwc, int64_t* label) const;
};

// MNIST in IDX format (http://yann.lecun.com/exdb/mnist/): an images file
// (magic 0x00000803: count x rows x cols uint8) and a labels file (magic
// 0x00000801: count uint8). Samples are rows x cols x 1, handed out as
// pixels without a copy. Labels are returned as stored (any uint8 value).
//
// Both files are read into memory when the dataset opens (anonymous memory,
// the size of the files: 47 MB for the MNIST training set), so a file
// truncated or rewritten while a producer runs changes nothing: the dataset
// keeps the bytes it opened (a memory-mapped file would deliver SIGBUS).
class MnistDataset final : public Dataset {
 public:
  // Reads and validates both files: the magic number, the number of
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
  Status Read(size_t index, Sample* out) const override;
  std::string SampleName(size_t index) const override;
  // FNV-1a over both files' bytes (about 50 ms for the 47 MB training set).
  uint64_t Fingerprint() const override { return fingerprint_; }

  // Zero-copy access: the bytes of image `index` (shape().bytes() bytes) and
  // its label. index must be < size(); valid while *this lives.
  const uint8_t* image(size_t index) const { return images_ + index * image_bytes_; }
  uint8_t label(size_t index) const { return labels_[index]; }

  const std::string& images_path() const { return images_path_; }
  const std::string& labels_path() const { return labels_path_; }

 private:
  struct Memory;
  MnistDataset() = default;

  std::unique_ptr<Memory> images_mem_;
  std::unique_ptr<Memory> labels_mem_;
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
// so a reader never sees a half-written file. `dir` must exist.
Status WriteSyntheticMnist(const std::string& dir, const std::string& prefix, size_t count,
                           uint64_t seed);

// Progress of a long scan (an image folder's tree, a set of WebDataset
// shards), reported about once a second and once at the end.
struct ScanProgress {
  size_t folders = 0;  // folders or shards scanned so far
  size_t samples = 0;  // samples found so far
  double seconds = 0;  // since the scan started
  bool done = false;   // the last report
};
// Called from the scanning thread(s), never two calls at once.
using ScanProgressFn = std::function<void(const ScanProgress&)>;

// What every dataset of encoded images takes.
struct ImageDatasetOptions {
  // Channels of the decoded samples: 3 RGB (torchvision's default loader,
  // which converts every image to RGB), 1 gray ("L"), 4 RGBA.
  int channels = 3;
  // When both are set: every image must be height x width (a fixed-size
  // dataset, whose pipelines need no resize); an image of another size is a
  // bad sample. 0: any size.
  int height = 0;
  int width = 0;
  // Scan progress (see ScanProgress); null for none.
  ScanProgressFn progress;
};

// A directory of images with one subfolder per class, like torchvision's
// ImageFolder: root/<class>/**/<file>. Classes are the first-level
// subfolders sorted bytewise, class index = position in that order. Images
// may sit at any depth below their class folder; the sample order is
// torchvision's (every folder of a class in bytewise order of its path,
// then the files of each folder in bytewise order), so index i is the same
// image in both. Files ending in .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff
// .webp (any case; torchvision's IMG_EXTENSIONS) are samples; other files
// are ignored. Unlike torchvision, hidden entries (names starting with '.':
// .git, .DS_Store, macOS's ._x.jpg) are ignored too. Symbolic links are
// followed (a link back up the tree is visited once).
//
// Open() reads only directories and file metadata; every Read() reads the
// whole file (nothing is cached).
class ImageFolderDataset final : public Dataset {
 public:
  // Scans `root`; the file list is fixed from then on. Folders are scanned
  // on a few threads (file systems answer metadata calls in parallel);
  // options.progress hears about it. NotFound if root is missing, has no
  // class folders, or a class folder has no images (naming it);
  // InvalidArgument for bad options; IOError for an unreadable folder.
  static Result<std::unique_ptr<ImageFolderDataset>> Open(const std::string& root,
                                                          const ImageDatasetOptions& options = {});

  size_t size() const override { return labels_.size(); }
  SampleShape shape() const override { return {height_, width_, channels_}; }
  // The file's bytes, to decode.
  Status Read(size_t index, Sample* out) const override;
  std::string SampleName(size_t index) const override { return path(index); }
  // The relative file paths, their sizes and modification times (ns) and the
  // labels, in sample order, plus the options (the files are not read).
  uint64_t Fingerprint() const override { return fingerprint_; }

  const std::vector<std::string>& classes() const { return classes_; }
  // The full path of sample `index` (root/relative path).
  std::string path(size_t index) const;
  int64_t label(size_t index) const { return labels_[index]; }

 private:
  ImageFolderDataset() = default;

  std::string root_;
  std::vector<std::string> classes_;
  // Relative paths, back to back: sample i is rel_[rel_offsets_[i], rel_offsets_[i+1]).
  // One allocation for a million paths instead of a million strings.
  std::string rel_;
  std::vector<uint64_t> rel_offsets_;
  std::vector<int32_t> labels_;
  int height_ = 0;
  int width_ = 0;
  int channels_ = 0;
  uint64_t fingerprint_ = 0;
};

// Images listed in a text file, one sample per line: `path,label`. Paths are
// relative to `root` (default: the list file's folder) unless absolute; the
// label is an integer after the last comma (so a path may contain commas).
// Blank lines and lines starting with '#' are skipped; leading and trailing
// spaces are trimmed. The samples are the lines, in order.
class ImageListDataset final : public Dataset {
 public:
  // Reads and checks the list (the images are not opened): NotFound for a
  // missing list, InvalidArgument naming file:line for a line without a
  // comma, a path or an integer label, or a list without samples.
  static Result<std::unique_ptr<ImageListDataset>> Open(const std::string& list_path,
                                                        const ImageDatasetOptions& options = {},
                                                        const std::string& root = "");

  size_t size() const override { return labels_.size(); }
  SampleShape shape() const override { return {height_, width_, channels_}; }
  Status Read(size_t index, Sample* out) const override;
  std::string SampleName(size_t index) const override { return paths_[index]; }
  // The list file's bytes, the root and the options.
  uint64_t Fingerprint() const override { return fingerprint_; }

  const std::string& path(size_t index) const { return paths_[index]; }
  int64_t label(size_t index) const { return labels_[index]; }

 private:
  ImageListDataset() = default;
  std::vector<std::string> paths_;  // as opened (root joined)
  std::vector<int64_t> labels_;
  int height_ = 0;
  int width_ = 0;
  int channels_ = 0;
  uint64_t fingerprint_ = 0;
};

// WebDataset tar shards (the webdataset library's format): each shard is an
// uncompressed tar whose consecutive members with the same key form one
// sample, the key being a member's path up to the first '.' of its file name
// ("train/n01440764_10026.jpg" + "train/n01440764_10026.cls"). The sample's
// image is its member with an image extension (jpg jpeg png ppm pgm bmp tif
// tiff webp, any case; the first if several), its label the integer text of
// its label member (".cls" by default). The samples are those of the shards
// in the order given, each in tar order.
//
// Open() scans every shard once with libarchive, reading tar headers (and
// the small label members) but skipping the images; it records where each
// image's bytes sit in its shard. Read() then reads exactly those bytes
// (one pread of a contiguous range), so a run in sampler order reads each
// shard front to back, and a shuffled run reads single members without
// decompressing or streaming anything. That needs uncompressed tar shards
// (WebDataset's default); compressed ones (.tar.gz) are refused.
struct WebDatasetOptions {
  ImageDatasetOptions image;
  // This producer's shards: shard files i (in pattern order) with i %
  // num_shards == shard_index. Producers split whole shards, so each shard
  // is read by one producer only (datafeed-producer --shard/--num-shards).
  size_t shard_index = 0;
  size_t num_shards = 1;
  // The label member's extension (after the key's '.').
  std::string label_extension = "cls";
};

class WebDataset final : public Dataset {
 public:
  // Expands `pattern` (ExpandShardPattern), keeps this producer's shards and
  // scans them (in parallel, reporting options.image.progress). NotFound for
  // a missing shard; InvalidArgument for a bad pattern, a compressed or
  // non-tar shard, too few shards for num_shards, a sample without an image
  // or a label, or a label that is not an integer (naming shard and key);
  // IOError for other failures.
  static Result<std::unique_ptr<WebDataset>> Open(const std::string& pattern,
                                                  const WebDatasetOptions& options = {});
  ~WebDataset() override;
  WebDataset(const WebDataset&) = delete;
  WebDataset& operator=(const WebDataset&) = delete;

  size_t size() const override { return samples_.size(); }
  SampleShape shape() const override { return {height_, width_, channels_}; }
  // The image member's bytes, to decode.
  Status Read(size_t index, Sample* out) const override;
  // "SHARD:KEY.EXT".
  std::string SampleName(size_t index) const override;
  // The shard paths, sizes and mtimes, every sample's key and label in
  // order, the shard selection and the options (the images are not read).
  uint64_t Fingerprint() const override { return fingerprint_; }

  // This producer's shards, in sample order.
  const std::vector<std::string>& shards() const { return shard_paths_; }
  // The shard (index into shards()) and key of sample `index`.
  size_t shard_of(size_t index) const { return samples_[index].shard; }
  std::string key(size_t index) const;
  int64_t label(size_t index) const { return samples_[index].label; }

 private:
  struct Entry {
    uint64_t offset;  // of the image's bytes in its shard
    uint64_t key_offset;  // into keys_; the key runs to the next entry's
    int64_t label;
    uint32_t size;    // image bytes
    uint32_t shard;
    uint16_t ext_len;  // the image extension's length, after the key's key_len
  };
  WebDataset() = default;

  std::vector<std::string> shard_paths_;
  std::vector<int> shard_fds_;  // open for the dataset's lifetime
  std::vector<Entry> samples_;
  std::string keys_;  // "key.ext" of every sample, back to back
  int height_ = 0;
  int width_ = 0;
  int channels_ = 0;
  uint64_t fingerprint_ = 0;
};

// Expands a shard pattern: brace ranges "{000000..000146}" (zero-padded to
// the width of the first bound when it has a leading zero) and lists
// "{a,b,c}", several braces multiplying out left to right; whitespace
// separates several patterns. InvalidArgument for unbalanced braces, a
// range whose bounds are not integers or run backwards, or more than 10^7
// names.
Result<std::vector<std::string>> ExpandShardPattern(const std::string& pattern);

}  // namespace datafeed

#endif  // DATAFEED_PRODUCER_DATASET_H_
