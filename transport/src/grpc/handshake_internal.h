// The producer's side of the Handshake RPC as a plain function, so that it
// can be tested and fuzzed (tests/fuzz/handshake_fuzz.cc) without a server.
#ifndef DATAFEED_TRANSPORT_SRC_GRPC_HANDSHAKE_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_GRPC_HANDSHAKE_INTERNAL_H_

#include <grpcpp/support/status.h>

#include <cstdint>
#include <string>

#include "datafeed/proto/datafeed.pb.h"

namespace datafeed::internal {

// Answers a consumer's HandshakeRequest for a producer whose host digest is
// `producer_digest` (LocalHostDigest()) and whose ring is `shm_name`: fills
// *resp with the transport the consumer should use (the ring only when the
// consumer's digest equals the producer's, i.e. same machine, boot and uid,
// and it can map segments; the stream otherwise), or returns
// FAILED_PRECONDITION for a protocol mismatch or for shared memory forced by
// a consumer that cannot have it. The answer names no host, id or uid. The
// gRPC handler calls it once the producer is ready and the caller is
// authorized. Thread-safe (reads its arguments only).
grpc::Status AnswerHandshake(const std::string& producer_digest, const std::string& shm_name,
                             uint64_t producer_id, uint64_t max_frame_bytes,
                             const ::datafeed::v1::HandshakeRequest& req, ::datafeed::v1::HandshakeResponse* resp);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_GRPC_HANDSHAKE_INTERNAL_H_
