// ImageListDataset: a text file of `path,label` lines.
#include <cerrno>
#include <charconv>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>

#include "datafeed/producer/dataset.h"
#include "datafeed/producer/fingerprint.h"
#include "dataset_internal.h"

namespace datafeed {
namespace {

std::string_view TrimLine(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Result<std::unique_ptr<ImageListDataset>> ImageListDataset::Open(const std::string& list_path,
                                                                 const ImageDatasetOptions& options,
                                                                 const std::string& root_in) {
  DATAFEED_RETURN_NOT_OK(internal::CheckImageDatasetOptions("image list " + list_path, options));
  std::ifstream f(list_path, std::ios::binary);
  if (!f) {
    return Status::NotFound(list_path + ": cannot open the image list (" +
                            std::generic_category().message(errno) +
                            "); it holds one 'path,label' line per image");
  }
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) return Status::IOError(list_path + ": cannot read the image list");
  std::string root = root_in.empty() ? DirName(list_path) : root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();

  std::unique_ptr<ImageListDataset> ds(new ImageListDataset());
  ds->height_ = options.height;
  ds->width_ = options.width;
  ds->channels_ = options.channels;
  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line = TrimLine(std::string_view(text).substr(pos, end - pos));
    pos = end + 1;
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    const std::string where = list_path + ":" + std::to_string(line_no);
    const size_t comma = line.rfind(',');
    if (comma == std::string_view::npos) {
      return Status::InvalidArgument(where + ": '" + std::string(line) +
                                     "' has no comma; each line is 'path,label'");
    }
    const std::string_view path = TrimLine(line.substr(0, comma));
    const std::string_view label_text = TrimLine(line.substr(comma + 1));
    int64_t label = 0;
    const auto res = std::from_chars(label_text.data(), label_text.data() + label_text.size(), label);
    if (label_text.empty() || res.ec != std::errc() ||
        res.ptr != label_text.data() + label_text.size()) {
      return Status::InvalidArgument(where + ": label '" + std::string(label_text) +
                                     "' is not an integer; each line is 'path,label'");
    }
    if (path.empty()) return Status::InvalidArgument(where + ": the path before the comma is empty");
    ds->paths_.push_back(path.front() == '/' ? std::string(path)
                                             : (root == "/" ? "" : root) + "/" + std::string(path));
    ds->labels_.push_back(label);
  }
  if (ds->paths_.empty()) {
    return Status::InvalidArgument(list_path + ": lists no images; each line is 'path,label' "
                                   "(blank lines and lines starting with '#' are skipped)");
  }
  Fingerprinter fp;
  fp.Add("image-list").Add(text).Add(root);
  internal::AddImageDatasetOptions(options, &fp);
  ds->fingerprint_ = fp.value();
  return ds;
}

Status ImageListDataset::Read(size_t index, Sample* out) const {
  if (index >= paths_.size()) {
    return Status::InvalidArgument("image list index " + std::to_string(index) +
                                   " is out of range; the list holds " +
                                   std::to_string(paths_.size()) + " images");
  }
  DATAFEED_RETURN_NOT_OK(internal::ReadFileInto(paths_[index], out));
  out->set_label(labels_[index]);
  return Status::OK();
}

}  // namespace datafeed
