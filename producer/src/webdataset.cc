// WebDataset: tar shards scanned once with libarchive, members read in place.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/fingerprint.h"
#include "dataset_internal.h"

namespace datafeed {
namespace {

constexpr size_t kMaxShardNames = 10'000'000;

// One sample as a shard's scan finds it.
struct Found {
  std::string key;  // "dir/name"
  std::string image_ext;
  uint64_t image_offset = 0;
  uint64_t image_size = 0;
  bool has_image = false;
  bool has_label = false;
  int64_t label = 0;
};

struct ShardScan {
  std::vector<Found> samples;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  Status status;
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsImageExtension(const std::string& ext) {
  return internal::HasImageExtension("." + ext);
}

// Splits a member path into key and extension the way webdataset's
// base_plus_ext does: the key is everything up to the first '.' of the file
// name, the extension the rest (lower-cased). False for a name without one.
bool SplitKey(std::string_view path, std::string* key, std::string* ext) {
  const size_t slash = path.rfind('/');
  const size_t base = slash == std::string_view::npos ? 0 : slash + 1;
  const size_t dot = path.find('.', base);
  if (dot == std::string_view::npos || dot == base) return false;
  *key = std::string(path.substr(0, dot));
  *ext = Lower(path.substr(dot + 1));
  return !ext->empty();
}

// Reads the whole current member (a small label member) into *out.
Status ReadMember(struct archive* a, const std::string& where, int64_t size, std::string* out) {
  if (size > (1 << 20)) return Status::InvalidArgument(where + ": is " + std::to_string(size) +
                                                       " bytes, too large for a label");
  out->resize(static_cast<size_t>(size));
  int64_t got = 0;
  while (got < size) {
    const la_ssize_t n = archive_read_data(a, out->data() + got, static_cast<size_t>(size - got));
    if (n < 0) return Status::DataLoss(where + ": cannot read: " + archive_error_string(a));
    if (n == 0) break;
    got += n;
  }
  if (got != size) return Status::DataLoss(where + ": the shard ends inside this member");
  return Status::OK();
}

// Scans one shard: every sample's key, where its image sits, its label.
void ScanShard(const std::string& path, const std::string& label_ext, ShardScan* scan,
               std::atomic<size_t>* found) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    scan->status = errno == ENOENT
                       ? Status::NotFound(path + ": no such shard (check the pattern)")
                       : Status::FromErrno(errno, path + ": cannot stat the shard");
    return;
  }
  scan->size = static_cast<uint64_t>(st.st_size);
  scan->mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);  // to recognise and refuse compression
  if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    scan->status = Status::InvalidArgument(path + ": not a tar file (" +
                                           std::string(archive_error_string(a)) +
                                           "); a WebDataset shard is a .tar of samples");
    archive_read_free(a);
    return;
  }
  Status status;
  struct archive_entry* entry = nullptr;
  std::string key, ext, label_text;
  bool checked_filter = false;
  for (;;) {
    const int r = archive_read_next_header(a, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      status = Status::DataLoss(path + ": not a readable tar (" +
                                std::string(archive_error_string(a)) + ")");
      break;
    }
    if (!checked_filter) {
      checked_filter = true;
      if (archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE) {
        status = Status::InvalidArgument(
            path + ": the shard is compressed (" + archive_filter_name(a, 0) +
            "); datafeed reads images in place and needs uncompressed .tar shards (WebDataset's "
            "default): decompress it (e.g. gunzip) and point the pattern at the .tar files");
        break;
      }
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    const char* name = archive_entry_pathname(entry);
    if (name == nullptr || !SplitKey(name, &key, &ext)) continue;
    // The tar reader has consumed this member's headers: its data starts at
    // the position the format has read up to.
    const int64_t offset = archive_filter_bytes(a, 0);
    const int64_t size = archive_entry_size(entry);
    if (scan->samples.empty() || scan->samples.back().key != key) {
      scan->samples.emplace_back();
      scan->samples.back().key = key;
      found->fetch_add(1, std::memory_order_relaxed);
    }
    Found& s = scan->samples.back();
    const std::string where = path + ":" + std::string(name);
    if (ext == label_ext) {
      status = ReadMember(a, where, size, &label_text);
      if (!status.ok()) break;
      std::string_view t = label_text;
      while (!t.empty() && (t.back() == '\n' || t.back() == ' ' || t.back() == '\r')) t.remove_suffix(1);
      while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
      const auto res = std::from_chars(t.data(), t.data() + t.size(), s.label);
      if (t.empty() || res.ec != std::errc() || res.ptr != t.data() + t.size()) {
        status = Status::InvalidArgument(where + ": label '" + std::string(t.substr(0, 40)) +
                                         "' is not an integer");
        break;
      }
      s.has_label = true;
      continue;
    }
    if (!s.has_image && IsImageExtension(ext)) {
      if (archive_entry_sparse_count(entry) > 0 || size < 0 || size > UINT32_MAX) {
        status = Status::InvalidArgument(where + ": a sparse or oversized member; images must be "
                                         "plain tar members under 4 GiB");
        break;
      }
      s.has_image = true;
      s.image_ext = ext;
      s.image_offset = static_cast<uint64_t>(offset);
      s.image_size = static_cast<uint64_t>(size);
    }
    // archive_read_next_header skips the data (seeking over it).
  }
  archive_read_free(a);
  if (status.ok()) {
    for (const Found& s : scan->samples) {
      if (!s.has_image || !s.has_label) {
        status = Status::InvalidArgument(
            path + ": sample '" + s.key + "' has no " + (s.has_image ? "." + label_ext + " label" :
            "image (jpg, png, ...)") + " member; every sample needs both (for another label "
            "member, set the label extension: --wds-label-ext)");
        break;
      }
    }
  }
  scan->status = status;
}

}  // namespace

Result<std::vector<std::string>> ExpandShardPattern(const std::string& pattern) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < pattern.size()) {
    while (pos < pattern.size() && (pattern[pos] == ' ' || pattern[pos] == '\t')) ++pos;
    size_t end = pos;
    while (end < pattern.size() && pattern[end] != ' ' && pattern[end] != '\t') ++end;
    if (end == pos) break;
    std::vector<std::string> names = {""};
    const std::string one = pattern.substr(pos, end - pos);
    for (size_t i = 0; i < one.size();) {
      if (one[i] == '}') {
        return Status::InvalidArgument("shard pattern '" + one + "': '}' without '{'");
      }
      if (one[i] != '{') {
        const size_t next = one.find_first_of("{}", i);
        const std::string lit = one.substr(i, next == std::string::npos ? std::string::npos : next - i);
        for (std::string& n : names) n += lit;
        i = next == std::string::npos ? one.size() : next;
        continue;
      }
      const size_t close = one.find('}', i);
      if (close == std::string::npos || one.find('{', i + 1) < close) {
        return Status::InvalidArgument("shard pattern '" + one + "': unbalanced '{'");
      }
      const std::string inner = one.substr(i + 1, close - i - 1);
      std::vector<std::string> alts;
      const size_t dots = inner.find("..");
      if (dots != std::string::npos) {
        const std::string lo_text = inner.substr(0, dots), hi_text = inner.substr(dots + 2);
        uint64_t lo = 0, hi = 0;
        const auto r1 = std::from_chars(lo_text.data(), lo_text.data() + lo_text.size(), lo);
        const auto r2 = std::from_chars(hi_text.data(), hi_text.data() + hi_text.size(), hi);
        if (lo_text.empty() || hi_text.empty() || r1.ec != std::errc() || r2.ec != std::errc() ||
            r1.ptr != lo_text.data() + lo_text.size() || r2.ptr != hi_text.data() + hi_text.size() ||
            hi < lo) {
          return Status::InvalidArgument("shard pattern '" + one + "': range {" + inner +
                                         "} needs integers low..high");
        }
        if (hi - lo >= kMaxShardNames) {
          return Status::InvalidArgument("shard pattern '" + one + "': range {" + inner +
                                         "} is too large");
        }
        const size_t width = lo_text.size() > 1 && lo_text[0] == '0' ? lo_text.size() : 0;
        for (uint64_t v = lo; v <= hi; ++v) {
          std::string t = std::to_string(v);
          if (t.size() < width) t.insert(0, width - t.size(), '0');
          alts.push_back(std::move(t));
        }
      } else {
        size_t s = 0;
        for (;;) {
          const size_t comma = inner.find(',', s);
          alts.push_back(inner.substr(s, comma == std::string::npos ? std::string::npos : comma - s));
          if (comma == std::string::npos) break;
          s = comma + 1;
        }
      }
      if (names.size() * alts.size() > kMaxShardNames) {
        return Status::InvalidArgument("shard pattern '" + one + "' names too many shards");
      }
      std::vector<std::string> next;
      next.reserve(names.size() * alts.size());
      for (const std::string& n : names) {
        for (const std::string& a : alts) next.push_back(n + a);
      }
      names = std::move(next);
      i = close + 1;
    }
    out.insert(out.end(), names.begin(), names.end());
    pos = end;
  }
  if (out.empty()) return Status::InvalidArgument("shard pattern '" + pattern + "' is empty");
  return out;
}

WebDataset::~WebDataset() {
  for (int fd : shard_fds_) {
    if (fd >= 0) ::close(fd);
  }
}

Result<std::unique_ptr<WebDataset>> WebDataset::Open(const std::string& pattern,
                                                     const WebDatasetOptions& options) {
  DATAFEED_RETURN_NOT_OK(internal::CheckImageDatasetOptions("WebDataset " + pattern, options.image));
  if (options.num_shards == 0 || options.shard_index >= options.num_shards) {
    return Status::InvalidArgument("WebDataset: shard " + std::to_string(options.shard_index) +
                                   " of " + std::to_string(options.num_shards) +
                                   ": need 0 <= shard < num_shards");
  }
  if (options.label_extension.empty()) {
    return Status::InvalidArgument("WebDataset: the label extension is empty (default: cls)");
  }
  DATAFEED_ASSIGN_OR_RETURN(std::vector<std::string> all, ExpandShardPattern(pattern));
  std::unique_ptr<WebDataset> ds(new WebDataset());
  for (size_t i = options.shard_index; i < all.size(); i += options.num_shards) {
    ds->shard_paths_.push_back(all[i]);
  }
  if (ds->shard_paths_.empty()) {
    return Status::InvalidArgument("WebDataset '" + pattern + "' has " + std::to_string(all.size()) +
                                   " shards, too few for shard " +
                                   std::to_string(options.shard_index) + " of " +
                                   std::to_string(options.num_shards) +
                                   " (producers split whole shards): use fewer --num-shards");
  }
  ds->height_ = options.image.height;
  ds->width_ = options.image.width;
  ds->channels_ = options.image.channels;

  const size_t n = ds->shard_paths_.size();
  std::vector<ShardScan> scans(n);
  std::atomic<size_t> next{0}, found{0}, finished{0};
  std::mutex mu;
  std::condition_variable cv;
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (size_t t = 0; t < std::min<size_t>(n, 8); ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < n;) {
        ScanShard(ds->shard_paths_[i], options.label_extension, &scans[i], &found);
        finished.fetch_add(1);
      }
      std::lock_guard<std::mutex> lock(mu);
      cv.notify_all();
    });
  }
  auto report = [&](bool done) {
    if (!options.image.progress) return;
    ScanProgress p;
    p.folders = finished.load();
    p.samples = found.load();
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    p.done = done;
    options.image.progress(p);
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

  Fingerprinter fp;
  fp.Add("webdataset").Add(options.label_extension);
  fp.Add(static_cast<uint64_t>(options.shard_index)).Add(static_cast<uint64_t>(options.num_shards));
  internal::AddImageDatasetOptions(options.image, &fp);
  for (size_t i = 0; i < n; ++i) {
    const ShardScan& scan = scans[i];
    if (!scan.status.ok()) return scan.status;
    if (scan.samples.empty()) {
      return Status::InvalidArgument(ds->shard_paths_[i] + ": the shard holds no samples "
                                     "(members named KEY.EXT)");
    }
    fp.Add(ds->shard_paths_[i]).Add(scan.size).Add(static_cast<uint64_t>(scan.mtime_ns));
    for (const Found& f : scan.samples) {
      Entry e;
      e.offset = f.image_offset;
      e.size = static_cast<uint32_t>(f.image_size);
      e.label = f.label;
      e.shard = static_cast<uint32_t>(i);
      e.key_offset = ds->keys_.size();
      e.ext_len = static_cast<uint16_t>(std::min<size_t>(f.image_ext.size(), 65535));
      ds->keys_ += f.key;
      ds->keys_ += '.';
      ds->keys_ += f.image_ext;
      ds->samples_.push_back(e);
      fp.Add(std::string_view(ds->keys_).substr(e.key_offset)).Add(static_cast<uint64_t>(f.label));
    }
  }
  for (const std::string& path : ds->shard_paths_) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      return Status::FromErrno(err, path + ": cannot open the shard" +
                                        std::string(err == EMFILE ? " (too many open files: raise "
                                                                    "`ulimit -n` or use fewer, "
                                                                    "larger shards)"
                                                                  : ""));
    }
    ds->shard_fds_.push_back(fd);
  }
  ds->fingerprint_ = fp.value();
  report(true);
  return ds;
}

std::string WebDataset::key(size_t index) const {
  const Entry& e = samples_[index];
  const uint64_t end = index + 1 < samples_.size() ? samples_[index + 1].key_offset : keys_.size();
  return keys_.substr(e.key_offset, end - e.key_offset - e.ext_len - 1);
}

std::string WebDataset::SampleName(size_t index) const {
  const Entry& e = samples_[index];
  const uint64_t end = index + 1 < samples_.size() ? samples_[index + 1].key_offset : keys_.size();
  return shard_paths_[e.shard] + ":" + keys_.substr(e.key_offset, end - e.key_offset);
}

Status WebDataset::Read(size_t index, Sample* out) const {
  if (index >= samples_.size()) {
    return Status::InvalidArgument("WebDataset index " + std::to_string(index) +
                                   " is out of range; the shards hold " +
                                   std::to_string(samples_.size()) + " samples");
  }
  const Entry& e = samples_[index];
  if (e.size == 0) return Status::DataLoss(SampleName(index) + ": the image member is empty");
  if (Status st = internal::ReadRangeInto(shard_fds_[e.shard], e.offset, e.size, out); !st.ok()) {
    return st.WithContext(SampleName(index));
  }
  out->set_label(e.label);
  return Status::OK();
}

}  // namespace datafeed
