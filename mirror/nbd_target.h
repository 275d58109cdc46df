// NbdTarget: the far end of a mirror job - any NBD export (another thinsim,
// nbdkit's memory plugin, qemu-nbd or qemu-storage-daemon serving qcow2),
// reached through libnbd by URI (nbd+unix:///EXPORT?socket=PATH,
// nbd://HOST[:PORT]/EXPORT).
//
// What it is: one or more libnbd connections to one export, and what the
// server advertised at connect time (size, block sizes, which commands it
// takes). Each call is synchronous and maps the server's errno to a Status:
// ENOSPC -> NoSpace, EROFS/EPERM -> ReadOnly, EINVAL/ERANGE -> Invalid,
// ENOTSUP/EOPNOTSUPP -> Unsupported, anything else (a lost connection
// included) -> IO, the message naming the URI, the operation, the range and
// the errno. A mirror's error policy (on-target-error) is decided from that
// code.
//
// Why several connections: libnbd runs the synchronous calls of one handle
// one at a time, so a write-blocking mirror whose clients write in parallel
// would queue behind each other. A call takes a free connection from the
// pool. More than one is opened only if the server advertises multi-conn,
// which is what makes a FLUSH on one connection cover the writes answered on
// the others (NBD spec, "multi-conn"); Flush flushes one connection, after
// every write it must cover has been answered (callers hold no write in
// flight they want covered).
//
// Overlapping writes in flight at once are undefined behaviour in NBD
// (libnbd warns that they may corrupt the target): callers serialise
// overlapping ranges themselves (the mirror's in-flight interval set).
//
// Thread safety: thread-safe; any number of threads may call at once.
#ifndef THINSIM_MIRROR_NBD_TARGET_H_
#define THINSIM_MIRROR_NBD_TARGET_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"

struct nbd_handle;

namespace thinsim {

class NbdTarget {
 public:
  // What the server advertised when the first connection was made.
  struct Info {
    uint64_t size = 0;
    uint64_t min_block = 1;        // 1 when the server advertises none
    uint64_t preferred_block = 0;  // 0 when the server advertises none
    uint64_t max_block = 0;        // 0 when the server advertises none
    bool read_only = false;
    bool can_flush = false;
    bool can_trim = false;
    bool can_zero = false;
    bool can_fast_zero = false;
    bool can_multi_conn = false;
    bool base_allocation = false;  // block status answers holes and zeroes
    // The export's name as the server reports it (a default export "" by
    // its real name), else the URI's; and its description, "" when none.
    // A thinsim server's description names its pool instance
    // (Pool::instance_id), which is how a mirror recognises its own source.
    std::string export_name;
    std::string description;
  };

  // Connects to `uri`: `connections` handles if the server advertises
  // multi-conn, else one. Unavailable if the server cannot be reached, with
  // libnbd's reason; Invalid for a URI libnbd does not take.
  static Status Connect(const std::string& uri, size_t connections, std::unique_ptr<NbdTarget>* out);

  ~NbdTarget();
  NbdTarget(const NbdTarget&) = delete;
  NbdTarget& operator=(const NbdTarget&) = delete;

  const std::string& uri() const { return uri_; }
  const Info& info() const { return info_; }
  size_t connections() const { return nr_handles_; }

  Status Write(const void* buf, uint64_t length, uint64_t offset);
  Status Read(void* buf, uint64_t length, uint64_t offset);
  // Writes zeroes. `fast`: only if the server can do it without writing
  // zero bytes (NBD_CMD_FLAG_FAST_ZERO; Unsupported otherwise, nothing
  // written). `may_trim`: the server may punch a hole instead (no NO_HOLE).
  Status Zero(uint64_t length, uint64_t offset, bool fast, bool may_trim);
  Status Flush();
  // Replaces every connection with a new one to the same URI, once no call
  // is in flight on it: after a server went away and came back, an idle
  // connection does not know it is dead until a call fails on it.
  // Unavailable, with libnbd's reason, if the server is still unreachable
  // (the old connections stay, and calls on dead ones keep failing with
  // IO); Invalid if it came back with another size. A job under
  // on-target-error=stop calls it when resumed, so that job-resume
  // reconnects.
  Status Reconnect() EXCLUDES(mu_);
  // Whether every byte of the range reads as zero by the server's block
  // status (base:allocation ZERO flag). False, not an error, when the server
  // has no block status: the caller then writes.
  Status ReadsZero(uint64_t length, uint64_t offset, bool* zero);

 private:
  // A connection taken from the pool for one call; returned when destroyed.
  class Lease;

  NbdTarget(std::string uri, Info info, std::vector<nbd_handle*> handles);
  nbd_handle* Take() EXCLUDES(mu_);
  void Give(nbd_handle* h) EXCLUDES(mu_);
  // The Status for libnbd's error of the call that just failed on this
  // thread (nbd_get_errno/nbd_get_error are thread-local).
  Status LastError(const char* op, uint64_t length, uint64_t offset) const;

  const std::string uri_;
  const Info info_;
  std::vector<nbd_handle*> handles_ GUARDED_BY(mu_);  // all of them, closed by the destructor
  const size_t nr_handles_;

  Mutex mu_;
  CondVar free_cv_;
  std::vector<nbd_handle*> free_ GUARDED_BY(mu_);
};

}  // namespace thinsim

#endif  // THINSIM_MIRROR_NBD_TARGET_H_
