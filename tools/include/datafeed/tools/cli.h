// The command line of every datafeed program, on CLI11.
//
//   CLI::App app{"Preprocesses a dataset ...", "datafeed-producer"};
//   tools::Configure(app, {"datafeed-producer --mnist data/mnist --endpoint shm://feed0"});
//   tools::EndpointFlags endpoint;
//   endpoint.Add(app);
//   int64_t threads = 0;
//   app.add_option("--threads", threads, "worker threads (0: one per core)")
//       ->check(tools::WholeNumber(0));
//   if (std::optional<int> done = tools::Parse(app, argc, argv)) return *done;
//
// What every program gets from Configure and Parse: --help (flags grouped,
// defaults shown, examples at the end) and --version, both printed to stdout
// with exit status 0; a bad command line (an unknown flag, a value of the
// wrong type or out of range, a bad --config file) is one line on stderr
// that names the flag, and exit status 2.
//
// Not thread-safe; meant for main().
#ifndef DATAFEED_TOOLS_CLI_H_
#define DATAFEED_TOOLS_CLI_H_

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/status.h"
#include "datafeed/transport/transport.h"

namespace datafeed::tools {

// The project's version (CMake's PROJECT_VERSION), e.g. "0.1.0".
const char* Version();

// Sets up `app` as every datafeed program behaves: --version prints
// "NAME VERSION", --help shows each flag's default and ends with
// `examples` (command lines, one per entry). Call before adding flags.
void Configure(CLI::App& app, const std::vector<std::string>& examples = {});

// Adds --config FILE: flags read from a TOML file, one `flag-name = value`
// line per flag (`shuffle = true`, `mnist = "/data/mnist"`); the command
// line wins over the file. A key that is no flag is an error.
void AddConfigFile(CLI::App& app);

// Parses argv. std::nullopt: go on. Otherwise main() returns the value: 0
// after --help or --version, 2 after a bad command line (the message on
// stderr names the flag and points to --help).
std::optional<int> Parse(CLI::App& app, int argc, char** argv);

// Validators. CLI11 puts the flag's name before the message:
// "--batch-size: expects a whole number >= 1, got '-1'".
CLI::Validator WholeNumber(int64_t min = std::numeric_limits<int64_t>::min(),
                           int64_t max = std::numeric_limits<int64_t>::max());
CLI::Validator Number(double min = -std::numeric_limits<double>::infinity(),
                      double max = std::numeric_limits<double>::infinity());
// A number > 0.
CLI::Validator PositiveNumber();
// One of `choices`, spelled exactly.
CLI::Validator OneOf(std::vector<std::string> choices);

// The endpoint every datafeed program takes, in the help group "Endpoint":
// --endpoint (else $DATAFEED_ENDPOINT, else kDefaultEndpoint) and
// --transport (else $DATAFEED_TRANSPORT). Both are checked while parsing.
inline constexpr char kDefaultEndpoint[] = "shm://datafeed";
struct EndpointFlags {
  std::string uri = kDefaultEndpoint;
  std::string transport;
  // `endpoint_help` describes --endpoint.
  void Add(CLI::App& app, const std::string& endpoint_help =
                               "where the producer serves: shm://NAME, grpc://HOST:PORT, auto://HOST:PORT or "
                               "inproc://NAME");
  Result<Endpoint> Resolve() const;
};

// A consumer's gRPC options, in the help group "gRPC (consumer)":
// --tls-ca, --tls-cert, --tls-key, --tls-server-name, --compression,
// --auth-token-file, --reconnect.
struct GrpcClientFlags {
  GrpcOptions grpc;
  bool reconnect = false;
  int64_t streams = 1;  // ReaderOptions::grpc_streams
  void Add(CLI::App& app);
  // Sets options->grpc, options->reconnect and options->grpc_streams.
  void ApplyTo(ReaderOptions* options) const;
};

}  // namespace datafeed::tools

#endif  // DATAFEED_TOOLS_CLI_H_
