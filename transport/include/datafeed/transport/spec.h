// The grammar of pipeline and finish specs, parsed in one place.
//
//   spec = item { "," item }
//   item = name [ "(" [ number { "," number } ] ")" ]
//
// e.g. "to_tensor,normalize(0.1307, 0.3081),gaussian_blur(11)". Whitespace
// around items, names and numbers is ignored; numbers are what
// std::from_chars reads as a double, with an optional leading '+'. The
// producer's Pipeline::Make (producer/.../transform.h) and Finish::Parse
// (finish.h) both tokenize with ParseSpec and give the names their meaning.
//
// Thread safety: free functions over their arguments.
#ifndef DATAFEED_TRANSPORT_SPEC_H_
#define DATAFEED_TRANSPORT_SPEC_H_

#include <string_view>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

// One item of a spec. The views point into the spec passed to ParseSpec.
struct SpecItem {
  std::string_view text;     // the item as written, trimmed
  std::string_view name;     // before '(' (or the whole item), trimmed; empty for an empty item
  bool has_args = false;     // the item has parentheses, perhaps empty ones
  std::vector<double> args;  // the numbers between them
};

// Splits `spec` at the commas outside parentheses and parses every item into
// *items (cleared first). An empty item (",," or a trailing comma) comes back
// with an empty name: whether that is an error is the caller's call.
// InvalidArgument, the message naming the offending part (quoted, with
// non-printable bytes escaped: finish specs come from untrusted frames):
// nested parentheses, an unmatched '(' or ')', text after ')', or an argument
// that is not a number. The message has no prefix; callers add which spec.
Status ParseSpec(std::string_view spec, std::vector<SpecItem>* items);

// `s` without leading and trailing spaces, tabs and newlines.
std::string_view TrimSpec(std::string_view s);

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_SPEC_H_
