#include "env/volatile_cache.h"

#include <algorithm>
#include <vector>

namespace thinsim {

namespace {

// `path`'s directory as SyncDir names it, without trailing slashes.
std::string ParentDir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  std::string dir = path.substr(0, slash);
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir.empty() ? "/" : dir;
}

std::string TrimSlashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

}  // namespace

Status VolatileCache::BeforeChange(File* file, uint64_t offset, uint64_t len) {
  auto [it, first_change] = files_.try_emplace(file->path());
  Pending& p = it->second;
  if (first_change) THINSIM_RETURN_IF_ERROR(file->Size(&p.durable_size));
  // Bytes past the durable size need no saving: PowerCut truncates them.
  uint64_t end = std::min(p.durable_size, len > UINT64_MAX - offset ? UINT64_MAX : offset + len);
  if (offset >= end) return Status::OK();
  using Interval = boost::icl::interval_set<uint64_t>::interval_type;
  boost::icl::interval_set<uint64_t> gaps;
  gaps += Interval::right_open(offset, end);
  gaps -= p.saved;
  for (const auto& gap : gaps) {
    uint64_t lo = boost::icl::first(gap), n = boost::icl::length(gap);
    std::string bytes(static_cast<size_t>(n), '\0');
    size_t got = 0;
    THINSIM_RETURN_IF_ERROR(file->Read(lo, bytes.size(), bytes.data(), &got));
    p.old_bytes[lo] = std::move(bytes);  // short read: the rest reads as zero
    p.saved += gap;
  }
  return Status::OK();
}

void VolatileCache::Created(const std::string& path) {
  std::lock_guard lock(mu_);
  created_.insert(path);
}

void VolatileCache::DirSynced(const std::string& dir) {
  std::lock_guard lock(mu_);
  std::string d = TrimSlashes(dir);
  std::erase_if(created_, [&](const std::string& path) { return ParentDir(path) == d; });
}

Status VolatileCache::PowerCutLocked(Env* base) {
  Status first_error;
  for (const auto& [path, p] : files_) {
    if (created_.count(path) != 0) continue;  // removed below
    std::unique_ptr<File> file;
    if (!base->FileExists(path)) continue;  // removed since: not undone
    Status s = base->OpenFile(path, OpenMode::kReadWrite, &file);
    if (s.ok()) s = file->Truncate(p.durable_size);
    for (auto run = p.old_bytes.begin(); s.ok() && run != p.old_bytes.end(); ++run) {
      s = file->Write(run->first, run->second.data(), run->second.size());
    }
    if (s.ok()) s = file->Sync();
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  for (const std::string& path : created_) base->RemoveFile(path);  // absent already: fine
  files_.clear();
  created_.clear();
  return first_error;
}

}  // namespace thinsim
