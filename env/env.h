// Env: the file-system operations a persistent pool performs, behind one
// interface (leveldb's Env), so that tests and fault injection can stand
// between the pool and its files.
//
// The journal (superblock, checkpoint, log) and the data file do all their
// I/O through an Env. Env::Default() is the real file system (PosixEnv);
// FaultEnv (env/fault_env.h) wraps another Env to fail chosen operations or
// to simulate a volatile write cache and power cuts.
//
// Errors are Status values naming the operation and path ("write PATH: No
// space left on device"). PosixEnv reports every system error as IOError;
// a wrapper may choose a finer class (FaultEnv maps ENOSPC to NoSpace).
//
// Thread safety: an Env may be used from any number of threads at once.
// A File's methods may run concurrently with each other (they are
// positioned I/O, like pread and pwrite); the caller keeps concurrent
// writes to one byte range from overlapping if it cares which one wins.
#ifndef THINSIM_ENV_ENV_H_
#define THINSIM_ENV_ENV_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace thinsim {

// An open file for positioned reads and writes. Closed when destroyed.
class File {
 public:
  virtual ~File() = default;

  // Reads up to `n` bytes at `offset` into `buf`; *got is set to how many
  // were read, fewer than `n` only at the end of the file.
  virtual Status Read(uint64_t offset, size_t n, void* buf, size_t* got) = 0;
  // Writes all `n` bytes at `offset`, extending the file if needed.
  virtual Status Write(uint64_t offset, const void* buf, size_t n) = 0;
  // Makes every completed Write, Truncate, PunchHole and ZeroRange durable
  // (fdatasync: the file's size, not its times).
  virtual Status Sync() = 0;
  // Sets the file's size; bytes past it are lost, new bytes read as zero.
  virtual Status Truncate(uint64_t size) = 0;
  virtual Status Size(uint64_t* size) = 0;
  // Makes [offset, offset + len) read as zeroes without changing the size:
  // PunchHole frees the space, ZeroRange may keep it allocated. Unsupported
  // when the file system cannot; the caller then writes zeroes itself.
  virtual Status PunchHole(uint64_t offset, uint64_t len) = 0;
  virtual Status ZeroRange(uint64_t offset, uint64_t len) = 0;

  // The path the file was opened by.
  const std::string& path() const { return path_; }

 protected:
  explicit File(std::string path) : path_(std::move(path)) {}

 private:
  const std::string path_;
};

enum class OpenMode {
  kReadOnly,   // must exist
  kReadWrite,  // must exist
  kCreate,     // read-write, created (empty) if absent
  kTruncate,   // read-write, created if absent, emptied if present
};

class Env {
 public:
  virtual ~Env() = default;

  // The real file system. Never destroyed.
  static Env* Default();

  virtual Status OpenFile(const std::string& path, OpenMode mode, std::unique_ptr<File>* out) = 0;
  virtual bool FileExists(const std::string& path) = 0;
  // NotFound when `path` does not exist.
  virtual Status FileSize(const std::string& path, uint64_t* size) = 0;
  // The names in directory `dir`, without "." and "..", in no order.
  virtual Status ListDir(const std::string& dir, std::vector<std::string>* names) = 0;
  // Replaces `to` atomically if it exists.
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Makes the creations, renames and removals of names in `dir` durable.
  virtual Status SyncDir(const std::string& dir) = 0;
};

// Reads the whole file at `path` into *out.
Status ReadWholeFile(Env* env, const std::string& path, std::string* out);
// Zeroes [offset, offset + len) of `file`: a hole if the file system can
// punch one, else a zeroed range, else zeroes written.
Status ZeroFileRange(File* file, uint64_t offset, uint64_t len);

}  // namespace thinsim

#endif  // THINSIM_ENV_ENV_H_
