// engine_bench: Google Benchmark programs for the engine's hot paths
// (pool/pool.h), on in-memory pools. bench/README.md says what each one
// measures and holds the results measured so far.
//
//   build-bench/bench/engine_bench                          # everything (a few minutes)
//   build-bench/bench/engine_bench --benchmark_filter=Cow   # a regex over the names
//
// Conventions:
//   - "4K" I/O is 4096 bytes at a 4K-aligned offset; the first argument of
//     every data-path benchmark is the pool's block size (65536, the default,
//     or 4096).
//   - Everything before a benchmark's timing loop (building the pool, filling
//     volumes) is not timed; state that must be re-created while the loop runs
//     (holes, shared blocks) is re-created between PauseTiming/ResumeTiming.
//   - Pools that would need more memory than the machine has (1M mapped blocks
//     of 64K = 64 GiB) use PoolOptions::null_data: the metadata is real, the
//     data is dropped.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "pool/pool.h"

namespace thinsim {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kIo = 4 * kKiB;  // the "4K" of a 4K read or write
constexpr uint32_t kDefaultBs = 64 * 1024;
constexpr uint64_t kOneM = uint64_t{1} << 20;  // "1M mapped blocks"

// A benchmark cannot go on after a failed engine call: say why and stop.
void Must(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "engine_bench: %s failed: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

// splitmix64: a cheap, good-enough generator for offsets inside a loop.
struct Rng {
  uint64_t x;
  explicit Rng(uint64_t seed) : x(seed) {}
  uint64_t Next() {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
};

std::vector<uint8_t> Pattern(size_t len, uint64_t seed) {
  std::vector<uint8_t> buf(len);
  Rng rng(seed);
  for (size_t i = 0; i < len; i += 8) {
    uint64_t v = rng.Next() | 1;  // never an all-zero word
    for (size_t j = 0; j < 8 && i + j < len; ++j) buf[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  return buf;
}

// A pool with one volume "vol" open for writing.
struct Bed {
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Volume> vol;
  uint32_t bs = 0;
  uint64_t nr_vblocks = 0;

  Bed(uint64_t pool_bytes, uint32_t block_size, uint64_t vol_bytes, bool null_data,
      Strategy strategy = Strategy::kNone) {
    PoolOptions o;
    o.size = pool_bytes;
    o.block_size = block_size;
    o.null_data = null_data;
    Must(Pool::Open(o, &pool), "Pool::Open");
    Must(pool->CreateVolume("vol", vol_bytes, strategy), "CreateVolume");
    Must(pool->OpenVolume("vol", /*writable=*/true, &vol), "OpenVolume");
    bs = block_size;
    nr_vblocks = vol_bytes / block_size;
  }
  ~Bed() {
    if (vol) pool->CloseVolume(vol, /*writable=*/true);
  }
  Bed(const Bed&) = delete;
  Bed& operator=(const Bed&) = delete;

  // Writes the whole volume front to back in pieces of `piece` bytes.
  void Fill(uint64_t piece = 4 * kMiB) {
    uint64_t size = nr_vblocks * bs;
    piece = std::min(piece, size);
    std::vector<uint8_t> buf = Pattern(piece, 42);
    for (uint64_t off = 0; off < size; off += piece) {
      Must(pool->Write(*vol, buf.data(), std::min(piece, size - off), off), "Write (fill)");
    }
  }
  void Snapshot(const std::string& name) {
    Must(pool->CreateSnapshots({SnapshotRequest{"vol", name}}, /*read_only=*/false),
         "CreateSnapshots");
  }
};

std::vector<uint32_t> Shuffled(uint64_t n, uint64_t seed) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  std::shuffle(v.begin(), v.end(), std::mt19937_64(seed));
  return v;
}

// ---- Reads and overwrites of mapped, exclusive blocks -----------------------

// A 256 MiB volume, fully written, one per block size, shared by every thread
// and every run of the benchmarks below (so ->Threads(2) works on one pool).
// Overwrites keep every block mapped and exclusive.
Bed& SharedMapped(uint32_t bs) {
  static std::mutex mu;
  static std::map<uint32_t, std::unique_ptr<Bed>> beds;
  std::lock_guard<std::mutex> lock(mu);
  auto& bed = beds[bs];
  if (!bed) {
    bed = std::make_unique<Bed>(256 * kMiB, bs, 256 * kMiB, /*null_data=*/false);
    bed->Fill();
  }
  return *bed;
}

// 4K read at a random 4K-aligned offset of mapped data.
void BM_ReadMapped(benchmark::State& state) {
  Bed& bed = SharedMapped(static_cast<uint32_t>(state.range(0)));
  const uint64_t pages = bed.nr_vblocks * bed.bs / kIo;
  Rng rng(1234 + state.thread_index());
  std::vector<uint8_t> buf(kIo);
  for (auto _ : state) {
    uint64_t off = rng.Next() % pages * kIo;
    Must(bed.pool->Read(*bed.vol, buf.data(), kIo, off), "Read");
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kIo);
}
BENCHMARK(BM_ReadMapped)->ArgName("bs")->Arg(65536)->Arg(4096)->ThreadRange(1, 2)->UseRealTime();

// 4K write at a random offset of mapped, exclusive data: overwrite in place.
void BM_OverwriteExclusive(benchmark::State& state) {
  Bed& bed = SharedMapped(static_cast<uint32_t>(state.range(0)));
  const uint64_t pages = bed.nr_vblocks * bed.bs / kIo;
  Rng rng(5678 + state.thread_index());
  std::vector<uint8_t> buf = Pattern(kIo, 7 + state.thread_index());
  for (auto _ : state) {
    uint64_t off = rng.Next() % pages * kIo;
    Must(bed.pool->Write(*bed.vol, buf.data(), kIo, off), "Write");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kIo);
}
BENCHMARK(BM_OverwriteExclusive)
    ->ArgName("bs")
    ->Arg(65536)
    ->Arg(4096)
    ->ThreadRange(1, 2)
    ->UseRealTime();

// ---- First write into a hole ------------------------------------------------

// Writes `len` bytes at the start of each block of an empty 256 MiB volume in
// order; when every block is mapped, trims the volume (not timed) and starts
// again. len == bs: a full-block write (no zeroing needed); len == 4K < bs: a
// partial write into a fresh block whose rest must read as zero.
// null:1 runs the same on a null_data pool: the engine's own cost without
// the memcpy and the page faults of fresh (discarded) data pages.
void BM_WriteHole(benchmark::State& state) {
  const auto bs = static_cast<uint32_t>(state.range(0));
  const auto len = static_cast<uint32_t>(state.range(1));
  const bool null_data = state.range(2) != 0;
  Bed bed(256 * kMiB, bs, 256 * kMiB, null_data);
  std::vector<uint8_t> buf = Pattern(len, 9);
  uint64_t vb = 0;
  for (auto _ : state) {
    if (vb == bed.nr_vblocks) {
      state.PauseTiming();
      Must(bed.pool->Trim(*bed.vol, bed.nr_vblocks * bs, 0), "Trim");
      vb = 0;
      state.ResumeTiming();
    }
    Must(bed.pool->Write(*bed.vol, buf.data(), len, vb * bs), "Write");
    ++vb;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * len);
}
BENCHMARK(BM_WriteHole)
    ->ArgNames({"bs", "len", "null"})
    ->Args({65536, 65536, 0})
    ->Args({65536, 4096, 0})
    ->Args({4096, 4096, 0})
    ->Args({65536, 65536, 1})
    ->Args({4096, 4096, 1});

// ---- Trim -------------------------------------------------------------------

// Trim of 64 MiB of mapped, exclusive blocks in one request (1024 blocks of
// 64K or 16384 of 4K), rewritten outside the timing. Items are blocks
// unmapped. Freed blocks are discarded (madvise on the memory store) under the
// pool's exclusive metadata lock, so this is also how long a large trim or a
// volume delete holds up every other request.
void BM_TrimMapped(benchmark::State& state) {
  const auto bs = static_cast<uint32_t>(state.range(0));
  const uint64_t range = 64 * kMiB;
  Bed bed(range, bs, range, /*null_data=*/false);
  for (auto _ : state) {
    state.PauseTiming();
    bed.Fill();
    state.ResumeTiming();
    Must(bed.pool->Trim(*bed.vol, range, 0), "Trim");
  }
  state.SetItemsProcessed(state.iterations() * (range / bs));
}
BENCHMARK(BM_TrimMapped)->ArgName("bs")->Arg(65536)->Arg(4096)->Unit(benchmark::kMicrosecond);

// ---- Copy-on-write ----------------------------------------------------------

// 4K writes to blocks shared with a snapshot. A fully written 64 MiB volume is
// snapshotted, then every block is written once (4K at its start) in random
// order: each write breaks sharing (allocate; copy the whole block unless the
// write covers it; the first write in each 64-block chunk also copies the
// chunk). When every block has been written, a new snapshot is taken (not
// timed) and, once more than `kept` snapshots exist, the oldest is deleted.
// kept > 1 models periodic snapshots that are kept (hourly backups): the
// blocks the origin overwrote then live in older snapshots of the family.
// null:1 uses a null_data pool: the engine's metadata cost alone.
// reserve:3 gives the volume the `full` strategy (every write guaranteed,
// exact per-block reservation accounting on every CoW).
void BM_CowAfterSnapshot(benchmark::State& state) {
  const auto bs = static_cast<uint32_t>(state.range(0));
  const auto kept = static_cast<size_t>(state.range(1));
  const bool null_data = state.range(2) != 0;
  const auto strategy = static_cast<Strategy>(state.range(3));
  const uint64_t vol_bytes = 64 * kMiB;
  // Full: each kept snapshot reserves a copy of the blocks it shares.
  const uint64_t copies = strategy == Strategy::kNone ? kept + 2 : 2 * kept + 3;
  Bed bed(copies * vol_bytes, bs, vol_bytes, null_data, strategy);
  bed.Fill();
  const std::vector<uint32_t> order = Shuffled(bed.nr_vblocks, 11);
  std::vector<uint8_t> buf = Pattern(kIo, 13);
  std::deque<std::string> snaps;
  uint64_t next_snap = 0;
  auto resnap = [&] {
    if (snaps.size() >= kept) {
      Must(bed.pool->DeleteVolume(snaps.front()), "DeleteVolume");
      snaps.pop_front();
    }
    std::string name = std::to_string(next_snap++);
    name.insert(name.begin(), 's');  // not "s" + ...: GCC 12's -Wrestrict false positive
    snaps.push_back(std::move(name));
    bed.Snapshot(snaps.back());
  };
  resnap();
  size_t pos = 0;
  for (auto _ : state) {
    if (pos == order.size()) {
      state.PauseTiming();
      resnap();
      pos = 0;
      state.ResumeTiming();
    }
    Must(bed.pool->Write(*bed.vol, buf.data(), kIo, uint64_t{order[pos]} * bs), "Write");
    ++pos;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * kIo);
}
BENCHMARK(BM_CowAfterSnapshot)
    ->ArgNames({"bs", "kept", "null", "reserve"})
    ->Args({65536, 1, 0, 0})
    ->Args({4096, 1, 0, 0})
    ->Args({65536, 16, 0, 0})
    ->Args({65536, 1, 1, 0})
    ->Args({65536, 16, 1, 0})
    ->Args({4096, 1, 1, 0})
    ->Args({65536, 1, 1, 3})
    ->Args({65536, 16, 1, 3});

// ---- Snapshot creation ------------------------------------------------------

// CreateSnapshots of a volume with `mapped` blocks mapped (Provision of the
// whole range), in a volume of `factor` x `mapped` blocks (factor 1: fully
// mapped; 16: one block in 16 mapped). The snapshot is deleted again outside
// the timing. Iterations are fixed because the untimed delete is O(mapped).
// reserve: the volume's reservation strategy, 0 = none, 3 = full (enum
// Strategy); the pool then has room to reserve a copy of every block (an
// active full or volume-mode origin's blocks all become shared).
void BM_CreateSnapshot(benchmark::State& state) {
  const uint64_t mapped = static_cast<uint64_t>(state.range(0));
  const uint64_t factor = static_cast<uint64_t>(state.range(1));
  const auto strategy = static_cast<Strategy>(state.range(2));
  const uint64_t pool_blocks = strategy == Strategy::kNone ? mapped : 2 * mapped * factor;
  Bed bed(pool_blocks * kDefaultBs, kDefaultBs, mapped * factor * kDefaultBs, /*null_data=*/true,
          strategy);
  if (factor == 1) {
    Must(bed.pool->Provision("vol", 0, mapped * kDefaultBs), "Provision");
  } else {
    for (uint64_t i = 0; i < mapped; ++i) {
      Must(bed.pool->Provision("vol", i * factor * kDefaultBs, kDefaultBs), "Provision");
    }
  }
  for (auto _ : state) {
    bed.Snapshot("snap");
    state.PauseTiming();
    Must(bed.pool->DeleteVolume("snap"), "DeleteVolume");
    state.ResumeTiming();
  }
  state.counters["mapped_blocks"] = static_cast<double>(mapped);
}
BENCHMARK(BM_CreateSnapshot)
    ->ArgNames({"mapped", "factor", "reserve"})
    ->Args({1 << 10, 1, 0})
    ->Args({100 << 10, 1, 0})
    ->Args({1 << 20, 1, 0})
    ->Args({1 << 20, 16, 0})
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(2000);
BENCHMARK(BM_CreateSnapshot)
    ->ArgNames({"mapped", "factor", "reserve"})
    ->Args({1 << 10, 1, 3})
    ->Args({100 << 10, 1, 3})
    ->Args({1 << 20, 1, 3})
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(20);

// ---- Metadata memory per mapped block ---------------------------------------

enum class Layout {
  kLinear,         // (a) 1M blocks written front to back
  kRandom,         // (b) the same 1M blocks written in random order
  kSparse,         // (c) 1M blocks at random places of a 16M-block volume
  kSparseStrided,  // (c') every 16th block of a 16M-block volume
  kSnapshot,       // (d) (a) plus a snapshot of it; both volumes counted
};

// Heap bytes in use (small chunks plus mmap'ed large ones).
size_t HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// Pool::MetadataMemoryUsage() with 1M mapped blocks of 64K in a pool of
// exactly 1M blocks (so the space map's 4 bytes per pool block are also 4
// per mapped block). The one timed iteration is the filling of the volume
// (1M single-block writes), so the time is the metadata cost of 1M
// allocating writes in that order.
//
// Counters:
//   bytes_per_mapped_block  MetadataMemoryUsage() / pool blocks in use
//   bytes_per_vol_mapping   MetadataMemoryUsage() / sum of the volumes'
//                           mapped blocks (differs only for the snapshot)
//   heap_per_mapped_block   real heap growth (glibc mallinfo2, allocator
//                           overhead included; shared chunks counted once)
//                           / pool blocks in use
void BM_MetadataMemory(benchmark::State& state, Layout layout) {
  const uint64_t mapped = kOneM;
  const uint64_t factor = (layout == Layout::kSparse || layout == Layout::kSparseStrided) ? 16 : 1;
  const uint64_t vol_blocks = mapped * factor;

  // The order of vblocks to write, built before the heap is measured.
  std::vector<uint32_t> order;
  switch (layout) {
    case Layout::kLinear:
    case Layout::kSnapshot:
      order.resize(mapped);
      std::iota(order.begin(), order.end(), 0u);
      break;
    case Layout::kRandom:
      order = Shuffled(mapped, 17);
      break;
    case Layout::kSparse: {
      order.resize(vol_blocks);
      std::iota(order.begin(), order.end(), 0u);
      std::mt19937_64 gen(19);
      for (uint64_t i = 0; i < mapped; ++i) {  // partial Fisher-Yates: a random 1M of 16M
        std::uniform_int_distribution<uint64_t> pick(i, vol_blocks - 1);
        std::swap(order[i], order[pick(gen)]);
      }
      order.resize(mapped);
      order.shrink_to_fit();
      break;
    }
    case Layout::kSparseStrided:
      order.resize(mapped);
      for (uint64_t i = 0; i < mapped; ++i) order[i] = static_cast<uint32_t>(i * factor);
      break;
  }
  std::vector<uint8_t> buf(kDefaultBs, 0x5a);

  std::unique_ptr<Bed> bed;
  size_t heap_before = 0;
  for (auto _ : state) {
    state.PauseTiming();
    bed.reset();
    heap_before = HeapInUse();
    bed = std::make_unique<Bed>(mapped * kDefaultBs, kDefaultBs, vol_blocks * kDefaultBs,
                                /*null_data=*/true);
    state.ResumeTiming();
    for (uint32_t vb : order) {
      Must(bed->pool->Write(*bed->vol, buf.data(), kDefaultBs, uint64_t{vb} * kDefaultBs), "Write");
    }
    if (layout == Layout::kSnapshot) bed->Snapshot("snap");
  }
  const size_t heap = HeapInUse() - heap_before;
  const size_t reported = bed->pool->MetadataMemoryUsage();
  const PoolInfo info = bed->pool->QueryPool();
  uint64_t vol_mappings = 0;
  for (const VolumeInfo& v : bed->pool->QueryVolumes()) vol_mappings += v.mapped_blocks;
  if (info.used_blocks != mapped) {
    std::fprintf(stderr, "engine_bench: expected %llu blocks in use, pool says %llu\n",
                 static_cast<unsigned long long>(mapped),
                 static_cast<unsigned long long>(info.used_blocks));
    std::abort();
  }
  state.counters["mapped_blocks"] = static_cast<double>(info.used_blocks);
  state.counters["bytes_per_mapped_block"] =
      static_cast<double>(reported) / static_cast<double>(info.used_blocks);
  state.counters["bytes_per_vol_mapping"] =
      static_cast<double>(reported) / static_cast<double>(vol_mappings);
  state.counters["heap_per_mapped_block"] =
      static_cast<double>(heap) / static_cast<double>(info.used_blocks);
  state.counters["metadata_MiB"] = static_cast<double>(reported) / kMiB;
}
BENCHMARK_CAPTURE(BM_MetadataMemory, linear, Layout::kLinear)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_MetadataMemory, random, Layout::kRandom)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_MetadataMemory, sparse16_random, Layout::kSparse)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_MetadataMemory, sparse16_strided, Layout::kSparseStrided)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_MetadataMemory, snapshot_of_linear, Layout::kSnapshot)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// ---- Extents ----------------------------------------------------------------

enum class ExtentLayout {
  kFull,      // every block mapped and exclusive: one data extent
  kEmpty,     // nothing mapped: one hole, skipped 64 blocks at a time
  kHalf,      // every other 64-block chunk mapped: 8192 extents of each kind
  kSnapshot,  // full, then snapshotted: every block shared (reported HOLE)
};

// Extents over the whole of a 1M-block (64 GiB, 64K blocks) volume, in one
// call as the engine allows (nbdkit asks at most 4 GiB at a time; the cost
// is per block either way). Items are blocks scanned.
void BM_Extents(benchmark::State& state, ExtentLayout layout) {
  const uint64_t blocks = kOneM;
  Bed bed(blocks * kDefaultBs, kDefaultBs, blocks * kDefaultBs, /*null_data=*/true);
  switch (layout) {
    case ExtentLayout::kFull:
    case ExtentLayout::kSnapshot:
      Must(bed.pool->Provision("vol", 0, blocks * kDefaultBs), "Provision");
      if (layout == ExtentLayout::kSnapshot) bed.Snapshot("snap");
      break;
    case ExtentLayout::kEmpty:
      break;
    case ExtentLayout::kHalf:
      for (uint64_t c = 0; c < blocks / 64; c += 2) {
        Must(bed.pool->Provision("vol", c * 64 * kDefaultBs, 64 * kDefaultBs), "Provision");
      }
      break;
  }
  std::vector<Extent> out;
  for (auto _ : state) {
    Must(bed.pool->Extents(*bed.vol, blocks * kDefaultBs, 0, &out), "Extents");
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["extents"] = static_cast<double>(out.size());
  state.SetItemsProcessed(state.iterations() * blocks);
}
BENCHMARK_CAPTURE(BM_Extents, full, ExtentLayout::kFull)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Extents, empty, ExtentLayout::kEmpty)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Extents, half, ExtentLayout::kHalf)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Extents, snapshot, ExtentLayout::kSnapshot)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace thinsim

int main(int argc, char** argv) {
#ifdef NDEBUG
  benchmark::AddCustomContext("thinsim_asserts", "off");
#else
  // pool/ asserts (e.g. in SpaceMap) cost time: numbers from such a build
  // are not comparable. Build with -DCMAKE_BUILD_TYPE=Release.
  benchmark::AddCustomContext("thinsim_asserts", "ON (not a Release build)");
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
