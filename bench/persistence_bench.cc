// persistence_bench: what persistence costs as a pool grows (pool/
// persistence.cc, metadata/journal.h), on real pools in a directory on the
// local disk (block size 4K; data files are sparse).
//
//   build-bench/bench/persistence_bench                               # all (~2-4 minutes)
//   build-bench/bench/persistence_bench --benchmark_filter=Commit     # one family
//   PERSISTENCE_BENCH_DIR=/var/tmp build-bench/bench/persistence_bench
//
// BM_CommitOneBlock/N: a pool whose volume maps N blocks (filled cheaply by
//   Pool::Provision over whole ranges: no data is written). Each timed
//   iteration writes one 4K block to an unmapped vblock (which allocates a
//   block and dirties one chunk) and calls Commit(): data fdatasync, log
//   append + fdatasync, superblock rewrite + fdatasync. Between iterations,
//   untimed, the block is trimmed and that is committed too, so N stays put.
//   The claim under test: commit cost does not grow with N. Counters: p50,
//   p99 and max latency (a Checkpoint, written when the log passes 64 MiB,
//   would show as a max spike; `checkpoints` counts generation switches seen
//   while timing), the log's size and its growth per commit.
// BM_Reopen/N: the same pool is closed (the Pool object destroyed) and
//   Pool::Open replays its metadata and rebuilds every counter. Counter
//   `s_per_M_mappings` is the time per million mappings; `generation` > 1
//   means the reopen read a checkpoint (the fill crossed 64 MiB of log),
//   else the fill's transactions are replayed from the log.
//
// Setup (pool creation, filling) is not timed; it is printed to stderr, and
// includes a checkpoint for the largest pools.
#include <benchmark/benchmark.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pool/pool.h"

namespace thinsim {
namespace {

constexpr uint32_t kBs = 4096;
// Blocks provisioned per Provision call while filling (bounds the engine's
// per-request plan).
constexpr uint64_t kFillStep = uint64_t{1} << 18;
// Spare vblocks after the mapped ones: where the timed writes go.
constexpr uint64_t kSpare = 1024;

using Clock = std::chrono::steady_clock;

void Must(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "persistence_bench: %s failed: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string BaseDir() {
  const char* d = std::getenv("PERSISTENCE_BENCH_DIR");
  if (d != nullptr && *d != '\0') return d;
  // /var/tmp: on the local disk, never a tmpfs.
  return "/var/tmp";
}

// The newest metadata generation in dir (the largest N of metadata.ckpt.N)
// and the size of its log.
void Generation(const std::string& dir, uint64_t* gen, uint64_t* log_bytes) {
  *gen = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    const char* prefix = "metadata.ckpt.";
    if (std::strncmp(e->d_name, prefix, std::strlen(prefix)) == 0) {
      *gen = std::max<uint64_t>(*gen, std::strtoull(e->d_name + std::strlen(prefix), nullptr, 10));
    }
  }
  closedir(d);
  struct stat st;
  std::string log = dir + "/metadata.log." + std::to_string(*gen);
  *log_bytes = stat(log.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

void RemoveTree(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    unlink((dir + "/" + e->d_name).c_str());
  }
  closedir(d);
  rmdir(dir.c_str());
}

// One persistent pool with volume "vol" mapping `mapped` blocks, kept for
// the whole run (building the largest takes seconds) and removed at exit.
struct Bed {
  std::string dir;
  uint64_t mapped = 0;
  std::unique_ptr<Pool> pool;
  std::shared_ptr<Volume> vol;

  PoolOptions Options() const {
    PoolOptions o;
    o.dir = dir;
    o.block_size = kBs;
    return o;
  }
  void Close() {
    if (vol) pool->CloseVolume(vol, true);
    vol.reset();
    pool.reset();
  }
  void OpenVol() { Must(pool->OpenVolume("vol", true, &vol), "OpenVolume"); }
  ~Bed() {
    Close();
    RemoveTree(dir);
  }
};

Bed& GetBed(uint64_t mapped) {
  static std::map<uint64_t, std::unique_ptr<Bed>> beds;
  auto it = beds.find(mapped);
  if (it != beds.end()) return *it->second;
  auto bed = std::make_unique<Bed>();
  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/thinsim-persistence-bench-XXXXXX", BaseDir().c_str());
  if (mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "persistence_bench: mkdtemp %s: %s\n", tmpl, std::strerror(errno));
    std::abort();
  }
  bed->dir = tmpl;
  bed->mapped = mapped;
  const uint64_t vblocks = mapped + kSpare;
  PoolOptions o = bed->Options();
  o.size = (vblocks + kSpare) * kBs;
  auto t0 = Clock::now();
  Must(Pool::Open(o, &bed->pool), "Pool::Open (create)");
  Must(bed->pool->CreateVolume("vol", vblocks * kBs, Strategy::kNone), "CreateVolume");
  bed->OpenVol();
  for (uint64_t first = 0; first < mapped; first += kFillStep) {
    uint64_t n = std::min(kFillStep, mapped - first);
    Must(bed->pool->Provision("vol", first * kBs, n * kBs), "Provision");
  }
  auto t1 = Clock::now();
  Must(bed->pool->Commit(), "Commit (fill)");
  auto t2 = Clock::now();
  uint64_t gen, log_bytes;
  Generation(bed->dir, &gen, &log_bytes);
  std::fprintf(stderr,
               "persistence_bench: pool of %llu mapped 4K blocks in %s: fill %.2fs, its commit %.2fs "
               "(generation %llu, log %.1f MiB)\n",
               static_cast<unsigned long long>(mapped), bed->dir.c_str(), Seconds(t1 - t0),
               Seconds(t2 - t1), static_cast<unsigned long long>(gen), log_bytes / 1048576.0);
  Bed& ref = *bed;
  beds.emplace(mapped, std::move(bed));
  return ref;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void BM_CommitOneBlock(benchmark::State& state) {
  Bed& bed = GetBed(static_cast<uint64_t>(state.range(0)));
  if (!bed.pool) {
    Must(Pool::Open(bed.Options(), &bed.pool), "Pool::Open");
    bed.OpenVol();
  }
  std::vector<uint8_t> buf(kBs, 0x5a);
  const uint64_t probe = bed.mapped * kBs;  // the first spare vblock
  uint64_t gen0, log0;
  Generation(bed.dir, &gen0, &log0);
  std::vector<double> lat;
  uint64_t n = 0;
  for (auto _ : state) {
    buf[0] = static_cast<uint8_t>(++n);
    auto t0 = Clock::now();
    Must(bed.pool->Write(*bed.vol, buf.data(), kBs, probe), "Write");
    Must(bed.pool->Commit(), "Commit");
    double s = Seconds(Clock::now() - t0);
    state.SetIterationTime(s);
    lat.push_back(s);
    // Untimed: give the block back so that N stays put.
    Must(bed.pool->Trim(*bed.vol, kBs, probe), "Trim");
    Must(bed.pool->Commit(), "Commit (trim)");
  }
  uint64_t gen1, log1;
  Generation(bed.dir, &gen1, &log1);
  state.counters["mapped"] = static_cast<double>(bed.mapped);
  state.counters["p50_us"] = Percentile(lat, 0.50) * 1e6;
  state.counters["p99_us"] = Percentile(lat, 0.99) * 1e6;
  state.counters["max_us"] = Percentile(lat, 1.0) * 1e6;
  state.counters["checkpoints"] = static_cast<double>(gen1 - gen0);
  // Log bytes per commit (each iteration commits twice), when no checkpoint
  // restarted the log meanwhile: a flat number means commits stay O(change).
  if (gen1 == gen0 && n > 0) {
    state.counters["log_bytes_per_commit"] = static_cast<double>(log1 - log0) / static_cast<double>(2 * n);
  }
  state.counters["log_MiB"] = log1 / 1048576.0;
}

void BM_Reopen(benchmark::State& state) {
  Bed& bed = GetBed(static_cast<uint64_t>(state.range(0)));
  uint64_t gen, log_bytes;
  Generation(bed.dir, &gen, &log_bytes);
  double total = 0;
  int64_t n = 0;
  for (auto _ : state) {
    state.PauseTiming();
    bed.Close();  // commits nothing: every change is committed already
    state.ResumeTiming();
    auto t0 = Clock::now();
    Must(Pool::Open(bed.Options(), &bed.pool), "Pool::Open (reopen)");
    double s = Seconds(Clock::now() - t0);
    state.SetIterationTime(s);
    total += s;
    ++n;
    state.PauseTiming();
    bed.OpenVol();
    VolumeInfo info;
    Must(bed.pool->QueryVolume("vol", &info), "QueryVolume");
    if (info.mapped_blocks != bed.mapped) {
      std::fprintf(stderr, "persistence_bench: reopened pool maps %llu blocks, want %llu\n",
                   static_cast<unsigned long long>(info.mapped_blocks),
                   static_cast<unsigned long long>(bed.mapped));
      std::abort();
    }
    state.ResumeTiming();
  }
  state.counters["mapped"] = static_cast<double>(bed.mapped);
  state.counters["s_per_M_mappings"] = n ? total / n / (static_cast<double>(bed.mapped) / 1e6) : 0;
  state.counters["generation"] = static_cast<double>(gen);
  state.counters["log_MiB"] = log_bytes / 1048576.0;
}

BENCHMARK(BM_CommitOneBlock)
    ->ArgName("mapped")
    ->Arg(1000)
    ->Arg(10000)
    ->Arg(100000)
    ->Arg(1000000)
    ->Arg(10000000)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(2.0);

BENCHMARK(BM_Reopen)
    ->ArgName("mapped")
    ->Arg(100000)
    ->Arg(1000000)
    ->Arg(10000000)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace
}  // namespace thinsim

BENCHMARK_MAIN();
