#include "util_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace datafeed::internal {
namespace {

namespace pb = ::datafeed::v1;

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

bool UsesTlsAsClient(const GrpcOptions& o) { return !o.tls_ca.empty() || !o.tls_cert.empty(); }

}  // namespace

std::string GrpcAddress(const std::string& host, int port) {
  const std::string bracketed = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return bracketed + ":" + std::to_string(port);
}

Status CheckConsumerProtocol(uint32_t consumer_version) {
  if (consumer_version == kProtocolVersion) return Status::OK();
  return Status::FailedPrecondition("protocol version mismatch: consumer speaks " +
                                    std::to_string(consumer_version) + ", producer speaks " +
                                    std::to_string(kProtocolVersion) + "; use matching datafeed builds");
}

Status CheckProducerProtocol(uint32_t producer_version, const std::string& uri) {
  if (producer_version == kProtocolVersion) return Status::OK();
  return Status::FailedPrecondition(uri + ": producer speaks protocol " + std::to_string(producer_version) +
                                    ", this consumer " + std::to_string(kProtocolVersion) +
                                    "; use matching datafeed builds");
}

const std::string& LocalHostDigest() {
  static const std::string digest = [] {
    const std::string machine = ReadFirstLine("/etc/machine-id");
    const std::string boot = ReadFirstLine("/proc/sys/kernel/random/boot_id");
    if (machine.empty() || boot.empty()) return std::string();
    const std::string text = std::string("datafeed-host-v1") + '\0' + machine + '\0' + boot + '\0' +
                             std::to_string(static_cast<uint32_t>(getuid()));
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(text.data(), text.size(), out, &n, EVP_sha256(), nullptr) != 1) return std::string();
    return std::string(reinterpret_cast<const char*>(out), n);
  }();
  return digest;
}

Result<std::string> ReadAuthToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("auth token file '" + path + "' cannot be read");
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t\r\n");
  const auto last = line.find_last_not_of(" \t\r\n");
  if (first == std::string::npos) {
    return Status::InvalidArgument("auth token file '" + path + "' is empty; put the token on its first line");
  }
  return line.substr(first, last - first + 1);
}

bool Authorized(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata, const std::string& token) {
  if (token.empty()) return true;
  const std::string want = "Bearer " + token;
  bool ok = false;
  auto range = metadata.equal_range(kAuthKey);
  for (auto it = range.first; it != range.second; ++it) {
    const grpc::string_ref& got = it->second;
    // Constant time for tokens of the right length: the comparison does not
    // stop at the first differing byte.
    if (got.size() == want.size() && CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0) ok = true;
  }
  return ok;
}

grpc::Status Unauthenticated() {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "this producer requires a bearer token: give the consumer the token file the producer "
                      "was started with (--auth-token-file; GrpcOptions::auth_token_file, "
                      "Loader(auth_token_file=...))");
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "ip6-localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return false;
}

std::string PeerAddress(const std::string& peer) {
  const auto colon = peer.rfind(':');
  const auto scheme = peer.find(':');
  if (colon == std::string::npos || colon == scheme) return peer;
  return peer.substr(0, colon);
}

Result<std::string> ReadPemFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(std::string(what) + " file '" + path + "' cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status FromGrpc(const grpc::Status& st, const std::string& uri, const char* during) {
  const std::string msg = uri + ": " + during + ": " + st.error_message();
  switch (st.error_code()) {
    case grpc::StatusCode::OK: return Status::OK();
    case grpc::StatusCode::UNAVAILABLE:
      return Status::Unavailable(msg + " (is datafeed-producer running and reachable there?)");
    case grpc::StatusCode::DEADLINE_EXCEEDED: return Status::DeadlineExceeded(msg);
    case grpc::StatusCode::CANCELLED: return Status::Cancelled(msg);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      // The producer's stream limits name themselves; otherwise it is gRPC's
      // message size check.
      if (st.error_message().find("--max-streams") != std::string::npos) return Status::ResourceExhausted(msg);
      return Status::ResourceExhausted(msg + " (a frame larger than the consumer's max_frame_bytes?)");
    case grpc::StatusCode::DATA_LOSS: return Status::DataLoss(msg);
    case grpc::StatusCode::ABORTED: return Status::Aborted(msg);
    case grpc::StatusCode::FAILED_PRECONDITION: return Status::FailedPrecondition(msg);
    case grpc::StatusCode::INVALID_ARGUMENT: return Status::InvalidArgument(msg);
    case grpc::StatusCode::UNIMPLEMENTED:
      return Status::Unimplemented(msg + " (is that a datafeed producer?)");
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return Status::FailedPrecondition(msg + " (TLS settings or auth token?)");
    default: return Status::Internal(msg);
  }
}

grpc::Status ToGrpc(const Status& st) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (st.code()) {
    case StatusCode::kOk: return grpc::Status::OK;
    case StatusCode::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case StatusCode::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case StatusCode::kAlreadyExists: code = grpc::StatusCode::ALREADY_EXISTS; break;
    case StatusCode::kResourceExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case StatusCode::kDeadlineExceeded: code = grpc::StatusCode::DEADLINE_EXCEEDED; break;
    case StatusCode::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case StatusCode::kDataLoss: code = grpc::StatusCode::DATA_LOSS; break;
    case StatusCode::kEndOfStream: code = grpc::StatusCode::OUT_OF_RANGE; break;
    case StatusCode::kCancelled: code = grpc::StatusCode::CANCELLED; break;
    case StatusCode::kFailedPrecondition: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case StatusCode::kUnimplemented: code = grpc::StatusCode::UNIMPLEMENTED; break;
    case StatusCode::kIOError: code = grpc::StatusCode::UNKNOWN; break;
    case StatusCode::kInternal: code = grpc::StatusCode::INTERNAL; break;
    case StatusCode::kAborted: code = grpc::StatusCode::ABORTED; break;
  }
  return grpc::Status(code, st.message());
}

grpc::ChannelArguments ClientChannelArgs(const GrpcOptions& o, size_t max_frame) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(std::min<size_t>(max_frame + 64, INT32_MAX)));
  args.SetMaxSendMessageSize(-1);
  // Not more often than a producer accepts (ApplyServerArgs).
  const int64_t keepalive_ms = std::max<int64_t>(1000, o.keepalive_ms);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(keepalive_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(2 * keepalive_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Big frames: larger HTTP/2 frames and windows mean fewer round trips.
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 16 * 1024 * 1024 - 1);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 * 1024 * 1024);
  args.SetInt(GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, 64 * 1024 * 1024);
  if (UsesTlsAsClient(o) && !o.tls_server_name.empty()) args.SetSslTargetNameOverride(o.tls_server_name);
  // A fresh connection per reader: readers are independent consumers.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

Result<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(const GrpcOptions& o) {
  if (!UsesTlsAsClient(o)) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!o.tls_ca.empty()) {
    DATAFEED_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(o.tls_ca, "TLS CA"));
  }
  if (!o.tls_cert.empty()) {
    DATAFEED_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(o.tls_cert, "TLS client certificate"));
    DATAFEED_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(o.tls_key, "TLS client key"));
  }
  return grpc::SslCredentials(ssl);
}

void ApplyServerArgs(const GrpcOptions& o, grpc::ServerBuilder* builder) {
  builder->SetMaxReceiveMessageSize(1 << 20);
  // Two live producers must not share a port (gRPC sets SO_REUSEPORT by default).
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder->SetMaxSendMessageSize(-1);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(o.keepalive_ms));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(2 * o.keepalive_ms));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Ping abuse: a peer that pings more often than once a second (ours ping
  // every keepalive_ms, 10 s by default, at least 1 s) is told to go away
  // after two strikes.
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 16 * 1024 * 1024 - 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_WRITE_BUFFER_SIZE, 64 * 1024 * 1024);
}

Result<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const GrpcOptions& o) {
  if (o.tls_cert.empty() && o.tls_key.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(o.tls_ca.empty()
                                            ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                            : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  DATAFEED_ASSIGN_OR_RETURN(std::string cert, ReadPemFile(o.tls_cert, "TLS certificate"));
  DATAFEED_ASSIGN_OR_RETURN(std::string key, ReadPemFile(o.tls_key, "TLS key"));
  ssl.pem_key_cert_pairs.push_back({key, cert});
  if (!o.tls_ca.empty()) {
    DATAFEED_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(o.tls_ca, "TLS client CA"));
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace datafeed::internal
