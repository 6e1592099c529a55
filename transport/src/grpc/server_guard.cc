#include "server_guard_internal.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/channelz_service_plugin.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/support/server_interceptor.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "util_internal.h"

namespace datafeed::internal {
namespace {

namespace gx = grpc::experimental;

// One per call: cancels the call with UNAUTHENTICATED once its metadata
// shows it lacks the token. The handler still runs (a sync server cannot
// skip it from here), on a call that is already over: its reads fail and
// its writes go nowhere.
class TokenCheck final : public gx::Interceptor {
 public:
  TokenCheck(gx::ServerRpcInfo* info, const std::string* token) : info_(info), token_(token) {}

  void Intercept(gx::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(gx::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      const auto* metadata = methods->GetRecvInitialMetadata();
      if (metadata == nullptr || !Authorized(*metadata, *token_)) {
        const grpc::Status refused = Unauthenticated();
        grpc_call_cancel_with_status(info_->server_context()->c_call(), GRPC_STATUS_UNAUTHENTICATED,
                                     refused.error_message().c_str(), nullptr);
      }
    }
    methods->Proceed();
  }

 private:
  gx::ServerRpcInfo* info_;
  const std::string* token_;  // the factory's, which outlives the server's calls
};

class TokenCheckFactory final : public gx::ServerInterceptorFactoryInterface {
 public:
  explicit TokenCheckFactory(std::string token) : token_(std::move(token)) {}

  gx::Interceptor* CreateServerInterceptor(gx::ServerRpcInfo* info) override {
    const char* method = info->method();
    if (method != nullptr && std::strncmp(method, kHealthServicePrefix, sizeof(kHealthServicePrefix) - 1) == 0) {
      return nullptr;
    }
    return new TokenCheck(info, &token_);
  }

 private:
  const std::string token_;
};

// ChannelzServicePlugin::name() in gRPC (the class is not public).
constexpr char kChannelzPlugin[] = "channelz_service";

const std::string& ReflectionPluginName() {
  static const std::string name = grpc::reflection::ProtoServerReflectionPlugin().name();
  return name;
}

class Introspection final : public grpc::ServerBuilderOption {
 public:
  explicit Introspection(bool on) : on_(on) {}

  void UpdateArguments(grpc::ChannelArguments* args) override {
    if (on_) args->SetInt(GRPC_ARG_ENABLE_CHANNELZ, 1);
  }

  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const std::string& reflection = ReflectionPluginName();
    if (!on_) {
      plugins->erase(std::remove_if(plugins->begin(), plugins->end(),
                                    [&](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                                      const std::string name = p->name();
                                      return name == reflection || name == kChannelzPlugin;
                                    }),
                     plugins->end());
      return;
    }
    // Normally there from libgrpc++_reflection's static initializer; one of
    // our own where that did not run.
    const bool has_reflection = std::any_of(plugins->begin(), plugins->end(),
                                            [&](const auto& p) { return p->name() == reflection; });
    if (!has_reflection) plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
  }

 private:
  const bool on_;
};

}  // namespace

void RequireTokenOnEveryCall(const std::string& token, grpc::ServerBuilder* builder) {
  if (token.empty()) return;
  std::vector<std::unique_ptr<gx::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::make_unique<TokenCheckFactory>(token));
  builder->experimental().SetInterceptorCreators(std::move(creators));
}

std::unique_ptr<grpc::ServerBuilderOption> IntrospectionOption(bool on) {
  if (on) {
    static std::once_flag channelz;
    std::call_once(channelz, [] { grpc::channelz::experimental::InitChannelzService(); });
  }
  return std::make_unique<Introspection>(on);
}

}  // namespace datafeed::internal
