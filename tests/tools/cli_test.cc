// datafeed::tools: the command line every program shares, and its JSON lines.
#include "datafeed/tools/cli.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "datafeed/tools/json_line.h"

namespace datafeed::tools {
namespace {

class EnvGuard {
 public:
  EnvGuard() { Clear(); }
  ~EnvGuard() { Clear(); }
  static void Clear() {
    unsetenv("DATAFEED_ENDPOINT");
    unsetenv("DATAFEED_TRANSPORT");
  }
};

// Parses `args` (after the program name); returns Parse's verdict and what
// it printed to stderr.
struct Outcome {
  std::optional<int> exit;
  std::string err;
};
Outcome ParseArgs(CLI::App& app, std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("prog")};
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  Outcome o;
  o.exit = Parse(app, static_cast<int>(argv.size()), argv.data());
  o.err = testing::internal::GetCapturedStderr();
  return o;
}

TEST(Cli, EndpointAndGrpcFlagsAndTheirDefaults) {
  EnvGuard guard;
  {
    CLI::App app{"test", "prog"};
    Configure(app);
    EndpointFlags e;
    GrpcClientFlags g;
    e.Add(app);
    g.Add(app);
    ASSERT_FALSE(ParseArgs(app, {}).exit);
    EXPECT_EQ(e.Resolve().value().ToString(), kDefaultEndpoint);
  }
  CLI::App app{"test", "prog"};
  Configure(app);
  EndpointFlags given;
  GrpcClientFlags tls;
  given.Add(app);
  tls.Add(app);
  ASSERT_FALSE(ParseArgs(app, {"--endpoint", "auto://h:5000", "--transport", "grpc", "--tls-ca", "ca.pem",
                         "--compression", "gzip", "--reconnect", "--grpc-streams", "4"})
                   .exit);
  EXPECT_EQ(given.Resolve().value().scheme, Scheme::kGrpc);
  ReaderOptions ro;
  tls.ApplyTo(&ro);
  EXPECT_EQ(ro.grpc.tls_ca, "ca.pem");
  EXPECT_EQ(ro.grpc.compression, "gzip");
  EXPECT_TRUE(ro.reconnect);
  EXPECT_EQ(ro.grpc_streams, 4);
}

TEST(Cli, EnvironmentFillsTheEndpointWhenNoFlagDoes) {
  EnvGuard guard;
  setenv("DATAFEED_ENDPOINT", "auto://fromenv:5000", 1);
  setenv("DATAFEED_TRANSPORT", "grpc", 1);
  {
    CLI::App app{"test", "prog"};
    EndpointFlags e;
    e.Add(app);
    ASSERT_FALSE(ParseArgs(app, {}).exit);
    Endpoint ep = e.Resolve().value();
    EXPECT_EQ(ep.scheme, Scheme::kGrpc);
    EXPECT_EQ(ep.ToString(), "grpc://fromenv:5000");
  }
  // The flags beat the variables.
  CLI::App app{"test", "prog"};
  EndpointFlags e;
  e.Add(app);
  ASSERT_FALSE(ParseArgs(app, {"--endpoint", "shm://given", "--transport", "shm"}).exit);
  EXPECT_EQ(e.Resolve().value().ToString(), "shm://given");
}

TEST(Cli, BadEndpointOrTransportFromEitherSourceNamesTheFlag) {
  EnvGuard guard;
  {
    CLI::App app{"test", "prog"};
    EndpointFlags e;
    e.Add(app);
    Outcome o = ParseArgs(app, {"--endpoint", "feed0"});
    EXPECT_EQ(o.exit, 2);
    EXPECT_NE(o.err.find("--endpoint: endpoint 'feed0' has no scheme"), std::string::npos) << o.err;
  }
  setenv("DATAFEED_TRANSPORT", "carrier-pigeon", 1);
  CLI::App app{"test", "prog"};
  EndpointFlags e;
  e.Add(app);
  Outcome o = ParseArgs(app, {});
  EXPECT_EQ(o.exit, 2);
  EXPECT_NE(o.err.find("--transport: expects shm, grpc or auto, got 'carrier-pigeon'"), std::string::npos)
      << o.err;
}

// The documented order: the command line, then --config, then the
// environment, then the default.
TEST(Cli, ConfigFileSitsBetweenFlagsAndEnvironment) {
  EnvGuard guard;
  const std::string path = testing::TempDir() + "/cli_test_config.toml";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("# flags\nendpoint = \"shm://fromfile\"\nbatch = 7\n", f);
    std::fclose(f);
  }
  setenv("DATAFEED_ENDPOINT", "shm://fromenv", 1);
  auto parse = [&](std::vector<std::string> args, std::string* uri, int64_t* batch) {
    CLI::App app{"test", "prog"};
    Configure(app);
    AddConfigFile(app);
    EndpointFlags e;
    e.Add(app);
    *batch = 1;
    app.add_option("--batch", *batch, "b")->check(WholeNumber(1));
    std::optional<int> exit = ParseArgs(app, std::move(args)).exit;
    *uri = e.uri;
    return exit;
  };
  std::string uri;
  int64_t batch = 0;
  ASSERT_FALSE(parse({"--config", path}, &uri, &batch));
  EXPECT_EQ(uri, "shm://fromfile");
  EXPECT_EQ(batch, 7);
  ASSERT_FALSE(parse({"--config", path, "--endpoint", "shm://fromflag", "--batch", "9"}, &uri, &batch));
  EXPECT_EQ(uri, "shm://fromflag");
  EXPECT_EQ(batch, 9);
  ASSERT_FALSE(parse({}, &uri, &batch));
  EXPECT_EQ(uri, "shm://fromenv");
  EXPECT_EQ(batch, 1);
  std::remove(path.c_str());
}

TEST(Cli, ValuesOfTheWrongTypeOrRangeNameTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : {
           Case{{"--batch", "abc"}, "prog: --batch: expects a whole number >= 1, got 'abc'"},
           Case{{"--batch", "-1"}, "prog: --batch: expects a whole number >= 1, got '-1'"},
           Case{{"--batch=1.5"}, "prog: --batch: expects a whole number >= 1, got '1.5'"},
           Case{{"--batch"}, "--batch: 1 required"},
           Case{{"--fraction", "2"}, "prog: --fraction: expects a number in [0, 1], got '2'"},
           Case{{"--timeout", "0"}, "prog: --timeout: expects a number > 0, got '0'"},
           Case{{"--fill", "paint"}, "prog: --fill: expects generate or copy, got 'paint'"},
           Case{{"--bogus"}, "prog: The following argument was not expected: --bogus"},
           Case{{"stray"}, "prog: The following argument was not expected: stray"},
       }) {
    CLI::App app{"test", "prog"};
    Configure(app);
    int64_t batch = 8;
    double fraction = 0, timeout = 1;
    std::string fill = "generate";
    app.add_option("--batch", batch, "b")->check(WholeNumber(1));
    app.add_option("--fraction", fraction, "f")->check(Number(0, 1));
    app.add_option("--timeout", timeout, "t")->check(PositiveNumber());
    app.add_option("--fill", fill, "f")->check(OneOf({"generate", "copy"}));
    Outcome o = ParseArgs(app, c.args);
    EXPECT_EQ(o.exit, 2) << c.args[0];
    EXPECT_NE(o.err.find(c.message), std::string::npos) << o.err;
    EXPECT_NE(o.err.find("Run 'prog --help'"), std::string::npos) << o.err;
    EXPECT_EQ(batch, 8) << "a rejected value must not be stored";
  }
}

TEST(Cli, GoodValuesParse) {
  CLI::App app{"test", "prog"};
  Configure(app);
  int64_t batch = 8;
  double fraction = 0;
  bool shuffle = false, pin = true;
  app.add_option("--batch", batch, "b")->check(WholeNumber(1));
  app.add_option("--fraction", fraction, "f")->check(Number(0, 1));
  app.add_flag("--shuffle", shuffle, "s");
  app.add_flag("--pin,!--no-pin", pin, "p");
  ASSERT_FALSE(ParseArgs(app, {"--batch=512", "--fraction", "0.25", "--shuffle", "--pin=false"}).exit);
  EXPECT_EQ(batch, 512);
  EXPECT_EQ(fraction, 0.25);
  EXPECT_TRUE(shuffle);
  EXPECT_FALSE(pin);
}

TEST(Cli, HelpAndVersionExitZero) {
  for (const char* flag : {"--help", "-h", "--version"}) {
    CLI::App app{"Does a thing.", "prog"};
    Configure(app, {"prog --batch 3"});
    int64_t batch = 8192;
    app.add_option("--batch", batch, "samples per batch")->group("Batches");
    testing::internal::CaptureStdout();
    Outcome o = ParseArgs(app, {flag});
    const std::string out = testing::internal::GetCapturedStdout();
    EXPECT_EQ(o.exit, 0) << flag;
    EXPECT_EQ(o.err, "") << flag;
    if (std::string(flag) == "--version") {
      EXPECT_EQ(out, std::string("prog ") + Version() + "\n");
    } else {
      EXPECT_NE(out.find("Does a thing."), std::string::npos) << out;
      EXPECT_NE(out.find("Batches:"), std::string::npos) << out;
      EXPECT_NE(out.find("--batch INT=8192"), std::string::npos) << out;
      EXPECT_NE(out.find("Examples:\n  prog --batch 3"), std::string::npos) << out;
    }
  }
  EXPECT_STRNE(Version(), "");
}

TEST(JsonLine, OneLineInOrderEscaped) {
  JsonObject j;
  j["name"] = "a \"quoted\"\nline\\";
  j["n"] = 3;
  j["x"] = Round(2.0 / 3.0, 3);
  j["none"] = std::nan("");
  j["runs"] = std::vector<double>{1.5, 2.25};
  j["empty"] = std::vector<int>{};
  j["nested"] = JsonObject{{"b", true}};
  EXPECT_EQ(JsonLine(j),
            "{\"name\": \"a \\\"quoted\\\"\\nline\\\\\", \"n\": 3, \"x\": 0.667, \"none\": null, "
            "\"runs\": [1.5, 2.25], \"empty\": [], \"nested\": {\"b\": true}}");
  EXPECT_EQ(nlohmann::json::parse(JsonLine(j))["name"], "a \"quoted\"\nline\\");
}

TEST(JsonLine, RoundKeepsNanAndInfinity) {
  EXPECT_EQ(Round(1.23456, 2), 1.23);
  EXPECT_EQ(Round(-1.5, 0), -2.0);
  EXPECT_TRUE(std::isnan(Round(std::nan(""), 3)));
  EXPECT_EQ(Round(std::numeric_limits<double>::infinity(), 3), std::numeric_limits<double>::infinity());
}

}  // namespace
}  // namespace datafeed::tools
