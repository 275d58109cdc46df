// DirtyBitmap: dense granule bits in atomic words (dirty_bitmap.h).
#include "bitmap/dirty_bitmap.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <string>

#include "base/sizes.h"

namespace thinsim {
namespace {

constexpr uint64_t kAllOnes = ~uint64_t{0};

// The bits [lo, hi] (inclusive, 0..63) of a word.
uint64_t BitsBetween(unsigned lo, unsigned hi) {
  uint64_t upto_hi = hi == 63 ? kAllOnes : (uint64_t{1} << (hi + 1)) - 1;
  return upto_hi & (kAllOnes << lo);
}

}  // namespace

Status DirtyBitmap::ValidateGranularity(uint64_t granularity) { return ValidateBitmapGranularity(granularity); }

Status DirtyBitmap::Make(uint64_t size, uint64_t granularity, std::unique_ptr<DirtyBitmap>* out) {
  THINSIM_RETURN_IF_ERROR(ValidateGranularity(granularity));
  *out = std::make_unique<DirtyBitmap>(size, granularity);
  return Status::OK();
}

DirtyBitmap::DirtyBitmap(uint64_t size, uint64_t granularity)
    : size_(0), granularity_(granularity), shift_(std::countr_zero(granularity)), granules_(0),
      word_count_(0) {
  assert(ValidateGranularity(granularity).ok());
  Reshape(size);
}

bool DirtyBitmap::Mark(uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= size_) return false;
  uint64_t end = length > size_ - offset ? size_ : offset + length;
  return SetRange(offset >> shift_, (end - 1) >> shift_);
}

void DirtyBitmap::MarkAll() {
  if (granules_ > 0) SetRange(0, granules_ - 1);
}

bool DirtyBitmap::Test(uint64_t offset) const {
  return offset < size_ && TestGranule(offset >> shift_);
}

bool DirtyBitmap::Covers(uint64_t offset, uint64_t length) const {
  if (length == 0 || offset >= size_) return true;
  uint64_t end = length > size_ - offset ? size_ : offset + length;
  const uint64_t first = offset >> shift_, last = (end - 1) >> shift_;
  // Only the words of the range: the hot path asks this of every request.
  for (uint64_t w = first / 64; w <= last / 64; ++w) {
    unsigned lo = w == first / 64 ? first % 64 : 0;
    unsigned hi = w == last / 64 ? last % 64 : 63;
    uint64_t mask = BitsBetween(lo, hi);
    if ((words_[w].load(std::memory_order_relaxed) & mask) != mask) return false;
  }
  return true;
}

bool DirtyBitmap::AllDirty() const { return FindNext(0, false) == granules_; }

uint64_t DirtyBitmap::CountGranules() const {
  uint64_t n = 0;
  for (size_t i = 0; i < word_count_; ++i) n += std::popcount(words_[i].load(std::memory_order_relaxed));
  return n;
}

uint64_t DirtyBitmap::DirtyBytes() const {
  uint64_t bytes = CountGranules() << shift_;
  // The last granule may reach past size.
  if (granules_ > 0 && TestGranule(granules_ - 1)) bytes -= (granules_ << shift_) - size_;
  return bytes;
}

void DirtyBitmap::Clear() {
  for (size_t i = 0; i < word_count_; ++i) words_[i].store(0, std::memory_order_relaxed);
}

void DirtyBitmap::Clear(uint64_t offset, uint64_t length) {
  if (length == 0 || offset >= size_) return;
  uint64_t end = length > size_ - offset ? size_ : offset + length;
  uint64_t first = (offset + granularity_ - 1) >> shift_;  // round in
  uint64_t end_granule = end == size_ ? granules_ : end >> shift_;
  if (first < end_granule) ClearRange(first, end_granule - 1);
}

void DirtyBitmap::Merge(const DirtyBitmap& other) {
  if (&other == this) return;
  if (other.granularity_ == granularity_) {
    // Same granules: word by word. Bits of `other` past this bitmap's last
    // granule (other is larger) are masked off.
    size_t n = std::min(word_count_, other.word_count_);
    for (size_t i = 0; i < n; ++i) {
      uint64_t bits = other.words_[i].load(std::memory_order_relaxed);
      if (i == word_count_ - 1) bits &= TailMask();
      if (bits != 0) words_[i].fetch_or(bits, std::memory_order_relaxed);
    }
    return;
  }
  uint64_t common = std::min(size_, other.size_);
  for (uint64_t g = other.FindNext(0, true); g < other.granules_;) {
    uint64_t end = other.FindNext(g, false);
    uint64_t lo = g << other.shift_;
    if (lo >= common) break;
    uint64_t hi = std::min(other.GranuleEnd(end - 1), common);
    Mark(lo, hi - lo);
    g = other.FindNext(end, true);
  }
}

bool DirtyBitmap::NextDirtyRun(uint64_t from, uint64_t max_length, uint64_t* offset, uint64_t* length) const {
  uint64_t g = FindNext(from >> shift_, true);
  if (g >= granules_) return false;
  // Rounded up without overflow (max_length may be UINT64_MAX).
  const uint64_t max_granules = std::max<uint64_t>(1, (max_length >> shift_) + ((max_length & (granularity_ - 1)) != 0));
  uint64_t end = FindNext(g, false);
  end = std::min(end, g + max_granules);
  *offset = g << shift_;
  *length = GranuleEnd(end - 1) - *offset;
  return true;
}

void DirtyBitmap::Resize(uint64_t new_size) {
  const uint64_t old_size = size_;
  Reshape(new_size);
  if (new_size > old_size) Mark(old_size, new_size - old_size);
}

void DirtyBitmap::Reshape(uint64_t new_size) {
  const uint64_t granules = (new_size >> shift_) + ((new_size & (granularity_ - 1)) != 0 ? 1 : 0);
  const size_t word_count = (granules + 63) / 64;
  auto words = std::make_unique<std::atomic<uint64_t>[]>(word_count);
  for (size_t i = 0; i < std::min(word_count, word_count_); ++i) {
    words[i].store(words_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  size_ = new_size;
  granules_ = granules;
  word_count_ = word_count;
  words_ = std::move(words);
  if (word_count_ > 0) words_[word_count_ - 1].fetch_and(TailMask(), std::memory_order_relaxed);
}

boost::icl::interval_set<uint64_t> DirtyBitmap::DirtyRanges() const {
  using Interval = boost::icl::interval_set<uint64_t>::interval_type;
  boost::icl::interval_set<uint64_t> out;
  for (uint64_t g = FindNext(0, true); g < granules_;) {
    uint64_t end = FindNext(g, false);
    out.add(Interval::right_open(g << shift_, GranuleEnd(end - 1)));
    g = FindNext(end, true);
  }
  return out;
}

std::vector<DirtyBitmap::Extent> DirtyBitmap::Extents(uint64_t offset, uint64_t length) const {
  std::vector<Extent> out;
  if (offset >= size_) return out;
  uint64_t end = length > size_ - offset ? size_ : offset + length;
  for (uint64_t pos = offset; pos < end;) {
    uint64_t g = pos >> shift_;
    bool dirty = TestGranule(g);
    uint64_t next = FindNext(g, !dirty);
    uint64_t run_end = next >= granules_ ? end : std::min(end, next << shift_);
    out.push_back({pos, run_end - pos, dirty});
    pos = run_end;
  }
  return out;
}

std::vector<uint64_t> DirtyBitmap::Words() const {
  std::vector<uint64_t> out(word_count_);
  for (size_t i = 0; i < word_count_; ++i) out[i] = words_[i].load(std::memory_order_relaxed);
  return out;
}

Status DirtyBitmap::SetWords(std::span<const uint64_t> words) {
  if (words.size() != word_count_) {
    return Status::Invalid("bitmap of " + std::to_string(granules_) + " granules needs " +
                           std::to_string(word_count_) + " words, got " + std::to_string(words.size()));
  }
  if (word_count_ > 0 && (words.back() & ~TailMask()) != 0) {
    return Status::Invalid("bitmap words set bits past granule " + std::to_string(granules_));
  }
  for (size_t i = 0; i < word_count_; ++i) words_[i].store(words[i], std::memory_order_relaxed);
  return Status::OK();
}

bool DirtyBitmap::SetRange(uint64_t first, uint64_t last) {
  bool newly = false;
  for (uint64_t w = first / 64; w <= last / 64; ++w) {
    unsigned lo = w == first / 64 ? first % 64 : 0;
    unsigned hi = w == last / 64 ? last % 64 : 63;
    uint64_t mask = BitsBetween(lo, hi);
    // Reading first keeps an already dirty word's cache line shared.
    if ((words_[w].load(std::memory_order_relaxed) & mask) == mask) continue;
    uint64_t old = words_[w].fetch_or(mask, std::memory_order_relaxed);
    newly |= (old & mask) != mask;
  }
  return newly;
}

void DirtyBitmap::ClearRange(uint64_t first, uint64_t last) {
  for (uint64_t w = first / 64; w <= last / 64; ++w) {
    unsigned lo = w == first / 64 ? first % 64 : 0;
    unsigned hi = w == last / 64 ? last % 64 : 63;
    words_[w].fetch_and(~BitsBetween(lo, hi), std::memory_order_relaxed);
  }
}

bool DirtyBitmap::TestGranule(uint64_t g) const {
  return g < granules_ && (words_[g / 64].load(std::memory_order_relaxed) >> (g % 64) & 1) != 0;
}

uint64_t DirtyBitmap::FindNext(uint64_t from, bool dirty) const {
  for (uint64_t w = from / 64; w < word_count_; ++w) {
    uint64_t bits = words_[w].load(std::memory_order_relaxed);
    if (!dirty) bits = ~bits;
    if (w == from / 64) bits &= kAllOnes << (from % 64);
    if (bits != 0) return std::min(granules_, w * 64 + std::countr_zero(bits));
  }
  return granules_;
}

uint64_t DirtyBitmap::GranuleEnd(uint64_t g) const { return std::min(size_, (g + 1) << shift_); }

uint64_t DirtyBitmap::TailMask() const {
  return granules_ % 64 == 0 ? kAllOnes : (uint64_t{1} << (granules_ % 64)) - 1;
}

}  // namespace thinsim
