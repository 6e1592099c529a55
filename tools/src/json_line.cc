#include "datafeed/tools/json_line.h"

#include <cmath>

namespace datafeed::tools {

std::string JsonLine(const JsonObject& j) {
  // dump(0) puts each item on its own line with ": " after keys; a raw
  // newline only ever stands between items (one inside a string is
  // escaped), so the newlines become ", "-style spaces, or nothing next to
  // a bracket.
  const std::string multi = j.dump(0);
  std::string out;
  out.reserve(multi.size());
  for (size_t i = 0; i < multi.size(); ++i) {
    if (multi[i] != '\n') {
      out += multi[i];
      continue;
    }
    const char before = out.empty() ? '\0' : out.back();
    const char after = i + 1 < multi.size() ? multi[i + 1] : '\0';
    if (before == '{' || before == '[' || after == '}' || after == ']') continue;
    out += ' ';
  }
  return out;
}

double Round(double v, int decimals) {
  if (!std::isfinite(v)) return v;
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

}  // namespace datafeed::tools
