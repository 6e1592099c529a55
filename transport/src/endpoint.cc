#include "datafeed/transport/endpoint.h"

#include <cstdlib>
#include <string>

namespace datafeed {
namespace {

constexpr size_t kMaxNameLength = 200;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == '-';
}

Result<int> ParsePort(std::string_view text, std::string_view uri) {
  if (text.empty() || text.size() > 5) {
    return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                   "': port must be a number from 0 to 65535");
  }
  int port = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return Status::InvalidArgument("endpoint '" + std::string(uri) + "': port '" +
                                     std::string(text) + "' is not a number");
    }
    port = port * 10 + (c - '0');
  }
  // 0 lets a producer's kernel choose (the writer's endpoint() tells which).
  if (port > 65535) {
    return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                   "': port must be a number from 0 to 65535");
  }
  return port;
}

// HOST:PORT, with [IPv6]:PORT.
Status ParseHostPort(std::string_view rest, std::string_view uri, Endpoint* ep) {
  std::string_view host, port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                     "': expected [IPV6]:PORT, e.g. grpc://[::1]:5000");
    }
    host = rest.substr(1, close - 1);
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                     "': expected HOST:PORT, e.g. grpc://localhost:5000");
    }
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                     "': put an IPv6 address in brackets, e.g. grpc://[::1]:5000");
    }
  }
  if (host.empty()) {
    return Status::InvalidArgument("endpoint '" + std::string(uri) + "': the host is empty");
  }
  for (char c : host) {
    if (!(IsNameChar(c) || c == ':')) {
      return Status::InvalidArgument("endpoint '" + std::string(uri) + "': host '" +
                                     std::string(host) + "' has an invalid character '" +
                                     std::string(1, c) + "'");
    }
  }
  DATAFEED_ASSIGN_OR_RETURN(ep->port, ParsePort(port, uri));
  ep->name = std::string(host);
  return Status::OK();
}

bool IsHostScheme(Scheme s) { return s == Scheme::kGrpc || s == Scheme::kAuto; }

}  // namespace

const char* SchemeName(Scheme scheme) {
  switch (scheme) {
    case Scheme::kShm: return "shm";
    case Scheme::kGrpc: return "grpc";
    case Scheme::kAuto: return "auto";
    case Scheme::kInProc: return "inproc";
  }
  return "unknown";
}

std::string Endpoint::ToString() const {
  std::string out = std::string(SchemeName(scheme)) + "://";
  if (!IsHostScheme(scheme)) return out + name;
  auto host_port = [](const std::string& host, int port) {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
  };
  out += host_port(name, port);
  for (const HostPort& hp : more) out += "," + host_port(hp.host, hp.port);
  return out;
}

Status ValidateName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("name is empty; use e.g. shm://feed0");
  if (name.size() > kMaxNameLength) {
    return Status::InvalidArgument("name '" + std::string(name.substr(0, 32)) + "...' is " +
                                   std::to_string(name.size()) + " characters; the limit is " +
                                   std::to_string(kMaxNameLength));
  }
  if (name.front() == '.') {
    return Status::InvalidArgument("name '" + std::string(name) + "' may not start with '.'");
  }
  for (char c : name) {
    if (!IsNameChar(c)) {
      std::string shown = (c >= 0x20 && c < 0x7f) ? std::string(1, c) : "\\x" + std::to_string(c & 0xff);
      return Status::InvalidArgument("name '" + std::string(name) + "' has invalid character '" +
                                     shown + "'; use letters, digits, '.', '_' and '-'");
    }
  }
  return Status::OK();
}

Result<Scheme> ParseTransportName(std::string_view name) {
  if (name == "shm") return Scheme::kShm;
  if (name == "grpc") return Scheme::kGrpc;
  if (name == "auto") return Scheme::kAuto;
  return Status::InvalidArgument("unknown transport '" + std::string(name) +
                                 "'; DATAFEED_TRANSPORT must be shm, grpc or auto");
}

Result<Endpoint> ParseEndpoint(std::string_view uri) {
  size_t sep = uri.find("://");
  if (sep == std::string_view::npos) {
    return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                   "' has no scheme; use shm://NAME, grpc://HOST:PORT, "
                                   "auto://HOST:PORT or inproc://NAME");
  }
  std::string_view scheme = uri.substr(0, sep);
  std::string_view rest = uri.substr(sep + 3);
  Endpoint ep;
  if (scheme == "shm" || scheme == "inproc") {
    ep.scheme = scheme == "shm" ? Scheme::kShm : Scheme::kInProc;
    Status st = ValidateName(rest);
    if (!st.ok()) return st.WithContext("endpoint '" + std::string(uri) + "'");
    ep.name = std::string(rest);
    return ep;
  }
  if (scheme == "grpc" || scheme == "auto") {
    ep.scheme = scheme == "grpc" ? Scheme::kGrpc : Scheme::kAuto;
    // Several producers: HOST:PORT,HOST:PORT,...
    std::string_view first = rest.substr(0, rest.find(','));
    DATAFEED_RETURN_NOT_OK(ParseHostPort(first, uri, &ep));
    for (size_t at = first.size(); at < rest.size();) {
      const size_t next = rest.find(',', at + 1);
      const std::string_view item = rest.substr(at + 1, next == std::string_view::npos ? std::string_view::npos
                                                                                        : next - at - 1);
      if (item.empty()) {
        return Status::InvalidArgument("endpoint '" + std::string(uri) +
                                       "': an empty producer in the list; separate HOST:PORT entries with one ','");
      }
      Endpoint one;
      DATAFEED_RETURN_NOT_OK(ParseHostPort(item, uri, &one));
      ep.more.push_back({one.name, one.port});
      at = next == std::string_view::npos ? rest.size() : next;
    }
    return ep;
  }
  return Status::InvalidArgument("endpoint '" + std::string(uri) + "' has unknown scheme '" +
                                 std::string(scheme) + "'; use shm, grpc, auto or inproc");
}

Result<Endpoint> ResolveEndpoint(std::string_view given, std::string_view transport) {
  std::string uri(given);
  if (uri.empty()) {
    const char* env = std::getenv("DATAFEED_ENDPOINT");
    if (env == nullptr || *env == '\0') {
      return Status::InvalidArgument(
          "no endpoint given; pass one (e.g. --endpoint shm://feed0) or set DATAFEED_ENDPOINT");
    }
    uri = env;
  }
  Result<Endpoint> parsed = ParseEndpoint(uri);
  if (!parsed.ok()) return parsed.status();
  Endpoint ep = std::move(parsed).value();

  std::string forced(transport);
  std::string source = "the transport option";
  if (forced.empty()) {
    const char* env = std::getenv("DATAFEED_TRANSPORT");
    if (env != nullptr && *env != '\0') {
      forced = env;
      source = "DATAFEED_TRANSPORT";
    }
  }
  if (forced.empty()) return ep;
  Result<Scheme> scheme = ParseTransportName(forced);
  if (!scheme.ok()) return scheme.status();
  if (*scheme == ep.scheme || ep.scheme == Scheme::kInProc) return ep;
  if (*scheme == Scheme::kShm && IsHostScheme(ep.scheme)) {
    // The handshake at HOST:PORT names the segment; insist on it.
    ep.scheme = Scheme::kAuto;
    ep.force_shm = true;
    return ep;
  }
  if (IsHostScheme(*scheme) && !IsHostScheme(ep.scheme)) {
    return Status::InvalidArgument(source + "=" + forced + " needs HOST:PORT, but endpoint '" +
                                   uri + "' is a shared-memory name; use grpc://HOST:PORT");
  }
  ep.scheme = *scheme;
  return ep;
}

}  // namespace datafeed
