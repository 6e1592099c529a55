// Sample's buffers, the Dataset conveniences and what the datasets of
// encoded images share (dataset_internal.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "datafeed/producer/dataset.h"
#include "dataset_internal.h"

namespace datafeed {

uint8_t* Sample::AllocatePixels(int h, int w, int c) {
  const size_t n = static_cast<size_t>(h) * static_cast<size_t>(w) * static_cast<size_t>(c);
  // Grow only: resize() zero-fills, and the caller overwrites every byte.
  if (own_pixels_.size() < n) own_pixels_.resize(n);
  pixels_ = own_pixels_.data();
  height_ = h;
  width_ = w;
  channels_ = c;
  return own_pixels_.data();
}

void Sample::BorrowPixels(const uint8_t* data, int h, int w, int c) {
  pixels_ = data;
  height_ = h;
  width_ = w;
  channels_ = c;
}

uint8_t* Sample::AllocateEncoded(size_t n) {
  if (encoded_.size() < n) encoded_.resize(n);
  encoded_size_ = n;
  pixels_ = nullptr;
  height_ = width_ = channels_ = 0;
  return encoded_.data();
}

void Sample::Clear() {
  pixels_ = nullptr;
  height_ = width_ = channels_ = 0;
  encoded_size_ = 0;
  label_ = 0;
}

Status Dataset::Get(size_t index, Sample* out) const {
  DATAFEED_RETURN_NOT_OK(Read(index, out));
  const SampleShape s = shape();
  if (!out->has_pixels()) {
    if (Status st = DecodeSample(out, s.channels); !st.ok()) return st.WithContext(SampleName(index));
  }
  if (s.fixed_size() && (out->height() != s.height || out->width() != s.width)) {
    return Status::InvalidArgument(
        SampleName(index) + ": the image is " + std::to_string(out->height()) + "x" +
        std::to_string(out->width()) + " (HxW) but the dataset requires " + std::to_string(s.height) +
        "x" + std::to_string(s.width) + "; open it without a fixed size and resize in the pipeline");
  }
  return Status::OK();
}

Status Dataset::Get(size_t index, uint8_t* out_hwc, int64_t* label) const {
  const SampleShape s = shape();
  if (!s.fixed_size()) {
    return Status::FailedPrecondition(
        "Dataset::Get into a buffer needs samples of one size; this dataset's differ: use "
        "Get(index, Sample*)");
  }
  thread_local Sample sample;
  DATAFEED_RETURN_NOT_OK(Get(index, &sample));
  std::memcpy(out_hwc, sample.pixels(), sample.pixel_bytes());
  *label = sample.label();
  return Status::OK();
}

}  // namespace datafeed

namespace datafeed {
namespace internal {

Status ReadRangeInto(int fd, uint64_t offset, size_t n, Sample* out) {
  uint8_t* dst = out->AllocateEncoded(n);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::pread(fd, dst + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno(errno, "cannot read");
    if (r == 0) {
      return Status::DataLoss("the file ends after " + std::to_string(got) + " of " +
                              std::to_string(n) + " bytes; it was truncated after it was opened");
    }
    got += static_cast<size_t>(r);
  }
  return Status::OK();
}

Status ReadFileInto(const std::string& path, Sample* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return Status::NotFound(path + ": no such file (it was listed when the dataset was opened; "
                              "was it moved or deleted?)");
    }
    return Status::FromErrno(err, path + ": cannot open");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::FromErrno(err, path + ": cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::DataLoss(path + ": not a regular file");
  }
  if (st.st_size == 0) {
    ::close(fd);
    return Status::DataLoss(path + ": is empty (0 bytes), not an image");
  }
  Status s = ReadRangeInto(fd, 0, static_cast<size_t>(st.st_size), out);
  ::close(fd);
  return s.WithContext(path);
}

Status CheckImageDatasetOptions(const std::string& what, const ImageDatasetOptions& options) {
  if (options.channels != 1 && options.channels != 3 && options.channels != 4) {
    return Status::InvalidArgument(what + ": channels is " + std::to_string(options.channels) +
                                   "; use 3 (RGB, torchvision's default), 1 (gray) or 4 (RGBA)");
  }
  if ((options.height != 0) != (options.width != 0) || options.height < 0 || options.width < 0) {
    return Status::InvalidArgument(
        what + ": a fixed image size needs both height and width positive (got " +
        std::to_string(options.height) + "x" + std::to_string(options.width) +
        "); give neither for images of any size");
  }
  return Status::OK();
}

void AddImageDatasetOptions(const ImageDatasetOptions& options, Fingerprinter* fp) {
  fp->Add(static_cast<uint64_t>(options.channels))
      .Add(static_cast<uint64_t>(options.height))
      .Add(static_cast<uint64_t>(options.width));
}

bool HasImageExtension(const std::string& name) {
  static const char* const kExtensions[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                            ".pgm", ".tif",  ".tiff", ".webp"};
  for (const char* ext : kExtensions) {
    const size_t n = std::strlen(ext);
    if (name.size() < n) continue;
    bool match = true;
    for (size_t i = 0; i < n && match; ++i) {
      const char c = name[name.size() - n + i];
      match = (c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) == ext[i];
    }
    if (match) return true;
  }
  return false;
}

}  // namespace internal
}  // namespace datafeed
