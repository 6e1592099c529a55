// ConsumerState <-> JSON (delivery.h).
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "datafeed/transport/delivery.h"

namespace datafeed {
namespace {

using nlohmann::json;

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64, v);
  return buf;
}

// A 64-bit value written as a hex string (exact in every JSON reader), or a
// plain non-negative integer.
Result<uint64_t> U64(const json& j, const char* field) {
  auto bad = [&] {
    return Status::InvalidArgument(std::string("consumer state: field '") + field +
                                   "' must be a hex string like \"0x1f\" or a non-negative integer");
  };
  if (!j.contains(field)) {
    return Status::InvalidArgument(std::string("consumer state: field '") + field + "' is missing");
  }
  const json& v = j.at(field);
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    if (v.get<int64_t>() < 0) return bad();
    return static_cast<uint64_t>(v.get<int64_t>());
  }
  if (!v.is_string()) return bad();
  const std::string s = v.get<std::string>();
  if (s.size() < 3 || s.size() > 18 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) return bad();
  uint64_t out = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    const char c = s[i];
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return bad();
    out = (out << 4) | static_cast<uint64_t>(d);
  }
  return out;
}

}  // namespace

std::string ConsumerState::ToJson() const {
  json streams_json = json::array();
  for (const StreamPosition& p : streams) {
    json tail = json::array();
    for (const BatchKey& k : p.tail) tail.push_back({k.epoch, k.index});
    streams_json.push_back({{"fingerprint", Hex(p.fingerprint)},
                            {"shard", p.shard},
                            {"num_shards", p.num_shards},
                            {"consumer", Hex(p.consumer_id)},
                            {"position", p.position},
                            {"tail", std::move(tail)}});
  }
  return json{{"version", kVersion}, {"streams", std::move(streams_json)}}.dump();
}

namespace {
Result<ConsumerState> FromJsonValue(const json& j);
}  // namespace

Result<ConsumerState> ConsumerState::FromJson(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  return FromJsonValue(j);
}

Result<std::vector<ConsumerState>> ConsumerState::ListFromJson(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  std::vector<ConsumerState> out;
  if (j.is_array()) {
    if (j.empty()) return Status::InvalidArgument("consumer state: an empty list of states");
    for (const json& e : j) {
      DATAFEED_ASSIGN_OR_RETURN(ConsumerState s, FromJsonValue(e));
      out.push_back(std::move(s));
    }
    return out;
  }
  DATAFEED_ASSIGN_OR_RETURN(ConsumerState s, FromJsonValue(j));
  out.push_back(std::move(s));
  return out;
}

namespace {
Result<ConsumerState> FromJsonValue(const json& j) {
  using datafeed::ConsumerState;
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument("consumer state: not a JSON object (expected what state() / state_dict() returned)");
  }
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int64_t>() != ConsumerState::kVersion) {
    return Status::InvalidArgument("consumer state: version " +
                                   (j.contains("version") ? j["version"].dump() : std::string("(missing)")) +
                                   ", this build reads version " + std::to_string(ConsumerState::kVersion));
  }
  if (!j.contains("streams") || !j["streams"].is_array()) {
    return Status::InvalidArgument("consumer state: 'streams' must be a list");
  }
  ConsumerState state;
  for (const json& s : j["streams"]) {
    if (!s.is_object()) return Status::InvalidArgument("consumer state: every stream must be an object");
    StreamPosition p;
    DATAFEED_ASSIGN_OR_RETURN(p.fingerprint, U64(s, "fingerprint"));
    DATAFEED_ASSIGN_OR_RETURN(p.consumer_id, U64(s, "consumer"));
    DATAFEED_ASSIGN_OR_RETURN(p.position, U64(s, "position"));
    DATAFEED_ASSIGN_OR_RETURN(uint64_t shard, U64(s, "shard"));
    DATAFEED_ASSIGN_OR_RETURN(uint64_t num_shards, U64(s, "num_shards"));
    if (num_shards == 0 || shard >= num_shards || num_shards > UINT32_MAX) {
      return Status::InvalidArgument("consumer state: shard " + std::to_string(shard) + " of " +
                                     std::to_string(num_shards));
    }
    p.shard = static_cast<uint32_t>(shard);
    p.num_shards = static_cast<uint32_t>(num_shards);
    if (p.fingerprint == 0 || p.consumer_id == 0) {
      return Status::InvalidArgument("consumer state: a stream with fingerprint or consumer 0");
    }
    if (s.contains("tail")) {
      const json& tail = s["tail"];
      if (!tail.is_array() || tail.size() > p.position) {
        return Status::InvalidArgument("consumer state: 'tail' must be a list of at most 'position' [epoch, index] pairs");
      }
      for (const json& k : tail) {
        if (!k.is_array() || k.size() != 2 || !k[0].is_number_unsigned() || !k[1].is_number_unsigned()) {
          return Status::InvalidArgument("consumer state: 'tail' entries must be [epoch, index] pairs");
        }
        p.tail.push_back({k[0].get<uint64_t>(), k[1].get<uint64_t>()});
      }
    }
    state.streams.push_back(p);
  }
  return state;
}
}  // namespace

}  // namespace datafeed
