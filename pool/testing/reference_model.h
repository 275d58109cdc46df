// The reference model of the engine used by pool_model_test and by
// fuzz/engine_fuzzer: a naive dense model that keeps, for every volume, for
// every vblock the identity of the data block it maps (a "block id"; 0 for
// a hole) and its provisioned mark, plus the volume's reservation strategy,
// read-only flag, activation pin, open connections (writable and all) and
// creation order. Block ids are shared exactly when the engine shares a
// dblock, so the model derives by brute force, from scratch, each block's
// owners o(b) and guarantors g(b), the pool's used/free/reserved blocks and
// every per-volume counter (SPEC section 5):
//   - a volume guarantees nothing if it is a read-only snapshot; otherwise
//     `full` guarantees every vblock, `volume` every vblock while active
//     (pinned or a writable connection open), `provision` its provisioned
//     vblocks, `none` nothing;
//   - reserved = sum over blocks of need(b) (g if o > g, else g - 1, 0 when
//     g = 0) + 1 per guaranteed unmapped vblock;
//   - a volume is charged (VolumeInfo::reserved_blocks) 1 per guaranteed
//     unmapped vblock, 1 per guaranteed block with o > g, and 1 per block
//     every owner guarantees unless it is the oldest owner.
// Also the engine's observable state (EngineState) and how two differ.
// pool/testing/model_driver.h runs operations against the engine and this
// model. Test-only code.
#ifndef THINSIM_POOL_TESTING_REFERENCE_MODEL_H_
#define THINSIM_POOL_TESTING_REFERENCE_MODEL_H_

#include <algorithm>
#include <cstdint>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/icl/interval_map.hpp>

#include "pool/pool.h"

namespace thinsim::model {

using Bytes = std::vector<uint8_t>;

// The model's pools have 4K blocks.
constexpr uint32_t kBS = 4096;

inline uint64_t BlocksFor(uint64_t bytes) { return (bytes + kBS - 1) / kBS; }

// ---- The reference model ----------------------------------------------------

struct MVol {
  uint64_t id = 0;  // creation order
  uint64_t size = 0;
  bool read_only = false;
  Strategy strategy = Strategy::kNone;
  bool pinned = false;
  uint32_t wconns = 0;   // writable connections open
  uint32_t conns = 0;    // all connections open
  std::string origin;    // "" when none, or deleted
  std::vector<uint64_t> bid;   // per vblock; 0 = hole
  std::vector<uint8_t> prov;   // per vblock

  bool active() const { return pinned || wconns > 0; }
  bool operator==(const MVol&) const = default;
};

struct Guar {
  bool all = false;
  bool provisioned = false;
  bool Covers(bool prov) const { return all || (provisioned && prov); }
  bool Any() const { return all || provisioned; }
};

inline Guar GuaranteeOf(const MVol& v) {
  Guar g;
  if (v.read_only) return g;
  g.all = v.strategy == Strategy::kFull || (v.strategy == Strategy::kVolume && v.active());
  g.provisioned = v.strategy == Strategy::kProvision;
  return g;
}

inline int64_t Need(uint64_t owners, uint64_t guarantors) {
  if (guarantors == 0) return 0;
  return static_cast<int64_t>(owners > guarantors ? guarantors : guarantors - 1);
}

// Volume metadata only (bytes live in ModelDriver::data_), so that
// predictions can copy and change it cheaply.
struct Model {
  uint64_t total = 0;
  uint64_t next_bid = 1;
  uint64_t next_id = 1;
  std::map<std::string, MVol> vols;
  bool operator==(const Model&) const = default;
};

// Everything the model derives from its state, by brute force.
struct Acct {
  struct Block {
    uint32_t owners = 0;
    uint32_t guarantors = 0;
    uint64_t oldest = UINT64_MAX;  // lowest creation order among owners
  };
  std::unordered_map<uint64_t, Block> blocks;
  int64_t used = 0;
  int64_t free = 0;
  int64_t reserved = 0;
  std::map<std::string, uint64_t> vol_reserved;
};

inline Acct Account(const Model& m) {
  Acct a;
  for (const auto& [name, v] : m.vols) {
    Guar g = GuaranteeOf(v);
    for (size_t vb = 0; vb < v.bid.size(); ++vb) {
      if (v.bid[vb] == 0) {
        a.reserved += g.all;
        continue;
      }
      Acct::Block& b = a.blocks[v.bid[vb]];
      ++b.owners;
      b.guarantors += g.Covers(v.prov[vb]);
      b.oldest = std::min(b.oldest, v.id);
    }
  }
  for (const auto& [bid, b] : a.blocks) a.reserved += Need(b.owners, b.guarantors);
  a.used = static_cast<int64_t>(a.blocks.size());
  a.free = static_cast<int64_t>(m.total) - a.used;
  for (const auto& [name, v] : m.vols) {
    Guar g = GuaranteeOf(v);
    uint64_t r = 0;
    for (size_t vb = 0; vb < v.bid.size(); ++vb) {
      if (v.bid[vb] == 0) {
        r += g.all;
        continue;
      }
      if (!g.Covers(v.prov[vb])) continue;
      const Acct::Block& b = a.blocks.at(v.bid[vb]);
      if (b.owners > b.guarantors || b.oldest != v.id) ++r;
    }
    a.vol_reserved[name] = r;
  }
  return a;
}

inline bool Fits(const Model& m) {
  Acct a = Account(m);
  return a.reserved <= a.free;
}

inline int64_t Reserved(const Model& m) { return Account(m).reserved; }

// The message AdmitLocked gives when `delta` more reserved blocks do not fit.
inline std::string NeedsMore(int64_t delta) { return "needs " + std::to_string(delta) + " more reserved block"; }

// What a range covers: touched blocks [first, last], whole blocks [uf, ue).
struct Span {
  uint64_t off, len, end;
  uint64_t first, last;
  uint64_t uf, ue;
  bool whole(uint64_t vb) const { return vb >= uf && vb < ue; }
};
inline Span SpanOf(uint64_t off, uint64_t len) {
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

// Extents the engine must report for [off, off + len) of `v`: holes are
// HOLE|ZERO, mapped blocks data; under kSpace a shared block the volume does
// not guarantee is HOLE. Built as an ICL interval map, which joins touching
// byte ranges of one type by itself: an independent check of the engine's
// hand-written coalescing. (Types are stored plus one: a map absorbs the
// codomain's zero, which is the data type.)
inline std::vector<Extent> ModelExtents(const MVol& v, const Acct& a, uint64_t off, uint64_t len,
                                 ExtentsMode mode) {
  using Range = boost::icl::interval<uint64_t>;
  Guar g = GuaranteeOf(v);
  const bool space = mode == ExtentsMode::kSpace;
  boost::icl::interval_map<uint64_t, uint32_t> types;
  for (uint64_t vb = off / kBS; vb <= (off + len - 1) / kBS; ++vb) {
    uint32_t type = Extent::kHole | Extent::kZero;
    if (v.bid[vb] != 0) {
      bool shared = a.blocks.at(v.bid[vb]).owners > 1;
      type = space && shared && !g.Covers(v.prov[vb]) ? Extent::kHole : 0;
    }
    types.set({Range::right_open(vb * kBS, (vb + 1) * kBS), type + 1});
  }
  std::vector<Extent> want;
  for (const auto& [range, type] : types & Range::right_open(off, off + len)) {
    want.push_back({range.lower(), range.upper() - range.lower(), type - 1});
  }
  return want;
}

inline std::string ExtentsString(const std::vector<Extent>& ext) {
  std::ostringstream o;
  for (const Extent& e : ext) o << "[" << e.offset << ",+" << e.length << " t" << e.type << "]";
  return o.str();
}

// ---- The engine's observable state -------------------------------------------

struct EngineState {
  PoolInfo pool;
  std::vector<VolumeInfo> vols;  // creation order
  std::map<std::string, Bytes> data;
  std::map<std::string, std::vector<Extent>> extents;  // whole volume
};

inline std::string VolumeInfoString(const VolumeInfo& v) {
  std::ostringstream o;
  o << v.name << "{size=" << v.size << " strategy=" << StrategyName(v.strategy)
    << " active=" << v.active << " ro=" << v.read_only << " origin=" << v.origin.value_or("-")
    << " mapped=" << v.mapped_blocks << " excl=" << v.exclusive_blocks
    << " shared=" << v.shared_blocks << " prov=" << v.provisioned_blocks
    << " reserved=" << v.reserved_blocks << " conns=" << v.connections
    << " wconns=" << v.writable_connections << " pinned=" << v.pinned << "}";
  return o.str();
}

// "" when equal; else what differs. The pool mode is left out: a refused
// write legitimately turns the pool out-of-data-space.
inline std::string DiffStates(const EngineState& a, const EngineState& b) {
  std::ostringstream d;
  auto pool = [](const PoolInfo& p) {
    std::ostringstream o;
    o << "total=" << p.total_blocks << " used=" << p.used_blocks << " free=" << p.free_blocks
      << " reserved=" << p.reserved_blocks << " volumes=" << p.nr_volumes;
    return o.str();
  };
  if (pool(a.pool) != pool(b.pool)) d << "pool: " << pool(a.pool) << " -> " << pool(b.pool) << "\n";
  std::string va, vb;
  for (const auto& v : a.vols) va += VolumeInfoString(v) + "\n";
  for (const auto& v : b.vols) vb += VolumeInfoString(v) + "\n";
  if (va != vb) d << "volumes before:\n" << va << "volumes after:\n" << vb;
  for (const auto& [name, bytes] : a.data) {
    auto it = b.data.find(name);
    if (it == b.data.end()) continue;  // reported with the volumes
    if (it->second != bytes) {
      size_t n = std::min(bytes.size(), it->second.size());
      size_t at = std::mismatch(bytes.begin(), bytes.begin() + static_cast<long>(n), it->second.begin()).first -
                  bytes.begin();
      d << "data of " << name << " changed at byte " << at << " (vblock " << at / kBS << ")\n";
    }
    if (ExtentsString(a.extents.at(name)) != ExtentsString(b.extents.at(name))) {
      d << "extents of " << name << ": " << ExtentsString(a.extents.at(name)) << " -> "
        << ExtentsString(b.extents.at(name)) << "\n";
    }
  }
  return d.str();
}

// ---- The test -----------------------------------------------------------------

}  // namespace thinsim::model

#endif  // THINSIM_POOL_TESTING_REFERENCE_MODEL_H_
