// What the producer's gRPC server has beyond its own services: a token
// check in front of every service, and gRPC's introspection services
// (server reflection, channelz), served only when asked for
// (GrpcOptions::introspection, --grpc-introspection). See docs/DESIGN.md,
// "Who may connect".
#ifndef DATAFEED_TRANSPORT_SRC_GRPC_SERVER_GUARD_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_GRPC_SERVER_GUARD_INTERNAL_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/server_builder_option.h>

#include <memory>
#include <string>

namespace datafeed::internal {

// Health checks (grpc.health.v1) answer without the token: they say only
// SERVING, and the kubelet's built-in gRPC probe sends no metadata.
constexpr char kHealthServicePrefix[] = "/grpc.health.v1.Health/";

// Makes `builder`'s server refuse every call that does not carry `token`
// (Authorized(), in constant time) with UNAUTHENTICATED and the message of
// Unauthenticated(), before any handler can answer: the call is cancelled
// with that status as soon as its metadata arrives, so whatever a handler
// then writes never leaves the process. Covers every service registered on
// the server, the DataFeed handlers' own checks included, except the health
// service (kHealthServicePrefix). Nothing to do for an empty token. The
// factory keeps its own copy of the token; thread-safe.
void RequireTokenOnEveryCall(const std::string& token, grpc::ServerBuilder* builder);

// The option that gives a server gRPC server reflection
// (grpc.reflection.v1alpha.ServerReflection) and channelz
// (grpc.channelz.v1.Channelz) when `on`, and neither when off (a caller
// then gets UNIMPLEMENTED).
//
// Both are gRPC plugins registered process-wide: libgrpc++_reflection adds
// its plugin to every ServerBuilder when it loads, and channelz's is added
// by the first call with `on` (so make the option BEFORE the
// ServerBuilder it is given to). The option then takes them out of every
// builder that did not ask for them. Channelz reports on the whole
// process: every server and channel in it.
std::unique_ptr<grpc::ServerBuilderOption> IntrospectionOption(bool on);

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_GRPC_SERVER_GUARD_INTERNAL_H_
