// A small command-line parser shared by datafeed's programs.
//
//   Flags flags("datafeed-producer", "Preprocesses a dataset and serves batches.");
//   int64_t threads = 0;
//   flags.Int("threads", &threads, "worker threads (0: one per core)");
//   if (Status st = flags.Parse(argc, argv); !st.ok()) { ...print, exit 2... }
//
// Accepts --name value and --name=value; booleans are --name (or
// --name=true/false). --help prints Usage(). Unknown flags and bad values
// are errors that name the flag.
#ifndef DATAFEED_TRANSPORT_FLAGS_H_
#define DATAFEED_TRANSPORT_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/status.h"
#include "datafeed/transport/transport.h"

namespace datafeed {

class Flags {
 public:
  Flags(std::string program, std::string summary);

  void String(const std::string& name, std::string* target, const std::string& help);
  void Int(const std::string& name, int64_t* target, const std::string& help);
  void Double(const std::string& name, double* target, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);

  // OK, or InvalidArgument naming the flag. Sets help_requested() on --help.
  Status Parse(int argc, char** argv);
  bool help_requested() const { return help_; }
  // Whether --name appeared on the command line.
  bool Given(const std::string& name) const;
  // Positional (non-flag) arguments, in order.
  const std::vector<std::string>& positional() const { return positional_; }
  std::string Usage() const;

 private:
  struct Flag {
    std::string name, help, default_text;
    bool is_bool = false;
    bool given = false;
    std::function<Status(const std::string&)> set;
  };
  void Add(Flag flag);

  std::string program_, summary_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

// Parses and exits on a bad command line (status 2) or --help (status 0).
void ParseFlagsOrExit(Flags& flags, int argc, char** argv);

// The endpoint every datafeed program takes: --endpoint and --transport,
// defaulting to $DATAFEED_ENDPOINT / $DATAFEED_TRANSPORT, else kDefaultEndpoint.
inline constexpr char kDefaultEndpoint[] = "shm://datafeed";
struct EndpointFlags {
  std::string uri, transport;
  // `endpoint_help` describes --endpoint; the default is appended.
  void Add(Flags& flags, const std::string& endpoint_help = "endpoint");
  Result<Endpoint> Resolve() const;
};

// A consumer's gRPC options: --tls-ca, --tls-cert, --tls-key,
// --tls-server-name, --compression, --reconnect.
struct GrpcClientFlags {
  GrpcOptions grpc;
  bool reconnect = false;
  void Add(Flags& flags);
  // Sets options->grpc and options->reconnect.
  void ApplyTo(ReaderOptions* options) const;
};

}  // namespace datafeed

#endif  // DATAFEED_TRANSPORT_FLAGS_H_
