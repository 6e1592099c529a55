// ImageFolderDataset: root/<class>/**/<image>, scanned once, read per access.
//
// The scan reads directories and one stat() per image (size and mtime for
// the fingerprint), never the images. Class folders are scanned on a small
// pool of threads: a tree of a million files on a network file system is
// bound by metadata round trips, which overlap.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/fingerprint.h"
#include "dataset_internal.h"

namespace datafeed {
namespace {

struct FileInfo {
  std::string name;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

// One folder below a class folder: its path relative to the class folder
// ("" for the class folder itself) and its image files, sorted.
struct FolderInfo {
  std::string rel;
  std::vector<FileInfo> files;
};

struct ClassScan {
  std::vector<FolderInfo> folders;  // sorted by rel (torchvision's order)
  size_t images = 0;
  Status status;
};

// Entries of the directory at `path`: the names of its non-hidden
// subdirectories (symbolic links followed) and of its image files with their
// sizes and mtimes.
Status ListFolder(const std::string& path, std::vector<std::string>* dirs,
                  std::vector<FileInfo>* files, std::set<std::pair<dev_t, ino_t>>* visited,
                  bool* seen_before) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return Status::FromErrno(errno, path + ": cannot list the folder");
  struct stat self;
  if (::fstat(::dirfd(d), &self) == 0) {
    // A symbolic link back up the tree would make the walk endless.
    *seen_before = !visited->insert({self.st_dev, self.st_ino}).second;
    if (*seen_before) {
      ::closedir(d);
      return Status::OK();
    }
  }
  const int fd = ::dirfd(d);
  for (;;) {
    errno = 0;
    const struct dirent* e = ::readdir(d);
    if (e == nullptr) {
      if (errno != 0) {
        const int err = errno;
        ::closedir(d);
        return Status::FromErrno(err, path + ": cannot list the folder");
      }
      break;
    }
    if (e->d_name[0] == '.') continue;  // ., .., and hidden entries
    const std::string name = e->d_name;
    const bool image_name = internal::HasImageExtension(name);
    if (e->d_type == DT_REG && !image_name) continue;  // the common case: no stat
    struct stat st;
    if (::fstatat(fd, e->d_name, &st, 0) != 0) {
      // A dangling link named like an image stays a sample: reading it fails
      // and is reported then, as torchvision would fail to load it.
      if (image_name) files->push_back({name, 0, 0});
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      dirs->push_back(name);
    } else if (image_name) {
      files->push_back({name, static_cast<uint64_t>(st.st_size),
                        static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec});
    }
  }
  ::closedir(d);
  std::sort(dirs->begin(), dirs->end());
  std::sort(files->begin(), files->end(),
            [](const FileInfo& a, const FileInfo& b) { return a.name < b.name; });
  return Status::OK();
}

// Walks one class folder (depth first), filling *scan; `found` counts images
// for progress reports.
void ScanClass(const std::string& class_dir, ClassScan* scan, std::atomic<size_t>* found,
               std::atomic<size_t>* folders) {
  std::set<std::pair<dev_t, ino_t>> visited;
  std::vector<std::string> pending = {""};
  while (!pending.empty()) {
    std::string rel = std::move(pending.back());
    pending.pop_back();
    const std::string path = rel.empty() ? class_dir : class_dir + "/" + rel;
    std::vector<std::string> dirs;
    FolderInfo folder;
    bool seen_before = false;
    scan->status = ListFolder(path, &dirs, &folder.files, &visited, &seen_before);
    if (!scan->status.ok()) return;
    if (seen_before) continue;
    for (std::string& d : dirs) pending.push_back(rel.empty() ? d : rel + "/" + d);
    scan->images += folder.files.size();
    found->fetch_add(folder.files.size(), std::memory_order_relaxed);
    folders->fetch_add(1, std::memory_order_relaxed);
    folder.rel = std::move(rel);
    scan->folders.push_back(std::move(folder));
  }
  // torchvision: sorted(os.walk(class_dir)) orders folders by their path
  // string; bytewise order of the relative paths is the same order.
  std::sort(scan->folders.begin(), scan->folders.end(),
            [](const FolderInfo& a, const FolderInfo& b) { return a.rel < b.rel; });
}

}  // namespace

Result<std::unique_ptr<ImageFolderDataset>> ImageFolderDataset::Open(
    const std::string& root_in, const ImageDatasetOptions& options) {
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  DATAFEED_RETURN_NOT_OK(internal::CheckImageDatasetOptions("image folder " + root, options));
  struct stat st;
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::NotFound(root + ": no such directory (an image folder holds one subfolder "
                            "per class, images at any depth below them)");
  }
  const auto started = std::chrono::steady_clock::now();
  std::unique_ptr<ImageFolderDataset> ds(new ImageFolderDataset());
  ds->root_ = root;
  ds->height_ = options.height;
  ds->width_ = options.width;
  ds->channels_ = options.channels;
  {
    std::vector<std::string> dirs;
    std::vector<FileInfo> top_files;
    std::set<std::pair<dev_t, ino_t>> visited;
    bool seen_before = false;
    DATAFEED_RETURN_NOT_OK(ListFolder(root, &dirs, &top_files, &visited, &seen_before));
    ds->classes_ = std::move(dirs);
  }
  if (ds->classes_.empty()) {
    return Status::NotFound(root + ": no class subfolders; an image folder is root/<class>/<image> "
                            "(use --image-list for a flat folder with a list of labels)");
  }

  // Scan the class folders on up to 8 threads, reporting progress from here.
  const size_t n = ds->classes_.size();
  std::vector<ClassScan> scans(n);
  std::atomic<size_t> next{0}, found{0}, folders{0}, finished{0};
  std::mutex mu;
  std::condition_variable cv;
  const size_t threads = std::min<size_t>(n, 8);
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t c; (c = next.fetch_add(1)) < n;) {
        ScanClass(root + "/" + ds->classes_[c], &scans[c], &found, &folders);
        finished.fetch_add(1);
      }
      std::lock_guard<std::mutex> lock(mu);
      cv.notify_all();
    });
  }
  auto report = [&](bool done) {
    if (!options.progress) return;
    ScanProgress p;
    p.folders = folders.load();
    p.samples = found.load();
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    p.done = done;
    options.progress(p);
  };
  {
    std::unique_lock<std::mutex> lock(mu);
    while (finished.load() < n) {
      if (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return finished.load() >= n; })) {
        lock.unlock();
        report(false);
        lock.lock();
      }
    }
  }
  for (std::thread& t : pool) t.join();

  size_t total = 0;
  for (size_t c = 0; c < n; ++c) {
    const std::string class_dir = root + "/" + ds->classes_[c];
    if (!scans[c].status.ok()) return scans[c].status;
    if (scans[c].images == 0) {
      return Status::NotFound(class_dir + ": class folder has no images (.jpg .jpeg .png .ppm .bmp "
                              ".pgm .tif .tiff .webp, at any depth); add some or remove the folder");
    }
    total += scans[c].images;
  }
  if (total > static_cast<size_t>(INT32_MAX) || n > static_cast<size_t>(INT32_MAX)) {
    return Status::InvalidArgument(root + ": more than 2^31 images or classes");
  }

  Fingerprinter fp;
  fp.Add("image-folder");
  internal::AddImageDatasetOptions(options, &fp);
  ds->labels_.reserve(total);
  ds->rel_offsets_.reserve(total + 1);
  ds->rel_offsets_.push_back(0);
  for (size_t c = 0; c < n; ++c) {
    for (const FolderInfo& folder : scans[c].folders) {
      for (const FileInfo& f : folder.files) {
        const size_t begin = ds->rel_.size();
        ds->rel_ += ds->classes_[c];
        ds->rel_ += '/';
        if (!folder.rel.empty()) {
          ds->rel_ += folder.rel;
          ds->rel_ += '/';
        }
        ds->rel_ += f.name;
        ds->rel_offsets_.push_back(ds->rel_.size());
        ds->labels_.push_back(static_cast<int32_t>(c));
        fp.Add(std::string_view(ds->rel_).substr(begin)).Add(static_cast<uint64_t>(c));
        fp.Add(f.size).Add(static_cast<uint64_t>(f.mtime_ns));
      }
    }
  }
  ds->fingerprint_ = fp.value();
  report(true);
  return ds;
}

std::string ImageFolderDataset::path(size_t index) const {
  const uint64_t b = rel_offsets_[index], e = rel_offsets_[index + 1];
  std::string p;
  p.reserve(root_.size() + 1 + (e - b));
  p += root_;
  if (p != "/") p += '/';
  p.append(rel_, b, e - b);
  return p;
}

Status ImageFolderDataset::Read(size_t index, Sample* out) const {
  if (index >= labels_.size()) {
    return Status::InvalidArgument("image folder index " + std::to_string(index) +
                                   " is out of range; " + root_ + " holds " +
                                   std::to_string(labels_.size()) + " images");
  }
  DATAFEED_RETURN_NOT_OK(internal::ReadFileInto(path(index), out));
  out->set_label(labels_[index]);
  return Status::OK();
}

}  // namespace datafeed
