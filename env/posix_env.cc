// PosixEnv: Env on the real file system, by file descriptors and positioned
// system calls. Every call retries on EINTR.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "env/env.h"

namespace thinsim {

namespace {

Status Errno(const std::string& what, const std::string& path) {
  return Status::IOError(what + " " + path + ": " + std::strerror(errno));
}

class PosixFile final : public File {
 public:
  PosixFile(std::string path, int fd) : File(std::move(path)), fd_(fd) {}
  ~PosixFile() override { close(fd_); }

  Status Read(uint64_t offset, size_t n, void* buf, size_t* got) override {
    auto* p = static_cast<char*>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Errno("read", path());
      if (r == 0) break;  // end of file
      done += static_cast<size_t>(r);
    }
    *got = done;
    return Status::OK();
  }

  Status Write(uint64_t offset, const void* buf, size_t n) override {
    const auto* p = static_cast<const char*>(buf);
    size_t done = 0;
    while (done < n) {
      ssize_t r = pwrite(fd_, p + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Errno("write", path());
      done += static_cast<size_t>(r);
    }
    return Status::OK();
  }

  Status Sync() override { return fdatasync(fd_) == 0 ? Status::OK() : Errno("sync", path()); }

  Status Truncate(uint64_t size) override {
    return ftruncate(fd_, static_cast<off_t>(size)) == 0 ? Status::OK() : Errno("truncate", path());
  }

  Status Size(uint64_t* size) override {
    struct stat st;
    if (fstat(fd_, &st) != 0) return Errno("stat", path());
    *size = static_cast<uint64_t>(st.st_size);
    return Status::OK();
  }

  Status PunchHole(uint64_t offset, uint64_t len) override {
    return Allocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len, "punch a hole in");
  }
  Status ZeroRange(uint64_t offset, uint64_t len) override {
    return Allocate(FALLOC_FL_ZERO_RANGE, offset, len, "zero a range of");
  }

 private:
  Status Allocate(int mode, uint64_t offset, uint64_t len, const char* what) {
    if (fallocate(fd_, mode, static_cast<off_t>(offset), static_cast<off_t>(len)) == 0) return Status::OK();
    // The file system lacks the operation: the caller has a fallback.
    if (errno == EOPNOTSUPP || errno == ENOSYS) return Status::Unsupported(std::string("cannot ") + what + " " + path());
    return Errno(std::string("cannot ") + what, path());
  }

  const int fd_;
};

int OpenFlags(OpenMode mode) {
  switch (mode) {
    case OpenMode::kReadOnly: return O_RDONLY;
    case OpenMode::kReadWrite: return O_RDWR;
    case OpenMode::kCreate: return O_RDWR | O_CREAT;
    case OpenMode::kTruncate: return O_RDWR | O_CREAT | O_TRUNC;
  }
  return O_RDONLY;
}

class PosixEnv final : public Env {
 public:
  Status OpenFile(const std::string& path, OpenMode mode, std::unique_ptr<File>* out) override {
    int fd = open(path.c_str(), OpenFlags(mode) | O_CLOEXEC, 0600);
    if (fd < 0) return Errno(mode == OpenMode::kTruncate ? "create" : "open", path);
    *out = std::make_unique<PosixFile>(path, fd);
    return Status::OK();
  }

  bool FileExists(const std::string& path) override {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
  }

  Status FileSize(const std::string& path, uint64_t* size) override {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::NotFound(path + " does not exist");
      return Errno("stat", path);
    }
    *size = static_cast<uint64_t>(st.st_size);
    return Status::OK();
  }

  Status ListDir(const std::string& dir, std::vector<std::string>* names) override {
    names->clear();
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) return Errno("open", dir);
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names->push_back(std::move(name));
    }
    closedir(d);
    return Status::OK();
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    return rename(from.c_str(), to.c_str()) == 0 ? Status::OK() : Errno("rename", from + " to " + to);
  }

  Status RemoveFile(const std::string& path) override {
    return unlink(path.c_str()) == 0 ? Status::OK() : Errno("remove", path);
  }

  Status SyncDir(const std::string& dir) override {
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Errno("open", dir);
    Status s = fsync(fd) == 0 ? Status::OK() : Errno("sync", dir);
    close(fd);
    return s;
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new PosixEnv;  // never destroyed: used until exit
  return env;
}

}  // namespace thinsim
