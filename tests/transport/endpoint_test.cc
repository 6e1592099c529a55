#include "datafeed/transport/endpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "datafeed/transport/transport.h"

namespace datafeed {
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

TEST(Endpoint, ParsesEveryScheme) {
  auto shm = ParseEndpoint("shm://feed0");
  ASSERT_TRUE(shm.ok());
  EXPECT_EQ(shm->scheme, Scheme::kShm);
  EXPECT_EQ(shm->name, "feed0");
  EXPECT_EQ(shm->ToString(), "shm://feed0");

  auto grpc = ParseEndpoint("grpc://trainer-3.local:5000");
  ASSERT_TRUE(grpc.ok()) << grpc.status().ToString();
  EXPECT_EQ(grpc->scheme, Scheme::kGrpc);
  EXPECT_EQ(grpc->name, "trainer-3.local");
  EXPECT_EQ(grpc->port, 5000);

  auto v6 = ParseEndpoint("auto://[::1]:7");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->scheme, Scheme::kAuto);
  EXPECT_EQ(v6->name, "::1");
  EXPECT_EQ(v6->ToString(), "auto://[::1]:7");

  EXPECT_EQ(ParseEndpoint("inproc://t").value().scheme, Scheme::kInProc);
}

TEST(Endpoint, RejectsMalformedUrisWithAHint) {
  struct Case { const char* uri; const char* hint; };
  for (Case c : {Case{"feed0", "no scheme"}, Case{"tcp://a:1", "unknown scheme 'tcp'"},
                 Case{"grpc://host", "HOST:PORT"}, Case{"grpc://host:99999", "0 to 65535"}, Case{"grpc://host:12ab", "not a number"},
                 Case{"grpc://:5000", "host is empty"}, Case{"grpc://::1:5", "brackets"},
                 Case{"shm://", "empty"}, Case{"shm://a/b", "invalid character '/'"},
                 Case{"shm://../x", "may not start with '.'"}}) {
    auto r = ParseEndpoint(c.uri);
    ASSERT_FALSE(r.ok()) << c.uri;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.hint), std::string::npos)
        << c.uri << " -> " << r.status().message();
  }
}

TEST(Endpoint, EnvironmentSuppliesAndOverrides) {
  EnvGuard guard;
  EXPECT_EQ(ResolveEndpoint("").status().code(), StatusCode::kInvalidArgument);
  setenv("DATAFEED_ENDPOINT", "shm://fromenv", 1);
  EXPECT_EQ(ResolveEndpoint("").value().name, "fromenv");
  EXPECT_EQ(ResolveEndpoint("shm://given").value().name, "given");

  setenv("DATAFEED_ENDPOINT", "auto://host:5000", 1);
  setenv("DATAFEED_TRANSPORT", "grpc", 1);
  EXPECT_EQ(ResolveEndpoint("").value().scheme, Scheme::kGrpc);
  // An explicit transport argument beats the variable.
  EXPECT_EQ(ResolveEndpoint("", "auto").value().scheme, Scheme::kAuto);

  setenv("DATAFEED_TRANSPORT", "carrier-pigeon", 1);
  auto bad = ResolveEndpoint("");
  EXPECT_NE(bad.status().message().find("shm, grpc or auto"), std::string::npos);

  setenv("DATAFEED_TRANSPORT", "grpc", 1);
  auto mismatch = ResolveEndpoint("shm://feed");
  EXPECT_NE(mismatch.status().message().find("needs HOST:PORT"), std::string::npos)
      << mismatch.status().ToString();
  setenv("DATAFEED_TRANSPORT", "shm", 1);
  auto forced = ResolveEndpoint("grpc://h:1");
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ(forced->scheme, Scheme::kAuto);
  EXPECT_TRUE(forced->force_shm);
  EXPECT_EQ(ResolveEndpoint("shm://x").value().scheme, Scheme::kShm);
}

}  // namespace
}  // namespace datafeed
