// Endpoint URIs and the environment variables that select a transport.
//
//   shm://NAME          shared-memory ring NAME on this host
//   grpc://HOST:PORT    gRPC stream
//   auto://HOST:PORT    handshake over gRPC; shared memory when colocated
//   grpc://H1:P1,H2:P2  (or auto://) a consumer reads several producers at
//                       once; a HOST that is a DNS name may resolve to many
//                       producers (a Kubernetes headless Service)
//   inproc://NAME       in-process queue (tests, single-process pipelines)
//
// DATAFEED_ENDPOINT supplies the endpoint where a program was given none.
// DATAFEED_TRANSPORT=shm|grpc|auto overrides the scheme of the endpoint.
#ifndef DATAFEED_TRANSPORT_ENDPOINT_H_
#define DATAFEED_TRANSPORT_ENDPOINT_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "datafeed/transport/status.h"

namespace datafeed {

enum class Scheme { kShm, kGrpc, kAuto, kInProc };

const char* SchemeName(Scheme scheme);  // "shm", "grpc", "auto", "inproc"

struct Endpoint {
  Scheme scheme = Scheme::kShm;
  // shm/inproc: the name. grpc/auto: the host (brackets stripped for IPv6).
  std::string name;
  int port = 0;  // grpc/auto only
  // auto only: the consumer insists on shared memory (DATAFEED_TRANSPORT=shm
  // on a HOST:PORT endpoint); the handshake fails if it is not colocated.
  bool force_shm = false;
  // grpc/auto, consumers only: the producers after the first (name, port).
  struct HostPort {
    std::string host;
    int port = 0;
  };
  std::vector<HostPort> more;

  // The URI form, e.g. "shm://feed0", "grpc://[::1]:5000" or
  // "auto://h1:5000,h2:5000".
  std::string ToString() const;
};

// Shared-memory and in-process names: 1-200 characters from [A-Za-z0-9._-],
// not starting with '.'. Errors name the offending character.
Status ValidateName(std::string_view name);

// Parses a URI. Errors say what form was expected.
Result<Endpoint> ParseEndpoint(std::string_view uri);

// Parses DATAFEED_TRANSPORT's value ("shm", "grpc" or "auto").
Result<Scheme> ParseTransportName(std::string_view name);

// The endpoint a program should use: `given` if non-empty, else
// $DATAFEED_ENDPOINT; then the scheme is replaced by `transport` if given,
// else by $DATAFEED_TRANSPORT if set. Forcing shm onto HOST:PORT keeps the
// address and asks its handshake for shared memory (auto + force_shm);
// forcing grpc or auto onto a NAME is an InvalidArgument that says which
// form is needed.
Result<Endpoint> ResolveEndpoint(std::string_view given,
                                 std::string_view transport = {});

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_ENDPOINT_H_
