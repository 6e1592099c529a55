// The consumer's choice between a producer's ring and its gRPC stream. The
// producer decides in the handshake (it knows whether the consumer shares
// its host); this file carries the decision out, so the gRPC client never
// opens shared memory and the shm transport never speaks gRPC.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <utility>

#include "grpc/client_internal.h"
#include "grpc/util_internal.h"
#include "shm/shm_transport_internal.h"
#include "transports_internal.h"
#include "datafeed/transport/log.h"

namespace datafeed::internal {

namespace pb = ::datafeed::v1;

Result<std::unique_ptr<BatchReader>> OpenAutoReader(const Endpoint& endpoint, const ReaderOptions& options) {
  if (endpoint.port == 0) {
    return Status::InvalidArgument(Uri(endpoint) + ": port 0 only lets a producer pick its port; "
                                   "give the port the producer serves on (it prints it)");
  }
  DATAFEED_ASSIGN_OR_RETURN(auto channel, MakeChannel(endpoint, options.grpc));
  std::string token;
  if (!options.grpc.auth_token_file.empty()) {
    DATAFEED_ASSIGN_OR_RETURN(token, ReadAuthToken(options.grpc.auth_token_file));
  }
  const pb::Transport preference = endpoint.scheme == Scheme::kGrpc ? pb::TRANSPORT_GRPC
                                   : endpoint.force_shm              ? pb::TRANSPORT_SHM
                                                                     : pb::TRANSPORT_AUTO;
  // One deadline for the handshake and the stream together.
  const Deadline deadline = Deadline::AfterMillis(std::max<int64_t>(options.connect_timeout_ms, 1000));
  Result<pb::HandshakeResponse> answer = DoHandshake(channel, endpoint, preference, deadline, token);
  // With reconnect, a connection cut during the handshake is tried again
  // until the connect deadline.
  for (int64_t backoff_ms = 50; !answer.ok() && options.reconnect && !deadline.expired() &&
                                answer.status().code() == StatusCode::kUnavailable;
       backoff_ms = std::min<int64_t>(backoff_ms * 2, 1000)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    answer = DoHandshake(channel, endpoint, preference, deadline, token);
  }
  DATAFEED_ASSIGN_OR_RETURN(pb::HandshakeResponse hs, std::move(answer));
  if (hs.transport() == pb::TRANSPORT_SHM) {
    // The handshake says the ring exists: do not wait for it to appear.
    ReaderOptions now = options;
    now.connect_timeout_ms = 0;
    // After the producer was restarted, the same handshake finds its ring
    // again (reconnect): its name may change with the producer.
    ShmLocator locate = [endpoint, channel, preference, token](Deadline d) -> Result<std::string> {
      DATAFEED_ASSIGN_OR_RETURN(pb::HandshakeResponse again, DoHandshake(channel, endpoint, preference, d, token));
      if (again.transport() != pb::TRANSPORT_SHM) {
        return Status::Unavailable(Uri(endpoint) + ": the restarted producer no longer offers shared memory to "
                                   "this consumer; open the endpoint again");
      }
      return again.shm_name();
    };
    bool answered = false;  // the producer itself refused the session (its checkpoint, its run)
    Result<std::unique_ptr<BatchReader>> shm =
        OpenShmSessionReader(hs.shm_name(), now, std::move(locate), &answered);
    // Same machine and boot but another /dev/shm (a container): use the stream.
    // A session the producer refused is refused on the stream too: say so now.
    if (shm.ok() || endpoint.force_shm || answered || shm.status().code() == StatusCode::kDataLoss ||
        shm.status().code() == StatusCode::kAborted) {
      if (!shm.ok()) return shm.status().WithContext(Uri(endpoint) + (endpoint.force_shm ? " (shared memory was forced)" : ""));
      return shm;
    }
    // Anything but a missing segment means the handshake named one this
    // consumer will not map (another user's, open to others, not a name):
    // the producer or its host is not what it should be. Its stream is as
    // trustworthy as the producer itself, so read that, but say why.
    if (shm.status().code() != StatusCode::kNotFound) {
      LogWarning("datafeed: " + Uri(endpoint) + ": not reading the shared memory its handshake named (" +
                 shm.status().ToString() + "); reading its gRPC stream instead");
    }
  }
  return OpenGrpcStreamReader(endpoint, options, std::move(channel), deadline);
}

Result<ProducerProbe> ProbeProducer(const Endpoint& endpoint, const ReaderOptions& options, Deadline deadline) {
  DATAFEED_ASSIGN_OR_RETURN(auto channel, MakeChannel(endpoint, options.grpc));
  std::string token;
  if (!options.grpc.auth_token_file.empty()) {
    DATAFEED_ASSIGN_OR_RETURN(token, ReadAuthToken(options.grpc.auth_token_file));
  }
  DATAFEED_ASSIGN_OR_RETURN(pb::HandshakeResponse hs,
                            DoHandshake(channel, endpoint, pb::TRANSPORT_GRPC, deadline, token));
  ProducerProbe probe;
  probe.producer_id = hs.producer_id();
  probe.run.fingerprint = hs.fingerprint();
  probe.run.shard = hs.shard();
  probe.run.num_shards = std::max<uint32_t>(1, hs.num_shards());
  probe.run.batches_per_epoch = hs.batches_per_epoch();
  return probe;
}

}  // namespace datafeed::internal
