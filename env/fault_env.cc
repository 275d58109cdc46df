#include "env/fault_env.h"

#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include <boost/icl/interval_map.hpp>

#include "env/volatile_cache.h"

namespace thinsim {

namespace {

constexpr const char* kLayerNames[] = {"data", "metadata"};
constexpr const char* kOpNames[] = {"read", "write", "discard", "flush", "sync", "any"};

FaultLayer DefaultLayerOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return name == "data" ? FaultLayer::kData : FaultLayer::kMetadata;
}

// Does a rule for `rule_op` cover an operation of kind `op`?
bool OpMatches(FaultOp rule_op, FaultOp op) {
  if (rule_op == FaultOp::kAny || rule_op == op) return true;
  // "sync" is every durability call, "flush" only a file's.
  return rule_op == FaultOp::kSync && op == FaultOp::kFlush;
}

Status Injected(uint64_t id, int error, FaultOp op, const std::string& path) {
  std::string msg = "injected fault " + std::to_string(id) + ": " + FaultOpName(op) + " " + path + ": " +
                    std::strerror(error);
  switch (error) {
    case ENOSPC:
    case EDQUOT: return Status::NoSpace(msg);
    case EROFS: return Status::ReadOnly(msg);
    case EOPNOTSUPP: return Status::Unsupported(msg);
    default: return Status::IOError(msg);
  }
}

}  // namespace

bool ParseFaultLayer(const std::string& name, FaultLayer* layer) {
  for (int i = 0; i < 2; ++i) {
    if (name == kLayerNames[i]) {
      *layer = static_cast<FaultLayer>(i);
      return true;
    }
  }
  return false;
}

bool ParseFaultOp(const std::string& name, FaultOp* op) {
  for (int i = 0; i < 6; ++i) {
    if (name == kOpNames[i]) {
      *op = static_cast<FaultOp>(i);
      return true;
    }
  }
  return false;
}

const char* FaultLayerName(FaultLayer layer) { return kLayerNames[static_cast<int>(layer)]; }
const char* FaultOpName(FaultOp op) { return kOpNames[static_cast<int>(op)]; }

// The live rules: by id, and the ranged ones also by byte range, so that an
// operation finds the rules over its bytes without scanning them all.
struct FaultEnv::Rules {
  uint64_t next_id = 1;
  std::map<uint64_t, FaultInfo> by_id;
  std::set<uint64_t> unranged;
  boost::icl::interval_map<uint64_t, std::set<uint64_t>> ranged;

  static auto RangeOf(const FaultRule& r) {
    uint64_t end = r.offset + r.length < r.offset ? UINT64_MAX : r.offset + r.length;
    return boost::icl::interval<uint64_t>::right_open(r.offset, end);
  }
  void Remove(uint64_t id) {
    auto it = by_id.find(id);
    const FaultRule& r = it->second.rule;
    if (r.length == 0) {
      unranged.erase(id);
    } else {
      ranged -= std::make_pair(RangeOf(r), std::set<uint64_t>{id});
    }
    by_id.erase(it);
  }
  // The ids of the rules that may cover an operation, oldest first.
  std::set<uint64_t> Candidates(uint64_t offset, uint64_t length) const {
    std::set<uint64_t> ids = unranged;
    if (length == 0) return ids;
    uint64_t end = offset + length < offset ? UINT64_MAX : offset + length;
    auto range = ranged.equal_range(boost::icl::interval<uint64_t>::right_open(offset, end));
    for (auto it = range.first; it != range.second; ++it) ids.insert(it->second.begin(), it->second.end());
    return ids;
  }
};

// A File whose every call first asks the FaultEnv whether to fail, and in
// volatile-cache mode saves what a change replaces.
class FaultFile final : public File {
 public:
  FaultFile(FaultEnv* env, std::unique_ptr<File> base, uint64_t epoch)
      : File(base->path()), env_(env), base_(std::move(base)), epoch_(epoch) {}

  Status Read(uint64_t offset, size_t n, void* buf, size_t* got) override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kRead, offset, n));
    return base_->Read(offset, n, buf, got);
  }
  Status Write(uint64_t offset, const void* buf, size_t n) override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kWrite, offset, n));
    return Change(offset, n, [&] { return base_->Write(offset, buf, n); });
  }
  Status Sync() override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kFlush, 0, 0));
    if (env_->cache_ == nullptr) return base_->Sync();
    auto lock = env_->cache_->Lock();
    THINSIM_RETURN_IF_ERROR(CheckNotCut());  // a sync racing the cut must not succeed after it
    Status s = base_->Sync();
    if (s.ok()) env_->cache_->Synced(path());
    return s;
  }
  Status Truncate(uint64_t size) override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kWrite, 0, 0));
    return Change(size, UINT64_MAX - size, [&] { return base_->Truncate(size); });
  }
  Status Size(uint64_t* size) override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kRead, 0, 0));
    return base_->Size(size);
  }
  Status PunchHole(uint64_t offset, uint64_t len) override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kDiscard, offset, len));
    return Change(offset, len, [&] { return base_->PunchHole(offset, len); });
  }
  Status ZeroRange(uint64_t offset, uint64_t len) override {
    THINSIM_RETURN_IF_ERROR(Check(FaultOp::kDiscard, offset, len));
    return Change(offset, len, [&] { return base_->ZeroRange(offset, len); });
  }

 private:
  Status Check(FaultOp op, uint64_t offset, uint64_t length) {
    THINSIM_RETURN_IF_ERROR(CheckNotCut());
    return env_->Check(op, path(), offset, length);
  }
  Status CheckNotCut() const {
    if (env_->epoch() != epoch_) return Status::IOError("power cut: " + path() + " is gone with its pool");
    return Status::OK();
  }
  // Runs `change` to bytes [offset, offset + len), saving first what it
  // replaces when the cache is volatile.
  template <typename F>
  Status Change(uint64_t offset, uint64_t len, F change) {
    if (env_->cache_ == nullptr) return change();
    auto lock = env_->cache_->Lock();
    // Checked again under the lock the cut holds: a change that passed
    // Check() before the cut and got here after it must not land.
    THINSIM_RETURN_IF_ERROR(CheckNotCut());
    THINSIM_RETURN_IF_ERROR(env_->cache_->BeforeChange(base_.get(), offset, len));
    return change();
  }

  FaultEnv* const env_;
  const std::unique_ptr<File> base_;
  const uint64_t epoch_;
};

FaultEnv::FaultEnv(Env* base, Options options)
    : base_(base),
      layer_of_(options.layer_of ? options.layer_of : DefaultLayerOf),
      cache_(options.volatile_cache ? std::make_unique<VolatileCache>() : nullptr),
      rules_(std::make_unique<Rules>()),
      rng_(options.seed) {}

FaultEnv::~FaultEnv() = default;

uint64_t FaultEnv::AddFault(const FaultRule& rule) {
  std::lock_guard lock(mu_);
  uint64_t id = rules_->next_id++;
  rules_->by_id[id] = FaultInfo{id, rule, 0};
  if (rule.length == 0) {
    rules_->unranged.insert(id);
  } else {
    rules_->ranged += std::make_pair(Rules::RangeOf(rule), std::set<uint64_t>{id});
  }
  return id;
}

bool FaultEnv::RemoveFault(uint64_t id) {
  std::lock_guard lock(mu_);
  if (rules_->by_id.count(id) == 0) return false;
  rules_->Remove(id);
  return true;
}

std::vector<FaultInfo> FaultEnv::Faults() const {
  std::lock_guard lock(mu_);
  std::vector<FaultInfo> out;
  for (const auto& [id, info] : rules_->by_id) out.push_back(info);
  return out;
}

uint64_t FaultEnv::epoch() const {
  std::lock_guard lock(mu_);
  return epoch_;
}

Status FaultEnv::Check(FaultOp op, const std::string& path, uint64_t offset, uint64_t length) {
  FaultLayer layer = layer_of_(path);
  std::lock_guard lock(mu_);
  for (uint64_t id : rules_->Candidates(offset, length)) {
    FaultInfo& info = rules_->by_id.at(id);
    const FaultRule& r = info.rule;
    if (r.layer != layer || !OpMatches(r.op, op)) continue;
    if (r.length != 0 && length == 0) continue;  // a ranged rule needs bytes
    if (r.probability < 1.0 && std::uniform_real_distribution<double>(0, 1)(rng_) >= r.probability) continue;
    Status s = Injected(id, r.error, op, path);
    if (++info.fired == r.count) rules_->Remove(id);
    return s;
  }
  return Status::OK();
}

Status FaultEnv::PowerCut() {
  if (cache_ == nullptr) return Status::Invalid("power cut needs a volatile write cache (volatile-cache=on)");
  // The cut is one point: every change and sync of a file opened before it
  // either completed before it (under the cache lock) or fails, since each
  // checks the epoch under that lock. A FLUSH acknowledged after the
  // restore would claim durability for bytes the restore just dropped.
  auto cache_lock = cache_->Lock();
  {
    std::lock_guard lock(mu_);
    ++epoch_;
  }
  return cache_->PowerCutLocked(base_);
}

Status FaultEnv::OpenFile(const std::string& path, OpenMode mode, std::unique_ptr<File>* out) {
  THINSIM_RETURN_IF_ERROR(Check(FaultOp::kAny, path, 0, 0));
  bool existed = base_->FileExists(path);
  // A volatile cache must see a truncation before it happens, so the file
  // is opened as is and then emptied through the wrapper.
  OpenMode base_mode = cache_ != nullptr && mode == OpenMode::kTruncate ? OpenMode::kCreate : mode;
  std::unique_ptr<File> base;
  THINSIM_RETURN_IF_ERROR(base_->OpenFile(path, base_mode, &base));
  if (cache_ != nullptr && !existed) cache_->Created(path);
  auto file = std::make_unique<FaultFile>(this, std::move(base), epoch());
  if (base_mode != mode) THINSIM_RETURN_IF_ERROR(file->Truncate(0));
  *out = std::move(file);
  return Status::OK();
}

Status FaultEnv::FileSize(const std::string& path, uint64_t* size) { return base_->FileSize(path, size); }

Status FaultEnv::RenameFile(const std::string& from, const std::string& to) {
  THINSIM_RETURN_IF_ERROR(Check(FaultOp::kAny, from, 0, 0));
  return base_->RenameFile(from, to);
}

Status FaultEnv::RemoveFile(const std::string& path) {
  THINSIM_RETURN_IF_ERROR(Check(FaultOp::kAny, path, 0, 0));
  return base_->RemoveFile(path);
}

Status FaultEnv::SyncDir(const std::string& dir) {
  // A directory's layer is the metadata's: it holds the names.
  THINSIM_RETURN_IF_ERROR(Check(FaultOp::kSync, dir + "/", 0, 0));
  THINSIM_RETURN_IF_ERROR(base_->SyncDir(dir));
  if (cache_ != nullptr) cache_->DirSynced(dir);
  return Status::OK();
}

}  // namespace thinsim
