#include "datafeed/tools/cli.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#ifndef DATAFEED_VERSION_STRING
#error "DATAFEED_VERSION_STRING must be defined (tools/CMakeLists.txt passes PROJECT_VERSION)"
#endif

namespace datafeed::tools {
namespace {

// CLI11 validators return "" for a good value, else the message.
std::optional<int64_t> ParseWhole(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || errno != 0 || *end != '\0') return std::nullopt;
  return v;
}

std::optional<double> ParseNumber(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || errno != 0 || *end != '\0' || std::isnan(v)) return std::nullopt;
  return v;
}

std::string Bound(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

}  // namespace

const char* Version() { return DATAFEED_VERSION_STRING; }

void Configure(CLI::App& app, const std::vector<std::string>& examples) {
  app.set_version_flag("--version", app.get_name() + " " + Version(),
                       "print the version (" + std::string(Version()) + ") and exit");
  app.set_help_flag("-h,--help", "print this help and exit");
  // Every flag's default in --help, taken from its variable.
  app.option_defaults()->always_capture_default();
  // Subcommands made from here on inherit this: a flag they do not know
  // goes on to `app`, so "PROGRAM SUBCOMMAND --version" works too.
  app.fallthrough();
  app.get_formatter()->column_width(34);
  if (!examples.empty()) {
    // A blank line between examples keeps them apart in the man page too
    // (help2man runs indented lines together).
    std::string footer = "Examples:";
    for (size_t i = 0; i < examples.size(); ++i) footer += (i == 0 ? "\n  " : "\n\n  ") + examples[i];
    app.footer(footer);
  }
}

void AddConfigFile(CLI::App& app) {
  app.set_config("--config", "",
                 "read flags from this TOML file, one 'flag-name = value' line each (e.g. batch-size = 512, "
                 "shuffle = true, mnist = \"/data/mnist\"); flags on the command line win")
      ->type_name("FILE")
      ->check(CLI::Validator(CLI::ExistingFile).description(""));
  app.allow_config_extras(CLI::config_extras_mode::error);
}

std::optional<int> Parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; app.exit prints them.
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::string message = e.what();
    if (dynamic_cast<const CLI::ConfigError*>(&e) != nullptr) {
      // CLI11 says "INI was not able to parse KEY" for a key that is no flag.
      message = "--config: " + message + " (each line must be 'flag-name = value' with a flag of " +
                app.get_name() + ")";
    } else if (dynamic_cast<const CLI::FileError*>(&e) != nullptr) {
      message = "--config: " + message;
    } else if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && app.get_subcommands().empty() &&
               app.get_require_subcommand_min() > 0) {
      // CLI11 says "A subcommand is required" even for a misspelt one.
      std::string names;
      const std::vector<CLI::App*> all = app.get_subcommands([](CLI::App*) { return true; });
      for (size_t i = 0; i < all.size(); ++i) {
        names += (i == 0 ? "" : i + 1 == all.size() ? " or " : ", ") + all[i]->get_name();
      }
      const std::vector<std::string> rest = app.remaining();
      message = rest.empty() ? "give a subcommand: " + names
                             : "unknown subcommand '" + rest.front() + "'; expected " + names;
    }
    // "datafeed-bench shm" when the error is in a subcommand's flags.
    std::string name = app.get_name();
    for (const CLI::App* sub = &app; !sub->get_subcommands().empty();) {
      sub = sub->get_subcommands().front();
      name += " " + sub->get_name();
    }
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for the flags.\n", name.c_str(), message.c_str(), name.c_str());
    return 2;
  }
  return std::nullopt;
}

CLI::Validator WholeNumber(int64_t min, int64_t max) {
  std::string range;
  if (min != std::numeric_limits<int64_t>::min() && max != std::numeric_limits<int64_t>::max()) {
    range = " in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  } else if (min != std::numeric_limits<int64_t>::min()) {
    range = " >= " + std::to_string(min);
  } else if (max != std::numeric_limits<int64_t>::max()) {
    range = " <= " + std::to_string(max);
  }
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        const std::optional<int64_t> v = ParseWhole(text);
        if (!v || *v < min || *v > max) return "expects a whole number" + range + ", got '" + text + "'";
        return "";
      },
      "");
}

CLI::Validator Number(double min, double max) {
  std::string range;
  if (std::isfinite(min) && std::isfinite(max)) {
    range = " in [" + Bound(min) + ", " + Bound(max) + "]";
  } else if (std::isfinite(min)) {
    range = " >= " + Bound(min);
  } else if (std::isfinite(max)) {
    range = " <= " + Bound(max);
  }
  return CLI::Validator(
      [min, max, range](std::string& text) -> std::string {
        const std::optional<double> v = ParseNumber(text);
        if (!v || *v < min || *v > max) return "expects a number" + range + ", got '" + text + "'";
        return "";
      },
      "");
}

CLI::Validator PositiveNumber() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const std::optional<double> v = ParseNumber(text);
        if (!v || !(*v > 0)) return "expects a number > 0, got '" + text + "'";
        return "";
      },
      "");
}

CLI::Validator OneOf(std::vector<std::string> choices) {
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i];
  }
  return CLI::Validator(
      [choices = std::move(choices), list](std::string& text) -> std::string {
        for (const std::string& c : choices) {
          if (text == c) return "";
        }
        return "expects " + list + ", got '" + text + "'";
      },
      "");
}

void EndpointFlags::Add(CLI::App& app, const std::string& endpoint_help) {
  app.add_option("--endpoint", uri, endpoint_help)
      ->envname("DATAFEED_ENDPOINT")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            Result<Endpoint> ep = ParseEndpoint(text);
            return ep.ok() ? "" : ep.status().message();
          },
          ""))
      ->group("Endpoint");
  app.add_option("--transport", transport, "force the transport: shm, grpc or auto (overrides the endpoint's scheme)")
      ->envname("DATAFEED_TRANSPORT")
      ->check(OneOf({"shm", "grpc", "auto"}))
      ->group("Endpoint");
}

Result<Endpoint> EndpointFlags::Resolve() const {
  return ResolveEndpoint(uri.empty() ? std::string(kDefaultEndpoint) : uri, transport);
}

void GrpcClientFlags::Add(CLI::App& app) {
  const char* group = "gRPC (consumer)";
  app.add_option("--tls-ca", grpc.tls_ca, "verify the producer with this CA (PEM); enables TLS")->group(group);
  app.add_option("--tls-cert", grpc.tls_cert, "client certificate for mTLS (PEM)")->group(group);
  app.add_option("--tls-key", grpc.tls_key, "key of --tls-cert (PEM)")->group(group);
  app.add_option("--tls-server-name", grpc.tls_server_name, "name expected in the producer's certificate")
      ->group(group);
  app.add_option("--compression", grpc.compression, "ask for gzip-compressed frames: gzip or none")
      ->check(OneOf({"gzip", "none"}))
      ->group(group);
  app.add_option("--auth-token-file", grpc.auth_token_file,
                 "send the bearer token in this file (the producer's --auth-token-file)")
      ->group(group);
  app.add_flag("--reconnect", reconnect,
               "reconnect (with backoff) when the producer restarts or the connection breaks, and resume")
      ->group(group);
  app.add_option("--grpc-streams", streams,
                 "gRPC streams to each producer, each its own TCP connection and delivery session (for a link "
                 "one TCP stream cannot fill); ignored where auto:// picks shared memory")
      ->check(WholeNumber(1, ReaderOptions::kMaxGrpcStreams))
      ->group(group);
}

void GrpcClientFlags::ApplyTo(ReaderOptions* options) const {
  options->grpc = grpc;
  // The producer knows "gzip" and no compression, which it is asked for by "".
  if (options->grpc.compression == "none") options->grpc.compression.clear();
  options->reconnect = reconnect;
  options->grpc_streams = static_cast<int>(streams);
}

}  // namespace datafeed::tools
