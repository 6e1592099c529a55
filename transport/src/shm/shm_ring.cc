#include "shm/shm_ring_internal.h"

#include "datafeed/transport/endpoint.h"
#include "datafeed/transport/transport.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <new>
#include <random>
#include <thread>

namespace datafeed::internal {
namespace {

constexpr size_t kPage = 4096;
constexpr char kShmDir[] = "/dev/shm/";

size_t RoundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }

std::string MiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

std::string Octal(unsigned mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

// Sets an OFD lock on one byte; false if another open file description holds it.
bool TryLockByte(int fd, off_t byte) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

bool LockHeldOn(int fd, off_t byte) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume alive
  return fl.l_type != F_UNLCK;
}

// A collector (StaleSegments) holds this byte while it removes a segment,
// besides the producer byte 0: a producer that finds byte 0 held can tell a
// collector, which lets go in microseconds, from a live producer. Past the
// readers' bytes 1..kShmMaxReaders.
constexpr off_t kCollectorByte = 1 + static_cast<off_t>(kShmMaxReaders);

// Whether `path` names the file open as `fd`.
bool NamesFile(const std::string& path, int fd) {
  struct stat mine {}, there {};
  return ::fstat(fd, &mine) == 0 && ::lstat(path.c_str(), &there) == 0 && mine.st_ino == there.st_ino &&
         mine.st_dev == there.st_dev;
}

uint64_t RandomU64() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

size_t ControlBytes() { return RoundUp(sizeof(ShmControl), kPage); }

}  // namespace

uint64_t MonotonicNanos() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string ShmUri(const std::string& name) { return "shm://" + name; }
std::string ShmObjectName(const std::string& name) { return "datafeed." + name; }

ShmSegment::~ShmSegment() {
  if (owner_) Unlink();
  if (base_ != nullptr) ::munmap(base_, mapped_bytes_);
  if (fd_ >= 0) ::close(fd_);  // drops our OFD locks
}

void ShmSegment::Unlink() {
  if (unlinked_) return;
  unlinked_ = true;
  // Only if the name still refers to our segment: never remove a successor's.
  const std::string path = kShmDir + ShmObjectName(name_);
  if (NamesFile(path, fd_)) ::unlink(path.c_str());
}

bool ShmSegment::LockHeld(off_t byte) const { return LockHeldOn(fd_, byte); }
bool ShmSegment::ProducerAlive() const { return LockHeld(0); }
bool ShmSegment::ReaderAlive(int reader_id) const { return LockHeld(1 + reader_id); }

void ShmSegment::Wait(std::atomic<uint32_t>* word, uint32_t seen, std::chrono::nanoseconds timeout) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // Shared (not FUTEX_PRIVATE) futex: waiters and wakers are different processes.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void ShmSegment::Wake(std::atomic<uint32_t>* word, int count) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

Result<std::unique_ptr<ShmSegment>> ShmSegment::Create(const std::string& name, size_t slot_count,
                                                       size_t slot_bytes) {
  const std::string uri = ShmUri(name);
  const std::string object = ShmObjectName(name);
  const std::string path = kShmDir + object;
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext(uri));
  if (slot_count < 1 || slot_count > kShmMaxSlots) {
    return Status::InvalidArgument(uri + ": slot count " + std::to_string(slot_count) +
                                   " is out of range; use 1 to " + std::to_string(kShmMaxSlots));
  }
  if (slot_bytes < kPage) {
    return Status::InvalidArgument(uri + ": slot size " + std::to_string(slot_bytes) +
                                   " bytes is too small; use at least 4096");
  }
  if (slot_bytes > SIZE_MAX - kPage) return Status::InvalidArgument(uri + ": slot size overflows");
  slot_bytes = RoundUp(slot_bytes, kPage);
  const size_t slots_offset = ControlBytes();
  size_t total = 0;
  if (__builtin_mul_overflow(slot_count, slot_bytes, &total) ||
      __builtin_add_overflow(total, slots_offset, &total)) {
    return Status::InvalidArgument(uri + ": slot count x slot size overflows");
  }

  struct statvfs vfs {};
  if (::statvfs(kShmDir, &vfs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < total) {
      return Status::ResourceExhausted(
          uri + " needs " + MiB(total) + " in /dev/shm (" + std::to_string(slot_count) + " slots x " +
          MiB(slot_bytes) + ") but only " + MiB(free_bytes) +
          " is free; free space in /dev/shm (datafeed-gc removes segments of dead producers) or lower the "
          "slot count or slot size");
    }
  }

  // Build the segment under a private temporary name, then rename it into place.
  char suffix[48];
  std::snprintf(suffix, sizeof suffix, ".tmp-%d-%016llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(RandomU64()));
  const std::string tmp_path = path + suffix;
  std::unique_ptr<ShmSegment> seg(new ShmSegment());
  seg->name_ = name;
  seg->fd_ = ::open(tmp_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (seg->fd_ < 0) return Status::FromErrno(errno, uri + ": cannot create " + tmp_path);
  struct TmpGuard {
    std::string path;
    bool armed = true;
    ~TmpGuard() {
      if (armed) ::unlink(path.c_str());
    }
  } guard{tmp_path};
  ::fchmod(seg->fd_, 0600);  // whatever the umask
  if (!TryLockByte(seg->fd_, 0)) return Status::Internal(uri + ": cannot lock a segment nobody else knows");
  if (::ftruncate(seg->fd_, static_cast<off_t>(total)) != 0) {
    return Status::FromErrno(errno, uri + ": cannot size the segment to " + MiB(total));
  }
  // Allocate every page now: ENOSPC here is a clear error instead of a
  // SIGBUS at first touch, and no later write pays a first-touch fault.
  if (int rc = ::posix_fallocate(seg->fd_, 0, static_cast<off_t>(total)); rc != 0) {
    if (rc == ENOSPC) {
      return Status::ResourceExhausted(uri + " needs " + MiB(total) +
                                       " in /dev/shm but it ran out of space while allocating; free space in "
                                       "/dev/shm (datafeed-gc removes segments of dead producers) or lower the "
                                       "slot count or slot size");
    }
    return Status::FromErrno(rc, uri + ": allocating " + MiB(total) + " in /dev/shm");
  }
  // MAP_POPULATE also fills this process's page tables up front.
  void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, seg->fd_, 0);
  if (base == MAP_FAILED) return Status::FromErrno(errno, uri + ": cannot map " + MiB(total));
  seg->base_ = static_cast<uint8_t*>(base);
  seg->mapped_bytes_ = total;

  auto* c = new (seg->base_) ShmControl();  // pages are zero; constructs the atomics
  c->version = kShmVersion;
  c->slot_count = static_cast<uint32_t>(slot_count);
  c->slot_bytes = slot_bytes;
  c->slots_offset = slots_offset;
  c->total_bytes = total;
  c->producer_id = RandomU64();
  c->producer_pid = static_cast<int32_t>(::getpid());
  c->producer_uid = static_cast<uint32_t>(::getuid());
  c->magic.store(kShmMagic, std::memory_order_release);
  seg->control_ = c;
  seg->slot_count_ = slot_count;
  seg->slot_bytes_ = slot_bytes;
  seg->slots_offset_ = slots_offset;
  seg->producer_id_ = c->producer_id;

  // Into place. An existing segment is replaced only by whoever takes its
  // producer lock and then finds the name still refers to it, so two
  // producers on one stale name cannot both win; a name that changed
  // meanwhile (a collector removed the stale segment, another producer put
  // its own there) is looked at again, never replaced blindly.
  const Deadline give_up = Deadline::AfterMillis(2000);
  for (;;) {
    if (::syscall(SYS_renameat2, AT_FDCWD, tmp_path.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) break;
    if (errno != EEXIST) return Status::FromErrno(errno, uri + ": cannot publish the segment as " + path);
    const int old = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (old < 0) {
      if (errno == ENOENT && !give_up.expired()) continue;  // gone meanwhile: the name is free again
      const int err = errno;
      struct stat st {};
      if (err == EACCES && ::lstat(path.c_str(), &st) == 0 && st.st_uid != ::getuid()) {
        return Status::FailedPrecondition(uri + ": " + path + " exists and belongs to uid " +
                                          std::to_string(st.st_uid) + "; use another name");
      }
      return Status::FromErrno(err, uri + ": cannot open the existing " + path + " to see whether it is stale");
    }
    if (!TryLockByte(old, 0)) {
      // Its producer holds it, or a collector removing it does (then the
      // name is free in a moment). A collector holds kCollectorByte from
      // before it takes byte 0 until after it let both go, so: collector
      // byte free and the name still ours to see means a producer.
      const bool collector = LockHeldOn(old, kCollectorByte);
      const bool same = NamesFile(path, old);
      ::close(old);
      if ((collector || !same) && !give_up.expired()) {
        if (collector) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      return Status::AlreadyExists(uri + " is served by a live producer; stop it or use another name");
    }
    if (!NamesFile(path, old)) {  // replaced or removed between our open and our lock
      ::close(old);
      if (give_up.expired()) return Status::Unavailable(uri + ": " + path + " kept changing; try again");
      continue;
    }
    // Its producer is dead: ours replaces it. Then our lock on the stale
    // segment goes: consumers still attached to it see its producer gone and
    // reattach to ours (held for as long as we lived, it kept them waiting
    // on a dead ring). A producer or collector that takes it later finds
    // that the name no longer refers to it (NamesFile) and leaves ours alone.
    const bool renamed = ::rename(tmp_path.c_str(), path.c_str()) == 0;
    const int rename_errno = errno;
    ::close(old);
    if (!renamed) return Status::FromErrno(rename_errno, uri + ": cannot replace the stale segment " + path);
    break;
  }
  guard.armed = false;
  seg->owner_ = true;
  return seg;
}

Result<std::unique_ptr<ShmSegment>> ShmSegment::Open(const std::string& name, Deadline deadline,
                                                     const ShmTrust& trust) {
  const std::string uri = ShmUri(name);
  const std::string object = ShmObjectName(name);
  const std::string path = kShmDir + object;
  // The name may come from a handshake: never a path.
  DATAFEED_RETURN_NOT_OK(ValidateName(name).WithContext(uri));
  std::unique_ptr<ShmSegment> seg;
  Status last;
  for (;;) {
    seg.reset(new ShmSegment());
    seg->name_ = name;
    last = Status::OK();
    // O_NONBLOCK: whatever anyone put under the name (a fifo), open returns.
    seg->fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st {};
    if (seg->fd_ < 0) {
      if (errno != ENOENT) return Status::FromErrno(errno, uri + ": cannot open " + path);
      last = Status::NotFound("no producer at " + uri + " (" + path +
                              " does not exist); start one, e.g. datafeed-producer --endpoint " + uri);
    } else if (::fstat(seg->fd_, &st) != 0) {
      return Status::FromErrno(errno, uri + ": fstat");
    } else if (!S_ISREG(st.st_mode)) {
      return Status::FailedPrecondition(uri + ": " + path + " is not a regular file; not a datafeed segment");
    } else if (!trust.any_uid && st.st_uid != trust.uid) {
      return Status::FailedPrecondition(
          uri + ": " + path + " belongs to uid " + std::to_string(st.st_uid) + ", not to uid " +
          std::to_string(trust.uid) +
          ": a consumer attaches only segments of the user it trusts (anyone could have made this one); "
          "run the producer as that user, or name its uid (ReaderOptions::shm_owner_uid)");
    } else if ((st.st_mode & 077) != 0) {
      return Status::FailedPrecondition(uri + ": " + path + " has mode " + Octal(st.st_mode) +
                                        ", readable or writable by others; datafeed producers make their "
                                        "segments 0600, so this one is not trusted");
    } else if (static_cast<uint64_t>(st.st_size) < ControlBytes()) {
      last = Status::DataLoss(uri + ": " + path + " is " + std::to_string(st.st_size) +
                              " bytes, too small for a datafeed segment");
    } else if (!seg->ProducerAlive()) {
      last = Status::Unavailable(uri + ": the segment's producer is not running (stale segment " + path +
                                 "); start the producer again");
    }
    if (last.ok()) {
      // The control block first: its sizes say how much to map, and are
      // copied and checked before anything trusts them.
      void* head = ::mmap(nullptr, ControlBytes(), PROT_READ, MAP_SHARED, seg->fd_, 0);
      if (head == MAP_FAILED) return Status::FromErrno(errno, uri + ": cannot map the control block");
      const auto* c = static_cast<const ShmControl*>(head);
      const uint64_t magic = c->magic.load(std::memory_order_acquire);
      const uint32_t version = c->version;
      const uint64_t slot_count = c->slot_count, slot_bytes = c->slot_bytes;
      const uint64_t slots_offset = c->slots_offset, total_bytes = c->total_bytes;
      const uint64_t producer_id = c->producer_id;
      ::munmap(head, ControlBytes());
      if (magic != kShmMagic) {
        // "DDFSHM" and two version digits: another datafeed build's segment.
        if ((magic & 0xFFFFFFFFFFFFull) == (kShmMagic & 0xFFFFFFFFFFFFull)) {
          return Status::FailedPrecondition(uri + ": segment version " + std::to_string(version) +
                                            " but this reader speaks " + std::to_string(kShmVersion) +
                                            "; use matching datafeed builds");
        }
        return Status::DataLoss(uri + ": " + path + " is not a datafeed segment (bad magic number)");
      }
      uint64_t end = 0;
      const bool sane = version == kShmVersion && slot_count >= 1 && slot_count <= kShmMaxSlots &&
                        slot_bytes >= kPage && slot_bytes % kPage == 0 && slots_offset >= ControlBytes() &&
                        slots_offset % kPage == 0 && !__builtin_mul_overflow(slot_count, slot_bytes, &end) &&
                        !__builtin_add_overflow(end, slots_offset, &end) && end == total_bytes &&
                        total_bytes <= static_cast<uint64_t>(st.st_size);
      if (!sane) {
        return Status::DataLoss(uri + ": the control block of " + path + " is inconsistent (" +
                                std::to_string(slot_count) + " slots x " + std::to_string(slot_bytes) +
                                " bytes at offset " + std::to_string(slots_offset) + ", " +
                                std::to_string(total_bytes) + " bytes in all, file " +
                                std::to_string(st.st_size) + " bytes); not attaching it");
      }
      void* base = ::mmap(nullptr, total_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, seg->fd_, 0);
      if (base == MAP_FAILED) return Status::FromErrno(errno, uri + ": cannot map " + MiB(total_bytes));
      seg->base_ = static_cast<uint8_t*>(base);
      seg->mapped_bytes_ = total_bytes;
      seg->control_ = reinterpret_cast<ShmControl*>(seg->base_);
      seg->slot_count_ = slot_count;
      seg->slot_bytes_ = slot_bytes;
      seg->slots_offset_ = slots_offset;
      seg->producer_id_ = producer_id;
      break;
    }
    if (deadline.expired()) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  for (int k = 0; k < static_cast<int>(kShmMaxReaders); ++k) {
    if (!TryLockByte(seg->fd_, 1 + k)) continue;
    seg->reader_id_ = k;
    return seg;
  }
  return Status::ResourceExhausted(uri + " already has " + std::to_string(kShmMaxReaders) +
                                   " consumers attached; close some");
}

namespace {

// This user's datafeed.* files in /dev/shm whose producer lock is free.
//
// Removing one races a producer replacing it (ShmSegment::Create): had the
// collector only looked at the lock and then unlinked the name, a producer
// that took the stale segment's lock and renamed its own segment over the
// name in between would lose its live segment to the unlink (and a second
// producer could then take the name). So the collector takes the lock
// itself (kCollectorByte first, then byte 0: no producer can replace the
// segment while it holds byte 0), checks that the name still refers to that
// segment, unlinks it, and lets go.
Result<std::vector<std::string>> StaleSegments(bool remove) {
  std::vector<std::string> out;
  DIR* dir = ::opendir(kShmDir);
  if (dir == nullptr) return Status::FromErrno(errno, std::string("cannot list ") + kShmDir);
  const uid_t me = ::getuid();
  while (struct dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name.rfind("datafeed.", 0) != 0) continue;
    const std::string path = kShmDir + name;
    // Anyone can put a fifo under such a name: opening it without
    // O_NONBLOCK would wait for a writer forever (and with it every
    // datafeed-producer that starts). Regular files of ours only.
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != me) continue;
    const int fd = ::open(path.c_str(), (remove ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    // Its producer holds byte 0 for as long as it lives (a segment still
    // being built too: it is locked before it gets a name anyone looks at).
    bool stale = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == me;
    // A segment being built is locked a moment after its temporary name
    // exists: leave young ones alone.
    if (stale && name.find(".tmp-") != std::string::npos && ::time(nullptr) - st.st_mtime < 60) stale = false;
    if (stale && !remove) stale = !LockHeldOn(fd, 0);
    if (stale && remove) {
      stale = TryLockByte(fd, kCollectorByte) && TryLockByte(fd, 0) && NamesFile(path, fd) &&
              ::unlink(path.c_str()) == 0;
    }
    ::close(fd);  // lets go of both locks
    if (stale) out.push_back(name);
  }
  ::closedir(dir);
  return out;
}

}  // namespace

}  // namespace datafeed::internal

namespace datafeed {
Result<std::vector<std::string>> ListStaleShmSegments() { return internal::StaleSegments(false); }
Result<std::vector<std::string>> RemoveStaleShmSegments() { return internal::StaleSegments(true); }
}  // namespace datafeed
