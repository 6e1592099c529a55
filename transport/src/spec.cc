#include "datafeed/transport/spec.h"

#include <charconv>
#include <string>
#include <system_error>

#include "frame_internal.h"

namespace datafeed {

using internal::Quote;

std::string_view TrimSpec(std::string_view s) {
  auto space = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

namespace {

// One trimmed, non-empty item into *out.
Status ParseItem(std::string_view item, SpecItem* out) {
  out->text = item;
  const size_t open = item.find('(');
  out->name = TrimSpec(item.substr(0, open));
  out->has_args = open != std::string_view::npos;
  out->args.clear();
  if (!out->has_args) return Status::OK();
  if (item.back() != ')') return Status::InvalidArgument(Quote(item) + ": text after ')'");
  const std::string_view inner = TrimSpec(item.substr(open + 1, item.size() - open - 2));
  if (inner.empty()) return Status::OK();
  size_t start = 0;
  for (;;) {
    const size_t comma = inner.find(',', start);
    const std::string_view tok = TrimSpec(
        inner.substr(start, comma == std::string_view::npos ? inner.npos : comma - start));
    const char* first = tok.data();
    const char* last = tok.data() + tok.size();
    if (!tok.empty() && *first == '+') ++first;
    double v = 0;
    const auto res = std::from_chars(first, last, v);
    if (tok.empty() || res.ec != std::errc() || res.ptr != last) {
      return Status::InvalidArgument(Quote(item) + ": " + Quote(tok) + " is not a number");
    }
    out->args.push_back(v);
    if (comma == std::string_view::npos) return Status::OK();
    start = comma + 1;
  }
}

}  // namespace

Status ParseSpec(std::string_view spec, std::vector<SpecItem>* items) {
  items->clear();
  std::vector<std::string_view> raw;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < spec.size(); ++i) {
    const char ch = spec[i];
    if (ch == '(') {
      if (++depth > 1) return Status::InvalidArgument("nested parentheses at offset " + std::to_string(i));
    } else if (ch == ')') {
      if (--depth < 0) return Status::InvalidArgument("unmatched ')' at offset " + std::to_string(i));
    } else if (ch == ',' && depth == 0) {
      raw.push_back(spec.substr(start, i - start));
      start = i + 1;
    }
  }
  if (depth != 0) return Status::InvalidArgument("unmatched '('");
  raw.push_back(spec.substr(start));
  items->resize(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const std::string_view item = TrimSpec(raw[i]);
    if (item.empty()) {
      (*items)[i] = SpecItem{};
      continue;
    }
    DATAFEED_RETURN_NOT_OK(ParseItem(item, &(*items)[i]));
  }
  return Status::OK();
}

}  // namespace datafeed
