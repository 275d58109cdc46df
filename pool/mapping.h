// Mapping: a volume's vblock -> dblock table, shared copy-on-write between a
// volume and its snapshots.
//
// The table is an array of Chunks, each mapping kChunkSize consecutive
// vblocks. An absent chunk means 64 unmapped vblocks. A Chunk stores a
// bitmap of mapped vblocks and a packed array of only the mapped dblocks
// (entry i lives at index popcount(mapped & ((1 << i) - 1))), so it costs
// 4 bytes per mapped vblock plus a small header.
//
// Snapshots share chunks: MappingTable::Clone() copies the array of chunk
// pointers and counts one more reference on each chunk, so a snapshot costs
// O(vblocks / 64) pointer copies and no per-block work. The first change to
// a shared chunk through one table copies the chunk for that table
// (Unshare), and the copy adds one reference to each dblock it maps, as
// dm-thin's btree shadowing increments a node's children.
//
// Ownership arithmetic used by the pool: a dblock's reference count in the
// SpaceMap is the number of chunk objects that map it; the number of
// volumes that own it is the sum of those chunks' `refs`. Sharing only ever
// arises from snapshots, so every owner maps a dblock at the same vblock.
//
// Thread safety: not thread-safe; the pool's metadata lock guards every
// table and chunk.
#ifndef THINSIM_POOL_MAPPING_H_
#define THINSIM_POOL_MAPPING_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_set>
#include <vector>

#include "pool/space_map.h"
#include "base/types.h"
#include "metadata/pool_dir.h"

namespace thinsim {

inline constexpr uint32_t kChunkShift = metadata::kChunkShift;
inline constexpr uint32_t kChunkSize = metadata::kChunkEntries;
static_assert(kChunkSize == 64, "a Chunk's bitmaps are one uint64_t each");

class Chunk {
 public:
  Chunk() = default;
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;

  bool mapped(uint32_t i) const { return (mapped_ >> i) & 1; }
  bool provisioned(uint32_t i) const { return (provisioned_ >> i) & 1; }
  // REQUIRES: mapped(i).
  dblock_t dblock(uint32_t i) const { return dblocks_[Rank(i)]; }
  uint32_t nr_mapped() const { return std::popcount(mapped_); }
  uint32_t nr_provisioned() const { return std::popcount(provisioned_); }
  bool empty() const { return mapped_ == 0; }

  // Maps or remaps entry i. A provisioned entry must be mapped.
  void Set(uint32_t i, dblock_t b, bool provisioned);
  // REQUIRES: mapped(i).
  void SetProvisioned(uint32_t i, bool provisioned);
  // REQUIRES: mapped(i).
  void Clear(uint32_t i);

  // Calls fn(i, dblock, provisioned) for each mapped entry in order.
  template <typename Fn>
  void ForEach(Fn fn) const {
    uint32_t rank = 0;
    for (uint64_t m = mapped_; m != 0; m &= m - 1) {
      uint32_t i = std::countr_zero(m);
      fn(i, dblocks_[rank++], provisioned(i));
    }
  }

  // Holders (tables) of this chunk. Atomic: a reader of one holder may look
  // while a snapshot or another holder changes it (under the pool lock).
  uint32_t refs() const { return refs_.load(std::memory_order_acquire); }
  void Ref() { refs_.fetch_add(1, std::memory_order_acq_rel); }
  // Returns true when this was the last reference; the caller deletes.
  bool Unref() { return refs_.fetch_sub(1, std::memory_order_acq_rel) == 1; }

  // Whether entry i's dblock is mapped by no other chunk object (its
  // reference count is 1). With refs() == 1 that makes the block exclusive
  // to the one volume holding this chunk, so a write may go in place without
  // consulting the space map. Kept exactly by the pool on every count change;
  // atomic because other volumes' operations update it while this chunk's
  // readers look.
  bool sole(uint32_t i) const { return (sole_.load(std::memory_order_acquire) >> i) & 1; }
  void SetSole(uint32_t i, bool sole) {
    if (sole) {
      sole_.fetch_or(uint64_t{1} << i, std::memory_order_acq_rel);
    } else {
      sole_.fetch_and(~(uint64_t{1} << i), std::memory_order_acq_rel);
    }
  }
  void ClearAllSole() { sole_.store(0, std::memory_order_release); }

  // A private copy with refs() == 1. Does not touch dblock counts.
  std::unique_ptr<Chunk> Copy() const;

  // Heap bytes this chunk uses, for the memory benchmark.
  size_t MemoryUsage() const;

 private:
  uint32_t Rank(uint32_t i) const { return std::popcount(mapped_ & ((uint64_t{1} << i) - 1)); }
  void Reserve(uint32_t n);

  uint64_t mapped_ = 0;
  uint64_t provisioned_ = 0;
  std::atomic<uint32_t> refs_{1};
  std::atomic<uint64_t> sole_{0};
  uint32_t capacity_ = 0;
  std::unique_ptr<dblock_t[]> dblocks_;
};

class MappingTable {
 public:
  explicit MappingTable(vblock_t nr_vblocks);
  ~MappingTable();
  MappingTable(const MappingTable&) = delete;
  MappingTable& operator=(const MappingTable&) = delete;

  vblock_t nr_vblocks() const { return nr_vblocks_; }
  size_t nr_chunks() const { return chunks_.size(); }

  struct Entry {
    dblock_t dblock = kNoDblock;  // kNoDblock: unmapped
    bool provisioned = false;
    bool chunk_shared = false;    // the chunk is also another table's
    bool exclusive = false;       // no other volume owns the block
  };
  Entry Lookup(vblock_t vb) const;

  // A table sharing every chunk of this one.
  std::unique_ptr<MappingTable> Clone() const;

  // The chunk holding vb, private to this table: a shared chunk is copied
  // first (each dblock it maps gets one more reference in `sm`, so no entry
  // of either copy is sole any more), an absent one is created.
  Chunk& MutableChunk(vblock_t vb, SpaceMap* sm);

  // Raw access to chunk slots for whole-table walks (delete, counters).
  const Chunk* chunk(size_t index) const { return chunks_[index]; }
  // Drops the table's reference to slot `index` and empties the slot.
  // Returns the chunk if this was its last reference (caller deletes), else
  // nullptr.
  std::unique_ptr<Chunk> DetachChunk(size_t index);
  // Makes slot `index` share `c` (one more reference). REQUIRES: the slot
  // is empty. Used when loading metadata.
  void ShareChunk(size_t index, Chunk* c);
  // Sets the sole mark of vb's entry in whatever chunk holds it (shared or
  // not: the mark describes the chunk object). REQUIRES: vb is mapped.
  void SetSole(vblock_t vb, bool sole) { chunks_[vb >> kChunkShift]->SetSole(vb & (kChunkSize - 1), sole); }
  // Deletes a chunk slot's chunk if it maps nothing, to save memory.
  void DropIfEmpty(vblock_t vb);

  // Changes the number of vblocks. REQUIRES: when shrinking, nothing at or
  // beyond new_nr_vblocks is mapped.
  void Resize(vblock_t new_nr_vblocks);

  // Heap bytes of the table and of the chunks it references, counting a
  // shared chunk in full.
  size_t MemoryUsage() const;
  // The same, but counts only chunks not in `counted` and adds them to it:
  // summed over the tables of a pool, each shared chunk counts once.
  size_t MemoryUsage(std::unordered_set<const Chunk*>* counted) const;

 private:
  vblock_t nr_vblocks_;
  std::vector<Chunk*> chunks_;  // owned through Chunk::refs
};

}  // namespace thinsim

#endif  // THINSIM_POOL_MAPPING_H_
