// NbdTarget: libnbd connections to a mirror's target (nbd_target.h).
#include "mirror/nbd_target.h"

#include <libnbd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace thinsim {
namespace {

Status StatusForErrno(int err, std::string what) {
  switch (err) {
    case ENOSPC:
      return Status::NoSpace(std::move(what));
    case EROFS:
    case EPERM:
      return Status::ReadOnly(std::move(what));
    case EINVAL:
    case ERANGE:
      return Status::Invalid(std::move(what));
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
      return Status::Unsupported(std::move(what));
    default:
      return Status::IOError(std::move(what));
  }
}

// libnbd's error of the call that just failed on this thread, as words.
std::string NbdReason() {
  const char* e = nbd_get_error();
  return e != nullptr ? e : "unknown libnbd error";
}

// Makes one connection to `uri`, asking for block sizes and base:allocation.
Status Open(const std::string& uri, nbd_handle** out) {
  nbd_handle* h = nbd_create();
  if (h == nullptr) return Status::IOError("cannot create a libnbd handle: " + NbdReason());
  if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1 || nbd_set_request_block_size(h, true) == -1 ||
      nbd_set_full_info(h, true) == -1) {
    Status s = Status::IOError("libnbd setup for '" + uri + "': " + NbdReason());
    nbd_close(h);
    return s;
  }
  if (nbd_connect_uri(h, uri.c_str()) == -1) {
    int err = nbd_get_errno();
    std::string reason = NbdReason();
    nbd_close(h);
    if (err == EINVAL || err == ENOTSUP) return Status::Invalid("NBD target '" + uri + "': " + reason);
    return Status::Unavailable("cannot connect to NBD target '" + uri + "': " + reason);
  }
  *out = h;
  return Status::OK();
}

uint64_t BlockSize(nbd_handle* h, int which, uint64_t none) {
  int64_t v = nbd_get_block_size(h, which);
  return v > 0 ? static_cast<uint64_t>(v) : none;
}

// A string libnbd returns in malloc'd memory, or "" for none.
std::string OwnedString(char* s) {
  std::string out = s != nullptr ? s : "";
  std::free(s);
  return out;
}

NbdTarget::Info InfoOf(nbd_handle* h) {
  NbdTarget::Info i;
  int64_t size = nbd_get_size(h);
  i.size = size > 0 ? static_cast<uint64_t>(size) : 0;
  i.min_block = BlockSize(h, LIBNBD_SIZE_MINIMUM, 1);
  i.preferred_block = BlockSize(h, LIBNBD_SIZE_PREFERRED, 0);
  i.max_block = BlockSize(h, LIBNBD_SIZE_MAXIMUM, 0);
  i.read_only = nbd_is_read_only(h) == 1;
  i.can_flush = nbd_can_flush(h) == 1;
  i.can_trim = nbd_can_trim(h) == 1;
  i.can_zero = nbd_can_zero(h) == 1;
  i.can_fast_zero = nbd_can_fast_zero(h) == 1;
  i.can_multi_conn = nbd_can_multi_conn(h) == 1;
  i.base_allocation = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  i.export_name = OwnedString(nbd_get_canonical_export_name(h));
  if (i.export_name.empty()) i.export_name = OwnedString(nbd_get_export_name(h));
  i.description = OwnedString(nbd_get_export_description(h));
  return i;
}

// Block status: whether every extent of the range has the ZERO flag.
struct ZeroScan {
  uint64_t covered = 0;  // bytes answered so far
  bool all_zero = true;
};

int ScanExtents(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries, size_t nr_entries,
                int* error) {
  (void)offset;
  (void)error;
  auto* scan = static_cast<ZeroScan*>(user_data);
  if (std::strcmp(metacontext, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
  for (size_t i = 0; i + 1 < nr_entries; i += 2) {
    scan->covered += entries[i];
    if ((entries[i + 1] & LIBNBD_STATE_ZERO) == 0) scan->all_zero = false;
  }
  return 0;
}

}  // namespace

class NbdTarget::Lease {
 public:
  explicit Lease(NbdTarget* t) : t_(t), h_(t->Take()) {}
  ~Lease() { t_->Give(h_); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  nbd_handle* get() const { return h_; }

 private:
  NbdTarget* const t_;
  nbd_handle* const h_;
};

Status NbdTarget::Connect(const std::string& uri, size_t connections, std::unique_ptr<NbdTarget>* out) {
  std::vector<nbd_handle*> handles(1);
  THINSIM_RETURN_IF_ERROR(Open(uri, &handles[0]));
  Info info = InfoOf(handles[0]);
  // More connections only where a flush on one covers the others.
  const size_t want = info.can_multi_conn && connections > 1 ? connections : 1;
  while (handles.size() < want) {
    nbd_handle* h = nullptr;
    Status s = Open(uri, &h);
    if (!s.ok()) {
      for (nbd_handle* open : handles) nbd_close(open);
      return s;
    }
    handles.push_back(h);
  }
  out->reset(new NbdTarget(uri, info, std::move(handles)));
  return Status::OK();
}

NbdTarget::NbdTarget(std::string uri, Info info, std::vector<nbd_handle*> handles)
    : uri_(std::move(uri)), info_(info), handles_(std::move(handles)), nr_handles_(handles_.size()), free_(handles_) {}

NbdTarget::~NbdTarget() {
  MutexLock lock(&mu_);  // every call has returned: nobody else holds it
  for (nbd_handle* h : handles_) {
    nbd_shutdown(h, 0);  // a clean NBD_CMD_DISC; errors do not matter any more
    nbd_close(h);
  }
}

nbd_handle* NbdTarget::Take() {
  MutexLock lock(&mu_);
  while (free_.empty()) free_cv_.Wait(&mu_);
  nbd_handle* h = free_.back();
  free_.pop_back();
  return h;
}

void NbdTarget::Give(nbd_handle* h) {
  {
    MutexLock lock(&mu_);
    free_.push_back(h);
  }
  free_cv_.Signal();
}

Status NbdTarget::Reconnect() {
  // Every connection, each once it is free, so that none is in use.
  std::vector<nbd_handle*> taken;
  for (size_t i = 0; i < nr_handles_; ++i) taken.push_back(Take());
  Status result;
  for (nbd_handle*& h : taken) {
    nbd_handle* fresh = nullptr;
    Status s = Open(uri_, &fresh);
    if (!s.ok()) {
      result = s;
      continue;
    }
    if (nbd_get_size(fresh) != static_cast<int64_t>(info_.size)) {
      nbd_close(fresh);
      result = Status::Invalid("NBD target '" + uri_ + "' came back with another size");
      continue;
    }
    MutexLock lock(&mu_);
    std::replace(handles_.begin(), handles_.end(), h, fresh);
    nbd_close(h);
    h = fresh;
  }
  for (nbd_handle* h : taken) Give(h);
  return result;
}

Status NbdTarget::LastError(const char* op, uint64_t length, uint64_t offset) const {
  int err = nbd_get_errno();
  std::string what = "NBD target '" + uri_ + "': " + op + " of " + std::to_string(length) + " bytes at offset " +
                     std::to_string(offset) + " failed: " + NbdReason();
  if (err != 0) what += " (" + std::string(strerrorname_np(err) != nullptr ? strerrorname_np(err) : "errno") + ")";
  return StatusForErrno(err, std::move(what));
}

Status NbdTarget::Write(const void* buf, uint64_t length, uint64_t offset) {
  Lease h(this);
  if (nbd_pwrite(h.get(), buf, length, offset, 0) == -1) return LastError("write", length, offset);
  return Status::OK();
}

Status NbdTarget::Read(void* buf, uint64_t length, uint64_t offset) {
  Lease h(this);
  if (nbd_pread(h.get(), buf, length, offset, 0) == -1) return LastError("read", length, offset);
  return Status::OK();
}

Status NbdTarget::Zero(uint64_t length, uint64_t offset, bool fast, bool may_trim) {
  if (fast && !info_.can_fast_zero) {
    return Status::Unsupported("NBD target '" + uri_ + "' cannot write zeroes fast");
  }
  uint32_t flags = (fast ? LIBNBD_CMD_FLAG_FAST_ZERO : 0) | (may_trim ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
  Lease h(this);
  if (nbd_zero(h.get(), length, offset, flags) == -1) return LastError(fast ? "fast zero" : "zero", length, offset);
  return Status::OK();
}

Status NbdTarget::Flush() {
  if (!info_.can_flush) return Status::OK();  // nothing to make durable: the server says writes are
  Lease h(this);
  if (nbd_flush(h.get(), 0) == -1) return LastError("flush", 0, 0);
  return Status::OK();
}

Status NbdTarget::ReadsZero(uint64_t length, uint64_t offset, bool* zero) {
  *zero = false;
  if (!info_.base_allocation || length == 0) return Status::OK();
  Lease h(this);
  // A server may answer less than asked: ask again from where it stopped.
  uint64_t done = 0;
  while (done < length) {
    ZeroScan scan;
    // 32-bit lengths in libnbd 1.14's block status: ask in pieces.
    uint64_t ask = std::min<uint64_t>(length - done, 1ull << 30);
    if (nbd_block_status(h.get(), ask, offset + done, nbd_extent_callback{ScanExtents, &scan, nullptr}, 0) == -1) {
      return LastError("block status", ask, offset + done);
    }
    if (!scan.all_zero || scan.covered == 0) return Status::OK();
    done += std::min(scan.covered, ask);
  }
  *zero = true;
  return Status::OK();
}

}  // namespace thinsim
