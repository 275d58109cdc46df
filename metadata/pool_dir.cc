#include "metadata/pool_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace thinsim::metadata {

std::string SuperblockPath(const std::string& dir) { return dir + "/metadata"; }
std::string CheckpointPath(const std::string& dir, uint64_t generation) {
  return dir + "/metadata.ckpt." + std::to_string(generation);
}
std::string LogPath(const std::string& dir, uint64_t generation) {
  return dir + "/metadata.log." + std::to_string(generation);
}
std::string DataPath(const std::string& dir) { return dir + "/data"; }
std::string LockPath(const std::string& dir) { return dir + "/lock"; }

namespace {

bool Exists(const std::string& path, off_t* size = nullptr) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  if (size != nullptr) *size = st.st_size;
  return true;
}

bool HasCheckpointFiles(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return false;
  bool found = false;
  while (struct dirent* e = readdir(d)) {
    if (std::string(e->d_name).rfind("metadata.ckpt.", 0) == 0) found = true;
  }
  closedir(d);
  return found;
}

}  // namespace

PoolDirState InspectPoolDir(const std::string& dir) {
  PoolDirState s;
  s.has_superblock = Exists(SuperblockPath(dir));
  s.has_checkpoint = HasCheckpointFiles(dir);
  off_t data_size = 0;
  s.has_data = Exists(DataPath(dir), &data_size) && data_size > 0;
  s.has_lock_file = Exists(LockPath(dir));
  return s;
}

PoolDirLock::~PoolDirLock() { close(fd_); }

Status PoolDirLock::Acquire(const std::string& dir, bool create_dir, std::unique_ptr<PoolDirLock>* out) {
  if (create_dir && mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IOError("cannot create pool directory " + dir + ": " + std::strerror(errno));
  }
  std::string path = LockPath(dir);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError("cannot open " + path + ": " + std::strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) return Status::Busy("pool " + dir + " is in use (a server has it open); stop it first");
    return Status::IOError("cannot lock " + path + ": " + std::strerror(e));
  }
  out->reset(new PoolDirLock(fd));
  return Status::OK();
}

}  // namespace thinsim::metadata
