// DirtyBitmap: which granules of a byte range changed (SPEC section 12).
//
// The range [0, size) is cut into granules of `granularity` bytes (a power of
// two, 512 B .. 64 MiB, independent of the pool's block size); the last one
// may be partial. One bit per granule, dense, in 64-bit atomic words, so the
// hot path - Mark() from many request threads at once - is a few relaxed
// fetch_or with no lock. A 1 TiB volume at 64K granules is 16M bits, 2 MiB.
//
// Rounding: whatever *adds* dirt rounds out to whole granules (Mark, Merge
// into a coarser bitmap), whatever *removes* it rounds in (Clear of a range
// clears only granules it covers entirely), so a bitmap is never falsely
// clean. Byte results (DirtyBytes, DirtyRanges, Extents) are clipped to
// [0, size).
//
// Invariant: bits past the last granule are zero.
//
// Thread safety: Mark, Test, Covers, AllDirty, CountGranules, DirtyBytes,
// DirtyRanges, Extents, Words and Merge's reads of `other` may run
// concurrently with each other and with Mark and Clear (each word is read or
// changed atomically; a reader sees some mix of before and after). Resize
// and SetWords need exclusive access: no other call on this object at the
// same time (VolumeBitmaps swaps in a fresh bitmap instead).
#ifndef THINSIM_BITMAP_DIRTY_BITMAP_H_
#define THINSIM_BITMAP_DIRTY_BITMAP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include <boost/icl/interval_set.hpp>

#include "base/sizes.h"
#include "base/status.h"

namespace thinsim {

class DirtyBitmap {
 public:
  static constexpr uint64_t kMinGranularity = kMinBitmapGranularity;
  static constexpr uint64_t kMaxGranularity = kMaxBitmapGranularity;

  // A run of granules that are all dirty or all clean, in bytes.
  struct Extent {
    uint64_t offset;
    uint64_t length;
    bool dirty;
    bool operator==(const Extent&) const = default;
  };

  // OK, or Invalid naming the value and the rule.
  static Status ValidateGranularity(uint64_t granularity);

  // Validates `granularity` and makes an all-clean bitmap over `size` bytes.
  static Status Make(uint64_t size, uint64_t granularity, std::unique_ptr<DirtyBitmap>* out);

  // REQUIRES: ValidateGranularity(granularity).ok() (asserted).
  DirtyBitmap(uint64_t size, uint64_t granularity);
  DirtyBitmap(const DirtyBitmap&) = delete;
  DirtyBitmap& operator=(const DirtyBitmap&) = delete;

  uint64_t size() const { return size_; }
  uint64_t granularity() const { return granularity_; }
  // Granules covering [0, size): ceil(size / granularity).
  uint64_t granules() const { return granules_; }

  // Marks every granule [offset, offset + length) touches (the part below
  // size). Returns whether any of them was clean before. Lock-free.
  bool Mark(uint64_t offset, uint64_t length);
  // Marks every granule.
  void MarkAll();

  // Whether the granule holding byte `offset` is dirty (false past size).
  bool Test(uint64_t offset) const;
  // Whether every granule [offset, offset + length) touches is dirty (the
  // part below size; true for an empty range).
  bool Covers(uint64_t offset, uint64_t length) const;
  // Whether every granule is dirty (true for an empty bitmap).
  bool AllDirty() const;
  // Dirty granules, and the bytes of [0, size) they cover.
  uint64_t CountGranules() const;
  uint64_t DirtyBytes() const;

  // Clears everything, or the granules lying wholly inside
  // [offset, offset + length) (the partial last granule counts as whole when
  // the range reaches size).
  void Clear();
  void Clear(uint64_t offset, uint64_t length);

  // ORs `other` into this over the bytes both cover. Each dirty granule of
  // `other` marks every granule of this it overlaps: a coarser target rounds
  // out. `other` may be marked meanwhile; &other == this is a no-op.
  void Merge(const DirtyBitmap& other);

  // Covers `new_size` bytes: a shrink drops the granules past it; a grow
  // marks everything from the old size on dirty, the old partial last
  // granule included (those bytes are new to whoever copied the old size).
  // REQUIRES: exclusive access.
  void Resize(uint64_t new_size);

  // The first run of dirty granules at or after the granule holding byte
  // `from`: its byte offset and length (clipped to size), at most
  // `max_length` rounded up to whole granules. False when none is dirty
  // from there on. Lock-free (a mirror job's copy loop asks it per chunk).
  bool NextDirtyRun(uint64_t from, uint64_t max_length, uint64_t* offset, uint64_t* length) const;
  // The dirty bytes as right-open intervals, clipped to size.
  boost::icl::interval_set<uint64_t> DirtyRanges() const;
  // [offset, offset + length) clipped to size, as alternating dirty and
  // clean runs, coalesced, the first and last clipped to the range.
  std::vector<Extent> Extents(uint64_t offset, uint64_t length) const;

  // The bits for persistence: granule i is bit i % 64 of word i / 64.
  size_t word_count() const { return word_count_; }
  std::vector<uint64_t> Words() const;
  // Replaces the bits. Invalid if `words` is not word_count() long or sets
  // a bit past the last granule; nothing changes then.
  // REQUIRES: exclusive access.
  Status SetWords(std::span<const uint64_t> words);

 private:
  // Sets or clears granules [first, last] (inclusive); Mark's result.
  // Covers `new_size` bytes keeping the bits of the granules that remain;
  // new granules are clean.
  void Reshape(uint64_t new_size);
  bool SetRange(uint64_t first, uint64_t last);
  void ClearRange(uint64_t first, uint64_t last);
  bool TestGranule(uint64_t g) const;
  // The first granule at or after `from` whose bit is `dirty`, or granules_.
  uint64_t FindNext(uint64_t from, bool dirty) const;
  uint64_t GranuleEnd(uint64_t g) const;  // byte end, clipped to size
  uint64_t TailMask() const;  // the bits of the last word below granules_

  uint64_t size_;
  uint64_t granularity_;
  unsigned shift_;  // log2(granularity_)
  uint64_t granules_;
  size_t word_count_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

}  // namespace thinsim

#endif  // THINSIM_BITMAP_DIRTY_BITMAP_H_
