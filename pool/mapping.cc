#include "pool/mapping.h"

#include <cassert>
#include <cstring>

namespace thinsim {

namespace {
size_t ChunkCount(vblock_t nr_vblocks) { return (nr_vblocks + kChunkSize - 1) >> kChunkShift; }
}  // namespace

void Chunk::Reserve(uint32_t n) {
  if (n <= capacity_) return;
  uint32_t cap = capacity_ == 0 ? 2 : capacity_;
  while (cap < n) cap *= 2;
  if (cap > kChunkSize) cap = kChunkSize;
  auto grown = std::make_unique<dblock_t[]>(cap);
  if (capacity_ > 0) std::memcpy(grown.get(), dblocks_.get(), nr_mapped() * sizeof(dblock_t));
  dblocks_ = std::move(grown);
  capacity_ = cap;
}

void Chunk::Set(uint32_t i, dblock_t b, bool provisioned) {
  assert(i < kChunkSize && b != kNoDblock);
  uint32_t rank = Rank(i);
  if (!mapped(i)) {
    uint32_t n = nr_mapped();
    Reserve(n + 1);
    std::memmove(&dblocks_[rank + 1], &dblocks_[rank], (n - rank) * sizeof(dblock_t));
    mapped_ |= uint64_t{1} << i;
  }
  dblocks_[rank] = b;
  SetProvisioned(i, provisioned);
}

void Chunk::SetProvisioned(uint32_t i, bool provisioned) {
  assert(mapped(i));
  if (provisioned) {
    provisioned_ |= uint64_t{1} << i;
  } else {
    provisioned_ &= ~(uint64_t{1} << i);
  }
}

void Chunk::Clear(uint32_t i) {
  assert(mapped(i));
  uint32_t rank = Rank(i);
  uint32_t n = nr_mapped();
  std::memmove(&dblocks_[rank], &dblocks_[rank + 1], (n - rank - 1) * sizeof(dblock_t));
  mapped_ &= ~(uint64_t{1} << i);
  provisioned_ &= ~(uint64_t{1} << i);
  SetSole(i, false);
}

std::unique_ptr<Chunk> Chunk::Copy() const {
  auto copy = std::make_unique<Chunk>();
  copy->mapped_ = mapped_;
  copy->provisioned_ = provisioned_;
  uint32_t n = nr_mapped();
  if (n > 0) {
    copy->Reserve(n);
    std::memcpy(copy->dblocks_.get(), dblocks_.get(), n * sizeof(dblock_t));
  }
  return copy;
}

size_t Chunk::MemoryUsage() const { return sizeof(Chunk) + capacity_ * sizeof(dblock_t); }

MappingTable::MappingTable(vblock_t nr_vblocks)
    : nr_vblocks_(nr_vblocks), chunks_(ChunkCount(nr_vblocks), nullptr) {}

MappingTable::~MappingTable() {
  for (Chunk* c : chunks_) {
    if (c != nullptr && c->Unref()) delete c;
  }
}

MappingTable::Entry MappingTable::Lookup(vblock_t vb) const {
  assert(vb < nr_vblocks_);
  Entry e;
  const Chunk* c = chunks_[vb >> kChunkShift];
  uint32_t i = vb & (kChunkSize - 1);
  if (c != nullptr && c->mapped(i)) {
    e.dblock = c->dblock(i);
    e.provisioned = c->provisioned(i);
    e.chunk_shared = c->refs() > 1;
    e.exclusive = !e.chunk_shared && c->sole(i);
  }
  return e;
}

std::unique_ptr<MappingTable> MappingTable::Clone() const {
  auto copy = std::make_unique<MappingTable>(nr_vblocks_);
  for (size_t i = 0; i < chunks_.size(); ++i) {
    if (chunks_[i] != nullptr) {
      chunks_[i]->Ref();
      copy->chunks_[i] = chunks_[i];
    }
  }
  return copy;
}

Chunk& MappingTable::MutableChunk(vblock_t vb, SpaceMap* sm) {
  Chunk*& slot = chunks_[vb >> kChunkShift];
  if (slot == nullptr) {
    slot = new Chunk();
  } else if (slot->refs() > 1) {
    std::unique_ptr<Chunk> copy = slot->Copy();
    copy->ForEach([sm](uint32_t, dblock_t b, bool) { sm->Inc(b); });
    slot->ClearAllSole();  // its blocks are in two chunk objects now
    slot->Unref();         // others still hold it
    slot = copy.release();
  }
  return *slot;
}

std::unique_ptr<Chunk> MappingTable::DetachChunk(size_t index) {
  Chunk* c = chunks_[index];
  chunks_[index] = nullptr;
  if (c != nullptr && c->Unref()) return std::unique_ptr<Chunk>(c);
  return nullptr;
}

void MappingTable::ShareChunk(size_t index, Chunk* c) {
  assert(chunks_[index] == nullptr);
  c->Ref();
  chunks_[index] = c;
}

void MappingTable::DropIfEmpty(vblock_t vb) {
  Chunk*& slot = chunks_[vb >> kChunkShift];
  if (slot != nullptr && slot->empty() && slot->refs() == 1) {
    delete slot;
    slot = nullptr;
  }
}

void MappingTable::Resize(vblock_t new_nr_vblocks) {
  size_t n = ChunkCount(new_nr_vblocks);
  for (size_t i = n; i < chunks_.size(); ++i) {
    assert(chunks_[i] == nullptr || chunks_[i]->empty());
    if (chunks_[i] != nullptr && chunks_[i]->Unref()) delete chunks_[i];
  }
  chunks_.resize(n, nullptr);
  nr_vblocks_ = new_nr_vblocks;
}

size_t MappingTable::MemoryUsage() const {
  std::unordered_set<const Chunk*> counted;  // a table holds each chunk once
  return MemoryUsage(&counted);
}

size_t MappingTable::MemoryUsage(std::unordered_set<const Chunk*>* counted) const {
  size_t bytes = chunks_.capacity() * sizeof(Chunk*);
  for (const Chunk* c : chunks_) {
    if (c != nullptr && counted->insert(c).second) bytes += c->MemoryUsage();
  }
  return bytes;
}

}  // namespace thinsim
