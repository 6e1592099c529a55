// The consumer side of the gRPC transport: a channel to a producer, the
// handshake, and the batch stream reader. Which of shared memory or the
// stream a consumer reads is decided by the caller from the handshake's
// answer (auto/auto_reader.cc); nothing here opens shared memory.
#ifndef DATAFEED_TRANSPORT_SRC_GRPC_CLIENT_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_GRPC_CLIENT_INTERNAL_H_

#include <grpcpp/channel.h>

#include <memory>

#include "datafeed/proto/datafeed.pb.h"
#include "datafeed/transport/transport.h"

namespace datafeed::internal {

// A channel to the endpoint's HOST:PORT with a consumer's channel arguments
// and credentials (util_internal.h), a connection of its own. Fails only
// when a TLS file cannot be read; connecting happens on the first call.
Result<std::shared_ptr<grpc::Channel>> MakeChannel(const Endpoint& endpoint, const GrpcOptions& options);

// Tells the producer this host's digest and the transport it prefers,
// waiting until `deadline` for a producer that is still starting, and
// returns the producer's choice (TRANSPORT_SHM with the ring's name, or
// TRANSPORT_GRPC). Fails with Unavailable when no producer answers in time,
// FailedPrecondition on a protocol mismatch or a refused forced shm, and
// FromGrpc's mapping otherwise; every message names the endpoint.
// `token` (ReadAuthToken of GrpcOptions::auth_token_file; "" for none) goes
// with the call.
Result<::datafeed::v1::HandshakeResponse> DoHandshake(const std::shared_ptr<grpc::Channel>& channel,
                                                      const Endpoint& endpoint,
                                                      ::datafeed::v1::Transport preference, Deadline deadline,
                                                      const std::string& token = {});

// Opens the batch stream on `channel` and returns its reader once the
// producer has accepted the stream, so a producer that closes right after
// still serves it. Fails with the producer's reason when it refuses the
// stream, DeadlineExceeded when it does not accept it before `deadline`.
// The reader reconnects when options.reconnect is set; its transport() is
// Scheme::kGrpc. The reader owns its channel reference and a receive thread.
Result<std::unique_ptr<BatchReader>> OpenGrpcStreamReader(const Endpoint& endpoint, const ReaderOptions& options,
                                                          std::shared_ptr<grpc::Channel> channel,
                                                          Deadline deadline);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_GRPC_CLIENT_INTERNAL_H_
