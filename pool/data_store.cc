#include "pool/data_store.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

namespace thinsim {

namespace {

std::string ErrnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

// Memory pool: one anonymous mapping reserved large enough to grow into, so
// that a block's address never changes and I/O needs no lookup or lock.
// Only the first nr_blocks are readable and writable; Grow() opens more.
class MemoryStore final : public DataStore {
 public:
  MemoryStore(uint32_t block_size, uint8_t* base, uint64_t reserved_bytes, uint64_t nr_blocks)
      : DataStore(block_size), base_(base), reserved_bytes_(reserved_bytes), nr_blocks_(nr_blocks) {}
  ~MemoryStore() override { munmap(base_, reserved_bytes_); }

  Status Read(dblock_t b, uint32_t offset, void* buf, uint32_t len) override {
    std::memcpy(buf, At(b) + offset, len);
    return Status::OK();
  }
  Status Write(dblock_t b, uint32_t offset, const void* buf, uint32_t len) override {
    std::memcpy(At(b) + offset, buf, len);
    return Status::OK();
  }
  Status Zero(dblock_t b, uint32_t offset, uint32_t len) override {
    std::memset(At(b) + offset, 0, len);
    return Status::OK();
  }
  Status Copy(dblock_t from, dblock_t to) override {
    std::memcpy(At(to), At(from), block_size());
    return Status::OK();
  }
  Status Discard(dblock_t first, uint64_t count) override {
    // MADV_DONTNEED on private anonymous memory frees the pages and makes
    // them read as zero. block_size is a multiple of the page size.
    if (madvise(At(first), count * block_size(), MADV_DONTNEED) != 0) {
      return Status::IOError(ErrnoText("madvise"));
    }
    return Status::OK();
  }
  Status Grow(uint64_t nr_blocks) override {
    uint64_t old_bytes = nr_blocks_ * block_size();
    uint64_t new_bytes = nr_blocks * block_size();
    if (new_bytes > reserved_bytes_) {
      return Status::Unsupported("an in-memory pool can grow to at most " +
                                 std::to_string(reserved_bytes_) +
                                 " bytes in one run; restart with a larger size=");
    }
    if (new_bytes > old_bytes &&
        mprotect(base_ + old_bytes, new_bytes - old_bytes, PROT_READ | PROT_WRITE) != 0) {
      return Status::IOError(ErrnoText("mprotect"));
    }
    nr_blocks_ = nr_blocks;
    return Status::OK();
  }
  Status Flush() override { return Status::OK(); }

 private:
  uint8_t* At(dblock_t b) const { return base_ + static_cast<uint64_t>(b) * block_size(); }

  uint8_t* const base_;
  const uint64_t reserved_bytes_;
  std::atomic<uint64_t> nr_blocks_;
};

class FileStore final : public DataStore {
 public:
  FileStore(uint32_t block_size, std::unique_ptr<File> file) : DataStore(block_size), file_(std::move(file)) {}

  Status Read(dblock_t b, uint32_t offset, void* buf, uint32_t len) override {
    size_t got = 0;
    THINSIM_RETURN_IF_ERROR(file_->Read(Pos(b) + offset, len, buf, &got));
    // Past the end of a short file: zeroes.
    std::memset(static_cast<uint8_t*>(buf) + got, 0, len - got);
    return Status::OK();
  }
  Status Write(dblock_t b, uint32_t offset, const void* buf, uint32_t len) override {
    return file_->Write(Pos(b) + offset, buf, len);
  }
  Status Zero(dblock_t b, uint32_t offset, uint32_t len) override {
    if (file_->ZeroRange(Pos(b) + offset, len).ok()) return Status::OK();
    std::vector<uint8_t> zeroes(len, 0);
    return Write(b, offset, zeroes.data(), len);
  }
  Status Copy(dblock_t from, dblock_t to) override {
    std::vector<uint8_t> buf(block_size());
    THINSIM_RETURN_IF_ERROR(Read(from, 0, buf.data(), block_size()));
    return Write(to, 0, buf.data(), block_size());
  }
  Status Discard(dblock_t first, uint64_t count) override {
    if (file_->PunchHole(Pos(first), count * block_size()).ok()) return Status::OK();
    for (uint64_t i = 0; i < count; ++i) THINSIM_RETURN_IF_ERROR(Zero(static_cast<dblock_t>(first + i), 0, block_size()));
    return Status::OK();
  }
  Status Grow(uint64_t nr_blocks) override { return file_->Truncate(nr_blocks * block_size()); }
  Status Flush() override {
#ifdef THINSIM_PLANTED_BUG_MISSING_SYNC
    return Status::OK();  // the planted bug: see THINSIM_PLANTED_BUG in CMakeLists.txt
#else
    return file_->Sync();
#endif
  }

 private:
  uint64_t Pos(dblock_t b) const { return static_cast<uint64_t>(b) * block_size(); }

  const std::unique_ptr<File> file_;
};

class NullStore final : public DataStore {
 public:
  explicit NullStore(uint32_t block_size) : DataStore(block_size) {}
  Status Read(dblock_t, uint32_t, void* buf, uint32_t len) override {
    std::memset(buf, 0, len);
    return Status::OK();
  }
  Status Write(dblock_t, uint32_t, const void*, uint32_t) override { return Status::OK(); }
  Status Zero(dblock_t, uint32_t, uint32_t) override { return Status::OK(); }
  Status Copy(dblock_t, dblock_t) override { return Status::OK(); }
  Status Discard(dblock_t, uint64_t) override { return Status::OK(); }
  Status Grow(uint64_t) override { return Status::OK(); }
  Status Flush() override { return Status::OK(); }
};

#if defined(__SANITIZE_THREAD__)
#define THINSIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define THINSIM_TSAN 1
#endif
#endif

// How much address space a memory pool reserves for growing: room for the
// pool to grow fourfold, at least 1 TiB, but never more than 64 TiB (half of
// the x86-64 user address space). Under ThreadSanitizer, whose application
// ranges hold about 1.5 TiB in all (so a 1 TiB reservation fits or not
// depending on where ASLR put the libraries), at least 16 GiB instead.
uint64_t MemoryReservation(uint64_t bytes) {
  constexpr uint64_t kTiB = 1ull << 40;
#ifdef THINSIM_TSAN
  constexpr uint64_t kLeast = 16ull << 30;
#else
  constexpr uint64_t kLeast = kTiB;
#endif
  uint64_t want = std::max(bytes * 4, kLeast);
  return std::max(bytes, std::min(want, 64 * kTiB));
}

}  // namespace

Status NewMemoryStore(uint32_t block_size, uint64_t nr_blocks, std::unique_ptr<DataStore>* out) {
  uint64_t bytes = nr_blocks * block_size;
  uint64_t reserved = MemoryReservation(bytes);
  // PROT_NONE + MAP_NORESERVE reserves address space only; pages are
  // committed when first touched.
  void* base = mmap(nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) return Status::IOError(ErrnoText("mmap of the in-memory pool"));
  auto store = std::make_unique<MemoryStore>(block_size, static_cast<uint8_t*>(base), reserved, 0);
  THINSIM_RETURN_IF_ERROR(store->Grow(nr_blocks));
  *out = std::move(store);
  return Status::OK();
}

Status OpenFileStore(const std::string& path, uint32_t block_size, uint64_t nr_blocks,
                     std::unique_ptr<DataStore>* out, Env* env) {
  std::unique_ptr<File> file;
  THINSIM_RETURN_IF_ERROR(env->OpenFile(path, OpenMode::kCreate, &file));
  auto store = std::make_unique<FileStore>(block_size, std::move(file));
  THINSIM_RETURN_IF_ERROR(store->Grow(nr_blocks));
  *out = std::move(store);
  return Status::OK();
}

std::unique_ptr<DataStore> NewNullStore(uint32_t block_size) {
  return std::make_unique<NullStore>(block_size);
}

}  // namespace thinsim
