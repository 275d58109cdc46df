// Reservations: the pool's exact reserved-block accounting (SPEC section 5,
// docs/reservation.md).
//
// For a data block b with o(b) owners, g(b) of which guarantee it,
//   need(b) = g(b)       if o(b) > g(b)   (every guaranteeing owner may have
//                                          to copy the block on write)
//           = g(b) - 1   otherwise        (the last owner writes in place)
// and every guaranteed unmapped vblock needs 1. reserved() is the sum.
// Reservations stores g(b) per block and the sum; the pool, which knows the
// volumes, counts o(b) and tells it of every change of owners or
// guarantees, so that the sum stays exact. Each change is a delta
// computation: with apply=false it only returns the change in reserved
// blocks (for admission), with apply=true it also makes it.
//
// Thread safety: thread-compatible. Pool guards it with meta_mu_.
//
// Invariants: reserved() == sum of need(b) over blocks + the guaranteed
// unmapped vblocks (pool_counters_check.cc checks it against a full walk),
// and the pool keeps reserved() <= its free blocks after every operation:
// a change that would break it is refused by Admit first.
#ifndef THINSIM_POOL_RESERVATIONS_H_
#define THINSIM_POOL_RESERVATIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/types.h"
#include "pool/space_policy.h"

namespace thinsim {

class Reservations {
 public:
  // Which vblocks a volume guarantees.
  struct Guarantee {
    bool all = false;          // every vblock (full, or volume while active)
    bool provisioned = false;  // provisioned vblocks (provision)
    bool Covers(bool entry_provisioned) const { return all || (provisioned && entry_provisioned); }
  };
  // The guarantee of a volume with strategy `s` in this state.
  static Guarantee GuaranteeFor(Strategy s, bool read_only, bool active);
  // need(b) for a block with these owners and guarantors.
  static int64_t Need(uint64_t owners, uint64_t guarantors) {
    if (guarantors == 0) return 0;
#ifdef THINSIM_PLANTED_BUG_RESERVE_NEED
    (void)owners;
    return guarantors - 1;  // the planted bug: see THINSIM_PLANTED_BUG in CMakeLists.txt
#endif
    return owners > guarantors ? guarantors : guarantors - 1;
  }

  explicit Reservations(uint64_t nr_blocks = 0) : guarantors_(nr_blocks, 0) {}
  Reservations(const Reservations&) = delete;
  Reservations& operator=(const Reservations&) = delete;

  // No guarantors and nothing reserved, for `nr_blocks` blocks.
  void Reset(uint64_t nr_blocks);
  // The pool grew to `nr_blocks`; the new blocks have no guarantors.
  void Grow(uint64_t nr_blocks) { guarantors_.resize(nr_blocks, 0); }

  int64_t reserved() const { return reserved_; }
  // g(b). REQUIRES: b < the number of blocks.
  uint32_t guarantors(dblock_t b) const { return guarantors_[b]; }

  // OK when `delta` more reserved blocks fit in `free` free blocks, else
  // NoSpace saying that `what` needs them.
  Status Admit(int64_t delta, uint64_t free, const std::string& what) const;

  // Changes reserved() by `delta` (guaranteed unmapped vblocks, or a delta
  // counted earlier).
  void Add(int64_t delta) { reserved_ += delta; }
  // b is a fresh block with its one owner, who guarantees it or not: g(b)
  // becomes 0 or 1, and need(b) is 0 either way.
  void SetFresh(dblock_t b, bool covers) { guarantors_[b] = covers; }
  // While counters are rebuilt: one more owner guarantees b. reserved() is
  // left alone (the caller adds need(b) once every owner is counted).
  void CountGuarantor(dblock_t b, bool covers) { guarantors_[b] += covers; }

  // One of b's `owners` owners goes from guaranteeing it (`from`) or not
  // to `to`. Returns the change in reserved blocks; `apply` makes it.
  // REQUIRES: if from, g(b) >= 1.
  int64_t ChangeGuarantor(dblock_t b, uint32_t owners, bool from, bool to, bool apply);
  // An owner that guarantees b (`covers`) or not joins b's `owners`
  // owners, or with `leave` is one of them and leaves. Returns the change
  // in reserved blocks; `apply` makes it.
  // REQUIRES: with leave, owners >= 1 and, if covers, g(b) >= 1.
  int64_t ChangeOwner(dblock_t b, uint32_t owners, bool covers, bool leave, bool apply);
  // ChangeOwner(..., apply=false), for callers that may not change anything.
  int64_t OwnerDelta(dblock_t b, uint32_t owners, bool covers, bool leave) const;

  // Heap bytes of the per-block counts.
  size_t MemoryUsage() const { return guarantors_.capacity() * sizeof(uint32_t); }

 private:
  // Guaranteeing owners per dblock, g(b).
  std::vector<uint32_t> guarantors_;
  // Sum of need(b) over blocks plus the unmapped guaranteed vblocks.
  int64_t reserved_ = 0;
};

}  // namespace thinsim

#endif  // THINSIM_POOL_RESERVATIONS_H_
