// One JSON object per line, the form datafeed's programs print results in
// (datafeed-consume --json, datafeed-bench --json, mnist_train --json):
//
//   {"bench": "shm", "gbps": 12.345, "runs": [1.5, 2.25]}
//
// ", " and ": " between items, keys in the order they were added (tests,
// bench/e2e/run_e2e.sh and the docs read these lines). nlohmann::json does
// the escaping; NaN and infinities print as null.
#ifndef DATAFEED_TOOLS_JSON_LINE_H_
#define DATAFEED_TOOLS_JSON_LINE_H_

#include <string>

#include <nlohmann/json.hpp>

namespace datafeed::tools {

// Insertion-ordered, so a line reads in the order it was built.
using JsonObject = nlohmann::ordered_json;

// `j` on one line, without a trailing newline.
std::string JsonLine(const JsonObject& j);

// `v` rounded to `decimals` places, for figures whose noise is larger than
// the digits past them; NaN stays NaN (printed as null).
double Round(double v, int decimals);

}  // namespace datafeed::tools

#endif  // DATAFEED_TOOLS_JSON_LINE_H_
