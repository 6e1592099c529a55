#include "shm/shm_ring_internal.h"

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

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

namespace bip = boost::interprocess;

namespace datafeed::internal {
namespace {

constexpr size_t kPage = 4096;
size_t RoundUp(size_t v, size_t to) { return (v + to - 1) / to * to; }

std::string MiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
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

}  // namespace

std::string ShmUri(const std::string& name) { return "shm://" + name; }
std::string ShmObjectName(const std::string& name) { return "datafeed." + name; }

ShmSegment::~ShmSegment() {
  if (owner_) Unlink();
  // region_ and shm_ unmap and close (dropping our OFD locks) on destruction.
}

void ShmSegment::Unlink() {
  if (unlinked_) return;
  unlinked_ = true;
  bip::shared_memory_object::remove(ShmObjectName(name_).c_str());
}

bool ShmSegment::LockHeld(off_t byte) const {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  if (::fcntl(fd_, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume alive
  return fl.l_type != F_UNLCK;
}

bool ShmSegment::ProducerAlive() const { return LockHeld(0); }
bool ShmSegment::ReaderAlive(int reader_id) const { return LockHeld(1 + reader_id); }

void ShmSegment::Wait(std::atomic<uint32_t>* word, uint32_t seen,
                      std::chrono::nanoseconds timeout) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // Shared (not FUTEX_PRIVATE) futex: waiters and wakers are different processes.
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, seen, &ts, nullptr, 0);
}

void ShmSegment::Wake(std::atomic<uint32_t>* word, int count) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, count, nullptr, nullptr, 0);
}

Result<std::unique_ptr<ShmSegment>> ShmSegment::Create(const std::string& name,
                                                       size_t slot_count, size_t slot_bytes) {
  const std::string uri = ShmUri(name);
  const std::string object = ShmObjectName(name);
  if (slot_count < 1 || slot_count > kShmMaxSlots) {
    return Status::InvalidArgument(uri + ": slot count " + std::to_string(slot_count) +
                                   " is out of range; use 1 to " + std::to_string(kShmMaxSlots));
  }
  if (slot_bytes < kPage) {
    return Status::InvalidArgument(uri + ": slot size " + std::to_string(slot_bytes) +
                                   " bytes is too small; use at least 4096");
  }
  slot_bytes = RoundUp(slot_bytes, kPage);
  const size_t slots_offset = RoundUp(sizeof(ShmControl), kPage);
  if (slot_bytes > (SIZE_MAX - slots_offset) / slot_count) {
    return Status::InvalidArgument(uri + ": slot count x slot size overflows");
  }
  const size_t total = slots_offset + slot_count * slot_bytes;

  std::unique_ptr<ShmSegment> seg(new ShmSegment());
  seg->name_ = name;
  // Two tries: the second after removing a stale segment of a dead producer.
  for (int attempt = 0;; ++attempt) {
    try {
      seg->shm_ = std::make_unique<bip::shared_memory_object>(
          bip::create_only, object.c_str(), bip::read_write, bip::permissions(0600));
      break;
    } catch (const bip::interprocess_exception& e) {
      if (e.get_error_code() != bip::already_exists_error || attempt > 0) {
        return Status::IOError(uri + ": cannot create /dev/shm/" + object + ": " + e.what());
      }
    }
    // It exists: stale (its producer is dead) or in use.
    try {
      bip::shared_memory_object old(bip::open_only, object.c_str(), bip::read_only);
      struct flock fl {};
      fl.l_type = F_WRLCK;
      fl.l_whence = SEEK_SET;
      fl.l_start = 0;
      fl.l_len = 1;
      if (::fcntl(old.get_mapping_handle().handle, F_OFD_GETLK, &fl) == 0 &&
          fl.l_type != F_UNLCK) {
        return Status::AlreadyExists(uri + " is served by a live producer; stop it or use another name");
      }
    } catch (const bip::interprocess_exception&) {
      // Vanished meanwhile, or unreadable: try removing and creating again.
    }
    bip::shared_memory_object::remove(object.c_str());
  }
  seg->owner_ = true;
  seg->fd_ = seg->shm_->get_mapping_handle().handle;
  if (!TryLockByte(seg->fd_, 0)) {
    return Status::AlreadyExists(uri + " was taken by another producer while starting");
  }

  struct statvfs vfs {};
  if (::statvfs("/dev/shm", &vfs) == 0) {
    const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (free_bytes < total) {
      return Status::ResourceExhausted(
          uri + " needs " + MiB(total) + " in /dev/shm (" + std::to_string(slot_count) +
          " slots x " + MiB(slot_bytes) + ") but only " + MiB(free_bytes) +
          " is free; free space in /dev/shm or lower the slot count or slot size");
    }
  }
  try {
    seg->shm_->truncate(static_cast<bip::offset_t>(total));
  } catch (const bip::interprocess_exception& e) {
    return Status::IOError(uri + ": cannot size /dev/shm/" + object + " to " + MiB(total) + ": " +
                           e.what());
  }
  // Allocate every page now: ENOSPC here is a clear error instead of a
  // SIGBUS at first touch, and no later write pays a first-touch fault.
  if (int rc = ::posix_fallocate(seg->fd_, 0, static_cast<off_t>(total)); rc != 0) {
    if (rc == ENOSPC) {
      return Status::ResourceExhausted(uri + " needs " + MiB(total) +
                                       " in /dev/shm but it ran out of space while allocating; "
                                       "free space in /dev/shm or lower the slot count or slot size");
    }
    return Status::FromErrno(rc, uri + ": allocating /dev/shm/" + object);
  }
  try {
    // MAP_POPULATE also fills this process's page tables up front.
    seg->region_ = std::make_unique<bip::mapped_region>(*seg->shm_, bip::read_write, 0, total,
                                                        nullptr, MAP_SHARED | MAP_POPULATE);
  } catch (const bip::interprocess_exception& e) {
    return Status::IOError(uri + ": cannot map " + MiB(total) + ": " + e.what());
  }
  seg->base_ = static_cast<uint8_t*>(seg->region_->get_address());
  seg->mapped_bytes_ = total;

  auto* c = new (seg->base_) ShmControl();  // pages are zero; constructs the atomics
  c->version = kShmVersion;
  c->slot_count = static_cast<uint32_t>(slot_count);
  c->slot_bytes = slot_bytes;
  c->slots_offset = slots_offset;
  c->total_bytes = total;
  c->producer_id = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  c->producer_pid = static_cast<int32_t>(::getpid());
  c->magic.store(kShmMagic, std::memory_order_release);
  seg->control_ = c;
  return seg;
}

Result<std::unique_ptr<ShmSegment>> ShmSegment::Open(const std::string& name, Deadline deadline) {
  const std::string uri = ShmUri(name);
  const std::string object = ShmObjectName(name);
  std::unique_ptr<ShmSegment> seg(new ShmSegment());
  seg->name_ = name;
  Status last;
  for (;;) {
    last = Status::OK();
    try {
      seg->shm_ = std::make_unique<bip::shared_memory_object>(bip::open_only, object.c_str(),
                                                              bip::read_write);
    } catch (const bip::interprocess_exception& e) {
      if (e.get_error_code() == bip::not_found_error) {
        last = Status::NotFound("no producer at " + uri + " (/dev/shm/" + object +
                                " does not exist); start one, e.g. datafeed-producer --endpoint " +
                                uri);
      } else {
        return Status::IOError(uri + ": cannot open /dev/shm/" + object + ": " + e.what());
      }
    }
    if (last.ok()) {
      seg->fd_ = seg->shm_->get_mapping_handle().handle;
      struct stat st {};
      if (::fstat(seg->fd_, &st) != 0) return Status::FromErrno(errno, uri + ": fstat");
      if (static_cast<size_t>(st.st_size) < sizeof(ShmControl)) {
        last = Status::Unavailable(uri + ": the producer is still creating the segment");
      } else if (!seg->ProducerAlive()) {
        last = Status::Unavailable(uri + ": the segment's producer is not running (stale segment "
                                   "/dev/shm/" + object + "); start the producer again");
      } else {
        seg->mapped_bytes_ = static_cast<size_t>(st.st_size);
      }
    }
    if (last.ok()) {
      try {
        seg->region_ = std::make_unique<bip::mapped_region>(
            *seg->shm_, bip::read_write, 0, seg->mapped_bytes_, nullptr, MAP_SHARED | MAP_POPULATE);
      } catch (const bip::interprocess_exception& e) {
        return Status::IOError(uri + ": cannot map the segment: " + e.what());
      }
      seg->base_ = static_cast<uint8_t*>(seg->region_->get_address());
      auto* c = reinterpret_cast<ShmControl*>(seg->base_);
      if (c->magic.load(std::memory_order_acquire) != kShmMagic) {
        last = Status::Unavailable(uri + ": the producer is still initialising the segment");
        seg->region_.reset();
      } else if (c->version != kShmVersion) {
        return Status::FailedPrecondition(uri + ": segment version " + std::to_string(c->version) +
                                          " but this reader speaks " + std::to_string(kShmVersion) +
                                          "; use matching datafeed builds");
      } else if (c->total_bytes > seg->mapped_bytes_ || c->slot_count == 0 ||
                 c->slot_count > kShmMaxSlots ||
                 c->slots_offset + c->slot_count * c->slot_bytes > c->total_bytes) {
        return Status::DataLoss(uri + ": the segment's control block is inconsistent");
      } else {
        seg->control_ = c;
      }
    }
    if (last.ok()) break;
    if (deadline.expired()) return last;
    seg->shm_.reset();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  for (int k = 0; k < static_cast<int>(kShmMaxReaders); ++k) {
    if (!TryLockByte(seg->fd_, 1 + k)) continue;
    seg->reader_id_ = k;
    // A previous holder of id k is dead (its lock was free): free its slots.
    ShmControl* c = seg->control_;
    for (uint32_t i = 0; i < c->slot_count; ++i) {
      uint64_t w = c->slot_word[i].load(std::memory_order_acquire);
      if (WordState(w) == SlotState::kReading && WordOwner(w) == k &&
          c->slot_word[i].compare_exchange_strong(w, MakeWord(SlotState::kFree, 0, 0))) {
        c->space_futex.fetch_add(1);
        Wake(&c->space_futex, INT_MAX);
      }
    }
    return seg;
  }
  return Status::ResourceExhausted(uri + " already has " + std::to_string(kShmMaxReaders) +
                                   " consumers attached; close some");
}

}  // namespace datafeed::internal
