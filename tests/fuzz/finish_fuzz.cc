// Finish::Parse and ParseSpec on arbitrary text: InvalidArgument or a
// finish whose tables can be read for every channel it accepts.
#include <cstdint>
#include <string_view>
#include <vector>

#include "datafeed/transport/finish.h"
#include "datafeed/transport/spec.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string spec(reinterpret_cast<const char*>(data), size);
  std::vector<datafeed::SpecItem> items;
  const datafeed::Status st = datafeed::ParseSpec(spec, &items);
  datafeed::fuzz::CheckRefusal(st, "ParseSpec");
  if (st.ok()) {
    for (const auto& it : items) {
      if (it.text.empty()) continue;  // an empty item's view may point anywhere
      datafeed::fuzz::Require(it.text.data() >= spec.data() && it.text.data() + it.text.size() <= spec.data() + spec.size(),
                              "a spec item outside its spec");
    }
  }
  datafeed::Result<datafeed::Finish> f = datafeed::Finish::Parse(spec);
  datafeed::fuzz::CheckRefusal(f.status(), "Finish::Parse");
  return 0;
}
