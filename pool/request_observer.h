// RequestObserver: the one hook on a volume's data plane.
//
// An observer attached to a volume sees every request that may change it -
// write, zero, trim, provision, from an NBD client or the control socket,
// exclusive overwrites in place included - twice:
//   - BeforeChange, before any data moves. A non-OK status refuses the
//     request with that status, and nothing changes (a dirty bitmap that
//     must make an intent record durable first; a mirror that is failing).
//   - AfterChange, once the engine has applied it (or failed: `result`).
//     A non-OK status fails a request that had succeeded (its data is in
//     place, but the client is told it failed), e.g. a write-blocking
//     mirror whose target refused the same bytes. The request is
//     acknowledged only after every observer returned.
// The same ChangeRequest object is passed to BeforeChange and AfterChange
// and is unique among in-flight requests, so an observer may key per-request
// state by its address (bitmap/volume_bitmaps.h keeps each request's epoch
// so).
// Dirty bitmaps, mirror jobs and traces attach here (docs/architecture.md).
//
// Both calls run on the request's thread with the volume's range lock held
// exclusively over the request's whole blocks, so overlapping requests and
// Pool::CopyRead of an overlapping range wait, and no pool-wide lock held
// (an observer may block, sync or do network I/O; it slows only requests
// that overlap, and those of the volume's own io_gate drain).
//
// A request the engine ignores entirely (a trim of less than a block, a
// zero-length request, a read-only volume) reaches no observer.
//
// An observer must not write to its volume or attach or detach observers
// from these calls: it would wait for itself. Nor can it read the volume
// through the Pool (the range lock again); in AfterChange it reads the
// request's own blocks, as the request left them, through
// `ChangeRequest::applied` (a write-blocking mirror whose target takes only
// whole blocks of its own fills the rest of them so).
//
// A third call, VolumeSize, tells an observer the volume's size: when it is
// attached and after every resize, with the volume's io_gate held
// exclusively - no request is in flight, and none starts before it
// returns - so state sized by the volume (a dirty bitmap) follows a resize
// at its point in time, and no request sees the new end before its
// observers do.
//
// Thread safety: an observer is called from many request threads at once
// (on disjoint ranges of one volume) and must be thread-safe.
#ifndef THINSIM_POOL_REQUEST_OBSERVER_H_
#define THINSIM_POOL_REQUEST_OBSERVER_H_

#include <cstdint>

#include "base/status.h"

namespace thinsim {

// The bytes of the pool blocks a request covers (its offset and length
// rounded out to the pool's block size), as they are once it applied.
class AppliedBytes {
 public:
  // Reads [offset, offset+length), which must lie within those blocks and
  // the volume (Invalid otherwise). For AfterChange of a request that
  // succeeded only.
  virtual Status Read(void* buf, uint64_t length, uint64_t offset) const = 0;

 protected:
  ~AppliedBytes() = default;
};

struct ChangeRequest {
  enum class Kind {
    kWrite,      // `data` holds `length` bytes
    kZero,       // reads zero afterwards (may unmap whole blocks)
    kTrim,       // whole blocks unmapped; `offset`/`length` cover only them
    kProvision,  // blocks allocated and marked, data unchanged
  };
  Kind kind;
  uint64_t offset;  // bytes
  uint64_t length;
  const uint8_t* data;  // kWrite only; valid for the duration of the calls
  const AppliedBytes* applied = nullptr;  // valid for the duration of the calls
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual Status BeforeChange(const ChangeRequest& request) = 0;
  virtual Status AfterChange(const ChangeRequest& request, const Status& result) = 0;
  // The volume is `size` bytes long (see above). Cannot fail: a resize has
  // happened by then.
  virtual void VolumeSize(uint64_t size) { (void)size; }
};

}  // namespace thinsim

#endif  // THINSIM_POOL_REQUEST_OBSERVER_H_
