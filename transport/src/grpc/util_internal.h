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
#include <map>
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
// The most frames a consumer may have in flight on its stream (each is
// leased to it); a client's window is grpc_prefetch + 2.
constexpr uint32_t kMaxWindow = 64;

inline std::string Uri(const Endpoint& ep) { return ep.ToString(); }

// "HOST:PORT" for gRPC, with an IPv6 literal in brackets.
std::string GrpcAddress(const std::string& host, int port);

// Producer side: FailedPrecondition unless a consumer's request speaks
// kProtocolVersion. The message names both versions.
Status CheckConsumerProtocol(uint32_t consumer_version);
// Consumer side: FailedPrecondition, naming `uri`, unless the producer's
// handshake answer speaks kProtocolVersion.
Status CheckProducerProtocol(uint32_t producer_version, const std::string& uri);

// SHA-256 of "datafeed-host-v1", /etc/machine-id, the boot id and this
// process's uid, NUL-separated: equal digests mean the same running kernel
// and user. Empty when the machine or boot id cannot be read (then nothing
// is colocated). Computed once.
const std::string& LocalHostDigest();

// The bearer token in `path` (its first line, trimmed); InvalidArgument for
// an empty one, NotFound for a missing file.
Result<std::string> ReadAuthToken(const std::string& path);
// The metadata a consumer sends its token in.
constexpr char kAuthKey[] = "authorization";
// Producer: true when `token` is empty or the call's metadata carries it
// (compared in constant time).
bool Authorized(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, const std::string& token);
inline bool Authorized(const grpc::ServerContext& ctx, const std::string& token) {
  return Authorized(ctx.client_metadata(), token);
}
// What a handler answers a call without the token: UNAUTHENTICATED, saying
// nothing about the producer.
grpc::Status Unauthenticated();
// Whether `host` (an endpoint's HOST) is a loopback address or "localhost".
bool IsLoopbackHost(const std::string& host);
// The address part of a gRPC peer string ("ipv4:10.0.0.2:5123" -> "ipv4:10.0.0.2").
std::string PeerAddress(const std::string& peer);

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
//   UNAUTHENTICATED, PERMISSION_DENIED -> FailedPrecondition (+ TLS or token?);
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
