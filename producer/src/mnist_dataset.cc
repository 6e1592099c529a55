// MnistDataset: IDX files, read into memory.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/fingerprint.h"

namespace datafeed {

// A whole file's bytes in anonymous memory.
struct MnistDataset::Memory {
  std::unique_ptr<uint8_t[]> data;
  size_t size = 0;
};

namespace {

constexpr uint8_t kIdxUInt8 = 0x08;

const char* IdxTypeName(uint8_t type) {
  switch (type) {
    case 0x08: return "uint8";
    case 0x09: return "int8";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

std::string Hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08" PRIx32, v);
  return buf;
}

uint32_t ReadBigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

const char* kRedownload = "regenerate or re-download it";

// Reads all of `path` into *bytes, *size of them (a zero-length file gives
// {nullptr, 0}). Read, not mapped: a mapping of a file that is truncated
// later delivers SIGBUS on access, and this dataset outlives such accidents.
Status ReadWholeFile(const std::string& path, const char* what, std::unique_ptr<uint8_t[]>* bytes,
                     size_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      // A common mistake: the downloaded .gz was never unpacked.
      struct stat st;
      const std::string gz = path + ".gz";
      if (::stat(gz.c_str(), &st) == 0) {
        return Status::NotFound(path + ": no such file, but " + gz +
                                " exists; unpack it first (gunzip -k " + gz + ")");
      }
      return Status::NotFound(path + ": no such file (the MNIST " + what +
                              " file); check the path, or create synthetic data with "
                              "datafeed-make-mnist");
    }
    return Status::FromErrno(err, path + ": cannot open the MNIST " + what + " file");
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::FromErrno(err, path + ": cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument(path + ": not a regular file; give the MNIST " +
                                   std::string(what) + " file itself");
  }
  const size_t want = static_cast<size_t>(st.st_size);
  bytes->reset(want > 0 ? new uint8_t[want] : nullptr);
  size_t got = 0;
  while (got < want) {
    const ssize_t n = ::read(fd, bytes->get() + got, want - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::FromErrno(err, path + ": cannot read");
    }
    if (n == 0) break;  // shrank while being read: the size check below reports it
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  *size = got;
  return Status::OK();
}

// Validates an IDX uint8 file of `want_dims` dimensions held at
// [data, data + size) and returns its dimensions.
Status ParseIdx(const std::string& path, const uint8_t* data, size_t size, int want_dims,
                const char* what, std::vector<uint32_t>* dims) {
  const uint32_t want_magic = (uint32_t{kIdxUInt8} << 8) | static_cast<uint32_t>(want_dims);
  const std::string expect = "MNIST " + std::string(what) + " files start with " + Hex32(want_magic);
  if (size >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
    return Status::DataLoss(path + ": the file is gzip-compressed; unpack it first (gunzip " +
                            path + ") and open the result");
  }
  if (size < 4) {
    return Status::DataLoss(path + ": file is " + std::to_string(size) +
                            " bytes, too short for the 4-byte IDX magic number (" + expect +
                            "); the file is truncated — " + kRedownload);
  }
  const uint32_t magic = ReadBigEndian32(data);
  const uint8_t type = data[2];
  const int ndims = data[3];
  if (data[0] != 0 || data[1] != 0 || IdxTypeName(type) == nullptr) {
    return Status::DataLoss(path + ": bad magic number " + Hex32(magic) +
                            ", not an IDX file (" + expect + "); is this the right file? " +
                            kRedownload);
  }
  if (type != kIdxUInt8) {
    return Status::DataLoss(path + ": magic " + Hex32(magic) + " says the elements are " +
                            IdxTypeName(type) + ", but " + expect + " (uint8); " + kRedownload);
  }
  if (ndims != want_dims) {
    std::string hint;
    if (want_dims == 3 && ndims == 1) hint = " It looks like a labels file: are the images and labels paths swapped?";
    if (want_dims == 1 && ndims == 3) hint = " It looks like an images file: are the images and labels paths swapped?";
    return Status::DataLoss(path + ": magic " + Hex32(magic) + " says " + std::to_string(ndims) +
                            " dimensions, but MNIST " + what + " have " + std::to_string(want_dims) +
                            (want_dims == 3 ? " (count x rows x cols)" : " (count)") + " and " +
                            expect + "." + hint);
  }
  const size_t header = 4 + 4 * static_cast<size_t>(ndims);
  if (size < header) {
    return Status::DataLoss(path + ": file is " + std::to_string(size) + " bytes but its " +
                            std::to_string(ndims) + "-dimension IDX header alone needs " +
                            std::to_string(header) + "; the file is truncated — " + kRedownload);
  }
  dims->assign(static_cast<size_t>(ndims), 0);
  uint64_t payload = 1;
  std::string product;
  bool overflow = false;
  for (int i = 0; i < ndims; ++i) {
    const uint32_t d = ReadBigEndian32(data + 4 + 4 * i);
    (*dims)[static_cast<size_t>(i)] = d;
    overflow |= __builtin_mul_overflow(payload, uint64_t{d}, &payload);
    product += (i ? " x " : "") + std::to_string(d);
  }
  for (int i = 1; i < ndims; ++i) {
    if ((*dims)[static_cast<size_t>(i)] == 0 || (*dims)[static_cast<size_t>(i)] > 65535) {
      return Status::DataLoss(path + ": header says images of " + std::to_string((*dims)[1]) +
                              " x " + std::to_string((*dims)[2]) +
                              " pixels; each side must be 1..65535 — " + kRedownload);
    }
  }
  const uint64_t expected = payload + header;
  if (overflow || expected < payload) {
    return Status::DataLoss(path + ": header dimensions " + product +
                            " overflow 64 bits; the header is corrupt — " + kRedownload);
  }
  if (size != expected) {
    std::string msg = path + ": file is " + std::to_string(size) +
                      " bytes but its header promises " + std::to_string(expected) + " (" +
                      product + " + " + std::to_string(header) + "); ";
    if (size < expected) {
      msg += "the file is truncated — " + std::string(kRedownload);
    } else {
      msg += "it has " + std::to_string(size - expected) +
             " trailing bytes, so the header or the data is wrong (two files concatenated?) — " +
             kRedownload;
    }
    return Status::DataLoss(std::move(msg));
  }
  return Status::OK();
}

}  // namespace

std::string MnistImagesFileName(const std::string& prefix) { return prefix + "-images-idx3-ubyte"; }
std::string MnistLabelsFileName(const std::string& prefix) { return prefix + "-labels-idx1-ubyte"; }

MnistDataset::~MnistDataset() = default;

Result<std::unique_ptr<MnistDataset>> MnistDataset::Open(const std::string& images_path,
                                                         const std::string& labels_path) {
  std::unique_ptr<MnistDataset> ds(new MnistDataset());
  ds->images_path_ = images_path;
  ds->labels_path_ = labels_path;
  ds->images_mem_ = std::make_unique<Memory>();
  ds->labels_mem_ = std::make_unique<Memory>();

  std::vector<uint32_t> image_dims;
  std::vector<uint32_t> label_dims;
  {
    Memory& m = *ds->images_mem_;
    DATAFEED_RETURN_NOT_OK(ReadWholeFile(images_path, "images", &m.data, &m.size));
    DATAFEED_RETURN_NOT_OK(ParseIdx(images_path, m.data.get(), m.size, 3, "images", &image_dims));
  }
  {
    Memory& m = *ds->labels_mem_;
    DATAFEED_RETURN_NOT_OK(ReadWholeFile(labels_path, "labels", &m.data, &m.size));
    DATAFEED_RETURN_NOT_OK(ParseIdx(labels_path, m.data.get(), m.size, 1, "labels", &label_dims));
  }
  if (image_dims[0] != label_dims[0]) {
    return Status::DataLoss(images_path + " holds " + std::to_string(image_dims[0]) +
                            " images but " + labels_path + " holds " +
                            std::to_string(label_dims[0]) +
                            " labels; they must be a matching pair (train-* with train-*, "
                            "t10k-* with t10k-*) — " + kRedownload);
  }
  ds->count_ = image_dims[0];
  ds->rows_ = static_cast<int>(image_dims[1]);
  ds->cols_ = static_cast<int>(image_dims[2]);
  ds->image_bytes_ = static_cast<size_t>(ds->rows_) * static_cast<size_t>(ds->cols_);
  ds->images_ = ds->images_mem_->data.get() + 16;
  ds->labels_ = ds->labels_mem_->data.get() + 8;
  Fingerprinter fp;
  fp.Add("mnist-idx");
  fp.AddBytes(ds->images_mem_->data.get(), ds->images_mem_->size);
  fp.AddBytes(ds->labels_mem_->data.get(), ds->labels_mem_->size);
  ds->fingerprint_ = fp.value();
  return ds;
}

Result<std::unique_ptr<MnistDataset>> MnistDataset::OpenDir(const std::string& dir,
                                                            const std::string& prefix) {
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  return Open(base + MnistImagesFileName(prefix), base + MnistLabelsFileName(prefix));
}

Status MnistDataset::Read(size_t index, Sample* out) const {
  if (index >= count_) {
    return Status::InvalidArgument("MNIST index " + std::to_string(index) +
                                   " is out of range; " + images_path_ + " holds " +
                                   std::to_string(count_) + " images");
  }
  out->BorrowPixels(images_ + index * image_bytes_, rows_, cols_, 1);
  out->set_label(labels_[index]);
  return Status::OK();
}

std::string MnistDataset::SampleName(size_t index) const {
  return "MNIST image " + std::to_string(index) + " of " + images_path_;
}

}  // namespace datafeed
