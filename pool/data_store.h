// DataStore: where the bytes of the pool's data blocks live.
//
// dblock b occupies bytes [b * block_size, (b + 1) * block_size) of the store.
// That is also the layout of the data file of a persistent pool
// (docs/format.md), so the file never needs converting.
//
// A block that was never written, or was discarded, reads as zeroes. The pool
// relies on this: a freshly allocated block needs no zeroing.
//
// Thread safety: Read, Write, Zero, Copy and Discard may run concurrently on
// different blocks, and with each other on the same block as far as the bytes
// go (the pool's range locks keep them from overlapping). Grow and Flush may
// run concurrently with the rest. Offsets are checked by the caller.
#ifndef THINSIM_POOL_DATA_STORE_H_
#define THINSIM_POOL_DATA_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "base/types.h"
#include "env/env.h"

namespace thinsim {

class DataStore {
 public:
  virtual ~DataStore() = default;

  uint32_t block_size() const { return block_size_; }

  // REQUIRES: offset + len <= block_size().
  virtual Status Read(dblock_t b, uint32_t offset, void* buf, uint32_t len) = 0;
  virtual Status Write(dblock_t b, uint32_t offset, const void* buf, uint32_t len) = 0;
  virtual Status Zero(dblock_t b, uint32_t offset, uint32_t len) = 0;
  // Copies the whole block.
  virtual Status Copy(dblock_t from, dblock_t to) = 0;
  // Forgets the contents of blocks [first, first + count): they read as
  // zeroes afterwards. One call per run, because the pool frees blocks in
  // runs (a deleted volume written front to back) and each call is a
  // system call.
  virtual Status Discard(dblock_t first, uint64_t count) = 0;
  // Makes room for blocks [0, nr_blocks).
  virtual Status Grow(uint64_t nr_blocks) = 0;
  // Makes every completed Write durable.
  virtual Status Flush() = 0;

 protected:
  explicit DataStore(uint32_t block_size) : block_size_(block_size) {}

 private:
  const uint32_t block_size_;
};

// Data kept in anonymous memory; discarded blocks give their memory back.
Status NewMemoryStore(uint32_t block_size, uint64_t nr_blocks, std::unique_ptr<DataStore>* out);

// Data kept in a sparse file at `path` (created if absent), opened and
// accessed through `env`; discarded blocks are punched out of the file.
Status OpenFileStore(const std::string& path, uint32_t block_size, uint64_t nr_blocks,
                     std::unique_ptr<DataStore>* out, Env* env = Env::Default());

// No data at all: writes are dropped and reads return zeroes. For benchmarks
// and simulations of pools larger than memory, where only the metadata is of
// interest.
std::unique_ptr<DataStore> NewNullStore(uint32_t block_size);

}  // namespace thinsim

#endif  // THINSIM_POOL_DATA_STORE_H_
