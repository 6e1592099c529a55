// Attacks on the shared-memory ring and the handshake (issue 12): what a
// hostile or broken process on the producer's host can do to a segment,
// and what a lying producer or consumer can say in the handshake. Every
// test asserts the outcome a user would check: an error that names the
// segment (and the fix, where there is one), never a crash, a hang or data
// silently accepted.
//
// Tests that need another uid run only as root and skip, saying why,
// otherwise. Tests that collect stale segments or leave many behind run in
// a private, empty /dev/shm (a mount namespace of their own, also root
// only), so they cannot touch the segments of tests running beside them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "datafeed/proto/datafeed.grpc.pb.h"
#include "datafeed/transport/transport.h"
#include "grpc/util_internal.h"
#include "peer_util.h"
#include "shm/shm_ring_internal.h"
#include "shm/shm_transport_internal.h"
#include "test_util.h"

extern char** environ;

namespace datafeed {
namespace {

namespace pb = ::datafeed::v1;
using namespace std::chrono_literals;
using internal::MakeWord;
using internal::ShmControl;
using internal::SlotState;
using testing::CheckBatch;
using testing::FillBatch;
using testing::Peer;
using testing::TestLayout;
using testing::UniqueName;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;

std::string PathOf(const std::string& name) { return "/dev/shm/datafeed." + name; }
size_t ControlBytes() { return (sizeof(ShmControl) + 4095) / 4096 * 4096; }
bool Has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ------------------------------------------------------------ helpers

// A private /dev/shm. The test runs again in a child process with its own
// mount namespace and a fresh tmpfs on /dev/shm; the parent only reports
// how it ended (its gtest output is the child's).
constexpr char kPrivateShmEnv[] = "DATAFEED_TEST_PRIVATE_DEV_SHM";

bool InPrivateDevShm() {
  const char* v = std::getenv(kPrivateShmEnv);
  return v != nullptr && std::string(v) == "1";
}

// Empty when the child ran (its exit status in *status), else why it could not.
std::string RunInPrivateDevShm(int* status) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string filter = std::string("--gtest_filter=") + info->test_suite_name() + "." + info->name();
  std::string exe = "/proc/self/exe";
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.push_back(*e);
  env_strings.push_back(std::string(kPrivateShmEnv) + "=1");
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char* argv[] = {exe.data(), filter.data(), nullptr};
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    // A bound below ctest's timeout, so a hung child ends and says so (the
    // alarm survives exec; SIGALRM ends the process).
    ::alarm(100);
    if (::unshare(CLONE_NEWNS) != 0) _exit(90);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(91);
    if (::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) _exit(92);
    ::execve(argv[0], argv, envp.data());
    _exit(93);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) >= 90 && WEXITSTATUS(st) <= 93) {
    static const char* kWhy[] = {"unshare(CLONE_NEWNS)", "making / private", "mounting a tmpfs on /dev/shm",
                                 "re-running the test binary"};
    return std::string("cannot give the test a private /dev/shm: ") + kWhy[WEXITSTATUS(st) - 90] +
           " failed (needs CAP_SYS_ADMIN)";
  }
  *status = st;
  return "";
}

// Runs the rest of the test body in a private /dev/shm (see above).
#define DATAFEED_IN_PRIVATE_DEV_SHM()                                                                    \
  do {                                                                                                   \
    if (!InPrivateDevShm()) {                                                                            \
      if (::geteuid() != 0) {                                                                            \
        GTEST_SKIP() << "SKIPPED: this test collects or leaves stale segments and must have a private "  \
                        "/dev/shm (a mount namespace), which needs root; run the tests as root";        \
      }                                                                                                  \
      int child_status = 0;                                                                              \
      const std::string why = RunInPrivateDevShm(&child_status);                                        \
      if (!why.empty()) GTEST_SKIP() << "SKIPPED: " << why;                                              \
      EXPECT_TRUE(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 0)                            \
          << "the test failed (or died: status " << child_status << ") in its private /dev/shm; "      \
          << "its output is above";                                                                      \
      return;                                                                                            \
    }                                                                                                    \
  } while (0)

#define DATAFEED_NEEDS_ROOT(why)                                                                          \
  do {                                                                                                   \
    if (::geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root (" << why << "); run the tests as root"; \
  } while (0)

Result<std::unique_ptr<BatchReader>> AttachShm(const std::string& name, int64_t owner_uid = -1,
                                               int64_t connect_ms = 0) {
  ReaderOptions o;
  o.connect_timeout_ms = connect_ms;
  o.shm_owner_uid = owner_uid;
  return OpenReader(ParseEndpoint("shm://" + name).value(), o);
}

std::unique_ptr<BatchWriter> ShmWriter(const std::string& name, size_t slots, size_t slot_bytes = 1 << 20) {
  WriterOptions o;
  o.shm.slot_count = slots;
  o.shm.slot_bytes = slot_bytes;
  auto w = OpenWriter(ParseEndpoint("shm://" + name).value(), o);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(w).value() : nullptr;
}

void Publish(BatchWriter& w, uint64_t id) {
  auto b = w.Loan(TestLayout(8, 512), Deadline::AfterMillis(5000));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  FillBatch(*b, id);
  ASSERT_TRUE(w.Publish(std::move(*b)).ok());
}

// Next() that must return within `bound` (a hang is a failure, not a stuck
// test): the reader is cancelled if it does not.
Result<BatchView> NextWithin(BatchReader& r, std::chrono::milliseconds bound, Deadline deadline) {
  auto fut = std::async(std::launch::async, [&] { return r.Next(deadline); });
  if (fut.wait_for(bound) == std::future_status::timeout) {
    ADD_FAILURE() << "Next() did not return within " << bound.count() << " ms: a hang";
    r.Cancel();
  }
  return fut.get();
}

// Removes a path when the test ends, whatever happened.
struct Unlinker {
  std::string path;
  ~Unlinker() { ::unlink(path.c_str()); }
};

void WriteFile(const std::string& path, size_t bytes, mode_t mode = 0600) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ::fchmod(fd, mode);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(bytes)), 0);
  ::close(fd);
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// The whole segment mapped read-write, as any process of its owner can map
// it: the attacker's view. Sizes are read once, before any scribbling.
class Scribbler {
 public:
  explicit Scribbler(const std::string& name) {
    fd_ = ::open(PathOf(name).c_str(), O_RDWR | O_CLOEXEC);
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0) return;
    size_ = static_cast<size_t>(st.st_size);
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<uint8_t*>(p);
    slots_offset_ = control()->slots_offset;
    slot_bytes_ = control()->slot_bytes;
    slot_count_ = control()->slot_count;
  }
  ~Scribbler() {
    if (base_ != nullptr) ::munmap(base_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return base_ != nullptr; }
  ShmControl* control() { return reinterpret_cast<ShmControl*>(base_); }
  uint8_t* slot(size_t i) { return base_ + slots_offset_ + i * slot_bytes_; }
  size_t slot_count() const { return slot_count_; }
  // The slot whose word is in `state` (the first one), or -1.
  int SlotIn(SlotState state) {
    for (size_t i = 0; i < slot_count_; ++i) {
      if (internal::WordState(control()->slot_word[i].load()) == state) return static_cast<int>(i);
    }
    return -1;
  }

 private:
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t slots_offset_ = 0, slot_bytes_ = 0, slot_count_ = 0;
};

// A segment file the test writes itself: a control block that adds up (two
// slots of 4096 bytes) until the test changes it, byte 0 locked as a live
// producer holds it, and the file removed at the end.
class ForgedSegment {
 public:
  explicit ForgedSegment(const std::string& name) : path_(PathOf(name)) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    EXPECT_GE(fd_, 0) << path_ << ": " << std::strerror(errno);
    ::fchmod(fd_, 0600);
    const size_t total = ControlBytes() + 2 * 4096;
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(total)), 0);
    void* p = ::mmap(nullptr, ControlBytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    EXPECT_NE(p, MAP_FAILED);
    c_ = new (p) ShmControl();
    c_->version = internal::kShmVersion;
    c_->slot_count = 2;
    c_->slot_bytes = 4096;
    c_->slots_offset = ControlBytes();
    c_->total_bytes = total;
    c_->producer_id = 1;
    c_->producer_pid = ::getpid();
    c_->producer_uid = ::getuid();
    c_->magic.store(internal::kShmMagic);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    EXPECT_EQ(::fcntl(fd_, F_OFD_SETLK, &fl), 0) << "cannot take the producer lock";
  }
  ~ForgedSegment() {
    Unmap();
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  ShmControl* control() { return c_; }
  // Sizes the file (the control block is not touched again).
  void Resize(uint64_t bytes) {
    Unmap();
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(bytes)), 0) << std::strerror(errno);
  }

 private:
  void Unmap() {
    if (c_ != nullptr) ::munmap(c_, ControlBytes());
    c_ = nullptr;
  }
  std::string path_;
  int fd_ = -1;
  ShmControl* c_ = nullptr;
};

// A frame of TestLayout(8, 512) holding what FillBatch writes for `id`.
std::string FrameBytes(uint64_t id) {
  auto layout = TestLayout(8, 512);
  std::string frame(layout->frame_bytes(), '\0');
  auto* f = reinterpret_cast<uint8_t*>(frame.data());
  BatchMeta meta;
  meta.first_index = id;
  layout->WriteHeader(f, meta);
  auto* labels = reinterpret_cast<int64_t*>(f + layout->offset(0));
  for (int64_t i = 0; i < 8; ++i) labels[i] = static_cast<int64_t>(id * 1000 + i);
  for (size_t k = 0; k < layout->nbytes(1); ++k) f[layout->offset(1) + k] = testing::PatternByte(id, k);
  return frame;
}

// A producer that lies in its handshake: it says TRANSPORT_SHM and names
// whatever segment the test sets, and streams one batch (kStreamBatch) to a
// consumer that asks for the stream instead.
constexpr uint64_t kStreamBatch = 4242;
class LyingProducer {
 public:
  struct Control final : pb::DataFeed::Service {
    std::string shm_name;
    grpc::Status Handshake(grpc::ServerContext*, const pb::HandshakeRequest*,
                           pb::HandshakeResponse* resp) override {
      resp->set_protocol_version(internal::kProtocolVersion);
      resp->set_transport(pb::TRANSPORT_SHM);
      resp->set_shm_name(shm_name);
      return grpc::Status::OK;
    }
  };
  struct Stream final : pb::BatchStream::Service {
    grpc::Status StreamBatches(grpc::ServerContext* ctx,
                               grpc::ServerReaderWriter<pb::Frame, pb::StreamRequest>* s) override {
      pb::StreamRequest req;
      s->Read(&req);
      ctx->AddInitialMetadata("datafeed-stream-accepted", "1");
      pb::SessionWelcome welcome;
      welcome.set_consumer_id(req.hello().consumer_id());
      ctx->AddInitialMetadata("datafeed-session-bin", welcome.SerializeAsString());
      pb::Frame f;
      f.set_frame(FrameBytes(kStreamBatch));
      s->Write(f);
      return grpc::Status::OK;
    }
  };
  LyingProducer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&control);
    b.RegisterService(&stream);
    server_ = b.BuildAndStart();
  }
  ~LyingProducer() { server_->Shutdown(); }
  std::string uri() const { return "auto://127.0.0.1:" + std::to_string(port_); }
  Control control;
  Stream stream;

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

Result<std::unique_ptr<BatchReader>> AutoReader(const std::string& uri, const char* transport = "") {
  DATAFEED_ASSIGN_OR_RETURN(Endpoint ep, ResolveEndpoint(uri, transport));
  ReaderOptions o;
  o.connect_timeout_ms = 5000;
  return OpenReader(ep, o);
}

// ------------------------------------------------------------ 1. owner and mode

TEST(ShmAttackOwner, AnotherUsersSegmentIsRefusedUnlessItsOwnerIsNamed) {
  DATAFEED_NEEDS_ROOT("a producer running as nobody");
  const std::string name = UniqueName("uid");
  const std::string path = PathOf(name);
  Unlinker cleanup{path};  // a dead producer's segment of another user: nobody collects it for us
  Peer producer({"produce", name, "2", "2", "sleep"}, Peer::AsUser{kNobody, kNogroup});
  ASSERT_EQ(producer.Serving(), "shm://" + name);
  ASSERT_EQ(producer.ReadLine(), "published 2");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  ASSERT_EQ(st.st_uid, kNobody);
  ASSERT_EQ(st.st_mode & 0777, 0600u);

  // Refused by default, naming the segment, its owner and the option.
  auto refused = AttachShm(name);
  ASSERT_EQ(refused.status().code(), StatusCode::kFailedPrecondition) << refused.status().ToString();
  const std::string msg = refused.status().message();
  EXPECT_TRUE(Has(msg, path)) << msg;
  EXPECT_TRUE(Has(msg, "belongs to uid 65534")) << msg;
  EXPECT_TRUE(Has(msg, "shm_owner_uid")) << msg;

  // Trusted once its owner is named: the batches are read.
  auto trusted = AttachShm(name, kNobody);
  ASSERT_TRUE(trusted.ok()) << trusted.status().ToString();
  auto v = (*trusted)->Next(Deadline::AfterMillis(5000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 0u);
  EXPECT_EQ(CheckBatch(*v), "");

  // ... but not if anyone else may read or write it.
  for (mode_t mode : {0660, 0606, 0640, 0604, 0620, 0602, 0666}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto open = AttachShm(name, kNobody);
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(open.status().code(), StatusCode::kFailedPrecondition) << octal << ": " << open.status().ToString();
    EXPECT_TRUE(Has(open.status().message(), path + " has mode " + octal)) << open.status().ToString();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);

  // Naming an owner trusts that owner only, not also this process's uid.
  const std::string mine = UniqueName("uid-mine");
  auto w = ShmWriter(mine, 1);
  ASSERT_NE(w, nullptr);
  auto other = AttachShm(mine, kNobody);
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition) << other.status().ToString();
  EXPECT_TRUE(Has(other.status().message(), "belongs to uid " + std::to_string(::getuid()) + ", not to uid 65534"))
      << other.status().ToString();
}

TEST(ShmAttackOwner, GroupOrWorldAccessibleSegmentOfOurOwnUserIsRefused) {
  const std::string name = UniqueName("mode");
  const std::string path = PathOf(name);
  auto w = ShmWriter(name, 1);
  ASSERT_NE(w, nullptr);
  for (mode_t mode : {0660, 0606, 0640, 0604, 0666, 0644}) {
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    auto r = AttachShm(name);
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition) << octal << ": " << r.status().ToString();
    EXPECT_TRUE(Has(r.status().message(), path + " has mode " + octal)) << r.status().ToString();
    EXPECT_TRUE(Has(r.status().message(), "not trusted")) << r.status().ToString();
  }
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  EXPECT_TRUE(AttachShm(name).ok());
}

TEST(ShmAttackOwner, WhatIsNotASegmentFileIsRefused) {
  // Anyone can put these under a name in /dev/shm (it is world-writable).
  // A symlink would let whoever made it choose which of this user's
  // segments (or files) a consumer of that name reads.
  const std::string target = UniqueName("target");
  auto w = ShmWriter(target, 1);
  ASSERT_NE(w, nullptr);
  struct Case {
    const char* what;
    std::function<int(const std::string&)> make;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"a symlink to a live segment",
       [&](const std::string& p) { return ::symlink(PathOf(target).c_str(), p.c_str()); }, "symbolic links"},
      {"a fifo", [](const std::string& p) { return ::mkfifo(p.c_str(), 0600); }, "is not a regular file"},
      {"a directory", [](const std::string& p) { return ::mkdir(p.c_str(), 0700); }, "cannot open"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string name = UniqueName("odd");
    const std::string path = PathOf(name);
    ASSERT_EQ(c.make(path), 0) << std::strerror(errno);
    auto r = AttachShm(name);
    EXPECT_FALSE(r.ok()) << "attached " << c.what;
    EXPECT_TRUE(Has(r.status().message(), path)) << r.status().ToString();
    EXPECT_TRUE(Has(r.status().message(), c.says)) << r.status().ToString();
    ::unlink(path.c_str());
    ::rmdir(path.c_str());
  }
}

// ------------------------------------------------------------ 2. absurd control blocks

TEST(ShmAttackHeader, AbsurdSizesAreAnErrorNamingTheSegmentNeverACrash) {
  const uint64_t control = ControlBytes();
  const uint64_t page = 4096;
  struct Case {
    const char* what;
    std::function<void(ShmControl*)> edit;
    uint64_t file_bytes;  // 0: as made (control + 2 pages)
    StatusCode code;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"slot size 2^62", [&](ShmControl* c) { c->slot_bytes = uint64_t{1} << 62; }, 0, StatusCode::kDataLoss,
       "inconsistent"},
      {"slot size 2^62 with a total to match",
       [&](ShmControl* c) {
         c->slot_bytes = uint64_t{1} << 62;
         c->total_bytes = control + 2 * (uint64_t{1} << 62);
       },
       0, StatusCode::kDataLoss, "inconsistent"},
      {"slots at offset 2^63", [&](ShmControl* c) { c->slots_offset = uint64_t{1} << 63; }, 0,
       StatusCode::kDataLoss, "inconsistent"},
      {"an offset whose sum wraps to the file's size",
       [&](ShmControl* c) {
         c->slots_offset = ~uint64_t{0} - page + 1;  // 2^64 - 4096
         c->total_bytes = 2 * page - page;           // (2 pages + offset) mod 2^64
       },
       0, StatusCode::kDataLoss, "inconsistent"},
      {"no slots", [&](ShmControl* c) { c->slot_count = 0; c->total_bytes = control; }, 0, StatusCode::kDataLoss,
       "inconsistent"},
      {"2^32-1 slots", [&](ShmControl* c) { c->slot_count = 0xFFFFFFFFu; }, 0, StatusCode::kDataLoss,
       "inconsistent"},
      {"one slot more than the limit, in a file that holds them",
       [&](ShmControl* c) {
         c->slot_count = internal::kShmMaxSlots + 1;
         c->total_bytes = control + (internal::kShmMaxSlots + 1) * page;
       },
       control + (internal::kShmMaxSlots + 1) * page, StatusCode::kDataLoss, "inconsistent"},
      {"slots x size that wraps to zero",
       [&](ShmControl* c) {
         c->slot_count = 1024;
         c->slot_bytes = uint64_t{1} << 54;  // 1024 x 2^54 = 2^64
         c->total_bytes = control;
       },
       0, StatusCode::kDataLoss, "inconsistent"},
      {"a slot size that wraps the total",
       [&](ShmControl* c) {
         c->slot_count = 1;
         c->slot_bytes = ~uint64_t{0} - page + 1;
         c->total_bytes = control - page;
       },
       0, StatusCode::kDataLoss, "inconsistent"},
      {"slot size not a multiple of a page",
       [&](ShmControl* c) {
         c->slot_count = 1;
         c->slot_bytes = page + 1;
         c->total_bytes = control + page + 1;
       },
       0, StatusCode::kDataLoss, "inconsistent"},
      {"slots inside the control block", [&](ShmControl* c) { c->slots_offset = 0; c->total_bytes = 2 * page; },
       0, StatusCode::kDataLoss, "inconsistent"},
      {"slots at an unaligned offset",
       [&](ShmControl* c) {
         c->slots_offset = control + 8;
         c->total_bytes = control + 8 + 2 * page;
       },
       control + 3 * page, StatusCode::kDataLoss, "inconsistent"},
      {"a file shorter than the header says", [](ShmControl*) {}, control + page, StatusCode::kDataLoss,
       "inconsistent"},
      {"a file shorter than a control block", [](ShmControl*) {}, 100, StatusCode::kDataLoss, "too small"},
      {"an empty file", [](ShmControl*) {}, ~uint64_t{0}, StatusCode::kDataLoss, "too small"},
      {"not a datafeed segment", [](ShmControl* c) { c->magic.store(0x1234); }, 0, StatusCode::kDataLoss,
       "bad magic"},
      {"a segment of another datafeed version",
       [](ShmControl* c) {
         c->magic.store((internal::kShmMagic & 0xFFFFFFFFFFFFull) | (uint64_t{'1'} << 56) | (uint64_t{'0'} << 48));
         c->version = 1;
       },
       0, StatusCode::kFailedPrecondition, "use matching datafeed builds"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    const std::string name = UniqueName("hdr");
    ForgedSegment seg(name);
    c.edit(seg.control());
    if (c.file_bytes != 0) seg.Resize(c.file_bytes == ~uint64_t{0} ? 0 : c.file_bytes);
    auto r = AttachShm(name);
    ASSERT_FALSE(r.ok()) << "attached a segment with " << c.what;
    EXPECT_EQ(r.status().code(), c.code) << r.status().ToString();
    EXPECT_TRUE(Has(r.status().message(), "shm://" + name)) << r.status().ToString();
    EXPECT_TRUE(Has(r.status().message(), c.says)) << r.status().ToString();
    if (c.code == StatusCode::kDataLoss) {
      EXPECT_TRUE(Has(r.status().message(), PathOf(name))) << r.status().ToString();
    }
  }
}

// ------------------------------------------------------------ 3. the segment changed after attach

TEST(ShmAttackAfterAttach, ControlBlockRewrittenUnderAnAttachedConsumerChangesNothing) {
  const std::string name = UniqueName("rewrite");
  auto w = ShmWriter(name, 2);
  ASSERT_NE(w, nullptr);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  // Sizes both sides copied when they attached: absurd now.
  ShmControl* c = s.control();
  c->slot_count = 0;
  c->slot_bytes = uint64_t{1} << 62;
  c->slots_offset = uint64_t{1} << 63;
  c->total_bytes = 1;
  c->version = 99;
  for (uint64_t id = 0; id < 6; ++id) {
    Publish(*w, id);
    auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    EXPECT_EQ(CheckBatch(*v), "");
  }
  // A consumer attaching now reads the sizes afresh, and refuses them.
  auto late = AttachShm(name);
  EXPECT_EQ(late.status().code(), StatusCode::kDataLoss) << late.status().ToString();
  EXPECT_TRUE(Has(late.status().message(), PathOf(name))) << late.status().ToString();
  // All of the block before the counters scribbled, magic number included.
  const size_t before_counters =
      static_cast<size_t>(reinterpret_cast<uint8_t*>(&c->publish_seq) - reinterpret_cast<uint8_t*>(c));
  std::memset(static_cast<void*>(c), 0xA5, before_counters);
  Publish(*w, 6);
  auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 6u);
  EXPECT_EQ(CheckBatch(*v), "");
  late = AttachShm(name);
  EXPECT_EQ(late.status().code(), StatusCode::kDataLoss) << late.status().ToString();
  EXPECT_TRUE(Has(late.status().message(), "not a datafeed segment")) << late.status().ToString();
}

TEST(ShmAttackAfterAttach, LoanedSlotScribbledBeforePublishIsRewrittenNotFollowed) {
  // The producer stamps the batch's metadata at Publish. Were it to find
  // the metadata by following offsets in the slot's header (shared memory
  // anyone of this user can write while the batch is being filled), a
  // scribbled header would send its writes anywhere in its address space.
  const std::string name = UniqueName("loaned");
  auto w = ShmWriter(name, 2);
  ASSERT_NE(w, nullptr);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  auto layout = TestLayout(8, 512);
  for (uint8_t garbage : {0xEE, 0x00, 0x7F}) {
    auto b = w->Loan(layout, Deadline::AfterMillis(5000));
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    const int slot = s.SlotIn(SlotState::kLoaned);
    ASSERT_GE(slot, 0);
    std::memset(s.slot(slot), garbage, layout->header_bytes());
    FillBatch(*b, 100 + garbage);
    ASSERT_TRUE(w->Publish(std::move(*b)).ok());
    auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, 100u + garbage);
    EXPECT_EQ(CheckBatch(*v), "");
  }
}

TEST(ShmAttackAfterAttach, FrameHeaderScribbledBeforeTheConsumerReadsIsDataLoss) {
  const std::string name = UniqueName("frame");
  auto w = ShmWriter(name, 4);
  ASSERT_NE(w, nullptr);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  const size_t header = TestLayout(8, 512)->header_bytes();
  struct Scribble {
    const char* what;
    std::function<void(uint8_t*)> apply;
    const char* says;
  };
  const std::vector<Scribble> scribbles = {
      {"size prefix 2^32-1", [](uint8_t* f) { std::memset(f, 0xFF, 4); }, "claims"},
      {"file identifier", [](uint8_t* f) { std::memcpy(f + 8, "EVIL", 4); }, "file identifier"},
      {"root offset out of the header", [](uint8_t* f) { std::memset(f + 4, 0x7F, 4); }, "verification"},
      {"every header byte", [&](uint8_t* f) { std::memset(f, 0xC3, header); }, "claims"},
  };
  uint64_t id = 0;
  for (const Scribble& sc : scribbles) {
    SCOPED_TRACE(sc.what);
    Publish(*w, id);      // read intact
    Publish(*w, id + 1);  // scribbled
    Publish(*w, id + 2);  // read intact
    ShmControl* c = s.control();
    const uint32_t bad_slot = c->queue[(c->publish_seq.load() - 2) % s.slot_count()].load();
    sc.apply(s.slot(bad_slot));
    auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
    auto bad = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
    ASSERT_EQ(bad.status().code(), StatusCode::kDataLoss) << bad.status().ToString();
    EXPECT_TRUE(Has(bad.status().message(), "shm://" + name + ": batch in slot " + std::to_string(bad_slot)))
        << bad.status().ToString();
    EXPECT_TRUE(Has(bad.status().message(), sc.says)) << bad.status().ToString();
    v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id + 2);
    EXPECT_EQ(CheckBatch(*v), "");
    id += 3;
  }
}

TEST(ShmAttackAfterAttach, FrameHeadersScribbledWhileTheConsumerReads) {
  // A writer racing the reader: each batch is either delivered as it was
  // published (the header was copied before the scribble, or after the
  // producer wrote it again) or refused as DataLoss. Never a crash, never a
  // batch with other contents, never a tensor whose name changes under the
  // trainer (names point into the reader's copy of the header, not into
  // the slot).
  const std::string name = UniqueName("race-frame");
  auto w = ShmWriter(name, 4);
  ASSERT_NE(w, nullptr);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  // Where the tensor names lie in every frame of this layout: a flatbuffers
  // string (4-byte aligned length, the characters, a NUL). One aligned
  // 4-byte store over a name's last characters and its NUL makes a header
  // that fails verification, never one that verifies with another name.
  const std::string frame = FrameBytes(0);
  std::vector<size_t> targets = {0, 4, 8};  // size prefix, root table offset, file identifier
  for (const char* tensor : {"label", "payload"}) {
    const size_t at = frame.find(std::string(tensor) + '\0');
    ASSERT_NE(at, std::string::npos);
    ASSERT_EQ(at % 4, 0u);
    targets.push_back(at + 4);
  }
  std::atomic<bool> stop{false};
  std::thread scribbler([&] {
    for (uint32_t k = 0; !stop.load(std::memory_order_relaxed); ++k) {
      uint8_t* f = s.slot(k % s.slot_count());
      const size_t at = targets[(k / 4) % targets.size()];
      __atomic_store_n(reinterpret_cast<uint32_t*>(f + at), 0x7FFFFFF0u, __ATOMIC_RELAXED);
    }
  });
  constexpr uint64_t kBatches = 300;
  std::thread producer([&] {
    for (uint64_t id = 0; id < kBatches; ++id) Publish(*w, id);
  });
  uint64_t good = 0, refused = 0, last = 0;
  for (uint64_t n = 0; n < kBatches; ++n) {
    auto v = NextWithin(**r, 10000ms, Deadline::AfterMillis(8000));
    if (v.ok()) {
      EXPECT_EQ(CheckBatch(*v), "");
      EXPECT_TRUE(good == 0 || v->meta().first_index > last) << v->meta().first_index << " after " << last;
      last = v->meta().first_index;
      ++good;
    } else {
      ASSERT_EQ(v.status().code(), StatusCode::kDataLoss) << v.status().ToString();
      EXPECT_TRUE(Has(v.status().message(), "shm://" + name + ": batch in slot")) << v.status().ToString();
      ++refused;
    }
  }
  stop = true;
  producer.join();
  scribbler.join();
  EXPECT_EQ(good + refused, kBatches);
  std::printf("%llu batches delivered intact, %llu refused as DataLoss\n", static_cast<unsigned long long>(good),
              static_cast<unsigned long long>(refused));
}

TEST(ShmAttackAfterAttach, SlotWordsNobodyCouldHaveWrittenAreTakenBackAndCounted) {
  // One slot: a slot the producer did not take back would stop it for good.
  const std::string name = UniqueName("words");
  auto w = ShmWriter(name, 1);
  ASSERT_NE(w, nullptr);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  struct Case {
    const char* what;
    std::function<uint64_t(uint64_t seq)> word;
  };
  const std::vector<Case> cases = {
      {"a state that does not exist (7)", [](uint64_t seq) { return (uint64_t{7} << 61) | seq; }},
      {"a state that does not exist (6)", [](uint64_t seq) { return (uint64_t{6} << 61) | seq; }},
      {"READY with another sequence", [](uint64_t seq) { return MakeWord(SlotState::kReady, 0, seq + 5); }},
      {"READING by reader 8000 (out of range)", [](uint64_t seq) { return MakeWord(SlotState::kReading, 8000, seq); }},
      {"READING by a reader id nobody holds", [](uint64_t seq) { return MakeWord(SlotState::kReading, 77, seq); }},
      {"HANDED with sequence 2^47", [](uint64_t) { return MakeWord(SlotState::kHanded, 0, uint64_t{1} << 47); }},
      {"RELEASED by reader 300 with another sequence",
       [](uint64_t seq) { return MakeWord(SlotState::kReleased, 300, seq + 1); }},
      {"FREE", [](uint64_t) { return uint64_t{0}; }},
  };
  ::testing::internal::CaptureStderr();
  uint64_t id = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Publish(*w, id);  // its slot READY, unread
    const uint64_t seq = s.control()->publish_seq.load() - 1;
    s.control()->slot_word[0].store(c.word(seq));
    // The consumer cannot claim it; it skips it and waits for the next.
    auto next = std::async(std::launch::async, [&] { return (*r)->Next(Deadline::AfterMillis(8000)); });
    // The producer gets its slot back and goes on.
    auto b = w->Loan(TestLayout(8, 512), Deadline::AfterMillis(5000));
    if (!b.ok()) {
      ADD_FAILURE() << "the producer did not get the slot back: " << b.status().ToString();
      (*r)->Cancel();
      next.wait();
      break;
    }
    FillBatch(*b, id + 1);
    ASSERT_TRUE(w->Publish(std::move(*b)).ok());
    auto v = next.get();
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id + 1);
    EXPECT_EQ(CheckBatch(*v), "");
    id += 2;
  }
  r->reset();  // releases the last slot
  w.reset();
  const std::string err = ::testing::internal::GetCapturedStderr();
  size_t counted = 0;
  for (size_t at = err.find("taken back"); at != std::string::npos; at = err.find("taken back", at + 1)) ++counted;
  EXPECT_EQ(counted, cases.size()) << err;
  EXPECT_TRUE(Has(err, "shm://" + name + ": slot 0 held")) << err;
  EXPECT_TRUE(Has(err, "(" + std::to_string(cases.size()) + " so far)")) << err;
}

TEST(ShmAttackAfterAttach, CountersScribbledAreAnErrorNotAHang) {
  const std::string name = UniqueName("counters");
  auto w = ShmWriter(name, 2);
  ASSERT_NE(w, nullptr);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  ShmControl* c = s.control();
  Publish(*w, 0);
  ASSERT_TRUE(NextWithin(**r, 5000ms, Deadline::AfterMillis(4000)).ok());

  // publish_seq far ahead: the consumer says the ring is corrupt instead of
  // skipping 2^62 sequence numbers one by one...
  c->publish_seq.store(uint64_t{1} << 62);
  auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss) << v.status().ToString();
  EXPECT_TRUE(Has(v.status().message(), "shm://" + name)) << v.status().ToString();
  // ... and the producer, which counts its own sequence, puts it right.
  Publish(*w, 1);
  v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 1u);
  EXPECT_EQ(v->meta().sequence, 1u);

  // claim_seq beyond everything published: an error, not a consumer waiting
  // forever for batches it believes are claimed.
  const uint64_t claim = c->claim_seq.load();
  c->claim_seq.store(uint64_t{1} << 40);
  v = NextWithin(**r, 5000ms, Deadline::AfterMillis(2000));
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss) << v.status().ToString();
  EXPECT_TRUE(Has(v.status().message(), "shm://" + name)) << v.status().ToString();
  c->claim_seq.store(claim);

  // A queue entry naming a slot that does not exist.
  c->queue[claim % s.slot_count()].store(5000);
  c->publish_seq.store(claim + 1);
  v = NextWithin(**r, 5000ms, Deadline::AfterMillis(2000));
  EXPECT_EQ(v.status().code(), StatusCode::kDataLoss) << v.status().ToString();
  EXPECT_TRUE(Has(v.status().message(), "shm://" + name)) << v.status().ToString();
  c->publish_seq.store(claim);

  // `closed` set by someone else: readers take it as the end (they cannot
  // tell), but the producer, which knows it did not close, goes on.
  c->closed.store(1);
  auto b = w->Loan(TestLayout(8, 512), Deadline::AfterMillis(2000));
  EXPECT_TRUE(b.ok()) << b.status().ToString();
}

TEST(ShmAttackAfterAttach, MailboxHeldByAGarbageOwnerDoesNotLockOutNewConsumers) {
  const std::string name = UniqueName("mailbox");
  auto w = ShmWriter(name, 2);
  ASSERT_NE(w, nullptr);
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  internal::ShmMailbox& mb = s.control()->mailbox;
  for (uint32_t owner : {0xFFFFFFFFu, uint32_t{internal::kShmMaxReaders} + 1, 1u + 200}) {
    SCOPED_TRACE(owner);
    // A request nobody alive made: a reader id out of range, or one nobody holds.
    mb.owner.store(owner);
    mb.request_bytes.store(0xFFFFFFFFu);
    mb.state.store(internal::kMailboxRequest);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = AttachShm(name, -1, 2000);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  }
  Publish(*w, 9);
  auto r = AttachShm(name);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 9u);
}

// ------------------------------------------------------------ 4. two producers, one stale name

// Both started at once on NAME; exactly one must serve it.
void RaceOnce(const std::string& name, bool gc, int round) {
  SCOPED_TRACE("round " + std::to_string(round));
  Peer a({"race", name, gc ? "gc" : "nogc"});
  Peer b({"race", name, gc ? "gc" : "nogc"});
  ASSERT_EQ(a.ReadLine(), "ready");
  ASSERT_EQ(b.ReadLine(), "ready");
  a.Signal(SIGUSR1);
  b.Signal(SIGUSR1);
  const std::string la = a.ReadLine(), lb = b.ReadLine();
  const bool a_won = la.rfind("serving ", 0) == 0, b_won = lb.rfind("serving ", 0) == 0;
  ASSERT_NE(a_won, b_won) << "a: " << la << "\nb: " << lb;
  Peer& loser = a_won ? b : a;
  const std::string& refusal = a_won ? lb : la;
  EXPECT_EQ(refusal.rfind("refused AlreadyExists: ", 0), 0u) << refusal;
  EXPECT_TRUE(Has(refusal, "shm://" + name)) << refusal;
  EXPECT_EQ(loser.Wait(), 5);
  // The name is the winner's: a consumer attaches and its producer answers.
  auto r = AttachShm(name);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  // The winner is killed (the Peer's destructor): its segment is the next
  // round's stale one.
}

void RaceRounds(bool gc) {
  const std::string name = UniqueName(gc ? "race-gc" : "race");
  testing::RemoveStaleAtEnd cleanup{name};
  // Round 0's stale name: a file with the name that nobody holds.
  WriteFile(PathOf(name), 4096);
  for (int round = 0; round < 50 && !::testing::Test::HasFailure(); ++round) {
    RaceOnce(name, gc, round);
    // Later rounds: the previous winner, killed with -9.
    ASSERT_TRUE(Exists(PathOf(name)));
  }
}

TEST(ShmAttackStaleName, TwoProducersStartingAtOnceOnAStaleNameOneWins) { RaceRounds(false); }

TEST(ShmAttackStaleName, TwoProducersThatFirstCollectStaleSegmentsOneWins) {
  // As datafeed-producer starts: it removes this user's stale segments, then
  // opens its own. Each collector may find the stale segment the other
  // producer is replacing at that moment.
  DATAFEED_IN_PRIVATE_DEV_SHM();
  RaceRounds(true);
}

// ------------------------------------------------------------ 5. lying handshakes

TEST(ShmAttackHandshake, ProducerNamingAnotherUsersSegmentGetsItsStreamReadNotTheSegment) {
  DATAFEED_NEEDS_ROOT("a segment owned by nobody");
  const std::string name = UniqueName("lie-uid");
  auto w = ShmWriter(name, 2);
  ASSERT_NE(w, nullptr);
  Publish(*w, 7);
  ASSERT_EQ(::chown(PathOf(name).c_str(), kNobody, kNogroup), 0);
  LyingProducer fake;
  fake.control.shm_name = name;

  ::testing::internal::CaptureStderr();
  auto r = AutoReader(fake.uri());
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->transport(), Scheme::kGrpc);
  auto v = NextWithin(**r, 10000ms, Deadline::AfterMillis(8000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, kStreamBatch);
  EXPECT_EQ(CheckBatch(*v), "");
  EXPECT_TRUE(Has(err, PathOf(name))) << err;
  EXPECT_TRUE(Has(err, "belongs to uid 65534")) << err;
  EXPECT_TRUE(Has(err, "gRPC stream")) << err;
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.control()->claim_seq.load(), 0u) << "the consumer claimed a batch of a segment it must not trust";

  auto forced = AutoReader(fake.uri(), "shm");
  ASSERT_EQ(forced.status().code(), StatusCode::kFailedPrecondition) << forced.status().ToString();
  EXPECT_TRUE(Has(forced.status().message(), PathOf(name))) << forced.status().ToString();
  EXPECT_TRUE(Has(forced.status().message(), "shm_owner_uid")) << forced.status().ToString();
  EXPECT_TRUE(Has(forced.status().message(), "shared memory was forced")) << forced.status().ToString();
  ASSERT_EQ(::chown(PathOf(name).c_str(), ::getuid(), ::getgid()), 0);
}

TEST(ShmAttackHandshake, ProducerNamingAWorldWritableSegmentGetsItsStreamReadNotTheSegment) {
  const std::string name = UniqueName("lie-mode");
  auto w = ShmWriter(name, 2);
  ASSERT_NE(w, nullptr);
  Publish(*w, 7);
  ASSERT_EQ(::chmod(PathOf(name).c_str(), 0666), 0);
  LyingProducer fake;
  fake.control.shm_name = name;

  ::testing::internal::CaptureStderr();
  auto r = AutoReader(fake.uri());
  const std::string err = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->transport(), Scheme::kGrpc);
  auto v = NextWithin(**r, 10000ms, Deadline::AfterMillis(8000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, kStreamBatch);
  EXPECT_TRUE(Has(err, PathOf(name) + " has mode 0666")) << err;
  Scribbler s(name);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.control()->claim_seq.load(), 0u);

  auto forced = AutoReader(fake.uri(), "shm");
  ASSERT_EQ(forced.status().code(), StatusCode::kFailedPrecondition) << forced.status().ToString();
  EXPECT_TRUE(Has(forced.status().message(), PathOf(name) + " has mode 0666")) << forced.status().ToString();
  ASSERT_EQ(::chmod(PathOf(name).c_str(), 0600), 0);
}

TEST(ShmAttackHandshake, ProducerNamingAnAbsentSegmentOrAPathGetsItsStreamRead) {
  struct Case {
    std::string shm_name;
    StatusCode forced_code;
    std::string says;
    bool warns;  // an absent segment is another /dev/shm (a container): documented, no warning
  };
  const std::string absent = UniqueName("absent");
  const std::vector<Case> cases = {
      {absent, StatusCode::kNotFound, PathOf(absent), false},
      {"x/../../../etc/passwd", StatusCode::kInvalidArgument, "x/../../../etc/passwd", true},
      {"../shadow", StatusCode::kInvalidArgument, "../shadow", true},
      {"", StatusCode::kInvalidArgument, "name is empty", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.shm_name);
    LyingProducer fake;
    fake.control.shm_name = c.shm_name;
    ::testing::internal::CaptureStderr();
    auto r = AutoReader(fake.uri());
    const std::string err = ::testing::internal::GetCapturedStderr();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)->transport(), Scheme::kGrpc);
    auto v = NextWithin(**r, 10000ms, Deadline::AfterMillis(8000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, kStreamBatch);
    if (c.warns) {
      EXPECT_TRUE(Has(err, c.says)) << err;
    } else {
      EXPECT_EQ(err, "");
    }
    auto forced = AutoReader(fake.uri(), "shm");
    EXPECT_EQ(forced.status().code(), c.forced_code) << forced.status().ToString();
    EXPECT_TRUE(Has(forced.status().message(), c.says)) << forced.status().ToString();
  }
}

TEST(ShmAttackHandshake, ReconnectingConsumerRefusesAPathFromTheHandshake) {
  // After its producer died, a consumer asks the handshake where the ring is
  // now (auto_reader.cc's locator); a name with '/' is refused at once, not
  // opened and not retried until the reconnect deadline.
  const std::string name = UniqueName("relocate");
  testing::RemoveStaleAtEnd cleanup{name};
  Peer producer({"produce", name, "1", "2", "sleep"});
  producer.Serving();
  ASSERT_EQ(producer.ReadLine(), "published 1");
  ReaderOptions o;
  o.reconnect = true;
  o.reconnect_timeout_ms = 20'000;
  const std::string lie = "x/../../../tmp/" + name;
  auto r = internal::OpenShmSessionReader(name, o, [&](Deadline) -> Result<std::string> { return lie; });
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto v = NextWithin(**r, 5000ms, Deadline::AfterMillis(4000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  producer.Kill();
  const auto t0 = std::chrono::steady_clock::now();
  v = NextWithin(**r, 15000ms, Deadline::AfterMillis(14000));
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument) << v.status().ToString();
  EXPECT_TRUE(Has(v.status().message(), lie)) << v.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST(ShmAttackHandshake, ConsumerThatLiesAboutItsHostGetsTheStreamNeverTheRingName) {
  WriterOptions wo;
  wo.shm.slot_count = 2;
  wo.shm.slot_bytes = 1 << 20;
  auto w = OpenWriter(ParseEndpoint("auto://127.0.0.1:0").value(), wo);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const std::string endpoint = (*w)->endpoint();
  auto channel = grpc::CreateChannel(endpoint.substr(std::string("auto://").size()), grpc::InsecureChannelCredentials());
  pb::DataFeed::Stub stub(channel);
  const std::string& digest = internal::LocalHostDigest();
  std::string flipped = digest;
  flipped[0] = static_cast<char>(flipped[0] ^ 1);
  struct Lie {
    const char* what;
    std::string digest;
    bool can_map = true;
  };
  const std::vector<Lie> lies = {
      {"no digest", ""},
      {"one NUL byte", std::string(1, '\0')},
      {"31 bytes", std::string(31, 'a')},
      {"33 bytes", std::string(33, 'a')},
      {"1 MiB of 0xff", std::string(1 << 20, '\xff')},
      {"this host's digest with one bit flipped", flipped},
      {"this host's digest and one byte more", digest + "x"},
      {"this host's digest less its last byte", digest.substr(0, digest.size() - 1)},
      {"this host's digest but cannot map segments", digest, false},
  };
  for (const Lie& lie : lies) {
    SCOPED_TRACE(lie.what);
    for (int preference : {int{pb::TRANSPORT_AUTO}, int{pb::TRANSPORT_SHM}, 99}) {
      SCOPED_TRACE(preference);
      pb::HandshakeRequest req;
      req.set_protocol_version(internal::kProtocolVersion);
      req.set_host_digest(lie.digest);
      req.set_can_map_shm(lie.can_map);
      req.set_preference(static_cast<pb::Transport>(preference));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 10s);
      pb::HandshakeResponse resp;
      grpc::Status st = stub.Handshake(&ctx, req, &resp);
      EXPECT_TRUE(resp.shm_name().empty()) << "the ring's name went to a consumer on another host";
      EXPECT_NE(resp.transport(), pb::TRANSPORT_SHM);
      if (preference == pb::TRANSPORT_AUTO && lie.digest.size() < 1024) {
        EXPECT_TRUE(st.ok()) << st.error_message();
        EXPECT_EQ(resp.transport(), pb::TRANSPORT_GRPC);
      }
    }
  }
  // The honest local digest gets the name; the name alone opens nothing:
  // the segment is private to the producer's user.
  pb::HandshakeRequest req;
  req.set_protocol_version(internal::kProtocolVersion);
  req.set_host_digest(digest);
  req.set_can_map_shm(true);
  grpc::ClientContext ctx;
  pb::HandshakeResponse resp;
  ASSERT_TRUE(stub.Handshake(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.transport(), pb::TRANSPORT_SHM);
  struct stat st {};
  ASSERT_EQ(::stat(PathOf(resp.shm_name()).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, ::getuid());
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // And the producer still serves.
  Publish(**w, 3);
  auto r = AutoReader(endpoint);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto v = NextWithin(**r, 10000ms, Deadline::AfterMillis(8000));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->meta().first_index, 3u);
}

// ------------------------------------------------------------ 6. collecting stale segments

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(ShmAttackGc, CollectsOnlyThisUsersSegmentsOfDeadProducers) {
  DATAFEED_IN_PRIVATE_DEV_SHM();
  auto live = ShmWriter("live", 1, 4096);
  ASSERT_NE(live, nullptr);
  {
    Peer dead({"produce", "dead", "1", "1", "sleep"});
    dead.Serving();
    ASSERT_EQ(dead.ReadLine(), "published 1");
  }  // killed with -9
  // A dead producer's segment a consumer still reads.
  Peer read_producer({"produce", "read", "2", "2", "sleep"});
  read_producer.Serving();
  ASSERT_EQ(read_producer.ReadLine(), "published 2");
  auto reader = AttachShm("read");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  read_producer.Kill();
  // A file with the name that nobody holds (not even a segment).
  WriteFile(PathOf("junk"), 100);
  // Another user's: dead, and live.
  WriteFile(PathOf("theirs-dead"), 4096);
  ASSERT_EQ(::chown(PathOf("theirs-dead").c_str(), kNobody, kNogroup), 0);
  Peer theirs({"produce", "theirs-live", "0", "1", "sleep"}, Peer::AsUser{kNobody, kNogroup});
  ASSERT_EQ(theirs.Serving(), "shm://theirs-live");
  // A segment being built (its temporary name, not yet locked), and one a
  // producer killed while building it left behind long ago.
  WriteFile(PathOf("young.tmp-1-00"), 4096);
  WriteFile(PathOf("old.tmp-1-00"), 4096);
  struct timespec old_times[2] = {{::time(nullptr) - 120, 0}, {::time(nullptr) - 120, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, PathOf("old.tmp-1-00").c_str(), old_times, 0), 0);
  // Not datafeed segments at all: another program's file, a directory and a
  // symlink with the prefix.
  WriteFile("/dev/shm/other-program", 100);
  ASSERT_EQ(::mkdir(PathOf("dir").c_str(), 0700), 0);
  ASSERT_EQ(::symlink("/dev/shm/other-program", PathOf("link").c_str()), 0);

  const std::vector<std::string> stale = {"datafeed.dead", "datafeed.junk", "datafeed.old.tmp-1-00",
                                          "datafeed.read"};
  auto listed = ListStaleShmSegments();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(Sorted(*listed), stale);
  for (const std::string& n : stale) EXPECT_TRUE(Exists("/dev/shm/" + n)) << "listing removed " << n;
  auto removed = RemoveStaleShmSegments();
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(Sorted(*removed), stale);
  for (const std::string& n : stale) EXPECT_FALSE(Exists("/dev/shm/" + n)) << n;
  for (const char* n : {"live", "theirs-dead", "theirs-live", "young.tmp-1-00", "dir", "link"}) {
    EXPECT_TRUE(Exists(PathOf(n))) << "removed " << n;
  }
  EXPECT_TRUE(Exists("/dev/shm/other-program"));
  // The live producer still serves under its name.
  EXPECT_TRUE(AttachShm("live").ok());
  // The consumer of a removed segment reads what was published, then hears
  // that its producer died.
  for (uint64_t id = 0; id < 2; ++id) {
    auto v = NextWithin(**reader, 5000ms, Deadline::AfterMillis(4000));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->meta().first_index, id);
  }
  EXPECT_EQ(NextWithin(**reader, 5000ms, Deadline::AfterMillis(4000)).status().code(), StatusCode::kUnavailable);
}

// Runs a command; its stdout and exit status.
std::pair<std::string, int> RunCommand(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return {"popen failed", -1};
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = ::pclose(p);
  return {out, WIFEXITED(st) ? WEXITSTATUS(st) : -1};
}

TEST(ShmAttackGc, ToolListsThenRemovesOnlyDeadProducersSegmentsOfThisUser) {
  DATAFEED_IN_PRIVATE_DEV_SHM();
  auto live = ShmWriter("live", 1, 4096);
  ASSERT_NE(live, nullptr);
  {
    Peer dead({"produce", "dead", "1", "1", "sleep"});
    dead.Serving();
    ASSERT_EQ(dead.ReadLine(), "published 1");
  }
  WriteFile(PathOf("theirs"), 4096);
  ASSERT_EQ(::chown(PathOf("theirs").c_str(), kNobody, kNogroup), 0);
  // Anyone can make a fifo under such a name; opening it to look would wait
  // for a writer for ever (and so would every datafeed-producer starting).
  ASSERT_EQ(::mkfifo(PathOf("fifo").c_str(), 0666), 0);
  ASSERT_EQ(::chown(PathOf("fifo").c_str(), kNobody, kNogroup), 0);
  const std::string tool = "timeout 20 " + std::string(DATAFEED_GC_TOOL);

  auto [listed, rc] = RunCommand(tool + " --dry-run");
  EXPECT_EQ(rc, 0) << listed;
  EXPECT_EQ(listed, "stale /dev/shm/datafeed.dead\n");
  EXPECT_TRUE(Exists(PathOf("dead")));

  auto [removed, rc2] = RunCommand(tool);
  EXPECT_EQ(rc2, 0) << removed;
  EXPECT_EQ(removed, "removed /dev/shm/datafeed.dead\n");
  EXPECT_FALSE(Exists(PathOf("dead")));
  EXPECT_TRUE(Exists(PathOf("live")));
  EXPECT_TRUE(Exists(PathOf("theirs")));
  EXPECT_TRUE(Exists(PathOf("fifo")));

  auto [again, rc3] = RunCommand(tool);
  EXPECT_EQ(rc3, 0) << again;
  EXPECT_EQ(again, "");
  EXPECT_TRUE(AttachShm("live").ok());
}

TEST(ShmAttackGc, NeverRemovesTheSegmentOfAProducerThatJustReplacedAStaleOne) {
  // A collector decides a name is stale, and a producer replaces that stale
  // segment with its own before the collector unlinks the name: the
  // collector must not remove the new, live segment (consumers would find
  // no producer, and a second producer could take the name). One thread
  // collects without pause, another puts a stale file under the name
  // whenever the name is free, and producers start on it one after another.
  DATAFEED_IN_PRIVATE_DEV_SHM();
  const std::string path = PathOf("contended");
  std::atomic<bool> stop{false};
  // More threads than cores, so that collectors are also preempted between
  // their look at a segment and the unlink, as on a busy machine.
  std::vector<std::thread> collectors;
  for (int i = 0; i < 4; ++i) {
    collectors.emplace_back([&] {
      while (!stop.load()) (void)RemoveStaleShmSegments();
    });
  }
  std::thread stale_maker([&] {
    while (!stop.load()) {
      // O_EXCL: never opens (and never truncates) a producer's segment.
      const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) ::close(fd);
    }
  });
  const auto until = std::chrono::steady_clock::now() + 3s;
  int rounds = 0;
  for (; rounds < 100000 && std::chrono::steady_clock::now() < until; ++rounds) {
    auto seg = internal::ShmSegment::Create("contended", 1, 4096);
    if (!seg.ok()) {
      ADD_FAILURE() << "round " << rounds << ": a producer starting beside a collector was refused: "
                    << seg.status().ToString();
      break;
    }
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    const bool held = fd >= 0 && ::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    if (fd >= 0) ::close(fd);
    if (!held) {
      ADD_FAILURE() << "round " << rounds << ": the collector removed the segment of a live producer";
      break;
    }
  }
  stop = true;
  for (std::thread& t : collectors) t.join();
  stale_maker.join();
  std::printf("%d rounds\n", rounds);
}

}  // namespace
}  // namespace datafeed
