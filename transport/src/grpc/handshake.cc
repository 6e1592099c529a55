#include "handshake_internal.h"

#include "util_internal.h"

namespace datafeed::internal {

namespace pb = ::datafeed::v1;

grpc::Status AnswerHandshake(const std::string& producer_digest, const std::string& shm_name,
                             uint64_t producer_id, uint64_t max_frame_bytes, const pb::HandshakeRequest& req,
                             pb::HandshakeResponse* resp) {
  if (Status st = CheckConsumerProtocol(req.protocol_version()); !st.ok()) return ToGrpc(st);
  resp->set_protocol_version(kProtocolVersion);
  resp->set_producer_id(producer_id);
  resp->set_max_frame_bytes(max_frame_bytes);
  const bool colocated = !producer_digest.empty() && req.host_digest() == producer_digest && req.can_map_shm();
  if (req.preference() == pb::TRANSPORT_GRPC || (!colocated && req.preference() == pb::TRANSPORT_AUTO)) {
    resp->set_transport(pb::TRANSPORT_GRPC);
    resp->set_reason(req.preference() == pb::TRANSPORT_GRPC ? "the consumer asked for gRPC"
                                                           : "the consumer is on another host");
    return grpc::Status::OK;
  }
  if (!colocated) {
    resp->Clear();
    return ToGrpc(Status::FailedPrecondition(
        "shared memory was forced (DATAFEED_TRANSPORT=shm) but the consumer is not on the producer's host "
        "(or runs as another user, or cannot map its segments); use auto or grpc"));
  }
  resp->set_transport(pb::TRANSPORT_SHM);
  resp->set_shm_name(shm_name);
  resp->set_reason("the consumer shares the producer's host");
  return grpc::Status::OK;
}

}  // namespace datafeed::internal
