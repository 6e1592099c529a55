// ImageFolderDataset: root/<class>/<image>, decoded with OpenCV per access.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/fingerprint.h"

namespace datafeed {
namespace {

namespace fs = std::filesystem;

bool IsImageFile(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  for (char& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return ext == "jpg" || ext == "jpeg" || ext == "png" || ext == "bmp" || ext == "pgm" ||
         ext == "ppm";
}

// Sorted names of the entries of `dir` that pass `keep`.
template <typename Keep>
Status ListDir(const fs::path& dir, Keep keep, std::vector<std::string>* names) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return Status(StatusCode::kIOError, dir.string() + ": cannot list: " + ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) return Status(StatusCode::kIOError, dir.string() + ": cannot list: " + ec.message());
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (keep(*it)) names->push_back(name);
  }
  if (ec) return Status(StatusCode::kIOError, dir.string() + ": cannot list: " + ec.message());
  std::sort(names->begin(), names->end());
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<ImageFolderDataset>> ImageFolderDataset::Open(const std::string& root,
                                                                     int height, int width,
                                                                     int channels) {
  if (height <= 0 || width <= 0) {
    return Status::InvalidArgument("image folder " + root + ": size " + std::to_string(height) +
                                   "x" + std::to_string(width) + " must be positive");
  }
  if (channels != 1 && channels != 3 && channels != 4) {
    return Status::InvalidArgument("image folder " + root + ": channels is " +
                                   std::to_string(channels) +
                                   "; use 1 (grayscale), 3 (RGB) or 4 (RGBA)");
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    return Status::NotFound(root + ": no such directory (an image folder holds one subfolder "
                            "per class)");
  }
  std::unique_ptr<ImageFolderDataset> ds(new ImageFolderDataset());
  ds->height_ = height;
  ds->width_ = width;
  ds->channels_ = channels;
  DATAFEED_RETURN_NOT_OK(ListDir(
      root, [](const fs::directory_entry& e) {
        std::error_code ec2;
        return e.is_directory(ec2);
      },
      &ds->classes_));
  if (ds->classes_.empty()) {
    return Status::NotFound(root + ": no class subfolders; an image folder is root/<class>/<image>");
  }
  for (size_t c = 0; c < ds->classes_.size(); ++c) {
    const fs::path dir = fs::path(root) / ds->classes_[c];
    std::vector<std::string> files;
    DATAFEED_RETURN_NOT_OK(ListDir(
        dir, [](const fs::directory_entry& e) {
          std::error_code ec2;
          return !e.is_directory(ec2) && IsImageFile(e.path().filename().string());
        },
        &files));
    if (files.empty()) {
      return Status::NotFound(dir.string() + ": class folder has no images (.jpg .jpeg .png "
                              ".bmp .pgm .ppm); add some or remove the folder");
    }
    for (const std::string& f : files) {
      ds->files_.push_back({(dir / f).string(), static_cast<int64_t>(c)});
    }
  }
  Fingerprinter fp;
  fp.Add("image-folder").Add(static_cast<uint64_t>(height)).Add(static_cast<uint64_t>(width))
      .Add(static_cast<uint64_t>(channels));
  for (const File& f : ds->files_) {
    std::error_code ec2;
    const fs::path path(f.path);
    fp.Add(fs::relative(path, root, ec2).string()).Add(static_cast<uint64_t>(f.label));
    fp.Add(static_cast<uint64_t>(fs::file_size(path, ec2)));
    fp.Add(static_cast<uint64_t>(fs::last_write_time(path, ec2).time_since_epoch().count()));
  }
  ds->fingerprint_ = fp.value();
  return ds;
}

Status ImageFolderDataset::Decode(size_t index, std::vector<uint8_t>* hwc, int* height, int* width,
                                  int64_t* label) const {
  if (index >= files_.size()) {
    return Status::InvalidArgument("image folder index " + std::to_string(index) +
                                   " is out of range; the folder holds " +
                                   std::to_string(files_.size()) + " images");
  }
  const File& file = files_[index];
  try {
    const int flags = channels_ == 1 ? cv::IMREAD_GRAYSCALE
                      : channels_ == 3 ? cv::IMREAD_COLOR
                                       : cv::IMREAD_UNCHANGED;
    cv::Mat img = cv::imread(file.path, flags);
    if (img.empty()) {
      return Status::DataLoss(file.path + ": cannot decode the image (corrupt, truncated or not "
                              "an image); fix or delete the file");
    }
    if (img.depth() != CV_8U) {
      return Status::DataLoss(file.path + ": has " + std::to_string(img.elemSize1() * 8) +
                              "-bit samples; only 8-bit images are supported with channels=4");
    }
    hwc->resize(static_cast<size_t>(img.rows) * static_cast<size_t>(img.cols) *
                static_cast<size_t>(channels_));
    cv::Mat out(img.rows, img.cols, CV_8UC(channels_), hwc->data());
    switch (channels_) {
      case 1:
        img.copyTo(out);
        break;
      case 3:
        cv::cvtColor(img, out, cv::COLOR_BGR2RGB);
        break;
      default:
        if (img.channels() == 4) {
          cv::cvtColor(img, out, cv::COLOR_BGRA2RGBA);
        } else if (img.channels() == 3) {
          cv::cvtColor(img, out, cv::COLOR_BGR2RGBA);
        } else {
          cv::cvtColor(img, out, cv::COLOR_GRAY2RGBA);
        }
        break;
    }
    if (out.data != hwc->data()) {
      return Status::Internal(file.path + ": OpenCV reallocated the output image");
    }
    *height = img.rows;
    *width = img.cols;
  } catch (const cv::Exception& e) {
    return Status::DataLoss(file.path + ": cannot decode the image: " + e.what());
  }
  if (label != nullptr) *label = file.label;
  return Status::OK();
}

Status ImageFolderDataset::Get(size_t index, uint8_t* out_hwc, int64_t* label) const {
  // One decode buffer per thread, reused: no lock, and no allocation once it
  // has grown to the largest image.
  thread_local std::vector<uint8_t> buffer;
  int h = 0, w = 0;
  DATAFEED_RETURN_NOT_OK(Decode(index, &buffer, &h, &w, label));
  if (h != height_ || w != width_) {
    return Status::InvalidArgument(
        files_[index].path + ": image is " + std::to_string(h) + "x" + std::to_string(w) +
        " (HxW) but the dataset was opened for " + std::to_string(height_) + "x" +
        std::to_string(width_) + "; resize the files, or decode with Decode() and put a resize(" +
        std::to_string(height_) + "," + std::to_string(width_) + ") in the pipeline");
  }
  std::copy(buffer.begin(), buffer.end(), out_hwc);
  return Status::OK();
}

}  // namespace datafeed
