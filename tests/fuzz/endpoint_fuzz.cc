// ParseEndpoint, ParseTransportName and ValidateName on arbitrary text: an
// error, or an endpoint whose URI form parses back to the same endpoint.
#include <cstdint>
#include <string_view>

#include "datafeed/transport/endpoint.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  datafeed::Result<datafeed::Endpoint> e = datafeed::ParseEndpoint(text);
  datafeed::fuzz::CheckRefusal(e.status(), "ParseEndpoint");
  if (e.ok()) {
    const std::string uri = e->ToString();
    datafeed::Result<datafeed::Endpoint> again = datafeed::ParseEndpoint(uri);
    datafeed::fuzz::Require(again.ok(), "an endpoint's ToString() that ParseEndpoint refuses");
    datafeed::fuzz::Require(again->ToString() == uri, "ParseEndpoint(ToString()) is another endpoint");
  }
  datafeed::fuzz::CheckRefusal(datafeed::ParseTransportName(text).status(), "ParseTransportName");
  datafeed::fuzz::CheckRefusal(datafeed::ValidateName(text), "ValidateName");
  return 0;
}
