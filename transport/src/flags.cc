#include "datafeed/transport/flags.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace datafeed {

Flags::Flags(std::string program, std::string summary)
    : program_(std::move(program)), summary_(std::move(summary)) {}

void Flags::Add(Flag flag) { flags_.push_back(std::move(flag)); }

void Flags::String(const std::string& name, std::string* target, const std::string& help) {
  Add({name, help, target->empty() ? "" : *target, false, false,
       [target](const std::string& v) {
         *target = v;
         return Status::OK();
       }});
}

void Flags::Int(const std::string& name, int64_t* target, const std::string& help) {
  Add({name, help, std::to_string(*target), false, false, [target, name](const std::string& v) {
         errno = 0;
         char* end = nullptr;
         long long x = std::strtoll(v.c_str(), &end, 10);
         if (v.empty() || errno != 0 || *end != '\0') {
           return Status::InvalidArgument("--" + name + " takes a whole number, not '" + v + "'");
         }
         *target = x;
         return Status::OK();
       }});
}

void Flags::Double(const std::string& name, double* target, const std::string& help) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", *target);
  Add({name, help, text, false, false, [target, name](const std::string& v) {
         errno = 0;
         char* end = nullptr;
         double x = std::strtod(v.c_str(), &end);
         if (v.empty() || errno != 0 || *end != '\0') {
           return Status::InvalidArgument("--" + name + " takes a number, not '" + v + "'");
         }
         *target = x;
         return Status::OK();
       }});
}

void Flags::Bool(const std::string& name, bool* target, const std::string& help) {
  Add({name, help, *target ? "true" : "", true, false, [target, name](const std::string& v) {
         if (v == "true" || v == "1" || v == "yes") {
           *target = true;
         } else if (v == "false" || v == "0" || v == "no") {
           *target = false;
         } else {
           return Status::InvalidArgument("--" + name + " takes true or false, not '" + v + "'");
         }
         return Status::OK();
       }});
}

bool Flags::Given(const std::string& name) const {
  for (const auto& f : flags_) {
    if (f.name == name) return f.given;
  }
  return false;
}

Status Flags::Parse(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      return Status::OK();
    }
    if (arg.rfind("--", 0) != 0) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    Flag* flag = nullptr;
    for (auto& f : flags_) {
      if (f.name == name) flag = &f;
    }
    if (flag == nullptr) {
      return Status::InvalidArgument("unknown flag --" + name + " (see --help)");
    }
    if (!has_value) {
      if (flag->is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return Status::InvalidArgument("--" + name + " needs a value");
      }
    }
    DATAFEED_RETURN_NOT_OK(flag->set(value));
    flag->given = true;
  }
  return Status::OK();
}

std::string Flags::Usage() const {
  std::string out = "usage: " + program_ + " [flags]\n\n" + summary_ + "\n\nflags:\n";
  for (const auto& f : flags_) {
    std::string left = "  --" + f.name + (f.is_bool ? "" : " VALUE");
    if (left.size() < 26) left.resize(26, ' ');
    out += left + " " + f.help;
    if (!f.default_text.empty()) out += " (default: " + f.default_text + ")";
    out += "\n";
  }
  return out;
}

void ParseFlagsOrExit(Flags& flags, int argc, char** argv) {
  Status st = flags.Parse(argc, argv);
  if (flags.help_requested()) {
    std::fputs(flags.Usage().c_str(), stdout);
    std::exit(0);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n\n%s", st.message().c_str(), flags.Usage().c_str());
    std::exit(2);
  }
}

void EndpointFlags::Add(Flags& flags, const std::string& endpoint_help) {
  flags.String("endpoint", &uri,
               endpoint_help + " (default: $DATAFEED_ENDPOINT, else " + kDefaultEndpoint + ")");
  flags.String("transport", &transport, "force shm|grpc|auto (default: $DATAFEED_TRANSPORT)");
}

Result<Endpoint> EndpointFlags::Resolve() const {
  const char* env = std::getenv("DATAFEED_ENDPOINT");
  const bool from_env = env != nullptr && *env != '\0';
  return ResolveEndpoint(uri.empty() && !from_env ? std::string(kDefaultEndpoint) : uri, transport);
}

void GrpcClientFlags::Add(Flags& flags) {
  flags.String("tls-ca", &grpc.tls_ca, "gRPC: verify the producer with this CA (PEM); enables TLS");
  flags.String("tls-cert", &grpc.tls_cert, "gRPC: client certificate for mTLS (PEM)");
  flags.String("tls-key", &grpc.tls_key, "gRPC: key of --tls-cert (PEM)");
  flags.String("tls-server-name", &grpc.tls_server_name, "gRPC: name expected in the producer's certificate");
  flags.String("compression", &grpc.compression, "gRPC: ask for gzip-compressed frames");
  flags.String("auth-token-file", &grpc.auth_token_file,
               "gRPC: send the bearer token in this file (the producer's --auth-token-file)");
  flags.Bool("reconnect", &reconnect,
             "reconnect (with backoff) when the producer restarts or the connection breaks, and resume");
}

void GrpcClientFlags::ApplyTo(ReaderOptions* options) const {
  options->grpc = grpc;
  options->reconnect = reconnect;
}

}  // namespace datafeed
