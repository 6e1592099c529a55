// Hello and Welcome <-> their protobuf messages (proto/datafeed.proto), in
// one place for every transport that carries a session.
#ifndef DATAFEED_TRANSPORT_SRC_DELIVERY_WIRE_MESSAGES_INTERNAL_H_
#define DATAFEED_TRANSPORT_SRC_DELIVERY_WIRE_MESSAGES_INTERNAL_H_

#include "datafeed/proto/datafeed.pb.h"
#include "delivery/ledger_internal.h"

namespace datafeed::internal {

// A relay hello (the producer's own gRPC server reading its ring) sets
// *relay instead of filling a Hello.
inline Hello FromProto(const ::datafeed::v1::SessionHello& m, bool* relay) {
  namespace pb = ::datafeed::v1;
  Hello h;
  *relay = m.mode() == pb::SessionHello::RELAY;
  switch (m.mode()) {
    case pb::SessionHello::RESUME: h.mode = Hello::Mode::kResume; break;
    case pb::SessionHello::RESTORE: h.mode = Hello::Mode::kRestore; break;
    default: h.mode = Hello::Mode::kNew; break;
  }
  h.consumer_id = m.consumer_id();
  h.fingerprint = m.fingerprint();
  h.received = m.received();
  h.acked = m.acked();
  h.tail.reserve(static_cast<size_t>(m.tail_size()));
  for (const auto& k : m.tail()) h.tail.push_back({k.epoch(), k.index()});
  for (const auto& p : m.restore()) {
    StreamPosition sp;
    sp.fingerprint = p.fingerprint();
    sp.shard = p.shard();
    sp.num_shards = p.num_shards();
    sp.consumer_id = p.consumer_id();
    sp.position = p.position();
    for (const auto& k : p.tail()) sp.tail.push_back({k.epoch(), k.index()});
    h.restore.push_back(sp);
  }
  h.rank = m.rank();
  h.world_size = m.world_size();
  h.generation = m.generation();
  return h;
}

inline ::datafeed::v1::SessionHello ToProto(const Hello& h) {
  namespace pb = ::datafeed::v1;
  pb::SessionHello m;
  switch (h.mode) {
    case Hello::Mode::kNew: m.set_mode(pb::SessionHello::NEW); break;
    case Hello::Mode::kResume: m.set_mode(pb::SessionHello::RESUME); break;
    case Hello::Mode::kRestore: m.set_mode(pb::SessionHello::RESTORE); break;
  }
  m.set_consumer_id(h.consumer_id);
  m.set_fingerprint(h.fingerprint);
  m.set_received(h.received);
  m.set_acked(h.acked);
  for (const BatchKey& k : h.tail) {
    auto* t = m.add_tail();
    t->set_epoch(k.epoch);
    t->set_index(k.index);
  }
  for (const StreamPosition& p : h.restore) {
    auto* r = m.add_restore();
    r->set_fingerprint(p.fingerprint);
    r->set_shard(p.shard);
    r->set_num_shards(p.num_shards);
    r->set_consumer_id(p.consumer_id);
    r->set_position(p.position);
    for (const BatchKey& k : p.tail) {
      auto* t = r->add_tail();
      t->set_epoch(k.epoch);
      t->set_index(k.index);
    }
  }
  m.set_rank(h.rank);
  m.set_world_size(h.world_size);
  m.set_generation(h.generation);
  return m;
}

}  // namespace datafeed::internal

#endif  // DATAFEED_TRANSPORT_SRC_DELIVERY_WIRE_MESSAGES_INTERNAL_H_
