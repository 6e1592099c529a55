// What the gRPC server (server.cc) and client (client.cc) share: the
// protocol version and its check, the method and metadata names both sides
// must spell alike, host identity, status conversion in both directions,
// channel arguments and credentials. Nothing here holds state; every
// function is safe to call from any thread.
#ifndef DATAFEED_TRANSPORT_SRC_GRPC_UTIL_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_GRPC_UTIL_INTERNAL_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "datafeed/proto/datafeed.pb.h"
#include "datafeed/transport/transport.h"

namespace datafeed::internal {

// 2: StreamBatches is bidirectional and ends with an acknowledged
// end-of-stream marker (see proto/datafeed.proto).
// 3: the delivery contract: a session opens every stream (StreamRequest
// hello, SessionWelcome in the initial metadata), frames carry their
// delivery position, consumers report progress, producers revoke leases.
constexpr uint32_t kProtocolVersion = 3;
// Initial metadata carrying the serialized SessionWelcome.
constexpr char kSessionKey[] = "datafeed-session-bin";
// StreamBatches is registered by hand on both sides (see wire_internal.h),
// so its full method name is spelled here rather than taken from the stub.
constexpr char kStreamMethod[] = "/datafeed.v1.BatchStream/StreamBatches";
// Initial metadata by which a producer says it accepted a StreamBatches call.
constexpr char kAcceptedKey[] = "datafeed-stream-accepted";

inline std::string Uri(const Endpoint& ep) { return ep.ToString(); }

// "HOST:PORT" for gRPC, with an IPv6 literal in brackets.
std::string GrpcAddress(const std::string& host, int port);

// Producer side: FailedPrecondition unless a consumer's request speaks
// kProtocolVersion. The message names both versions.
Status CheckConsumerProtocol(uint32_t consumer_version);
// Consumer side: FailedPrecondition, naming `uri`, unless the producer's
// handshake answer speaks kProtocolVersion.
Status CheckProducerProtocol(uint32_t producer_version, const std::string& uri);

// This process's host identity: machine id, boot id, hostname, uid.
::datafeed::v1::HostIdentity LocalHost();
// True when both identities name the same running kernel and user, i.e. a
// consumer may map the producer's shared memory. An identity without a
// machine or boot id matches nothing.
bool SameHost(const ::datafeed::v1::HostIdentity& a, const ::datafeed::v1::HostIdentity& b);

// The whole of a PEM (or any) file; NotFound naming `what` and the path.
Result<std::string> ReadPemFile(const std::string& path, const char* what);

// The only conversions between gRPC's status and ours.
//
// FromGrpc (consumer side): the message is "<uri>: <during>: <gRPC message>"
// and, where a user can act on it, a hint. Codes:
//   OK -> OK; UNAVAILABLE -> Unavailable (+ is the producer running?);
//   DEADLINE_EXCEEDED -> DeadlineExceeded; CANCELLED -> Cancelled;
//   RESOURCE_EXHAUSTED -> ResourceExhausted (+ frame over max_frame_bytes?);
//   DATA_LOSS -> DataLoss; FAILED_PRECONDITION -> FailedPrecondition;
//   INVALID_ARGUMENT -> InvalidArgument;
//   UNIMPLEMENTED -> Unimplemented (+ is that a datafeed producer?);
//   UNAUTHENTICATED, PERMISSION_DENIED -> FailedPrecondition (+ TLS?);
//   ABORTED -> Aborted (the producer ended the consumer's session);
//   anything else (UNKNOWN, NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE,
//   INTERNAL) -> Internal.
Status FromGrpc(const grpc::Status& status, const std::string& uri, const char* during);
// ToGrpc (producer side, what a handler returns): the message is
// status.message() as is (no code name). Codes map to gRPC's namesakes;
// kEndOfStream -> OUT_OF_RANGE (gRPC's "read past the end"), kIOError ->
// UNKNOWN. Through FromGrpc, every code comes back as itself except
// NotFound, AlreadyExists, EndOfStream and IOError, which come back as
// Internal (no handler sends them).
grpc::Status ToGrpc(const Status& status);

// Channel arguments of a consumer's channel: messages up to `max_frame`
// bytes (plus the Frame header), keepalive from `options`, large HTTP/2
// frames and windows, the TLS target name override when TLS is on, and a
// subchannel of its own (readers are independent consumers).
grpc::ChannelArguments ClientChannelArgs(const GrpcOptions& options, size_t max_frame);
// A consumer's credentials: TLS when tls_ca or tls_cert is set, else
// insecure. Fails when a named PEM file cannot be read.
Result<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(const GrpcOptions& options);
// A producer's server arguments: small requests, unlimited responses, no
// SO_REUSEPORT, keepalive from `options`, large HTTP/2 frames.
void ApplyServerArgs(const GrpcOptions& options, grpc::ServerBuilder* builder);
// A producer's credentials: TLS when tls_cert or tls_key is set (mTLS when
// tls_ca is set too), else insecure. Fails when a PEM file cannot be read.
Result<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const GrpcOptions& options);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_GRPC_UTIL_INTERNAL_H_
