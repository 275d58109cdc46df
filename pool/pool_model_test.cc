// Model-based property test of the engine.
//
// A naive dense reference model keeps, for every volume, all of its bytes
// and for every vblock the identity of the data block it maps (a "block id";
// 0 for a hole) and its provisioned mark. Block ids are shared exactly when
// the engine shares a dblock, so the model derives owners per block, the
// pool's used blocks and every per-volume counter by brute force.
//
// Random sequences of operations run against both; after every step every
// byte of every volume, every counter, the pool's used/free blocks and a few
// Extents answers must agree, and TEST_CheckCounters() must pass. The model
// predicts exactly which requests fail (NoSpace, ReadOnly, Unsupported,
// Exists, NotFound) and a failed request must change nothing.
//
// Rules the model follows (pool_io.cc PlanLocked): a request needs one new
// block per touched block that is a hole or shared, except that trims never
// allocate, MAY_TRIM zeroes only need blocks for shared partial edges (holes
// stay holes) and whole blocks of them are unmapped. All-or-nothing.
//
// Reproduce one seed with THINSIM_MODEL_SEED=N; THINSIM_MODEL_STEPS=N changes
// the number of steps per seed.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "pool/pool.h"
#include "pool/volume.h"

namespace thinsim {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint32_t kBS = 4096;
constexpr uint64_t kInitialPoolBlocks = 64;
constexpr uint64_t kMaxPoolBlocks = 100;
constexpr size_t kMaxVolumes = 7;

uint64_t EnvOr(const char* name, uint64_t def) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : def;
}

// ---- The reference model ----------------------------------------------------

struct MVol {
  uint64_t size = 0;
  bool read_only = false;
  Bytes data;                  // `size` bytes
  std::vector<uint64_t> bid;   // per vblock; 0 = hole
  std::vector<uint8_t> prov;   // per vblock

  uint64_t nr_vblocks() const { return bid.size(); }
};

struct Model {
  uint64_t total = kInitialPoolBlocks;
  uint64_t next_bid = 1;
  std::map<std::string, MVol> vols;

  std::unordered_map<uint64_t, int> Owners() const {
    std::unordered_map<uint64_t, int> owners;
    for (const auto& [name, v] : vols) {
      for (uint64_t b : v.bid) {
        if (b != 0) ++owners[b];
      }
    }
    return owners;
  }
  uint64_t Used() const { return Owners().size(); }
  uint64_t Free() const { return total - Used(); }
};

uint64_t BlocksFor(uint64_t bytes) { return (bytes + kBS - 1) / kBS; }

// What a range covers: touched blocks [first, last], whole blocks [uf, ue).
struct Span {
  uint64_t off, len, end;
  uint64_t first, last;
  uint64_t uf, ue;
  bool whole(uint64_t vb) const { return vb >= uf && vb < ue; }
};
Span SpanOf(uint64_t off, uint64_t len) {
  Span s;
  s.off = off;
  s.len = len;
  s.end = off + len;
  s.first = off / kBS;
  s.last = (s.end - 1) / kBS;
  s.uf = (off + kBS - 1) / kBS;
  s.ue = s.end / kBS;
  return s;
}

// ---- The test -----------------------------------------------------------------

class PoolModelTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  enum class Op {
    kWrite, kTrim, kZeroMayTrim, kZeroNoHole, kProvision, kFastZeroMayTrim, kFastZeroNoHole,
    kSnapshot, kDelete, kResize, kGrowPool, kCreate, kBusy,
  };

  void SetUp() override {
    PoolOptions o;
    o.block_size = kBS;
    o.size = kInitialPoolBlocks * kBS;
    Status s = Pool::Open(o, &pool_);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  uint64_t R(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool Chance(int percent) { return R(100) < static_cast<uint64_t>(percent); }

  std::string PickVolume() {
    auto it = model_.vols.begin();
    std::advance(it, static_cast<long>(R(model_.vols.size())));
    return it->first;
  }

  // A random in-range request: small, multi-block, block-aligned,
  // sector-aligned or most of the volume.
  std::pair<uint64_t, uint64_t> PickRange(uint64_t size) {
    uint64_t off = 0, len = 1;
    switch (R(6)) {
      case 0: off = R(size); len = 1 + R(600); break;
      case 1: off = R(size); len = 1 + R(6 * kBS); break;
      case 2: off = R(BlocksFor(size)) * kBS; len = (1 + R(6)) * kBS; break;
      case 3: off = R(size / 512) * 512; len = (1 + R(24)) * 512; break;
      case 4: off = R(2 * kBS); len = size; break;
      case 5: off = R(size); len = (1 + R(4)) * kBS - R(2) * R(kBS); break;
    }
    if (off >= size) off = size - 1;
    len = std::max<uint64_t>(1, std::min(len, size - off));
    return {off, len};
  }

  uint64_t PickVolumeSize() {
    uint64_t blocks = 16 + R(33);
    uint64_t size = blocks * kBS;
    if (Chance(30)) size -= (1 + R(7)) * 512;  // a partial last block
    return size;
  }

  std::string NewName(const char* prefix) { return prefix + std::to_string(next_name_++); }

  // Checks an engine status against the expected code and, for NoSpace, the
  // need/free numbers in its message.
  void ExpectStatus(const Status& s, ErrorCode want, uint64_t need = 0, uint64_t free = 0) {
    ASSERT_EQ(s.code(), want) << "engine said " << s.ToString();
    ++outcomes_[want];
    if (want == ErrorCode::kNoSpace) {
      EXPECT_NE(s.message().find("need " + std::to_string(need) + " block"), std::string::npos)
          << s.message();
      EXPECT_NE(s.message().find(" " + std::to_string(free) + " free"), std::string::npos) << s.message();
    }
  }

  // Opens `name` for I/O: writable unless it is a read-only snapshot.
  std::shared_ptr<Volume> OpenIo(const std::string& name, bool* writable) {
    *writable = !model_.vols.at(name).read_only;
    std::shared_ptr<Volume> v;
    Status s = pool_->OpenVolume(name, *writable, &v);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return v;
  }

  // ---- Data-plane operations ---------------------------------------------------

  void DataOp(Op op) {
    const std::string name = PickVolume();
    MVol& mv = model_.vols.at(name);
    auto [off, len] = PickRange(mv.size);
    const Span sp = SpanOf(off, len);
    static const char* kNames[] = {"write", "trim", "zero-may-trim", "zero-no-hole", "provision",
                                   "fast-zero-may-trim", "fast-zero-no-hole"};
    desc_ = std::string(kNames[static_cast<int>(op)]) + " " + name + " [" + std::to_string(off) +
            ", +" + std::to_string(len) + ")";

    Bytes data;
    if (op == Op::kWrite) {
      data.resize(len);
      uint8_t base = static_cast<uint8_t>(rng_());
      for (uint64_t i = 0; i < len; ++i) data[i] = static_cast<uint8_t>(base + i * 13 + (i >> 9));
    }

    // Prediction.
    auto owners = model_.Owners();
    auto shared = [&](uint64_t vb) { return mv.bid[vb] != 0 && owners[mv.bid[vb]] > 1; };
    auto hole = [&](uint64_t vb) { return mv.bid[vb] == 0; };
    ErrorCode want = ErrorCode::kOk;
    uint64_t need = 0;
    if (mv.read_only) {
      want = ErrorCode::kReadOnly;
    } else {
      switch (op) {
        case Op::kWrite:
        case Op::kZeroNoHole:
        case Op::kProvision:
          for (uint64_t vb = sp.first; vb <= sp.last; ++vb) need += hole(vb) || shared(vb);
          break;
        case Op::kZeroMayTrim:
          for (uint64_t vb = sp.first; vb <= sp.last; ++vb) need += !sp.whole(vb) && shared(vb);
          break;
        case Op::kFastZeroMayTrim:
          for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
            if (!sp.whole(vb) && !hole(vb)) want = ErrorCode::kUnsupported;
          }
          break;
        case Op::kFastZeroNoHole:
          want = ErrorCode::kUnsupported;  // every block needs zeroing or allocating
          break;
        default:
          break;
      }
      if (want == ErrorCode::kOk && need > model_.Free()) want = ErrorCode::kNoSpace;
    }
    const uint64_t free_before = model_.Free();

    // The engine.
    Status s;
    if (op == Op::kProvision) {
      s = pool_->Provision(name, off, len);
    } else {
      bool writable;
      std::shared_ptr<Volume> v = OpenIo(name, &writable);
      ASSERT_TRUE(v);
      switch (op) {
        case Op::kWrite: s = pool_->Write(*v, data.data(), len, off); break;
        case Op::kTrim: s = pool_->Trim(*v, len, off); break;
        case Op::kZeroMayTrim: s = pool_->Zero(*v, len, off, Pool::kMayTrim); break;
        case Op::kZeroNoHole: s = pool_->Zero(*v, len, off, 0); break;
        case Op::kFastZeroMayTrim: s = pool_->Zero(*v, len, off, Pool::kMayTrim | Pool::kFastZero); break;
        case Op::kFastZeroNoHole: s = pool_->Zero(*v, len, off, Pool::kFastZero); break;
        default: break;
      }
      pool_->CloseVolume(v, writable);
    }
    ASSERT_NO_FATAL_FAILURE(ExpectStatus(s, want, need, free_before));
    if (want != ErrorCode::kOk) return;

    // The model's effect.
    auto fresh = [&](uint64_t vb) { mv.bid[vb] = model_.next_bid++; };
    auto unmap = [&](uint64_t vb) {
      mv.bid[vb] = 0;
      mv.prov[vb] = 0;
    };
    switch (op) {
      case Op::kWrite:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (hole(vb) || shared(vb)) fresh(vb);  // keeps the provisioned mark
        }
        std::copy(data.begin(), data.end(), mv.data.begin() + static_cast<long>(off));
        break;
      case Op::kTrim:
        for (uint64_t vb = sp.uf; vb < sp.ue; ++vb) {
          unmap(vb);
          std::fill_n(mv.data.begin() + static_cast<long>(vb * kBS), kBS, 0);
        }
        break;
      case Op::kZeroMayTrim:
      case Op::kFastZeroMayTrim:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (sp.whole(vb)) {
            unmap(vb);
          } else if (shared(vb)) {
            fresh(vb);
          }
        }
        std::fill_n(mv.data.begin() + static_cast<long>(off), len, 0);
        break;
      case Op::kZeroNoHole:
      case Op::kProvision:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (hole(vb) || shared(vb)) fresh(vb);
          mv.prov[vb] = 1;
        }
        if (op == Op::kZeroNoHole) std::fill_n(mv.data.begin() + static_cast<long>(off), len, 0);
        break;
      default:
        break;
    }
  }

  // ---- Control-plane operations ------------------------------------------------

  void Snapshot() {
    const bool read_only = Chance(20);
    std::vector<SnapshotRequest> reqs;
    size_t n = 1 + (Chance(30) ? R(3) : 0);
    for (size_t i = 0; i < n; ++i) reqs.push_back({PickVolume(), NewName("s")});
    ErrorCode want = ErrorCode::kOk;
    if (Chance(8)) {  // an impossible request among good ones: nothing may change
      if (Chance(50)) {
        reqs[R(n)].name = PickVolume();
        want = ErrorCode::kExists;
      } else {
        reqs[R(n)].origin = "missing";
        want = ErrorCode::kNotFound;
      }
    }
    if (want == ErrorCode::kOk && model_.vols.size() + n > kMaxVolumes) return;
    desc_ = std::string("snapshot") + (read_only ? " --read-only" : "");
    for (const auto& r : reqs) desc_ += " " + r.origin + ":" + r.name;
    ASSERT_NO_FATAL_FAILURE(ExpectStatus(pool_->CreateSnapshots(reqs, read_only), want));
    if (want != ErrorCode::kOk) return;
    for (const auto& r : reqs) {
      MVol snap = model_.vols.at(r.origin);
      snap.read_only = read_only;
      model_.vols[r.name] = std::move(snap);
    }
  }

  void Delete() {
    std::string name = PickVolume();
    desc_ = "delete " + name;
    ASSERT_NO_FATAL_FAILURE(ExpectStatus(pool_->DeleteVolume(name), ErrorCode::kOk));
    model_.vols.erase(name);
  }

  void Create() {
    std::string name = NewName("v");
    uint64_t size = PickVolumeSize();
    desc_ = "create " + name + " " + std::to_string(size);
    ASSERT_NO_FATAL_FAILURE(ExpectStatus(pool_->CreateVolume(name, size, std::nullopt), ErrorCode::kOk));
    MVol v;
    v.size = size;
    v.data.assign(size, 0);
    v.bid.assign(BlocksFor(size), 0);
    v.prov.assign(BlocksFor(size), 0);
    model_.vols[name] = std::move(v);
  }

  void Resize() {
    std::string name = PickVolume();
    MVol& mv = model_.vols.at(name);
    uint64_t size = Chance(20) ? mv.size : PickVolumeSize();
    if (Chance(20)) size = mv.size + (1 + R(8)) * 512;  // often inside the same last block
    desc_ = "resize " + name + " " + std::to_string(mv.size) + " -> " + std::to_string(size);
    ErrorCode want = ErrorCode::kOk;
    uint64_t need = 0;
    const uint64_t free_before = model_.Free();
    bool break_tail = false;
    if (mv.read_only) {
      want = ErrorCode::kReadOnly;
    } else if (size > mv.size && mv.size % kBS != 0) {
      // Growing zeroes the stale tail of the old last block: in place, or
      // breaking its sharing.
      uint64_t tail = mv.size / kBS;
      auto owners = model_.Owners();
      if (mv.bid[tail] != 0 && owners[mv.bid[tail]] > 1) {
        need = 1;
        break_tail = true;
        if (model_.Free() == 0) want = ErrorCode::kNoSpace;
      }
    }
    ASSERT_NO_FATAL_FAILURE(ExpectStatus(pool_->ResizeVolume(name, size), want, need, free_before));
    if (want != ErrorCode::kOk) return;
    if (break_tail) mv.bid[mv.size / kBS] = model_.next_bid++;
    mv.size = size;
    mv.data.resize(size, 0);
    mv.bid.resize(BlocksFor(size), 0);
    mv.prov.resize(BlocksFor(size), 0);
  }

  void GrowPool() {
    uint64_t total = model_.total + 1 + R(8);
    desc_ = "grow pool to " + std::to_string(total) + " blocks";
    ASSERT_NO_FATAL_FAILURE(ExpectStatus(pool_->Grow(total * kBS), ErrorCode::kOk));
    model_.total = total;
  }

  void BusyCheck() {
    std::string name = PickVolume();
    desc_ = "busy check " + name;
    std::shared_ptr<Volume> v;
    ASSERT_TRUE(pool_->OpenVolume(name, false, &v).ok());
    ExpectStatus(pool_->DeleteVolume(name), ErrorCode::kBusy);
    MVol& mv = model_.vols.at(name);
    if (!mv.read_only && mv.size > 512) {
      ExpectStatus(pool_->ResizeVolume(name, mv.size - 512), ErrorCode::kBusy);
    }
    if (mv.read_only) {
      std::shared_ptr<Volume> w;
      ExpectStatus(pool_->OpenVolume(name, true, &w), ErrorCode::kReadOnly);
    }
    pool_->CloseVolume(v, false);
  }

  // ---- Comparison -----------------------------------------------------------------

  void CompareAll() {
    Status s = pool_->TEST_CheckCounters();
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto owners = model_.Owners();
    PoolInfo p = pool_->QueryPool();
    ASSERT_EQ(p.total_blocks, model_.total);
    ASSERT_EQ(p.used_blocks, owners.size());
    ASSERT_EQ(p.free_blocks, model_.total - owners.size());
    ASSERT_EQ(p.nr_volumes, model_.vols.size());
    for (const auto& [name, mv] : model_.vols) {
      SCOPED_TRACE("volume " + name);
      VolumeInfo info;
      ASSERT_TRUE(pool_->QueryVolume(name, &info).ok());
      uint64_t mapped = 0, exclusive = 0, provisioned = 0;
      for (uint64_t vb = 0; vb < mv.nr_vblocks(); ++vb) {
        if (mv.bid[vb] == 0) continue;
        ++mapped;
        exclusive += owners[mv.bid[vb]] == 1;
        provisioned += mv.prov[vb];
      }
      ASSERT_EQ(info.size, mv.size);
      ASSERT_EQ(info.read_only, mv.read_only);
      ASSERT_EQ(info.mapped_blocks, mapped);
      ASSERT_EQ(info.exclusive_blocks, exclusive);
      ASSERT_EQ(info.shared_blocks, mapped - exclusive);
      ASSERT_EQ(info.provisioned_blocks, provisioned);

      std::shared_ptr<Volume> v;
      ASSERT_TRUE(pool_->OpenVolume(name, false, &v).ok());
      Bytes got(mv.size);
      s = pool_->Read(*v, got.data(), got.size(), 0);
      ASSERT_TRUE(s.ok()) << s.ToString();
      if (got != mv.data) {
        auto diff = std::mismatch(got.begin(), got.end(), mv.data.begin());
        uint64_t at = static_cast<uint64_t>(diff.first - got.begin());
        pool_->CloseVolume(v, false);
        FAIL() << "data differs at byte " << at << " (vblock " << at / kBS << "): engine "
               << int(*diff.first) << ", model " << int(*diff.second);
      }
      // A couple of random Extents queries.
      for (int i = 0; i < 2; ++i) {
        auto [off, len] = PickRange(mv.size);
        std::vector<Extent> ext;
        s = pool_->Extents(*v, len, off, &ext);
        ASSERT_TRUE(s.ok()) << s.ToString();
        std::vector<Extent> want;
        for (uint64_t vb = off / kBS; vb <= (off + len - 1) / kBS; ++vb) {
          uint32_t type = mv.bid[vb] == 0 ? (Extent::kHole | Extent::kZero)
                          : owners[mv.bid[vb]] > 1 ? Extent::kHole : 0;
          uint64_t a = std::max(off, vb * kBS), b = std::min(off + len, (vb + 1) * kBS);
          if (!want.empty() && want.back().type == type) {
            want.back().length = b - want.back().offset;
          } else {
            want.push_back({a, b - a, type});
          }
        }
        ASSERT_EQ(ext.size(), want.size()) << "extents of [" << off << ", +" << len << ")";
        for (size_t k = 0; k < want.size(); ++k) {
          ASSERT_EQ(ext[k].offset, want[k].offset) << k;
          ASSERT_EQ(ext[k].length, want[k].length) << k;
          ASSERT_EQ(ext[k].type, want[k].type) << k;
        }
      }
      pool_->CloseVolume(v, false);
    }
  }

  void RandomStep() {
    if (model_.vols.empty() || (model_.vols.size() < 2 && Chance(50))) return Create();
    uint64_t r = R(100);
    if (r < 30) return DataOp(Op::kWrite);
    if (r < 38) return DataOp(Op::kTrim);
    if (r < 45) return DataOp(Op::kZeroMayTrim);
    if (r < 50) return DataOp(Op::kZeroNoHole);
    if (r < 55) return DataOp(Op::kProvision);
    if (r < 58) return DataOp(Op::kFastZeroMayTrim);
    if (r < 59) return DataOp(Op::kFastZeroNoHole);
    if (r < 70) return Snapshot();
    if (r < 79) return model_.vols.size() > 1 ? Delete() : DataOp(Op::kTrim);
    if (r < 89) return Resize();
    if (r < 90) return model_.total < kMaxPoolBlocks && Chance(50) ? GrowPool() : DataOp(Op::kWrite);
    if (r < 95) return model_.vols.size() < kMaxVolumes ? Create() : Delete();
    return BusyCheck();
  }

  std::unique_ptr<Pool> pool_;
  Model model_;
  std::mt19937_64 rng_;
  uint64_t next_name_ = 0;
  std::string desc_;
  std::map<ErrorCode, int> outcomes_;
};

TEST_P(PoolModelTest, RandomOperationsMatchModel) {
  const uint32_t seed = static_cast<uint32_t>(EnvOr("THINSIM_MODEL_SEED", GetParam()));
  const uint64_t steps = EnvOr("THINSIM_MODEL_STEPS", 400);
  rng_.seed(seed);
  std::vector<std::string> history;
  for (uint64_t step = 0; step < steps; ++step) {
    desc_.clear();
    RandomStep();
    if (!desc_.empty()) history.push_back(desc_);
    if (!HasFatalFailure()) CompareAll();
    if (HasFatalFailure() || HasNonfatalFailure()) {
      std::ostringstream log;
      size_t from = history.size() > 12 ? history.size() - 12 : 0;
      for (size_t i = from; i < history.size(); ++i) log << "\n  " << i << ": " << history[i];
      FAIL() << "seed " << seed << " (THINSIM_MODEL_SEED=" << seed << "), step " << step
             << ": " << desc_ << "\nlast operations:" << log.str();
    }
  }
  // What the seed exercised, so that a change of the generator that stops
  // reaching a full pool is noticed.
  std::ostringstream summary;
  summary << "seed " << seed << ": " << steps << " steps;";
  for (const auto& [code, n] : outcomes_) summary << " " << ErrorClassName(code) << "=" << n;
  summary << "; final pool " << model_.Used() << "/" << model_.total << " used, "
          << model_.vols.size() << " volumes";
  std::printf("%s\n", summary.str().c_str());
}

INSTANTIATE_TEST_SUITE_P(Seeds, PoolModelTest, ::testing::Range<uint32_t>(1, 21));

}  // namespace
}  // namespace thinsim
