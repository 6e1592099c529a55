// The producer's answer to a HandshakeRequest from anyone who can reach the
// port: arbitrary bytes parsed as the request, then AnswerHandshake. The
// answer never names the ring unless the caller proved it is on this host
// (its digest equals the producer's).
#include <cstdint>
#include <string>

#include "datafeed/proto/datafeed.pb.h"
#include "fuzz_util.h"
#include "grpc/handshake_internal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ::datafeed::v1::HandshakeRequest req;
  if (!req.ParseFromArray(data, static_cast<int>(size))) return 0;
  static const std::string kDigest = "fuzz-producer-digest-0123456789abcdef";
  static const std::string kRing = "datafeed.fuzz-ring";
  ::datafeed::v1::HandshakeResponse resp;
  const grpc::Status st = datafeed::internal::AnswerHandshake(kDigest, kRing, 42, 1 << 20, req, &resp);
  datafeed::fuzz::Require(st.ok() || !st.error_message().empty(), "a handshake refusal without a message");
  if (!st.ok()) datafeed::fuzz::Require(resp.ByteSizeLong() == 0, "a refused handshake that still answers fields");
  if (resp.SerializeAsString().find(kRing) != std::string::npos) {
    datafeed::fuzz::Require(req.host_digest() == kDigest && req.can_map_shm(),
                            "the ring's name given to a caller that did not show the producer's digest");
  }
  return 0;
}
