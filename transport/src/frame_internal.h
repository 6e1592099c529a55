// Helpers of frame.cc that the rest of transport/src shares (finish.cc,
// spec.cc): message text for untrusted bytes and tensor shapes.
#ifndef DATAFEED_TRANSPORT_FRAME_INTERNAL_H_
#define DATAFEED_TRANSPORT_FRAME_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace datafeed {
namespace internal {

// `s` in single quotes for a message: bytes outside printable ASCII (and
// quotes and backslashes) escaped as \xHH, at most 64 characters then "...".
// Names and specs can come from untrusted frames.
std::string Quote(std::string_view s);
// "[2, 3, 4]".
std::string ShapeString(const std::vector<int64_t>& dims);
// Bytes of a tensor with non-negative `dims` and elements of `dtype_size`
// bytes; false on 64-bit overflow. A zero dimension makes the tensor empty
// however large the others are.
bool ShapeBytes(const std::vector<int64_t>& dims, size_t dtype_size, uint64_t* out);

}  // namespace internal
}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_FRAME_INTERNAL_H_
