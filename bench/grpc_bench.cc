// datafeed-bench grpc: the gRPC stream over loopback against raw TCP on the
// same path and against a naive gRPC service, all measured in the same run.
//
// Every path runs as two forked processes, a sender and a receiver, that the
// parent only orchestrates: the parent never initializes gRPC, so no child
// inherits gRPC's threads or state (fork and gRPC do not mix), and no child
// inherits a writer it could unlink. The sender listens on 127.0.0.1 port 0
// and passes its address to the receiver through a pipe. Each receiver
// touches every byte it receives (checksum, verified against what the sender
// generated) and counts frames after --warmup; GB/s = bytes counted / the time
// between the last warm-up frame and the last frame, at the receiver.
//
// datafeed: OpenWriter("grpc://127.0.0.1:0") with one slot per frame of the
// reference batch (image float32 [B,1,28,28] + label int64 [B], 25.7 MB for
// B = 8192); the producer computes every payload byte into the loaned slot
// (Generate) and publishes; the transport's StreamBatches handler sends the
// slot without copying it. The consumer opens the writer's endpoint with the
// transport forced to grpc (as DATAFEED_TRANSPORT=grpc would) and checksums
// both tensors of every batch.
//
// raw TCP (the limit): a blocking socket pair; the sender send()s the same
// number of bytes per frame from one pre-filled buffer in whole-frame send()
// calls, the receiver recv()s straight into one pre-faulted buffer and
// checksums each frame. Socket buffers: kernel autotuning (as gRPC gets)
// unless --tcp-buf sets SO_SNDBUF/SO_RCVBUF.
//
// naive gRPC: the generated datafeed::v1::BatchStream::Service (sync API).
// Its producer does the datafeed producer's work (Generate into its own
// buffer), then copies the frame into a pb::Frame's `bytes` field and
// Write()s it (gRPC serializes it: another copy); the generated stub's client
// parses each pb::Frame (a copy out of gRPC's slices) and checksums it.
// Message size limits raised; every other channel argument at its default.
//
// --streams N: the datafeed consumer opens N gRPC streams to the producer
// (ReaderOptions::grpc_streams: N TCP connections, N delivery sessions) and
// raw TCP uses N connections too (one sending and one receiving thread per
// connection, frames dealt round-robin), so the ratio compares like with
// like; the naive service stays one stream. With N > 1 batches arrive in no
// fixed order: the consumer checks each batch's content and that every
// batch came exactly once.
//
// --address IP, --sender-netns, --receiver-netns: the sender listens on IP
// instead of 127.0.0.1, and each side first enters the named network
// namespace (setns(2) on /run/netns/NAME or any nsfs path, before it opens
// a socket), so the same run measures a link between two namespaces
// (tests/multihost/streams_bench.sh). A datafeed producer on an address that
// is not loopback serves plaintext (GrpcOptions::insecure): a benchmark on a
// private veth.
//
// Runs are interleaved (tcp, datafeed, naive) --repeats times so that noise
// from other tenants hits every path; each figure is the median.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "datafeed/tools/cli.h"
#include "datafeed/tools/json_line.h"
#include "datafeed/proto/datafeed.grpc.pb.h"
#include "datafeed/transport/transport.h"

namespace datafeed::bench {
namespace {

namespace pb = ::datafeed::v1;

constexpr int kChildTimeoutMs = 180'000;  // a hung child is killed after this

// The options (see RunGrpc), with their defaults.
struct Config {
  int64_t batch = 8192;
  int64_t warmup = 10;
  int64_t batches = 120;        // counted frames, datafeed and raw TCP
  int64_t naive_batches = 60;   // counted frames, naive gRPC (slower)
  int64_t slots = 4;
  int64_t prefetch = 1;
  int64_t tcp_buf = 0;          // 0: kernel autotuning
  int64_t streams = 1;          // gRPC streams (datafeed) and TCP connections (raw TCP)
  std::string address = "127.0.0.1";  // where senders listen
  std::string sender_netns, receiver_netns;  // network namespaces to enter ("": stay)

  bool Loopback() const { return address.rfind("127.", 0) == 0 || address == "::1"; }
};

// What one side of a run measured, sent to the parent through a pipe.
struct SideResult {
  int64_t frames = 0;  // counted, after warm-up
  int64_t bytes = 0;   // counted
  int64_t ns = 0;      // wall time over which they were counted
  int64_t cpu_ns = 0;  // the process's CPU time (all threads) meanwhile
  int64_t faults = 0;  // the process's page faults meanwhile
  uint64_t bad = 0;    // frames whose checksum did not match
  int64_t sndbuf = 0, rcvbuf = 0;  // raw TCP: socket buffer sizes in effect
  char error[256] = {0};

  double Gbps() const { return ns > 0 ? static_cast<double>(bytes) / static_cast<double>(ns) : 0; }
  // CPU seconds per GB moved (= CPU ns per byte).
  double CpuPerGb() const { return bytes > 0 ? static_cast<double>(cpu_ns) / static_cast<double>(bytes) : 0; }
  double FaultsPerFrame() const {
    return frames > 0 ? static_cast<double>(faults) / static_cast<double>(frames) : 0;
  }
};

SideResult Failed(const std::string& msg) {
  SideResult r;
  std::snprintf(r.error, sizeof r.error, "%s", msg.c_str());
  return r;
}

// Counts bytes after the first `warmup` frames: call Frame() once per frame
// as it is finished.
class Meter {
 public:
  explicit Meter(int64_t warmup) : warmup_(warmup) {}
  void Frame(int64_t bytes) {
    ++seen_;
    if (seen_ == warmup_) {
      t0_ = NowNs();
      cpu0_ = ProcessCpuNs();
      faults0_ = Faults();
    } else if (seen_ > warmup_) {
      r_.frames++;
      r_.bytes += bytes;
      r_.ns = NowNs() - t0_;
      r_.cpu_ns = ProcessCpuNs() - cpu0_;
      r_.faults = Faults() - faults0_;
    }
  }
  SideResult& result() { return r_; }

 private:
  static int64_t Faults() {
    struct rusage u {};
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt + u.ru_majflt;
  }
  int64_t warmup_, seen_ = 0, t0_ = 0, cpu0_ = 0, faults0_ = 0;
  SideResult r_;
};

// A Meter for frames finished by several threads.
class SharedMeter {
 public:
  explicit SharedMeter(int64_t warmup) : meter_(warmup) {}
  void Frame(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    meter_.Frame(bytes);
  }
  void Bad() {
    std::lock_guard<std::mutex> lock(mu_);
    meter_.result().bad++;
  }
  SideResult result() {
    std::lock_guard<std::mutex> lock(mu_);
    return meter_.result();
  }

 private:
  std::mutex mu_;
  Meter meter_;
};

// ---- processes ------------------------------------------------------------

// Moves this (single-threaded, just forked) process into the network
// namespace at `path` (/run/netns/NAME, or a bare NAME there); "" stays.
Status EnterNetns(const std::string& path) {
  if (path.empty()) return Status::OK();
  const std::string full = path.find('/') == std::string::npos ? "/run/netns/" + path : path;
  const int fd = open(full.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "network namespace " + full);
  const int rc = setns(fd, CLONE_NEWNET);
  const int err = errno;
  close(fd);
  if (rc != 0) return Status::FromErrno(err, "setns(" + full + ") (needs root / CAP_SYS_ADMIN)");
  return Status::OK();
}

// Address handoff from the sender (it listens) to the receiver.
void SendAddress(int fd, const std::string& address) {
  char buf[256] = {0};
  std::snprintf(buf, sizeof buf, "%s", address.c_str());
  (void)!write(fd, buf, sizeof buf);
}

// Reads exactly `n` bytes within `timeout_ms`; false on EOF, error or timeout.
bool ReadFull(int fd, void* out, size_t n, int timeout_ms) {
  auto* p = static_cast<uint8_t*>(out);
  const int64_t until = NowNs() + int64_t{timeout_ms} * 1'000'000;
  while (n > 0) {
    struct pollfd pfd = {fd, POLLIN, 0};
    const int left_ms = static_cast<int>(std::max<int64_t>(0, (until - NowNs()) / 1'000'000));
    if (poll(&pfd, 1, left_ms) <= 0) return false;
    const ssize_t k = read(fd, p, n);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

std::string ReceiveAddress(int fd) {
  char buf[256] = {0};
  if (!ReadFull(fd, buf, sizeof buf, 30'000)) return "";
  buf[sizeof buf - 1] = 0;
  return buf;
}

struct Child {
  pid_t pid = -1;
  int result_fd = -1;
};

// Forks a child that runs `body` and sends its SideResult back.
Child Spawn(const std::function<SideResult()>& body, const std::vector<int>& close_in_child) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    for (int fd : close_in_child) close(fd);
    const SideResult r = body();
    (void)!write(fds[1], &r, sizeof r);
    _exit(r.error[0] ? 1 : 0);
  }
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    return {};
  }
  return {pid, fds[0]};
}

struct PairResult {
  SideResult tx, rx;
};

// One run of a path, in two processes. `sender(address_fd, done_fd)` listens
// and writes its address to address_fd; `receiver(address_fd)` reads it from
// there. done_fd reaches end-of-file once the receiver has reported (see
// WaitForReceiver). On any failure both are killed and the error names the
// path.
Result<PairResult> RunPair(const Config& c, const std::string& path,
                           const std::function<SideResult(int, int)>& sender,
                           const std::function<SideResult(int)>& receiver) {
  int addr[2], done[2];
  if (pipe(addr) != 0) return Status::Internal("pipe: " + std::string(std::strerror(errno)));
  if (pipe(done) != 0) {
    close(addr[0]);
    close(addr[1]);
    return Status::Internal("pipe: " + std::string(std::strerror(errno)));
  }
  Child tx = Spawn(
      [&] {
        if (Status st = EnterNetns(c.sender_netns); !st.ok()) return Failed(st.ToString());
        return sender(addr[1], done[0]);
      },
      {addr[0], done[1]});
  Child rx = Spawn(
      [&] {
        if (Status st = EnterNetns(c.receiver_netns); !st.ok()) return Failed(st.ToString());
        return receiver(addr[0]);
      },
      {addr[1], done[0], done[1]});
  close(addr[0]);
  close(addr[1]);
  close(done[0]);
  PairResult out;
  std::string error;
  if (tx.pid < 0 || rx.pid < 0) error = "fork failed";
  // The receiver finishes last (it counts the last frame); then the sender
  // reports once its stream has ended.
  if (error.empty() && !ReadFull(rx.result_fd, &out.rx, sizeof out.rx, kChildTimeoutMs)) {
    error = "the receiver died or hung";
  }
  if (error.empty() && out.rx.error[0]) error = std::string("receiver: ") + out.rx.error;
  close(done[1]);
  // After a receiver failure the sender usually fails too, often saying why.
  const int tx_timeout_ms = error.empty() ? kChildTimeoutMs : 5'000;
  if (tx.pid >= 0 && ReadFull(tx.result_fd, &out.tx, sizeof out.tx, tx_timeout_ms)) {
    if (out.tx.error[0]) error += (error.empty() ? "" : "; ") + std::string("sender: ") + out.tx.error;
  } else if (error.empty()) {
    error = "the sender died or hung";
  }
  for (Child* c : {&rx, &tx}) {
    if (c->pid < 0) continue;
    if (!error.empty()) kill(c->pid, SIGKILL);
    waitpid(c->pid, nullptr, 0);
    close(c->result_fd);
  }
  if (!error.empty()) return Status::Internal(path + ": " + error);
  if (out.rx.bad != 0) {
    return Status::DataLoss(path + ": " + std::to_string(out.rx.bad) + " frames had a wrong checksum");
  }
  return out;
}

// For a sender: blocks until the receiver has reported (or 60 s passed).
void WaitForReceiver(int done_fd) {
  char b;
  (void)ReadFull(done_fd, &b, 1, 60'000);
}

// Page-aligned, pre-faulted buffer.
struct Buffer {
  explicit Buffer(size_t n)
      : size(n), data(static_cast<uint8_t*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096))) {
    if (data) std::memset(data, 0, n);
  }
  ~Buffer() { std::free(data); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  size_t size;
  uint8_t* data;
};

// ---- datafeed -------------------------------------------------------------

std::shared_ptr<const BatchLayout> ReferenceLayout(int64_t batch) {
  auto l = BatchLayout::Make({{"image", DType::kFloat32, {batch, 1, 28, 28}},
                              {"label", DType::kInt64, {batch}}});
  if (!l.ok()) return nullptr;
  return std::make_shared<const BatchLayout>(std::move(l).value());
}

// `contract`: with the delivery contract (a run: leases, acknowledgements,
// a journal under `state_dir`), as datafeed-producer serves.
SideResult DatafeedProducer(const Config& c, int addr_fd, int done_fd, bool contract = false,
                            const std::string& state_dir = {}, DeliveryStats* delivery = nullptr) {
  auto layout = ReferenceLayout(c.batch);
  auto ep = ParseEndpoint("grpc://" + (c.address.find(':') != std::string::npos ? "[" + c.address + "]" : c.address) + ":0");
  if (!ep.ok()) return Failed(ep.status().ToString());
  WriterOptions wo;
  wo.grpc.insecure = !c.Loopback();  // a private link between namespaces
  wo.shm.slot_count = static_cast<size_t>(c.slots);
  wo.shm.slot_bytes = layout->frame_bytes();
  wo.linger_ms = 10'000;
  RunInfo run;
  run.fingerprint = 0x6B9C0A11ull ^ static_cast<uint64_t>(getpid());
  run.batches_per_epoch = static_cast<uint64_t>(c.warmup + c.batches);
  if (contract) {
    wo.run = run;
    wo.state_dir = state_dir + "/grpc-" + std::to_string(getpid());
  }
  auto writer = OpenWriter(*ep, wo);
  if (!writer.ok()) return Failed(writer.status().ToString());
  SendAddress(addr_fd, (*writer)->endpoint());
  const size_t image_bytes = layout->nbytes(0), label_bytes = layout->nbytes(1);
  Meter meter(c.warmup);
  for (int64_t i = 0; i < c.warmup + c.batches; ++i) {
    auto b = (*writer)->Loan(layout, Deadline::AfterMillis(60'000));
    if (!b.ok()) return Failed(b.status().ToString());
    const uint64_t base = static_cast<uint64_t>(i * c.batch);
    Generate(b->data(0), image_bytes, base);
    Generate(b->data(1), label_bytes, ~base);
    b->meta().first_index = base;
    if (contract) {
      b->meta().fingerprint = run.fingerprint;
      b->meta().batch_index = static_cast<uint64_t>(i);
    }
    if (Status st = (*writer)->Publish(std::move(*b)); !st.ok()) return Failed(st.ToString());
    meter.Frame(static_cast<int64_t>(layout->frame_bytes()));
  }
  if (contract) {
    // Every batch acknowledged, as a producer waits before it closes.
    while ((*writer)->WaitForWork(Deadline::AfterMillis(60'000)) == BatchWriter::Work::kWait) {
    }
    if (delivery != nullptr) *delivery = (*writer)->delivery_stats();
  }
  if (Status st = (*writer)->Close(); !st.ok()) return Failed(st.ToString());
  // Keep the writer until the consumer has reported: destroying it while
  // the consumer is still reading can lose the last batch or the stream's
  // end, linger_ms notwithstanding (the consumer sees "Connection reset by
  // peer" or "Broken pipe" in a few runs per hundred).
  WaitForReceiver(done_fd);
  writer->reset();
  return meter.result();
}

SideResult DatafeedConsumer(const Config& c, int addr_fd) {
  const std::string uri = ReceiveAddress(addr_fd);
  if (uri.empty()) return Failed("no endpoint from the producer");
  // As DATAFEED_TRANSPORT=grpc would: the stream, never the colocated ring.
  auto ep = ResolveEndpoint(uri, "grpc");
  if (!ep.ok()) return Failed(ep.status().ToString());
  ReaderOptions ro;
  ro.connect_timeout_ms = 10'000;
  ro.grpc_prefetch = static_cast<int>(c.prefetch);
  ro.grpc_streams = static_cast<int>(c.streams);
  auto reader = OpenReader(*ep, ro);
  if (!reader.ok()) return Failed(reader.status().ToString());
  if ((*reader)->transport() != Scheme::kGrpc) return Failed("the reader did not choose the gRPC stream");
  if (c.streams > 1 && static_cast<int64_t>((*reader)->links().size()) != c.streams) {
    return Failed("the reader opened " + std::to_string((*reader)->links().size()) + " streams, not " +
                  std::to_string(c.streams));
  }
  // With several streams batches arrive in no fixed order: each must come
  // exactly once.
  std::vector<bool> seen(static_cast<size_t>(c.warmup + c.batches), false);
  Meter meter(c.warmup);
  for (int64_t i = 0; i < c.warmup + c.batches; ++i) {
    auto v = (*reader)->Next(Deadline::AfterMillis(60'000));
    if (!v.ok()) {
      return Failed("batch " + std::to_string(i + 1) + " of " + std::to_string(c.warmup + c.batches) +
                    ": " + v.status().ToString());
    }
    const TensorView* img = v->Find("image");
    const TensorView* lab = v->Find("label");
    if (!img || !lab) return Failed("batch without image/label");
    const uint64_t base = v->meta().first_index;
    const uint64_t k = base / static_cast<uint64_t>(c.batch);
    const bool fresh = base % static_cast<uint64_t>(c.batch) == 0 && k < seen.size() && !seen[k];
    if (fresh) seen[k] = true;
    if (!fresh || (c.streams == 1 && base != static_cast<uint64_t>(i * c.batch)) ||
        Checksum(img->data, img->nbytes) != GeneratedSum(img->nbytes, base) ||
        Checksum(lab->data, lab->nbytes) != GeneratedSum(lab->nbytes, ~base)) {
      meter.result().bad++;
    }
    meter.Frame(static_cast<int64_t>(v->frame().size()));
  }
  SideResult r = meter.result();
  auto end = (*reader)->Next(Deadline::AfterMillis(30'000));
  if (!end.status().IsEndOfStream()) {
    return Failed("after the last batch: " + (end.ok() ? std::string("another batch") : end.status().ToString()));
  }
  return r;
}

// ---- raw TCP --------------------------------------------------------------

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

void SetBuffers(int fd, int64_t bytes) {
  if (bytes <= 0) return;
  const int v = static_cast<int>(bytes);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
}

void ReadBuffers(int fd, SideResult* r) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0) r->sndbuf = v;
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0) r->rcvbuf = v;
}

// The socket address of c.address (IPv4 or IPv6) and `port`.
bool SocketAddress(const Config& c, int port, sockaddr_storage* out, socklen_t* len) {
  *out = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET, c.address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *v4;
    return true;
  }
  if (inet_pton(AF_INET6, c.address.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof *v6;
    return true;
  }
  return false;
}

// Frames connection k of n carries: i = k, k + n, k + 2n, ... below total.
int64_t FramesOf(int64_t k, int64_t n, int64_t total) { return total > k ? (total - k + n - 1) / n : 0; }

// Runs body(k) on one thread per connection; the first error, or "".
std::string OnEachConnection(int64_t n, const std::function<std::string(int64_t)>& body) {
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int64_t k = 0; k < n; ++k) threads.emplace_back([&, k] { errors[static_cast<size_t>(k)] = body(k); });
  for (auto& t : threads) t.join();
  for (const std::string& e : errors) {
    if (!e.empty()) return e;
  }
  return "";
}

SideResult TcpSender(const Config& c, size_t frame_bytes, int addr_fd) {
  Buffer src(frame_bytes);
  if (!src.data) return Failed("out of memory");
  Generate(src.data, frame_bytes, 0);
  sockaddr_storage sa{};
  socklen_t len = 0;
  if (!SocketAddress(c, 0, &sa, &len)) return Failed("--address " + c.address + " is not an IP address");
  const int lfd = socket(sa.ss_family, SOCK_STREAM, 0);
  if (lfd < 0) return Failed(Errno("socket"));
  SetBuffers(lfd, c.tcp_buf);  // inherited by the accepted sockets
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(lfd, static_cast<int>(c.streams)) != 0 ||
      getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return Failed(Errno(("listen on " + c.address).c_str()));
  }
  const int port = ntohs(sa.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&sa)->sin_port
                                                 : reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port);
  SendAddress(addr_fd, c.address + ":" + std::to_string(port));
  std::vector<int> fds;
  for (int64_t k = 0; k < c.streams; ++k) {
    struct pollfd pfd = {lfd, POLLIN, 0};
    if (poll(&pfd, 1, 30'000) <= 0) return Failed("no receiver connected");
    const int fd = accept(lfd, nullptr, nullptr);
    if (fd < 0) return Failed(Errno("accept"));
    fds.push_back(fd);
  }
  close(lfd);
  SharedMeter meter(c.warmup);
  const int64_t total = c.warmup + c.batches;
  const std::string error = OnEachConnection(c.streams, [&](int64_t k) -> std::string {
    const int fd = fds[static_cast<size_t>(k)];
    for (int64_t i = 0; i < FramesOf(k, c.streams, total); ++i) {
      for (size_t off = 0; off < frame_bytes;) {
        const ssize_t n = send(fd, src.data + off, frame_bytes - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return Errno("send");
        off += static_cast<size_t>(n);
      }
      meter.Frame(static_cast<int64_t>(frame_bytes));
    }
    return "";
  });
  if (!error.empty()) return Failed(error);
  SideResult r = meter.result();
  ReadBuffers(fds[0], &r);
  for (int fd : fds) shutdown(fd, SHUT_WR);
  for (int fd : fds) {
    char b;
    while (recv(fd, &b, 1, 0) > 0) {
    }  // until the receiver closes
    close(fd);
  }
  return r;
}

SideResult TcpReceiver(const Config& c, size_t frame_bytes, int addr_fd) {
  const uint64_t want = GeneratedSum(frame_bytes, 0);
  const std::string address = ReceiveAddress(addr_fd);
  if (address.empty()) return Failed("no address from the sender");
  sockaddr_storage sa{};
  socklen_t len = 0;
  if (!SocketAddress(c, std::atoi(address.substr(address.rfind(':') + 1).c_str()), &sa, &len)) {
    return Failed("--address " + c.address + " is not an IP address");
  }
  std::vector<int> fds;
  struct Close {
    std::vector<int>& fds;
    ~Close() {
      for (int fd : fds) close(fd);
    }
  } closer{fds};
  for (int64_t k = 0; k < c.streams; ++k) {
    const int fd = socket(sa.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return Failed(Errno("socket"));
    fds.push_back(fd);
    SetBuffers(fd, c.tcp_buf);
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) return Failed(Errno("connect"));
  }
  SharedMeter meter(c.warmup);
  const int64_t total = c.warmup + c.batches;
  const std::string error = OnEachConnection(c.streams, [&](int64_t k) -> std::string {
    Buffer dst(frame_bytes);  // one per connection, pre-faulted
    if (!dst.data) return "out of memory";
    const int fd = fds[static_cast<size_t>(k)];
    for (int64_t i = 0; i < FramesOf(k, c.streams, total); ++i) {
      for (size_t off = 0; off < frame_bytes;) {
        const ssize_t n = recv(fd, dst.data + off, frame_bytes - off, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n == 0 ? "the sender closed early" : Errno("recv");
        off += static_cast<size_t>(n);
      }
      if (Checksum(dst.data, frame_bytes) != want) meter.Bad();
      meter.Frame(static_cast<int64_t>(frame_bytes));
    }
    return "";
  });
  if (!error.empty()) return Failed(error);
  SideResult r = meter.result();
  ReadBuffers(fds[0], &r);
  return r;
}

// ---- naive gRPC -----------------------------------------------------------

// The obvious implementation with generated code: the batch is built in the
// producer's own memory, copied into the message, serialized by gRPC.
class NaiveService final : public pb::BatchStream::Service {
 public:
  NaiveService(const Config& c, size_t frame_bytes) : c_(c), src_(frame_bytes) {}
  bool ok() const { return src_.data != nullptr; }

  grpc::Status StreamBatches(grpc::ServerContext*,
                             grpc::ServerReaderWriter<pb::Frame, pb::StreamRequest>* writer) override {
    pb::StreamRequest req;
    writer->Read(&req);
    Meter meter(c_.warmup);
    pb::Frame msg;  // reused: its buffer is faulted in once
    for (int64_t i = 0; i < c_.warmup + c_.naive_batches; ++i) {
      Generate(src_.data, src_.size, static_cast<uint64_t>(i));
      msg.set_frame(src_.data, src_.size);
      if (!writer->Write(msg)) {
        Finish(Failed("Write failed (the client went away)"));
        return grpc::Status::CANCELLED;
      }
      meter.Frame(static_cast<int64_t>(src_.size));
    }
    Finish(meter.result());
    return grpc::Status::OK;
  }

  // Blocks until the stream has been served (or `timeout_ms` passes).
  SideResult Wait(int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return done_; })) {
      return Failed("no client stream finished in time");
    }
    return result_;
  }

 private:
  void Finish(const SideResult& r) {
    std::lock_guard<std::mutex> lock(mu_);
    result_ = r;
    done_ = true;
    cv_.notify_all();
  }
  const Config c_;
  Buffer src_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  SideResult result_;
};

SideResult NaiveServer(const Config& c, size_t frame_bytes, int addr_fd) {
  NaiveService service(c, frame_bytes);
  if (!service.ok()) return Failed("out of memory");
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string host = c.address.find(':') != std::string::npos ? "[" + c.address + "]" : c.address;
  builder.AddListeningPort(host + ":0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxSendMessageSize(-1);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Failed("cannot listen on " + host);
  SendAddress(addr_fd, host + ":" + std::to_string(port));
  SideResult r = service.Wait(kChildTimeoutMs);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return r;
}

SideResult NaiveClient(const Config& c, size_t frame_bytes, int addr_fd) {
  const std::string address = ReceiveAddress(addr_fd);
  if (address.empty()) return Failed("no address from the server");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);  // the default 4 MiB refuses a batch
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto stub = pb::BatchStream::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kChildTimeoutMs));
  pb::StreamRequest req;
  req.set_protocol_version(2);
  std::unique_ptr<grpc::ClientReaderWriter<pb::StreamRequest, pb::Frame>> reader = stub->StreamBatches(&ctx);
  reader->Write(req);
  reader->WritesDone();
  Meter meter(c.warmup);
  pb::Frame msg;
  for (int64_t i = 0; i < c.warmup + c.naive_batches; ++i) {
    if (!reader->Read(&msg)) {
      const grpc::Status st = reader->Finish();
      return Failed("stream ended after " + std::to_string(i) + " frames: " + st.error_message());
    }
    const std::string& f = msg.frame();
    if (f.size() != frame_bytes ||
        Checksum(reinterpret_cast<const uint8_t*>(f.data()), f.size()) !=
            GeneratedSum(frame_bytes, static_cast<uint64_t>(i))) {
      meter.result().bad++;
    }
    meter.Frame(static_cast<int64_t>(f.size()));
  }
  SideResult r = meter.result();
  if (reader->Read(&msg)) return Failed("more frames than sent");
  if (const grpc::Status st = reader->Finish(); !st.ok()) return Failed("finish: " + st.error_message());
  return r;
}

// ---- report ---------------------------------------------------------------

struct Series {
  std::vector<double> gbps, tx_cpu, rx_cpu, tx_faults, rx_faults;
  void Add(const PairResult& p) {
    gbps.push_back(p.rx.Gbps());
    tx_cpu.push_back(p.tx.CpuPerGb());
    rx_cpu.push_back(p.rx.CpuPerGb());
    tx_faults.push_back(p.tx.FaultsPerFrame());
    rx_faults.push_back(p.rx.FaultsPerFrame());
  }
};

std::string List(const std::vector<double>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + Num(v[i]);
  return out + "]";
}

// Each run's figure with three decimals, for the JSON line.
std::vector<double> Rounded(const std::vector<double>& v) {
  std::vector<double> out;
  for (double x : v) out.push_back(tools::Round(x, 3));
  return out;
}

int RunGrpc(const Config& c, int64_t repeats, bool json) {
  auto layout = ReferenceLayout(c.batch);
  if (!layout) {
    std::fprintf(stderr, "datafeed-bench grpc: --batch %lld makes no valid layout\n",
                 static_cast<long long>(c.batch));
    return 2;
  }
  const size_t frame_bytes = layout->frame_bytes();

  Series tcp, df, naive, df_contract;
  int64_t journal_records = 0, journal_ns = 0, journal_batches = 0;
  int64_t sndbuf = 0, rcvbuf = 0;
  char tmpl[] = "/tmp/datafeed-bench-state-XXXXXX";
  const std::string state_dir = mkdtemp(tmpl) ? tmpl : "/tmp";
  for (int64_t r = 0; r < repeats; ++r) {
    std::vector<std::pair<Series*, Result<PairResult>>> runs;
    runs.emplace_back(&tcp, RunPair(
        c, "raw TCP", [&](int fd, int) { return TcpSender(c, frame_bytes, fd); },
        [&](int fd) { return TcpReceiver(c, frame_bytes, fd); }));
    runs.emplace_back(&df, RunPair(
        c, "datafeed gRPC", [&](int fd, int done) { return DatafeedProducer(c, fd, done); },
        [&](int fd) { return DatafeedConsumer(c, fd); }));
    runs.emplace_back(&naive, RunPair(
        c, "naive gRPC", [&](int fd, int) { return NaiveServer(c, frame_bytes, fd); },
        [&](int fd) { return NaiveClient(c, frame_bytes, fd); }));
    runs.emplace_back(&df_contract, RunPair(
        c, "datafeed gRPC with the delivery contract",
        [&](int fd, int done) {
          DeliveryStats d;
          SideResult r = DatafeedProducer(c, fd, done, true, state_dir, &d);
          // The journal's cost travels in the result's spare fields.
          r.sndbuf = static_cast<int64_t>(d.journal_records);
          r.rcvbuf = static_cast<int64_t>(d.journal_write_s * 1e9);
          return r;
        },
        [&](int fd) { return DatafeedConsumer(c, fd); }));
    for (auto& [series, run] : runs) {
      if (!run.ok()) {
        std::fprintf(stderr, "datafeed-bench grpc: %s\n", run.status().ToString().c_str());
        return 1;
      }
      series->Add(*run);
    }
    sndbuf = runs[0].second->tx.sndbuf;
    rcvbuf = runs[0].second->rx.rcvbuf;
    journal_records += runs[3].second->tx.sndbuf;
    journal_ns += runs[3].second->tx.rcvbuf;
    journal_batches += c.warmup + c.batches;
  }
  std::error_code ec;
  std::filesystem::remove_all(state_dir, ec);
  const double contract_gbps = Median(df_contract.gbps);
  const double contract_ratio = Median(df.gbps) > 0 ? contract_gbps / Median(df.gbps) : 0;
  const double journal_us = journal_batches > 0 ? static_cast<double>(journal_ns) / 1e3 / journal_batches : 0;
  const double journal_per = journal_batches > 0 ? static_cast<double>(journal_records) / journal_batches : 0;

  const double gbps = Median(df.gbps), tcp_gbps = Median(tcp.gbps), naive_gbps = Median(naive.gbps);
  const double ratio = gbps / tcp_gbps, x_naive = gbps / naive_gbps;
  // What the CPUs allow each path: this process's CPUs / (sender + receiver
  // CPU seconds per GB). A path near it is CPU-bound (more streams cannot
  // help); one well below it is held back by something else (one TCP
  // stream's window and wake-ups, a lock, a wait).
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int ncpu = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  auto cpu_limit = [&](const Series& s) {
    const double per_gb = Median(s.tx_cpu) + Median(s.rx_cpu);
    return per_gb > 0 ? ncpu / per_gb : 0;
  };
  const double df_cpu_limit = cpu_limit(df), tcp_cpu_limit = cpu_limit(tcp);
  if (json) {
    tools::JsonObject j;
    j["bench"] = "grpc";
    j["frame_bytes"] = frame_bytes;
    j["batches"] = c.batches;
    j["naive_batches"] = c.naive_batches;
    j["warmup"] = c.warmup;
    j["repeats"] = repeats;
    j["gbps"] = tools::Round(gbps, 3);
    j["tcp_gbps"] = tools::Round(tcp_gbps, 3);
    j["ratio"] = tools::Round(ratio, 3);
    j["naive_gbps"] = tools::Round(naive_gbps, 3);
    j["x_naive"] = tools::Round(x_naive, 2);
    j["gbps_runs"] = Rounded(df.gbps);
    j["tcp_gbps_runs"] = Rounded(tcp.gbps);
    j["naive_gbps_runs"] = Rounded(naive.gbps);
    j["producer_cpu_s_per_gb"] = tools::Round(Median(df.tx_cpu), 3);
    j["consumer_cpu_s_per_gb"] = tools::Round(Median(df.rx_cpu), 3);
    j["tcp_sender_cpu_s_per_gb"] = tools::Round(Median(tcp.tx_cpu), 3);
    j["tcp_receiver_cpu_s_per_gb"] = tools::Round(Median(tcp.rx_cpu), 3);
    j["naive_server_cpu_s_per_gb"] = tools::Round(Median(naive.tx_cpu), 3);
    j["naive_client_cpu_s_per_gb"] = tools::Round(Median(naive.rx_cpu), 3);
    j["producer_faults_per_frame"] = std::llround(Median(df.tx_faults));
    j["consumer_faults_per_frame"] = std::llround(Median(df.rx_faults));
    j["naive_client_faults_per_frame"] = std::llround(Median(naive.rx_faults));
    j["slots"] = c.slots;
    j["prefetch"] = c.prefetch;
    j["tcp_sndbuf"] = sndbuf;
    j["tcp_rcvbuf"] = rcvbuf;
    j["tcp_buf_autotuned"] = c.tcp_buf == 0;
    j["streams"] = c.streams;
    j["cpus"] = ncpu;
    j["cpu_limit_gbps"] = tools::Round(df_cpu_limit, 3);
    j["tcp_cpu_limit_gbps"] = tools::Round(tcp_cpu_limit, 3);
    j["address"] = c.address;
    j["sender_netns"] = c.sender_netns;
    j["receiver_netns"] = c.receiver_netns;
    j["contract_gbps"] = tools::Round(contract_gbps, 3);
    j["contract_ratio"] = tools::Round(contract_ratio, 3);
    j["contract_gbps_runs"] = Rounded(df_contract.gbps);
    j["journal_us_per_batch"] = tools::Round(journal_us, 2);
    j["journal_records_per_batch"] = tools::Round(journal_per, 2);
    std::printf("%s\n", tools::JsonLine(j).c_str());
    return 0;
  }
  const std::string path = c.sender_netns.empty() && c.receiver_netns.empty()
                               ? (c.Loopback() ? "loopback" : c.address)
                               : c.address + " between network namespaces " +
                                     (c.sender_netns.empty() ? "(this one)" : c.sender_netns) + " -> " +
                                     (c.receiver_netns.empty() ? "(this one)" : c.receiver_netns);
  std::printf("gRPC over %s, %.1f MB frames (%lld x 1x28x28 float32 + int64 labels),\n"
              "sender and receiver processes, median of %lld interleaved runs; %lld stream%s (datafeed gRPC\n"
              "streams to one producer, raw TCP connections; naive gRPC: one)\n",
              path.c_str(), static_cast<double>(frame_bytes) / 1e6, static_cast<long long>(c.batch),
              static_cast<long long>(repeats), static_cast<long long>(c.streams), c.streams == 1 ? "" : "s");
  std::printf("  datafeed gRPC  %7.2f GB/s  (%lld frames after %lld warm-up; producer computes every payload\n"
              "                               byte into its slot, consumer checksums every byte)\n",
              gbps, static_cast<long long>(c.batches), static_cast<long long>(c.warmup));
  std::printf("  raw TCP        %7.2f GB/s  (blocking socket pair: send() from a pre-filled buffer, recv()\n"
              "                               into a pre-faulted one + checksum; SO_SNDBUF %lld, SO_RCVBUF %lld%s)\n",
              tcp_gbps, static_cast<long long>(sndbuf), static_cast<long long>(rcvbuf),
              c.tcp_buf == 0 ? ", autotuned" : "");
  std::printf("  ratio          %7.3f       (datafeed / raw TCP)\n", ratio);
  std::printf("  naive gRPC     %7.2f GB/s  (%lld frames; generated service, frame copied into a protobuf\n"
              "                               bytes field, parsed by the generated stub)\n",
              naive_gbps, static_cast<long long>(c.naive_batches));
  std::printf("  x naive        %7.2f\n", x_naive);
  std::printf("  CPU s per GB   datafeed producer %.3f, consumer %.3f; raw TCP sender %.3f, receiver %.3f;\n"
              "                 naive server %.3f, client %.3f (all threads of each process)\n",
              Median(df.tx_cpu), Median(df.rx_cpu), Median(tcp.tx_cpu), Median(tcp.rx_cpu),
              Median(naive.tx_cpu), Median(naive.rx_cpu));
  std::printf("  CPU limit      datafeed %.2f GB/s (%.2f of it reached), raw TCP %.2f GB/s (%.2f): %d CPUs / CPU s\n"
              "                 per GB of sender + receiver; near 1: CPU-bound, more streams cannot help\n",
              df_cpu_limit, df_cpu_limit > 0 ? gbps / df_cpu_limit : 0, tcp_cpu_limit,
              tcp_cpu_limit > 0 ? tcp_gbps / tcp_cpu_limit : 0, ncpu);
  std::printf("  page faults    per frame: datafeed producer %.0f, consumer %.0f; naive client %.0f\n",
              Median(df.tx_faults), Median(df.rx_faults), Median(naive.rx_faults));
  std::printf("  contract       %7.2f GB/s  with leases, acknowledgements and a journal (--state-dir): %.3f of\n"
              "                               datafeed without them; journal %.2f us and %.1f records (32 B) per batch\n",
              contract_gbps, contract_ratio, journal_us, journal_per);
  std::printf("  runs GB/s      datafeed %s, with the contract %s, raw TCP %s, naive %s\n", List(df.gbps).c_str(),
              List(df_contract.gbps).c_str(), List(tcp.gbps).c_str(), List(naive.gbps).c_str());
  return 0;
}

}  // namespace

Subcommand AddGrpc(CLI::App& bench) {
  struct Options {
    Config config;
    int64_t repeats = 3;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "grpc",
      "GB/s of the gRPC stream over loopback (producer and consumer processes, 25.7 MB frames) vs raw TCP "
      "and a naive copying gRPC service in the same run");
  cmd->footer(
      "Examples:\n  datafeed-bench grpc --batches 60 --repeats 1 --json\n  datafeed-bench grpc --streams 4\n"
      "  datafeed-bench grpc --address 10.9.0.1 --sender-netns a --receiver-netns b --streams 4   "
      "(tests/multihost/streams_bench.sh)");
  Config& c = o->config;
  cmd->add_flag("--json", o->json, "print the results as one JSON line");
  cmd->add_option("--batches", c.batches, "counted frames, datafeed and raw TCP")->check(tools::WholeNumber(1));
  cmd->add_option("--naive-batches", c.naive_batches, "counted frames, naive gRPC (slower)")
      ->check(tools::WholeNumber(1));
  cmd->add_option("--warmup", c.warmup, "frames before the count starts")->check(tools::WholeNumber(1));
  cmd->add_option("--batch", c.batch, "samples per frame (1x28x28 float32 + int64 label each)")
      ->check(tools::WholeNumber(1, 1 << 20));
  cmd->add_option("--repeats", o->repeats, "interleaved runs of each side; medians are reported")
      ->check(tools::WholeNumber(1));
  cmd->add_option("--slots", c.slots, "the producer's ring slots")->check(tools::WholeNumber(1, 1024));
  cmd->add_option("--prefetch", c.prefetch, "the consumer's read-ahead")->check(tools::WholeNumber(1, 1024));
  cmd->add_option("--tcp-buf", c.tcp_buf, "raw TCP: SO_SNDBUF/SO_RCVBUF (0: kernel autotuning)")
      ->check(tools::WholeNumber(0, 1 << 30));
  cmd->add_option("--streams", c.streams,
                  "gRPC streams from the consumer to the producer (ReaderOptions::grpc_streams), and raw TCP "
                  "connections, in parallel")
      ->check(tools::WholeNumber(1, 16));
  cmd->add_option("--address", c.address,
                  "the IP address senders listen on (not loopback: the producer serves plaintext, for a private "
                  "link)");
  cmd->add_option("--sender-netns", c.sender_netns,
                  "run every sender in this network namespace (/run/netns/NAME or a path; needs root)");
  cmd->add_option("--receiver-netns", c.receiver_netns, "run every receiver in this network namespace");
  return {cmd, [o] { return RunGrpc(o->config, o->repeats, o->json); }};
}

}  // namespace datafeed::bench
