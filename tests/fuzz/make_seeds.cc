// Writes the generated part of the seed corpus: well-formed inputs for
// every fuzz target (frames, gRPC messages, handshakes, session hellos,
// journals, IDX files, specs, endpoints), so the fuzzers start past the
// first checks instead of rediscovering the formats.
//   make_seeds DIR   writes DIR/<target>/seed-*
// The corpus checked in under tests/fuzz/corpus/ was made with it (but the
// images in corpus/image, small PNG, JPEG and BMP files written with PIL,
// and the reproducers of fixed bugs, named repro-*); scripts/fuzz.sh runs
// it again so the seeds follow format changes.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "datafeed/proto/datafeed.pb.h"
#include "datafeed/transport/frame.h"
#include "delivery/ledger_internal.h"
#include "grpc/util_internal.h"
#include "grpc/wire_internal.h"

namespace {

using Bytes = std::vector<uint8_t>;
std::string g_dir;

void Put(const std::string& target, const std::string& name, const Bytes& b) {
  const std::string dir = g_dir + "/" + target;
  ::mkdir(g_dir.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/seed-" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (!b.empty() && std::fwrite(b.data(), 1, b.size(), f) != b.size())) {
    std::fprintf(stderr, "make_seeds: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}
void PutText(const std::string& target, const std::string& name, const std::string& s) {
  Put(target, name, Bytes(s.begin(), s.end()));
}

Bytes Frame(std::vector<datafeed::TensorSpec> specs) {
  auto layout = datafeed::BatchLayout::Make(std::move(specs));
  if (!layout.ok()) {
    std::fprintf(stderr, "make_seeds: %s\n", layout.status().ToString().c_str());
    std::exit(1);
  }
  Bytes f(layout->frame_bytes());
  datafeed::BatchMeta meta;
  meta.fingerprint = 0x5EED;
  meta.epoch = 1;
  meta.batch_index = 3;
  layout->WriteHeader(f.data(), meta);
  for (size_t i = layout->header_bytes(); i < f.size(); ++i) f[i] = static_cast<uint8_t>(i);
  return f;
}

void Varint(Bytes* out, uint64_t v) {
  uint8_t buf[11];
  const size_t n = datafeed::internal::EncodeVarintField(0, v, buf);
  out->insert(out->end(), buf + 1, buf + n);  // without the tag byte
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds DIR\n");
    return 2;
  }
  g_dir = argv[1];
  using datafeed::DType;
  // ---- frames (also carried by the wire seeds)
  const std::vector<Bytes> frames = {
      Frame({{"image", DType::kFloat32, {2, 1, 2, 2}}, {"label", DType::kInt64, {2}}}),
      Frame({{"image", DType::kUInt8, {1, 3, 2, 2}, "to_tensor,normalize(0.5,0.25)"}, {"label", DType::kInt64, {1}}}),
      Frame({{"x", DType::kUInt8, {0, 4}}}),
  };
  for (size_t i = 0; i < frames.size(); ++i) Put("frame", std::to_string(i), frames[i]);
  // ---- wire: a cut byte, then a StreamBatches response
  for (size_t i = 0; i < frames.size(); ++i) {
    Bytes m = {0x1B, 0x0A};
    Varint(&m, frames[i].size());
    m.insert(m.end(), frames[i].begin(), frames[i].end());
    if (i == 1) {
      m.push_back(0x18);  // its delivery position (protocol 3)
      Varint(&m, 300);
    }
    Put("wire", "frame" + std::to_string(i), m);
  }
  Put("wire", "end", {0x00, 0x10, 0x01});
  Put("wire", "revoked", {0x05, 0x20, 0x01, 0x28, 0x96, 0x01});
  Put("wire", "confirm", {0x01, 0x30, 0x07});
  // ---- handshakes
  {
    namespace pb = ::datafeed::v1;
    pb::HandshakeRequest r;
    r.set_protocol_version(datafeed::internal::kProtocolVersion);
    r.set_can_map_shm(true);
    r.set_preference(pb::TRANSPORT_AUTO);
    r.set_host_digest("fuzz-producer-digest-0123456789abcdef");  // handshake_fuzz.cc's producer
    PutText("handshake", "colocated", r.SerializeAsString());
    r.set_preference(pb::TRANSPORT_SHM);
    r.set_host_digest("another host");
    PutText("handshake", "forced-shm-elsewhere", r.SerializeAsString());
    r.set_preference(pb::TRANSPORT_GRPC);
    r.set_protocol_version(1);
    PutText("handshake", "old-protocol", r.SerializeAsString());
  }
  // ---- session hellos
  {
    namespace pb = ::datafeed::v1;
    pb::SessionHello h;
    h.set_mode(pb::SessionHello::NEW);
    h.set_consumer_id(9);
    PutText("session", "new", h.SerializeAsString());
    h.set_mode(pb::SessionHello::RESUME);
    h.set_consumer_id(7);  // session_fuzz.cc's first consumer
    h.set_received(4);
    h.set_acked(2);
    for (uint64_t i = 2; i < 4; ++i) {
      auto* k = h.add_tail();
      k->set_epoch(0);
      k->set_index(i);
    }
    PutText("session", "resume", h.SerializeAsString());
    h.Clear();
    h.set_mode(pb::SessionHello::RESTORE);
    h.set_consumer_id(7);
    h.set_fingerprint(0x5EED);
    h.set_world_size(2);
    h.set_rank(1);
    auto* p = h.add_restore();
    p->set_fingerprint(0x5EED);
    p->set_num_shards(1);
    p->set_consumer_id(7);
    p->set_position(2);
    PutText("session", "restore", h.SerializeAsString());
  }
  // ---- journals: a 0 byte (sealed), then records (type, a, b, c)
  {
    auto rec = [](Bytes* j, uint8_t type, uint64_t a, uint64_t b, uint64_t c) {
      j->push_back(type);
      for (uint64_t w : {a, b, c}) {
        for (int i = 0; i < 8; ++i) j->push_back(static_cast<uint8_t>(w >> (8 * i)));
      }
    };
    Bytes j = {0x00};
    rec(&j, 2, 1, 77, 0);   // consumer 77 is ref 1
    rec(&j, 10, 1, 0, 0);   // its session opened
    for (uint64_t i = 0; i < 5; ++i) rec(&j, 4, 0, i, 0);  // published 0..4
    for (uint64_t i = 0; i < 3; ++i) rec(&j, 5, 1, 0, i);  // delivered 0..2 to ref 1
    rec(&j, 6, 1, 2, 0);    // acked 2
    rec(&j, 7, 1, 2, 0);    // truncated to 2
    rec(&j, 9, 0xABC, 5, 0);  // a group restore
    rec(&j, 11, 1, 0, 0);   // session closed
    Put("journal", "run", j);
    // The same, as the file holds it (raw: a 1 byte then 32-byte records).
    Bytes raw = {0x01};
    auto seal = [&](uint8_t t, uint64_t a, uint64_t b, uint64_t c) {
      const auto r = datafeed::internal::JournalRecord(t, a, b, c);
      raw.insert(raw.end(), r.begin(), r.end());
    };
    seal(1, 0xF00D, 8, 1);  // journal_fuzz.cc's run: shard 0 of 1
    seal(1, 1, 0, 0);
    seal(2, 1, 77, 0);
    seal(4, 0, 0, 0);
    seal(5, 1, 0, 0);
    raw.resize(raw.size() + 7, 0xEE);  // a torn tail
    Put("journal", "raw", raw);
  }
  // ---- IDX: the labels file's length (2 bytes, little-endian), images, labels
  {
    Bytes images = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2};
    for (int i = 0; i < 8; ++i) images.push_back(static_cast<uint8_t>(i * 30));
    Bytes labels = {0, 0, 8, 1, 0, 0, 0, 2, 3, 7};
    Bytes in = {static_cast<uint8_t>(labels.size()), 0};
    in.insert(in.end(), images.begin(), images.end());
    in.insert(in.end(), labels.begin(), labels.end());
    Put("idx", "mnist2", in);
  }
  // ---- text
  PutText("finish", "0", "to_tensor,normalize(0.1307,0.3081)");
  PutText("finish", "1", "to_tensor,normalize((0.485,0.456,0.406),(0.229,0.224,0.225))");
  PutText("finish", "2", "to_tensor, normalize(0.5, 0.5), normalize(1e-3,2.5)");
  PutText("endpoint", "0", "shm://feed0");
  PutText("endpoint", "1", "grpc://[::1]:5000");
  PutText("endpoint", "2", "auto://h1:5000,h2:5001");
  PutText("endpoint", "3", "inproc://x.y-z");
  PutText("endpoint", "4", "grpc");
  // pipeline: two bytes (height, width; bit 7 of the first: 3 channels), then the spec
  const std::vector<std::string> specs = {
      "random_crop(28,2),to_tensor,normalize(0.1307,0.3081)",
      "random_crop(28,2)|to_tensor,normalize(0.1307,0.3081)",
      "resize(20),center_crop(16),random_horizontal_flip,to_tensor,normalize(0.5,0.5)",
      "random_resized_crop(12),color_jitter(0.4,0.4,0.4,0.1),to_tensor",
      "gaussian_blur(3,1.0),brightness(0.2),contrast(0.2),saturation(0.2),hue(0.1),to_tensor",
  };
  for (size_t i = 0; i < specs.size(); ++i) {
    Bytes b = {static_cast<uint8_t>(0x9F), 24};
    b.insert(b.end(), specs[i].begin(), specs[i].end());
    Put("pipeline", std::to_string(i), b);
  }
  std::printf("seeds written under %s\n", g_dir.c_str());
  return 0;
}
