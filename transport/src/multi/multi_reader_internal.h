// The reader of several producers (multi_reader.cc); OpenMultiReader and
// IsAddressLiteral are declared with the other factories in
// transports_internal.h. This header holds what tests reach into.
#ifndef DATAFEED_TRANSPORT_SRC_MULTI_MULTI_READER_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_MULTI_MULTI_READER_INTERNAL_H_

#include <functional>
#include <string>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed::internal {

// Resolves a host name to addresses (text form, IPv4 or IPv6).
using HostResolver = std::function<Result<std::vector<std::string>>(const std::string& host)>;

// Tests: resolve names with `resolver` instead of DNS (getaddrinfo); an
// empty function restores DNS. Thread-safe.
void SetHostResolverForTesting(HostResolver resolver);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_MULTI_MULTI_READER_INTERNAL_H_
