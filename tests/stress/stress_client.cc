// stress_client: a multi-connection stress test of a running thinsim server,
// checked against a model (issue 6).
//
// Several NBD connections to one export issue overlapping random reads,
// writes, zeroes (with and without MAY_TRIM, and FAST_ZERO), trims, flushes
// and block-status queries through libnbd's aio API, many in flight per
// connection, all driven by one event-loop thread. At the same time a
// control thread takes snapshots (of one volume, or of two at once), reads
// and checks them, writes into writable ones, snapshots snapshots, provisions
// ranges and deletes old snapshots through the real `thinsim` CLI.
//
// What is checked:
//   * Every 512-byte sector of every read is either zero or one whole write's
//     stamp (write id, sector index in that write, checksum), and that value
//     is one the sector could have had at some instant while the read was in
//     flight (the model below). Never torn, misplaced or stale.
//   * A block reported HOLE|ZERO by block status reads as zero at that time.
//   * Snapshots are point-in-time images: a sequential "generation writer"
//     writes generation g to slot 0, 1, 2, ... of a private region of vol0
//     and vol1, alternating volumes and connections and waiting for each
//     completion. In any snapshot the generations, in write order, never
//     increase and differ by at most one, and the number of writes the
//     snapshot holds lies between those completed before the snapshot
//     command started and those issued before it returned. The random region
//     of a snapshot is checked against the model like a read, and as one
//     image: every write in it is in it whole (no sector of it holds a value
//     that completed before that write was issued), and one instant fits
//     every sector (class PointInTime).
//   * Each read is one instant's image too: thinsim holds the range lock over
//     all of a read's blocks (a thinsim property; NBD does not promise it).
//   * Snapshot contents do not change while the origin is written (re-read
//     before deletion), writes into a snapshot never show in the origin, and
//     a snapshot of a snapshot equals it.
//   * After the run (flushed, quiescent): the final images match the model,
//     and every counter is exact: mapped blocks per block status, mapped =
//     exclusive + shared (exclusive and shared per block status when the
//     strategy is `none`), per-volume reserved blocks sum to the pool's,
//     reserved <= free, used + free = total; after deleting every snapshot,
//     used = the volumes' mapped blocks and the reservation is what the
//     strategy implies.
//
// The model. Each random-region sector keeps a list of candidate values:
// operations (writes; zeroes and trims, whose value is zero; the initial
// zero) with their issue and completion times on one logical clock. An
// operation is a valid value for a read issued at s and completed at e if
// it was issued before e and was not overwritten before s, i.e. no operation
// on the sector that was issued after it completed had itself completed
// before s. All times are taken on the client: issue times before sending,
// completion times after the reply, so the model only ever allows more, never
// less, than the server may do.
//
// Usage: stress_client --socket NBD.SOCK --control CTL.SOCK --cli THINSIM
//          [--seed N] [--seconds S] [--connections N] [--depth N]
//          [--block-size BYTES] [--strategy S] [--random-size BYTES]
//          [--gen-slots N] [--slot-layout aligned|half|straddle]
//          [--max-snapshots N] [--verbose]
// The volumes vol0 (random region + generation region) and vol1
// (generation region) must exist with the sizes stress_client --print-sizes
// prints for the same options. Exit status 0 if every check passed.
#include <fcntl.h>
#include <libnbd.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

extern char** environ;

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kSector = 512;
constexpr uint64_t kInf = UINT64_MAX;

// "t17" for time 17, "-" for kInf (never). Appended, not `"t" + ...`: GCC 12
// at -O3 flags that form with a false -Wrestrict.
std::string TimeName(uint64_t t) {
  if (t == kInf) return "-";
  std::string name = "t";
  name += std::to_string(t);
  return name;
}
constexpr uint64_t kDataMagic = 0x5354524553534441ull;  // "ADSSERTS"
constexpr uint64_t kGenMagic = 0x53545245535347ffull;
constexpr uint64_t kMiB = 1 << 20;

// ---- Options -------------------------------------------------------------------

struct Options {
  std::string socket, control, cli;
  uint64_t seed = 1;
  double seconds = 10;
  int connections = 4;
  int depth = 16;
  uint64_t block_size = 65536;
  std::string strategy = "none";
  uint64_t random_size = 16 * kMiB;
  uint64_t gen_slots = 32;
  std::string slot_layout = "straddle";
  int max_snapshots = 3;
  bool verbose = false;
  bool print_sizes = false;

  // Derived geometry.
  uint64_t slot_bytes = 0;  // one generation write
  uint64_t gen_base = 0;    // in vol0 (the random region comes first)
  uint64_t gen_skew = 0;    // slot 0 starts gen_skew bytes into the region
  uint64_t gen_region = 0;  // bytes, whole blocks
  uint64_t vol0_size = 0, vol1_size = 0;

  void Derive() {
    uint64_t bs = block_size;
    if (slot_layout == "aligned") {
      slot_bytes = bs;
      gen_skew = 0;
    } else if (slot_layout == "half") {
      slot_bytes = bs / 2;
      gen_skew = 0;
    } else {  // straddle: every slot crosses a block boundary
      slot_bytes = bs + 3 * kSector;
      gen_skew = kSector;
    }
    random_size = (random_size + bs - 1) / bs * bs;
    gen_base = random_size;
    gen_region = (gen_skew + gen_slots * slot_bytes + bs - 1) / bs * bs;
    vol0_size = random_size + gen_region;
    vol1_size = gen_region;
  }
  uint64_t SlotOffset(int vol, uint64_t slot) const {
    return (vol == 0 ? gen_base : 0) + gen_skew + slot * slot_bytes;
  }
};

Options opt;

// ---- Failures and logging ------------------------------------------------------

std::mutex log_mu;
std::atomic<int> nr_failures{0};
std::atomic<bool> stop_all{false};
const Clock::time_point t0 = Clock::now();

double Elapsed() { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void Log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Log(const char* fmt, ...) {
  std::lock_guard<std::mutex> lock(log_mu);
  std::fprintf(stdout, "[%7.3f] ", Elapsed());
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stdout, fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// Records a failed check. The first 30 are printed; after 200 the run stops.
void Fail(const std::string& what) {
  int n = ++nr_failures;
  if (n <= 30) Log("FAIL: %s", what.c_str());
  if (n == 30) Log("(further failures are counted, not printed)");
  if (n >= 200) stop_all = true;
}

// ---- Sector stamps -------------------------------------------------------------

uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// A sector is 64 words: [0] magic, [1] write id or generation, [2] index of
// the sector in its write (low 32 bits) and slot (high 32), [3] checksum,
// [4] volume, [5..63] payload. The checksum covers every word but itself.
constexpr size_t kWords = kSector / 8;

uint64_t Checksum(const uint64_t* w) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (size_t k = 0; k < kWords; ++k) {
    if (k != 3) h = Mix(h ^ (w[k] + k));
  }
  return h;
}

void Stamp(uint8_t* p, uint64_t magic, uint64_t id, uint32_t idx, uint32_t slot, uint64_t vol) {
  uint64_t w[kWords];
  w[0] = magic;
  w[1] = id;
  w[2] = (static_cast<uint64_t>(slot) << 32) | idx;
  w[4] = vol;
  uint64_t seed = Mix(id * 0x9e3779b97f4a7c15ull + w[2] * 31 + vol + magic);
  for (size_t k = 5; k < kWords; ++k) w[k] = Mix(seed + k);
  w[3] = Checksum(w);
  std::memcpy(p, w, kSector);
}

struct Sector {
  enum Kind { kZero, kData, kGen, kBad } kind = kZero;
  uint64_t id = 0;  // write id or generation
  uint32_t idx = 0, slot = 0;
  uint64_t vol = 0;
  std::string why;
};

Sector Decode(const uint8_t* p) {
  uint64_t w[kWords];
  std::memcpy(w, p, kSector);
  bool zero = true;
  for (size_t k = 0; k < kWords && zero; ++k) zero = w[k] == 0;
  Sector s;
  if (zero) return s;
  s.kind = Sector::kBad;
  if (w[0] != kDataMagic && w[0] != kGenMagic) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "neither zero nor a stamp (first words %016llx %016llx %016llx)",
                  (unsigned long long)w[0], (unsigned long long)w[1], (unsigned long long)w[2]);
    s.why = buf;
    return s;
  }
  s.id = w[1];
  s.idx = static_cast<uint32_t>(w[2]);
  s.slot = static_cast<uint32_t>(w[2] >> 32);
  s.vol = w[4];
  if (Checksum(w) != w[3]) {
    s.why = "stamp of write " + std::to_string(s.id) + " sector " + std::to_string(s.idx) +
            " with a bad checksum: torn or mixed sector";
    return s;
  }
  s.kind = w[0] == kDataMagic ? Sector::kData : Sector::kGen;
  return s;
}

uint64_t HashBytes(uint64_t h, const uint8_t* p, size_t n) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = Mix(h ^ w) + i;
  }
  return h;
}

// ---- The model -----------------------------------------------------------------

std::atomic<uint64_t> logical_clock{1};
uint64_t Tick() { return logical_clock.fetch_add(1); }

enum class OpKind : uint8_t { kInitial, kWrite, kZero, kForeign };
const char* OpKindName(OpKind k) {
  switch (k) {
    case OpKind::kInitial: return "initial";
    case OpKind::kWrite: return "write";
    case OpKind::kZero: return "zero";
    case OpKind::kForeign: return "snapshot-write";
  }
  return "?";
}

struct OpRec {
  OpKind kind;
  uint64_t off, len;  // the byte range whose value the op sets
  uint64_t start, end;
  bool failed;
  std::string what;   // for messages
};

struct Entry {
  uint64_t op;
  uint64_t killed;  // completion time of the first op proven to overwrite it
};

// Guarded by model_mu.
class Model {
 public:
  void Init(uint64_t sectors) {
    sectors_.assign(sectors, std::vector<Entry>{{0, kInf}});
    ops_[0] = OpRec{OpKind::kInitial, 0, sectors * kSector, 0, 0, false, "initial zero"};
  }

  uint64_t NewOp(OpKind kind, uint64_t off, uint64_t len, uint64_t start, std::string what) {
    uint64_t id = next_id_++;
    ops_[id] = OpRec{kind, off, len, start, kInf, false, std::move(what)};
    if (kind == OpKind::kForeign) return id;
    uint64_t h = Horizon();
    for (uint64_t x = off / kSector; x < (off + len) / kSector; ++x) {
      Gc(x, h);
      sectors_[x].push_back(Entry{id, kInf});
    }
    if (++since_gc_ >= 65536) CollectOps();
    return id;
  }

  void Complete(uint64_t id, uint64_t end, bool failed) {
    OpRec& op = ops_.at(id);
    op.end = end;
    if (op.kind == OpKind::kForeign) return;
    op.failed = failed;
    for (uint64_t x = op.off / kSector; x < (op.off + op.len) / kSector; ++x) {
      for (Entry& e : sectors_[x]) {
        if (e.op == id) {
          if (failed) e.killed = 0;  // it never happened
          continue;
        }
        if (!failed && ops_.at(e.op).end < op.start) e.killed = std::min(e.killed, end);
      }
    }
  }

  // Readers (and snapshot checks) in progress since `start` keep the values
  // they may see.
  void Hold(uint64_t start) { holds_.insert(start); }
  void Release(uint64_t start) { holds_.erase(holds_.find(start)); }

  // "" if `p` is a value sector `x` could have had at some instant in
  // [start, end].
  std::string Check(uint64_t x, const uint8_t* p, uint64_t start, uint64_t end) const {
    Sector s = Decode(p);
    std::string seen;
    switch (s.kind) {
      case Sector::kBad:
        return Describe(x, s.why, start, end);
      case Sector::kGen:
        return Describe(x, "a generation stamp (gen " + std::to_string(s.id) + ") in the random region",
                        start, end);
      case Sector::kZero:
        for (const Entry& e : sectors_[x]) {
          const OpRec& op = ops_.at(e.op);
          if ((op.kind == OpKind::kZero || op.kind == OpKind::kInitial) && Valid(e, start, end)) return "";
        }
        return Describe(x, "zeroes", start, end);
      case Sector::kData: {
        auto it = ops_.find(s.id);
        if (it == ops_.end()) {
          return Describe(x, "data of write " + std::to_string(s.id) +
                                 " sector " + std::to_string(s.idx) +
                                 " (long overwritten, or never a write here)",
                          start, end);
        }
        const OpRec& op = it->second;
        std::string w = "data of write " + std::to_string(s.id) + " (" + op.what + ") sector " +
                        std::to_string(s.idx);
        if (op.kind == OpKind::kForeign) {
          return Describe(x, w + ": written to a snapshot, seen in the origin", start, end);
        }
        if (op.kind != OpKind::kWrite || op.off / kSector + s.idx != x || s.idx >= op.len / kSector) {
          return Describe(x, w + ": misplaced (belongs to sector " +
                                 std::to_string(op.off / kSector + s.idx) + ")", start, end);
        }
        for (const Entry& e : sectors_[x]) {
          if (e.op == s.id && Valid(e, start, end)) return "";
        }
        return Describe(x, w + ": stale or not yet written", start, end);
      }
    }
    return "";
  }

  // Whether zero is a value sector x could have had in [start, end].
  bool ZeroValid(uint64_t x, uint64_t start, uint64_t end) const {
    for (const Entry& e : sectors_[x]) {
      const OpRec& op = ops_.at(e.op);
      if ((op.kind == OpKind::kZero || op.kind == OpKind::kInitial) && Valid(e, start, end)) return true;
    }
    return false;
  }

  std::string Describe(uint64_t x, const std::string& seen, uint64_t start, uint64_t end) const {
    char head[200];
    std::snprintf(head, sizeof head, "sector %llu (byte %llu, block %llu) read [t%llu, t%llu] holds %s; candidates:",
                  (unsigned long long)x, (unsigned long long)(x * kSector),
                  (unsigned long long)(x * kSector / opt.block_size), (unsigned long long)start,
                  (unsigned long long)end, seen.c_str());
    std::string out = head;
    for (const Entry& e : sectors_[x]) {
      const OpRec& op = ops_.at(e.op);
      char buf[300];
      std::snprintf(buf, sizeof buf, "\n      op %llu %s [%llu, +%llu) issued t%llu done %s killed %s%s%s %s",
                    (unsigned long long)e.op, OpKindName(op.kind), (unsigned long long)op.off,
                    (unsigned long long)op.len, (unsigned long long)op.start, TimeName(op.end).c_str(),
                    TimeName(e.killed).c_str(),
                    op.failed ? " FAILED" : "", Valid(e, start, end) ? " (valid)" : "", op.what.c_str());
      out += buf;
    }
    return out;
  }

  // The instants, as integers k standing for k + 0.5 on the logical clock,
  // at which sector x could hold the value `s` (an op issued before the
  // instant and not yet overwritten), within the interval (start, end).
  // Appends merged, sorted windows [lo, hi]; none if the value is invalid.
  void Windows(uint64_t x, const Sector& s, uint64_t start, uint64_t end,
               std::vector<std::pair<uint64_t, uint64_t>>* out) const {
    std::vector<std::pair<uint64_t, uint64_t>> w;
    for (const Entry& e : sectors_[x]) {
      const OpRec& op = ops_.at(e.op);
      bool match = s.kind == Sector::kZero ? (op.kind == OpKind::kZero || op.kind == OpKind::kInitial)
                                           : (s.kind == Sector::kData && e.op == s.id);
      if (!match || op.failed) continue;
      uint64_t lo = std::max(op.start, start);
      uint64_t hi = std::min(e.killed, end);
      if (lo < hi) w.emplace_back(lo, hi - 1);
    }
    std::sort(w.begin(), w.end());
    for (auto [lo, hi] : w) {
      if (!out->empty() && lo <= out->back().second + 1) {
        out->back().second = std::max(out->back().second, hi);
      } else {
        out->emplace_back(lo, hi);
      }
    }
  }

  // Whether the value `s` seen at sector x is certainly older than op w
  // (each op it could be completed before w was issued), so that it cannot
  // be in an image that holds w at another sector of w's range.
  bool CertainlyOlder(uint64_t x, const Sector& s, uint64_t w, uint64_t start, uint64_t end) const {
    const OpRec& ow = ops_.at(w);
    if (s.kind == Sector::kData) {
      if (s.id == w) return false;
      auto it = ops_.find(s.id);
      return it != ops_.end() && it->second.end < ow.start;
    }
    for (const Entry& e : sectors_[x]) {
      const OpRec& op = ops_.at(e.op);
      if ((op.kind == OpKind::kZero || op.kind == OpKind::kInitial) && Valid(e, start, end) &&
          !(op.end < ow.start)) {
        return false;
      }
    }
    return true;
  }
  const OpRec* Op(uint64_t id) const {
    auto it = ops_.find(id);
    return it == ops_.end() ? nullptr : &it->second;
  }

  size_t nr_ops() const { return ops_.size(); }

 private:
  bool Valid(const Entry& e, uint64_t start, uint64_t end) const {
    const OpRec& op = ops_.at(e.op);
    return !op.failed && op.start < end && e.killed > start;
  }

  uint64_t Horizon() const {
    uint64_t h = logical_clock.load();
    if (!holds_.empty()) h = std::min(h, *holds_.begin());
    return h;
  }

  // Drops entries no reader issued from now on can see.
  void Gc(uint64_t x, uint64_t horizon) {
    auto& v = sectors_[x];
    v.erase(std::remove_if(v.begin(), v.end(), [&](const Entry& e) { return e.killed < horizon; }),
            v.end());
  }

  // Forgets completed ops no sector refers to any more.
  void CollectOps() {
    since_gc_ = 0;
    uint64_t h = Horizon();
    std::unordered_map<uint64_t, bool> used;
    for (uint64_t x = 0; x < sectors_.size(); ++x) {
      Gc(x, h);
      for (const Entry& e : sectors_[x]) used[e.op] = true;
    }
    for (auto it = ops_.begin(); it != ops_.end();) {
      const OpRec& op = it->second;
      bool keep = it->first == 0 || op.end == kInf || op.kind == OpKind::kForeign || used.count(it->first);
      it = keep ? std::next(it) : ops_.erase(it);
    }
  }

  std::vector<std::vector<Entry>> sectors_;
  std::unordered_map<uint64_t, OpRec> ops_;
  std::multiset<uint64_t> holds_;
  uint64_t next_id_ = 1;
  uint64_t since_gc_ = 0;
};

std::mutex model_mu;
Model model;

// Checks that the sectors of one image (a snapshot, or one read) all hold
// values they could have had at one common instant in (start, end): a write
// is in the image whole or not at all, and no later write is in it while an
// earlier one that it overwrote is not. Sector values that are invalid on
// their own are reported by Model::Check and ignored here. Collect with
// Add() under model_mu, then Check().
class PointInTime {
 public:
  PointInTime(uint64_t start, uint64_t end) : start_(start), end_(end) {}

  // REQUIRES: model_mu.
  void Add(uint64_t x, const uint8_t* p) {
    Sector s = Decode(p);
    if (s.kind != Sector::kZero && s.kind != Sector::kData) return;
    scratch_.clear();
    model.Windows(x, s, start_, end_, &scratch_);
    if (scratch_.empty()) return;  // invalid on its own: reported elsewhere
    image_[x] = s;
    if (s.kind == Sector::kData) writes_.insert(s.id);
    if (scratch_.size() == 1 && scratch_[0].first <= start_ && scratch_[0].second + 1 >= end_) return;
    ++constrained_;
    for (auto [lo, hi] : scratch_) {
      events_[lo] += 1;
      events_[hi + 1] -= 1;
    }
    // For the message: the sector that must be seen earliest and the one
    // that must be seen latest.
    uint64_t first = scratch_.front().first, last = scratch_.back().second;
    if (last < earliest_end_.second) earliest_end_ = {x, last};
    if (latest_start_.second == kInf || first > latest_start_.second) latest_start_ = {x, first};
    seen_[x] = s;
  }

  // "" if the image holds whole writes only and some instant satisfies
  // every sector added. REQUIRES: model_mu, the image's hold still on.
  std::string Check() const {
    // A write seen in the image is in it whole: every other sector of it
    // holds it or something that may be newer.
    for (uint64_t w : writes_) {
      const OpRec* op = model.Op(w);
      if (op == nullptr || op->kind != OpKind::kWrite) continue;  // reported by Model::Check
      for (uint64_t x = op->off / kSector; x < (op->off + op->len) / kSector; ++x) {
        auto it = image_.find(x);
        if (it == image_.end()) continue;  // outside the image, or invalid on its own
        if (model.CertainlyOlder(x, it->second, w, start_, end_)) {
          const Sector& v = it->second;
          return "write " + std::to_string(w) + " (" + op->what + ") is in it only in part: sector " +
                 std::to_string(x) + " holds " +
                 (v.kind == Sector::kZero ? std::string("zero") : "write " + std::to_string(v.id)) +
                 ", which completed before that write was issued";
        }
      }
    }
    if (constrained_ == 0) return "";
    int64_t n = 0;
    for (auto [k, d] : events_) {
      n += d;
      if (n == static_cast<int64_t>(constrained_)) return "";
    }
    auto show = [&](std::pair<uint64_t, uint64_t> xk) {
      const Sector& s = seen_.at(xk.first);
      std::string v = s.kind == Sector::kZero ? "zero" : "write " + std::to_string(s.id);
      return "sector " + std::to_string(xk.first) + " (" + v + ")";
    };
    return "no single instant in (t" + std::to_string(start_) + ", t" + std::to_string(end_) + ") fits all " +
           std::to_string(constrained_) + " sectors that changed meanwhile; e.g. " + show(earliest_end_) +
           " only before t" + std::to_string(earliest_end_.second + 1) + ", " + show(latest_start_) +
           " only after t" + std::to_string(latest_start_.second);
  }

 private:
  uint64_t start_, end_;
  uint64_t constrained_ = 0;
  std::map<uint64_t, int64_t> events_;
  std::vector<std::pair<uint64_t, uint64_t>> scratch_;
  std::pair<uint64_t, uint64_t> earliest_end_{0, kInf}, latest_start_{0, kInf};
  std::map<uint64_t, Sector> seen_;
  std::map<uint64_t, Sector> image_;  // every sector with a valid stamp or zero
  std::set<uint64_t> writes_;         // writes seen
};

// Generation writer progress, per volume: writes issued and completed.
std::atomic<uint64_t> gen_issued[2];
std::atomic<uint64_t> gen_completed[2];

// Reads the generation of every slot of volume `vol` from `buf` (the
// volume's bytes from `base`); false (and a failure) if a slot is not one
// whole generation write.
bool ReadGens(const uint8_t* buf, uint64_t base, int vol, std::vector<uint64_t>* gens,
              const std::string& where) {
  gens->clear();
  for (uint64_t k = 0; k < opt.gen_slots; ++k) {
    uint64_t off = opt.SlotOffset(vol, k) - base;
    uint64_t n = opt.slot_bytes / kSector;
    std::optional<uint64_t> gen;
    for (uint64_t i = 0; i < n; ++i) {
      Sector s = Decode(buf + off + i * kSector);
      uint64_t g;
      if (s.kind == Sector::kZero) {
        g = 0;
      } else if (s.kind == Sector::kGen && s.vol == static_cast<uint64_t>(vol) && s.slot == k && s.idx == i) {
        g = s.id;
      } else {
        Fail(where + ": vol" + std::to_string(vol) + " generation slot " + std::to_string(k) + " sector " +
             std::to_string(i) + " is not a generation stamp of this slot (" +
             (s.kind == Sector::kBad ? s.why
                                     : "kind " + std::to_string(s.kind) + " id " + std::to_string(s.id) +
                                           " vol " + std::to_string(s.vol) + " slot " +
                                           std::to_string(s.slot) + " idx " + std::to_string(s.idx)) +
             ")");
        return false;
      }
      if (gen && *gen != g) {
        Fail(where + ": vol" + std::to_string(vol) + " generation slot " + std::to_string(k) +
             " is torn: sector 0 has gen " + std::to_string(*gen) + ", sector " + std::to_string(i) +
             " gen " + std::to_string(g));
        return false;
      }
      gen = g;
    }
    gens->push_back(*gen);
  }
  return true;
}

// Checks a point-in-time image of the generation slots (vol1's may be
// absent), against the writer's progress: at least `lo[v]` and at most
// `hi[v]` writes of volume v.
void CheckGens(const std::vector<uint64_t>& g0, const std::vector<uint64_t>* g1, const uint64_t lo[2],
               const uint64_t hi[2], const std::string& where) {
  std::vector<uint64_t> seq;  // in write order
  for (uint64_t k = 0; k < opt.gen_slots; ++k) {
    seq.push_back(g0[k]);
    if (g1) seq.push_back((*g1)[k]);
  }
  auto show = [&] {
    std::string s;
    for (uint64_t k = 0; k < opt.gen_slots; ++k) {
      // Appended piecewise: GCC 12 at -O3 flags `" " + std::to_string(..)`
      // with a false -Wrestrict.
      s += ' ';
      s += std::to_string(g0[k]);
      if (g1) {
        s += '/';
        s += std::to_string((*g1)[k]);
      }
    }
    return s;
  };
  for (size_t i = 1; i < seq.size(); ++i) {
    if (seq[i] > seq[i - 1] || seq.front() - seq.back() > 1) {
      Fail(where + ": not a point-in-time image: generations by slot (vol0/vol1):" + show());
      return;
    }
  }
  for (int v = 0; v < (g1 ? 2 : 1); ++v) {
    const auto& g = v == 0 ? g0 : *g1;
    uint64_t n = 0;
    for (uint64_t x : g) n += x;
    if (n < lo[v] || n > hi[v]) {
      Fail(where + ": vol" + std::to_string(v) + " image holds " + std::to_string(n) +
           " generation writes; " + std::to_string(lo[v]) + " had completed before and " +
           std::to_string(hi[v]) + " were issued by the end; slots:" + show());
    }
  }
}

// ---- Commands --------------------------------------------------------------------

struct CmdResult {
  int status = -1;  // exit status, or -1
  std::string out, err;
  double seconds = 0;
};

// Runs argv (no shell), capturing stdout and stderr, killing it after
// `timeout` seconds.
CmdResult RunCommand(const std::vector<std::string>& argv, double timeout = 60) {
  CmdResult r;
  auto start = Clock::now();
  int outp[2], errp[2];
  if (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
    r.err = "pipe: " + std::string(std::strerror(errno));
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
  posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(outp[1]);
  close(errp[1]);
  if (rc != 0) {
    close(outp[0]);
    close(errp[0]);
    r.err = "posix_spawn " + argv[0] + ": " + std::strerror(rc);
    return r;
  }
  bool open[2] = {true, true};
  int fds[2] = {outp[0], errp[0]};
  bool killed = false;
  while (open[0] || open[1]) {
    pollfd p[2];
    int n = 0;
    int which[2];
    for (int i = 0; i < 2; ++i) {
      if (open[i]) {
        p[n] = {fds[i], POLLIN, 0};
        which[n++] = i;
      }
    }
    double left = timeout - std::chrono::duration<double>(Clock::now() - start).count();
    if (left <= 0 && !killed) {
      kill(pid, SIGKILL);
      killed = true;
    }
    int got = poll(p, n, left > 0 ? static_cast<int>(left * 1000) + 1 : 1000);
    if (got < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      ssize_t k = read(p[i].fd, buf, sizeof buf);
      if (k <= 0) {
        open[which[i]] = false;
      } else {
        (which[i] == 0 ? r.out : r.err).append(buf, k);
      }
    }
  }
  close(outp[0]);
  close(errp[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (killed) r.err += "\n(killed after " + std::to_string(timeout) + "s)";
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

std::string Join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// `thinsim --socket CTL [--json] ARGS`.
CmdResult Cli(const std::vector<std::string>& args, bool as_json = true) {
  std::vector<std::string> argv = {opt.cli, "--socket", opt.control};
  if (as_json) argv.push_back("--json");
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

// Runs a CLI command that must succeed and print JSON.
std::optional<json> CliJson(const std::vector<std::string>& args) {
  CmdResult r = Cli(args);
  if (r.status != 0) {
    Fail("thinsim " + Join(args) + " failed (exit " + std::to_string(r.status) + "): " + r.err);
    return std::nullopt;
  }
  try {
    return json::parse(r.out);
  } catch (const std::exception& e) {
    Fail("thinsim --json " + Join(args) + " printed no JSON: " + r.out);
    return std::nullopt;
  }
}

// ---- Blocking NBD helpers (control thread and final checks) ----------------------

struct NbdCloser {
  void operator()(nbd_handle* h) const {
    if (h) {
      nbd_shutdown(h, 0);
      nbd_close(h);
    }
  }
};
using Nbd = std::unique_ptr<nbd_handle, NbdCloser>;

std::string Uri(const std::string& exp) { return "nbd+unix:///" + exp + "?socket=" + opt.socket; }

Nbd Connect(const std::string& exp, bool strict = true) {
  Nbd h(nbd_create());
  if (!h) {
    Fail(std::string("nbd_create: ") + nbd_get_error());
    return nullptr;
  }
  nbd_set_handle_name(h.get(), exp.c_str());
  nbd_add_meta_context(h.get(), LIBNBD_CONTEXT_BASE_ALLOCATION);
  if (!strict) nbd_set_strict_mode(h.get(), 0);
  if (nbd_connect_uri(h.get(), Uri(exp).c_str()) == -1) {
    Fail("connect to export '" + exp + "': " + nbd_get_error());
    return nullptr;
  }
  return h;
}

// Reads a whole export; calls fn(offset, bytes, n) per chunk.
bool ReadAll(nbd_handle* h, const std::string& what,
             const std::function<void(uint64_t, const uint8_t*, uint64_t)>& fn) {
  int64_t size = nbd_get_size(h);
  if (size < 0) {
    Fail(what + ": nbd_get_size: " + nbd_get_error());
    return false;
  }
  std::vector<uint8_t> buf(kMiB);
  for (uint64_t off = 0; off < static_cast<uint64_t>(size); off += kMiB) {
    uint64_t n = std::min<uint64_t>(kMiB, size - off);
    if (nbd_pread(h, buf.data(), n, off, 0) == -1) {
      Fail(what + ": read at " + std::to_string(off) + ": " + nbd_get_error());
      return false;
    }
    fn(off, buf.data(), n);
  }
  return true;
}

struct BlockCounts {
  uint64_t mapped = 0;     // ZERO clear
  uint64_t data = 0;       // neither HOLE nor ZERO
  uint64_t hole_only = 0;  // HOLE without ZERO: mapped but shared and unguaranteed
  bool ok = false;
};

BlockCounts CountBlocks(nbd_handle* h, const std::string& what) {
  BlockCounts c;
  int64_t size = nbd_get_size(h);
  uint64_t pos = 0;
  struct Ctx {
    uint64_t* pos;
    BlockCounts* c;
    std::string err;
  } ctx{&pos, &c, ""};
  while (pos < static_cast<uint64_t>(size)) {
    uint64_t before = pos;
    auto cb = [](void* user, const char* meta, uint64_t off, uint32_t* entries, size_t n, int*) -> int {
      auto* x = static_cast<Ctx*>(user);
      if (std::strcmp(meta, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
      if (off != *x->pos) x->err = "extents at " + std::to_string(off) + ", expected " + std::to_string(*x->pos);
      for (size_t i = 0; i + 1 < n; i += 2) {
        uint64_t len = entries[i];
        uint32_t fl = entries[i + 1];
        if (len % opt.block_size != 0 || *x->pos % opt.block_size != 0) {
          x->err = "extent [" + std::to_string(*x->pos) + ", +" + std::to_string(len) + ") is not whole blocks";
        }
        uint64_t blocks = len / opt.block_size;
        if (!(fl & LIBNBD_STATE_ZERO)) x->c->mapped += blocks;
        if (fl == 0) x->c->data += blocks;
        if (fl == LIBNBD_STATE_HOLE) x->c->hole_only += blocks;
        if (fl == LIBNBD_STATE_ZERO) x->err = "extent flagged ZERO without HOLE";
        *x->pos += len;
      }
      return 0;
    };
    uint64_t count = std::min<uint64_t>(size - pos, 1ull << 30);
    if (nbd_block_status(h, count, pos, nbd_extent_callback{cb, &ctx, nullptr}, 0) == -1) {
      Fail(what + ": block status at " + std::to_string(pos) + ": " + nbd_get_error());
      return c;
    }
    if (!ctx.err.empty()) {
      Fail(what + ": block status: " + ctx.err);
      return c;
    }
    if (pos == before) {
      Fail(what + ": block status made no progress at " + std::to_string(pos));
      return c;
    }
  }
  c.ok = true;
  return c;
}

// ---- The I/O event loop -----------------------------------------------------------

struct Conn {
  nbd_handle* h = nullptr;
  std::string name;
  int inflight = 0;
  bool random = false;  // a random-I/O connection
};

enum class Req { kRead, kWrite, kZero, kZeroNoHole, kFastZero, kTrim, kFlush, kStatus, kGen };
const char* ReqName(Req r) {
  static const char* names[] = {"read", "write", "zero", "zero-nohole", "fast-zero", "trim", "flush", "block-status", "gen-write"};
  return names[static_cast<int>(r)];
}

struct Pending {
  Req req;
  Conn* conn;
  uint64_t off = 0, len = 0;
  uint64_t start = 0;
  Clock::time_point issued = Clock::now();
  uint64_t op = 0;  // model op, 0 if none
  int vol = 0;      // gen writes
  std::vector<uint8_t> buf;
  std::vector<std::pair<uint64_t, uint32_t>> extents;  // block status
  uint64_t ext_pos = 0;
  int error = 0;
};

struct Stats {
  uint64_t n[9] = {};
  uint64_t bytes_read = 0, bytes_written = 0, fast_zero_refused = 0;
  uint64_t max_inflight = 0;
  double max_seconds[9] = {}, total_seconds[9] = {};  // request latency, issue to completion
};

class EventLoop {
 public:
  bool Setup() {
    for (int i = 0; i < opt.connections; ++i) {
      if (!Add("vol0", "io" + std::to_string(i), true)) return false;
    }
    if (!Add("vol0", "gen0a", false) || !Add("vol0", "gen0b", false) || !Add("vol1", "gen1", false)) {
      return false;
    }
    if (nbd_can_multi_conn(conns_[0]->h) != 1) {
      Fail("the server does not advertise multi-conn");
      return false;
    }
    return true;
  }

  void Run(double seconds) {
    auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    auto last_report = Clock::now();
    while (true) {
      bool issuing = Clock::now() < deadline && !stop_all;
      if (issuing) {
        std::lock_guard<std::mutex> lock(model_mu);
        for (auto& c : conns_) {
          while (c->random && c->inflight < opt.depth) IssueRandom(c.get());
        }
        if (!gen_busy_) IssueGen();
      }
      uint64_t total = 0;
      for (auto& c : conns_) total += c->inflight;
      stats_.max_inflight = std::max<uint64_t>(stats_.max_inflight, total);
      if (!issuing && total == 0) break;
      if (!PollOnce()) {
        stop_all = true;
        break;
      }
      {
        std::lock_guard<std::mutex> lock(model_mu);
        for (Pending* p : done_) Finish(p);
        done_.clear();
      }
      if (Clock::now() - last_report > std::chrono::seconds(5)) {
        last_report = Clock::now();
        size_t model_ops;
        {
          // The snapshot thread adds ops to the model too.
          std::lock_guard<std::mutex> lock(model_mu);
          model_ops = model.nr_ops();
        }
        Log("io: %llu reads, %llu writes, %llu zeroes, %llu trims, %llu gen writes (gen %llu); model ops %zu",
            (unsigned long long)stats_.n[0], (unsigned long long)stats_.n[1],
            (unsigned long long)(stats_.n[2] + stats_.n[3] + stats_.n[4]), (unsigned long long)stats_.n[5],
            (unsigned long long)stats_.n[8], (unsigned long long)gen_, model_ops);
      }
    }
  }

  // Completes nothing in flight; closes the handles.
  void Close() {
    for (auto& c : conns_) {
      nbd_shutdown(c->h, 0);
      nbd_close(c->h);
    }
    conns_.clear();
  }

  nbd_handle* handle(size_t i) { return conns_[i]->h; }
  const Stats& stats() const { return stats_; }
  uint64_t gen() const { return gen_; }

 private:
  bool Add(const std::string& exp, const std::string& name, bool random) {
    Nbd h = Connect(exp);
    if (!h) return false;
    auto c = std::make_unique<Conn>();
    c->h = h.release();
    c->name = name;
    c->random = random;
    conns_.push_back(std::move(c));
    return true;
  }

  static int OnComplete(void* user, int* error) {
    auto* p = static_cast<Pending*>(user);
    p->error = *error;
    self_->done_.push_back(p);
    return 1;  // retire the command
  }
  static int OnExtent(void* user, const char* meta, uint64_t off, uint32_t* entries, size_t n, int*) {
    auto* p = static_cast<Pending*>(user);
    if (std::strcmp(meta, LIBNBD_CONTEXT_BASE_ALLOCATION) != 0) return 0;
    if (p->extents.empty()) p->ext_pos = off;
    for (size_t i = 0; i + 1 < n; i += 2) p->extents.emplace_back(entries[i], entries[i + 1]);
    return 0;
  }

  uint64_t RandomRange(uint64_t* off, uint64_t max_sectors) {
    uint64_t sectors = opt.random_size / kSector;
    uint64_t bs_sec = opt.block_size / kSector;
    uint64_t r = rng_() % 100, len;
    if (r < 40) len = 1 + rng_() % 8;
    else if (r < 70) len = 1 + rng_() % bs_sec;
    else if (r < 95) len = 1 + rng_() % (4 * bs_sec);
    else len = 1 + rng_() % (16 * bs_sec);
    len = std::min({len, max_sectors, sectors});
    uint64_t first;
    if (rng_() % 2 == 0) {
      // A small hot window, moving now and then, for many overlaps.
      if (++hot_uses_ % 2000 == 0 || hot_base_ == kInf) hot_base_ = rng_() % (sectors / bs_sec) * bs_sec;
      uint64_t window = 4 * bs_sec;
      first = hot_base_ + rng_() % window;
      first = std::min(first, sectors - len);
    } else {
      first = rng_() % (sectors - len + 1);
    }
    *off = first * kSector;
    return len * kSector;
  }

  void IssueRandom(Conn* c) {
    auto p = std::make_unique<Pending>();
    p->conn = c;
    uint64_t r = rng_() % 100;
    p->req = r < 36   ? Req::kRead
             : r < 68 ? Req::kWrite
             : r < 75 ? Req::kZero
             : r < 81 ? Req::kZeroNoHole
             : r < 83 ? Req::kFastZero
             : r < 91 ? Req::kTrim
             : r < 97 ? Req::kStatus
                      : Req::kFlush;
    uint32_t flags = 0;
    if (p->req != Req::kFlush) p->len = RandomRange(&p->off, kMiB / kSector);
    if ((p->req == Req::kWrite || p->req == Req::kZero || p->req == Req::kZeroNoHole) && rng_() % 20 == 0) {
      flags |= LIBNBD_CMD_FLAG_FUA;
    }
    p->start = Tick();
    char what[96];
    std::snprintf(what, sizeof what, "%s [%llu, +%llu) on %s%s", ReqName(p->req), (unsigned long long)p->off,
                  (unsigned long long)p->len, c->name.c_str(), (flags & LIBNBD_CMD_FLAG_FUA) ? " FUA" : "");
    nbd_completion_callback done{OnComplete, p.get(), nullptr};
    int64_t cookie = -1;
    switch (p->req) {
      case Req::kRead:
        p->buf.resize(p->len);
        model.Hold(p->start);
        cookie = nbd_aio_pread(c->h, p->buf.data(), p->len, p->off, done, 0);
        break;
      case Req::kWrite: {
        p->op = model.NewOp(OpKind::kWrite, p->off, p->len, p->start, what);
        p->buf.resize(p->len);
        for (uint64_t i = 0; i < p->len / kSector; ++i) {
          Stamp(p->buf.data() + i * kSector, kDataMagic, p->op, static_cast<uint32_t>(i), 0, 0);
        }
        cookie = nbd_aio_pwrite(c->h, p->buf.data(), p->len, p->off, done, flags);
        break;
      }
      case Req::kZero:
      case Req::kZeroNoHole:
      case Req::kFastZero:
        p->op = model.NewOp(OpKind::kZero, p->off, p->len, p->start, what);
        if (p->req == Req::kZeroNoHole) flags |= LIBNBD_CMD_FLAG_NO_HOLE;
        if (p->req == Req::kFastZero) flags |= LIBNBD_CMD_FLAG_FAST_ZERO;
        cookie = nbd_aio_zero(c->h, p->len, p->off, done, flags);
        break;
      case Req::kTrim: {
        // Only whole blocks are unmapped (and read as zero); partial blocks
        // keep their data.
        uint64_t a = (p->off + opt.block_size - 1) / opt.block_size * opt.block_size;
        uint64_t b = (p->off + p->len) / opt.block_size * opt.block_size;
        if (a < b) p->op = model.NewOp(OpKind::kZero, a, b - a, p->start, what);
        cookie = nbd_aio_trim(c->h, p->len, p->off, done, 0);
        break;
      }
      case Req::kStatus:
        model.Hold(p->start);
        cookie = nbd_aio_block_status(c->h, p->len, p->off, nbd_extent_callback{OnExtent, p.get(), nullptr},
                                      done, 0);
        break;
      case Req::kFlush:
        cookie = nbd_aio_flush(c->h, done, 0);
        break;
      case Req::kGen:
        break;
    }
    ++stats_.n[static_cast<int>(p->req)];
    if (cookie == -1) {
      Fail(std::string("issuing ") + what + ": " + nbd_get_error());
      stop_all = true;
      if (p->req == Req::kRead || p->req == Req::kStatus) model.Release(p->start);
      if (p->op) model.Complete(p->op, Tick(), true);
      c->inflight = opt.depth;  // stop issuing on it
      return;
    }
    ++c->inflight;
    p.release();
  }

  void IssueGen() {
    int vol = pos_ % 2;
    uint64_t slot = pos_ / 2;
    Conn* c = vol == 1 ? conns_[opt.connections + 2].get() : conns_[opt.connections + (slot + gen_) % 2].get();
    auto p = std::make_unique<Pending>();
    p->req = Req::kGen;
    p->conn = c;
    p->vol = vol;
    p->off = opt.SlotOffset(vol, slot);
    p->len = opt.slot_bytes;
    p->buf.resize(p->len);
    for (uint64_t i = 0; i < p->len / kSector; ++i) {
      Stamp(p->buf.data() + i * kSector, kGenMagic, gen_, static_cast<uint32_t>(i), static_cast<uint32_t>(slot),
            vol);
    }
    gen_issued[vol]++;
    int64_t cookie = nbd_aio_pwrite(c->h, p->buf.data(), p->len, p->off,
                                    nbd_completion_callback{OnComplete, p.get(), nullptr}, 0);
    ++stats_.n[static_cast<int>(Req::kGen)];
    if (cookie == -1) {
      Fail(std::string("issuing a generation write: ") + nbd_get_error());
      stop_all = true;
      return;
    }
    ++c->inflight;
    gen_busy_ = true;
    p.release();
  }

  bool PollOnce() {
    std::vector<pollfd> fds;
    for (auto& c : conns_) {
      int fd = nbd_aio_get_fd(c->h);
      if (fd == -1) {
        Fail("connection " + c->name + " is gone: " + nbd_get_error());
        return false;
      }
      unsigned dir = nbd_aio_get_direction(c->h);
      short ev = 0;
      if (dir & LIBNBD_AIO_DIRECTION_READ) ev |= POLLIN;
      if (dir & LIBNBD_AIO_DIRECTION_WRITE) ev |= POLLOUT;
      fds.push_back(pollfd{fd, ev, 0});
    }
    int n = poll(fds.data(), fds.size(), 50);
    if (n < 0 && errno != EINTR) {
      Fail(std::string("poll: ") + std::strerror(errno));
      return false;
    }
    for (size_t i = 0; i < fds.size(); ++i) {
      int rc = 0;
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        rc = nbd_aio_notify_read(conns_[i]->h);
      } else if (fds[i].revents & POLLOUT) {
        rc = nbd_aio_notify_write(conns_[i]->h);
      }
      if (rc == -1) {
        Fail("connection " + conns_[i]->name + " failed: " + nbd_get_error() +
             " (did the server die? see its log)");
        return false;
      }
    }
    return true;
  }

  void Finish(Pending* raw) {
    std::unique_ptr<Pending> p(raw);
    --p->conn->inflight;
    uint64_t end = Tick();
    double secs = std::chrono::duration<double>(Clock::now() - p->issued).count();
    int k = static_cast<int>(p->req);
    stats_.max_seconds[k] = std::max(stats_.max_seconds[k], secs);
    stats_.total_seconds[k] += secs;
    char what[96];
    std::snprintf(what, sizeof what, "%s [%llu, +%llu) on %s", ReqName(p->req), (unsigned long long)p->off,
                  (unsigned long long)p->len, p->conn->name.c_str());
    if (p->req == Req::kFastZero && p->error == ENOTSUP) {
      ++stats_.fast_zero_refused;
      model.Complete(p->op, end, /*failed=*/true);
      return;
    }
    if (p->error != 0) {
      Fail(std::string(what) + " failed: " + std::strerror(p->error));
      if (p->req == Req::kRead || p->req == Req::kStatus) model.Release(p->start);
      if (p->op) model.Complete(p->op, end, true);
      if (p->req == Req::kGen) stop_all = true;
      return;
    }
    switch (p->req) {
      case Req::kRead: {
        stats_.bytes_read += p->len;
        // thinsim reads hold the range lock over all their blocks, so a read
        // is one instant's image too (a thinsim property; NBD does not
        // promise it).
        PointInTime instant(p->start, end);
        for (uint64_t i = 0; i < p->len; i += kSector) {
          std::string err = model.Check((p->off + i) / kSector, p->buf.data() + i, p->start, end);
          if (!err.empty()) Fail(std::string(what) + ": " + err);
          instant.Add((p->off + i) / kSector, p->buf.data() + i);
        }
        std::string torn = instant.Check();
        if (!torn.empty()) Fail(std::string(what) + ": the read is not one instant's image: " + torn);
        model.Release(p->start);
        break;
      }
      case Req::kStatus:
        CheckExtents(*p, end, what);
        model.Release(p->start);
        break;
      case Req::kGen:
        gen_completed[p->vol]++;
        gen_busy_ = false;
        if (++pos_ == 2 * opt.gen_slots) {
          pos_ = 0;
          ++gen_;
        }
        break;
      default:
        if (p->req == Req::kWrite) stats_.bytes_written += p->len;
        if (p->op) model.Complete(p->op, end, false);
        break;
    }
  }

  void CheckExtents(const Pending& p, uint64_t end, const char* what) {
    uint64_t pos = p.ext_pos;
    if (p.extents.empty() || pos != p.off) {
      Fail(std::string(what) + ": block status returned no extents, or not from the start");
      return;
    }
    for (auto [len, fl] : p.extents) {
      if (fl != 0 && fl != LIBNBD_STATE_HOLE && fl != (LIBNBD_STATE_HOLE | LIBNBD_STATE_ZERO)) {
        Fail(std::string(what) + ": unexpected extent flags " + std::to_string(fl));
      }
      uint64_t stop = std::min(pos + len, p.off + p.len);
      if (fl & LIBNBD_STATE_ZERO) {
        for (uint64_t x = pos / kSector; x < (stop + kSector - 1) / kSector; ++x) {
          if (!model.ZeroValid(x, p.start, end)) {
            Fail(std::string(what) + ": extent [" + std::to_string(pos) + ", +" + std::to_string(len) +
                 ") reported HOLE|ZERO but " +
                 model.Describe(x, "(block status: zero)", p.start, end));
            break;
          }
        }
      }
      pos += len;
      if (pos >= p.off + p.len) break;
    }
  }

  static EventLoop* self_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Pending*> done_;
  std::mt19937_64 rng_{opt.seed};
  uint64_t hot_base_ = kInf, hot_uses_ = 0;
  // Generation writer: writing generation gen_ at position pos_ (slot pos_/2
  // of volume pos_%2); one write at a time.
  uint64_t gen_ = 1, pos_ = 0;
  bool gen_busy_ = false;
  Stats stats_;

 public:
  void Bind() { self_ = this; }
};
EventLoop* EventLoop::self_ = nullptr;

// ---- Control thread: snapshots, provisions, deletes --------------------------------

struct Snap {
  std::string name;
  int vol;  // 0: of vol0 (random + gen region), 1: of vol1
  bool read_only;
  uint64_t hash;
  std::string of;  // the volume it was taken of
};

class Controller {
 public:
  void Run() {
    while (!stop_.load() && !stop_all) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30 + rng_() % 150));
      if (stop_.load() || stop_all) break;
      uint64_t r = rng_() % 100;
      if (r < 55) {
        TakeSnapshot();
      } else if (r < 85) {
        Provision();
      } else {
        CheckListing();
      }
      while (static_cast<int>(alive_.size()) > opt.max_snapshots && !stop_all) DeleteOldest();
    }
  }
  void Stop() { stop_ = true; }

  // Final checks need the survivors.
  std::vector<Snap>& alive() { return alive_; }
  bool DeleteSnap(const Snap& s) { return Delete(s); }

  int taken = 0, multi = 0, deleted = 0, provisions = 0, scribbled = 0, nested = 0, listings = 0;
  double max_snapshot_seconds = 0, total_snapshot_seconds = 0;
  double max_delete_seconds = 0;

 private:
  // Reads export `name` (a snapshot of `vol`) and checks it as the image at
  // an instant in [start, end]; returns its hash.
  std::optional<uint64_t> Verify(const std::string& name, int vol, uint64_t start, uint64_t end,
                                 std::vector<uint64_t>* gens) {
    Nbd h = Connect(name);
    if (!h) return std::nullopt;
    uint64_t hash = 0;
    std::vector<uint8_t> gen_bytes;
    uint64_t gen_from = vol == 0 ? opt.gen_base : 0;
    PointInTime instant(start, end);
    bool ok = ReadAll(h.get(), "snapshot " + name, [&](uint64_t off, const uint8_t* p, uint64_t n) {
      hash = HashBytes(hash + off, p, n);
      if (vol == 0 && off < opt.random_size) {
        std::lock_guard<std::mutex> lock(model_mu);
        uint64_t stop = std::min(n, opt.random_size - off);
        for (uint64_t i = 0; i < stop; i += kSector) {
          std::string err = model.Check((off + i) / kSector, p + i, start, end);
          if (!err.empty()) Fail("snapshot " + name + ": " + err);
          instant.Add((off + i) / kSector, p + i);
        }
      }
      for (uint64_t i = 0; i < n; i += kSector) {
        if (off + i >= gen_from) gen_bytes.insert(gen_bytes.end(), p + i, p + i + kSector);
      }
    });
    if (!ok) return std::nullopt;
    std::string torn;
    {
      std::lock_guard<std::mutex> lock(model_mu);
      torn = instant.Check();
    }
    if (!torn.empty()) Fail("snapshot " + name + " is not a point-in-time image of the random region: " + torn);
    if (gens && !ReadGens(gen_bytes.data(), gen_from, vol, gens, "snapshot " + name)) return std::nullopt;
    return hash;
  }

  std::optional<uint64_t> Rehash(const std::string& name) {
    Nbd h = Connect(name);
    if (!h) return std::nullopt;
    uint64_t hash = 0;
    if (!ReadAll(h.get(), "snapshot " + name, [&](uint64_t off, const uint8_t* p, uint64_t n) {
          hash = HashBytes(hash + off, p, n);
        })) {
      return std::nullopt;
    }
    return hash;
  }

  void TakeSnapshot() {
    int n = ++counter_;
    bool both = rng_() % 3 == 0;
    bool ro = rng_() % 3 == 0;
    std::string s0 = "s" + std::to_string(n), s1 = "t" + std::to_string(n);
    uint64_t start, lo[2], hi[2];
    {
      std::lock_guard<std::mutex> lock(model_mu);
      start = Tick();
      model.Hold(start);
      lo[0] = gen_completed[0];
      lo[1] = gen_completed[1];
    }
    std::vector<std::string> args = {"snapshot"};
    if (ro) args.push_back("--read-only");
    if (both) {
      args.push_back("vol0:" + s0);
      args.push_back("vol1:" + s1);
    } else {
      args.push_back("vol0");
      args.push_back(s0);
    }
    CmdResult r = Cli(args, false);
    hi[0] = gen_issued[0];
    hi[1] = gen_issued[1];
    uint64_t end = Tick();
    max_snapshot_seconds = std::max(max_snapshot_seconds, r.seconds);
    total_snapshot_seconds += r.seconds;
    if (r.status != 0) {
      Fail("thinsim " + Join(args) + " failed (exit " + std::to_string(r.status) + ", " +
           std::to_string(r.seconds) + "s): " + r.err);
      std::lock_guard<std::mutex> lock(model_mu);
      model.Release(start);
      return;
    }
    if (opt.verbose) Log("snapshot %s took %.3fs", Join(args).c_str(), r.seconds);
    ++taken;
    if (both) ++multi;
    std::vector<uint64_t> g0, g1;
    auto h0 = Verify(s0, 0, start, end, &g0);
    std::optional<uint64_t> h1;
    if (both) h1 = Verify(s1, 1, start, end, &g1);
    {
      std::lock_guard<std::mutex> lock(model_mu);
      model.Release(start);
    }
    if (h0 && (!both || h1)) CheckGens(g0, both ? &g1 : nullptr, lo, hi, "snapshot " + Join(args));
    if (h0) alive_.push_back(Snap{s0, 0, ro, *h0, "vol0"});
    size_t s0_index = alive_.size() - 1;
    if (both && h1) alive_.push_back(Snap{s1, 1, ro, *h1, "vol1"});
    if (!h0 || (both && !h1)) return;

    if (ro) {
      // Writes to a read-only snapshot are refused (EPERM on the wire).
      Nbd h = Connect(s0, /*strict=*/false);
      if (h) {
        std::vector<uint8_t> b(kSector, 0xab);
        if (nbd_pwrite(h.get(), b.data(), b.size(), 0, 0) != -1) {
          Fail("a write to read-only snapshot " + s0 + " succeeded");
        } else if (nbd_get_errno() != EPERM && nbd_get_errno() != EROFS) {
          Fail("a write to read-only snapshot " + s0 + " failed with " + std::strerror(nbd_get_errno()) +
               ", want EPERM");
        }
      }
    }
    if (rng_() % 4 == 0) Nested(Snap(alive_.back()));
    if (!ro && rng_() % 2 == 0) Scribble(alive_[s0_index]);
  }

  // A snapshot of a quiescent snapshot equals it.
  void Nested(const Snap& parent) {
    std::string name = parent.name + "c";
    CmdResult r = Cli({"snapshot", parent.name, name}, false);
    if (r.status != 0) {
      Fail("thinsim snapshot " + parent.name + " " + name + " failed: " + r.err);
      return;
    }
    auto h = Rehash(name);
    if (!h) return;
    if (*h != parent.hash) Fail("snapshot " + name + " of " + parent.name + " differs from it");
    ++nested;
    alive_.push_back(Snap{name, parent.vol, false, *h, parent.name});
  }

  // Writes stamped data into a writable snapshot of vol0. The stamps are
  // registered as snapshot writes: seeing one in vol0 is a failure.
  void Scribble(Snap& s) {
    Nbd h = Connect(s.name);
    if (!h) return;
    for (int i = 0; i < 8; ++i) {
      uint64_t sectors = 1 + rng_() % (2 * opt.block_size / kSector);
      uint64_t off = rng_() % (opt.random_size / kSector - sectors) * kSector;
      uint64_t id;
      {
        std::lock_guard<std::mutex> lock(model_mu);
        id = model.NewOp(OpKind::kForeign, off, sectors * kSector, Tick(), "written to snapshot " + s.name);
      }
      std::vector<uint8_t> b(sectors * kSector), back(b.size());
      for (uint64_t k = 0; k < sectors; ++k) Stamp(b.data() + k * kSector, kDataMagic, id, k, 0, 0);
      if (nbd_pwrite(h.get(), b.data(), b.size(), off, 0) == -1) {
        Fail("write to snapshot " + s.name + ": " + nbd_get_error());
        return;
      }
      {
        std::lock_guard<std::mutex> lock(model_mu);
        model.Complete(id, Tick(), false);
      }
      if (nbd_pread(h.get(), back.data(), back.size(), off, 0) == -1 || back != b) {
        Fail("snapshot " + s.name + " does not read back what was written to it at " + std::to_string(off));
      }
    }
    h.reset();
    auto hash = Rehash(s.name);
    if (hash) s.hash = *hash;
    ++scribbled;
  }

  void Provision() {
    uint64_t size = opt.vol0_size;
    uint64_t len = 1 + rng_() % (4 * opt.block_size);
    uint64_t off = rng_() % (size - len);
    CmdResult r = Cli({"provision", "vol0", std::to_string(off), std::to_string(len)}, false);
    if (r.status != 0) {
      Fail("thinsim provision vol0 " + std::to_string(off) + " " + std::to_string(len) + " failed: " + r.err);
      return;
    }
    ++provisions;
  }

  void CheckListing() {
    ++listings;
    auto vols = CliJson({"ls"});
    auto pool = CliJson({"status"});
    if (!vols || !pool) return;
    for (const json& v : *vols) {
      uint64_t m = v["mapped_blocks"], e = v["exclusive_blocks"], s = v["shared_blocks"], p = v["provisioned_blocks"];
      if (m != e + s) Fail("ls: " + v.dump() + ": mapped != exclusive + shared");
      if (p > m) Fail("ls: " + v.dump() + ": provisioned > mapped");
    }
    uint64_t used = (*pool)["used_blocks"], fr = (*pool)["free_blocks"], tot = (*pool)["total_blocks"],
             res = (*pool)["reserved_blocks"];
    if (used + fr != tot) Fail("status: used + free != total: " + pool->dump());
    if (res > fr) Fail("status: reserved > free: " + pool->dump());
    if ((*pool)["mode"] != "write") Fail("status: pool mode is not write: " + pool->dump());
  }

  bool Delete(const Snap& s) {
    auto h = Rehash(s.name);
    if (h && *h != s.hash) {
      Fail("snapshot " + s.name + " (of " + s.of + ") changed while it was alive");
    }
    // The server may not have seen our last disconnect yet.
    auto until = Clock::now() + std::chrono::seconds(10);
    while (true) {
      CmdResult r = Cli({"delete", s.name}, false);
      max_delete_seconds = std::max(max_delete_seconds, r.seconds);
      if (r.status == 0) break;
      if (r.err.find("connection") == std::string::npos || Clock::now() > until) {
        Fail("thinsim delete " + s.name + " failed: " + r.err);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ++deleted;
    return true;
  }

  void DeleteOldest() {
    Snap s = alive_.front();
    alive_.erase(alive_.begin());
    Delete(s);
  }

  std::atomic<bool> stop_{false};
  std::mt19937_64 rng_{Mix(opt.seed ^ 0xc0ffee)};
  int counter_ = 0;
  std::vector<Snap> alive_;
};

// ---- Final checks -----------------------------------------------------------------

// Reads vol0 and vol1 and checks them against the quiescent model; returns
// a hash of both.
std::optional<uint64_t> CheckFinalImages(uint64_t* hash_out) {
  uint64_t t = Tick();
  uint64_t hash = 0;
  std::vector<uint64_t> g[2];
  for (int vol = 0; vol < 2; ++vol) {
    std::string name = "vol" + std::to_string(vol);
    Nbd h = Connect(name);
    if (!h) return std::nullopt;
    std::vector<uint8_t> gen_bytes;
    uint64_t gen_from = vol == 0 ? opt.gen_base : 0;
    bool ok = ReadAll(h.get(), name, [&](uint64_t off, const uint8_t* p, uint64_t n) {
      hash = HashBytes(hash + off + vol, p, n);
      std::lock_guard<std::mutex> lock(model_mu);
      for (uint64_t i = 0; i < n; i += kSector) {
        if (off + i >= gen_from) {
          gen_bytes.insert(gen_bytes.end(), p + i, p + i + kSector);
        } else {
          std::string err = model.Check((off + i) / kSector, p + i, t, t);
          if (!err.empty()) Fail("final " + name + ": " + err);
        }
      }
    });
    if (!ok || !ReadGens(gen_bytes.data(), gen_from, vol, &g[vol], "final " + name)) return std::nullopt;
  }
  uint64_t done[2] = {gen_completed[0], gen_completed[1]};
  CheckGens(g[0], &g[1], done, done, "final images");
  *hash_out = hash;
  return hash;
}

uint64_t U(const json& j, const char* k) { return j.at(k).get<uint64_t>(); }

// Counters against block status and each other. With `only_volumes`, no
// snapshot is left: used blocks and the reservation are exact.
void CheckCounters(bool only_volumes) {
  const char* phase = only_volumes ? "counters (snapshots deleted)" : "counters (with snapshots)";
  auto vols = CliJson({"ls"});
  if (!vols) return;
  std::map<std::string, BlockCounts> counts;
  {
    // Walk every export's block status; keep the handles until all walks are
    // done (connections change nothing block status reports).
    std::vector<Nbd> handles;
    for (const json& v : *vols) {
      std::string name = v["name"];
      Nbd h = Connect(name);
      if (!h) return;
      counts[name] = CountBlocks(h.get(), name);
      handles.push_back(std::move(h));
    }
  }
  // Until the server has seen those connections close, `volume` strategy
  // snapshots count as active.
  std::optional<json> after, pool;
  for (int i = 0; i < 250; ++i) {
    after = CliJson({"ls"});
    if (!after) return;
    bool settled = true;
    for (const json& v : *after) {
      std::string name = v["name"];
      uint64_t want = name == "vol0" ? opt.connections + 2 : name == "vol1" ? 1 : 0;
      if (U(v, "connections") != want) settled = false;
    }
    if (settled) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pool = CliJson({"status"});
  auto again = CliJson({"ls"});
  if (!pool || !again) return;
  if (*again != *after) Fail(std::string(phase) + ": ls changed while nothing ran:\n  " + after->dump() + "\n  " + again->dump());
  uint64_t sum_reserved = 0, sum_mapped = 0, sum_exclusive = 0, max_mapped = 0;
  for (const json& v : *after) {
    std::string name = v["name"];
    uint64_t m = U(v, "mapped_blocks"), e = U(v, "exclusive_blocks"), s = U(v, "shared_blocks"),
             p = U(v, "provisioned_blocks"), r = U(v, "reserved_blocks");
    const BlockCounts& c = counts[name];
    std::string where = std::string(phase) + ": " + name + " " + v.dump();
    if (!c.ok) continue;
    if (m != e + s) Fail(where + ": mapped != exclusive + shared");
    if (p > m) Fail(where + ": provisioned > mapped");
    if (m != c.mapped) {
      Fail(where + ": mapped_blocks " + std::to_string(m) + " but block status shows " +
           std::to_string(c.mapped) + " mapped (non-ZERO) blocks");
    }
    if (v["strategy"] == "none") {
      // Unguaranteed shared blocks are reported HOLE (not ZERO), exclusive
      // ones as data.
      if (e != c.data || s != c.hole_only) {
        Fail(where + ": exclusive/shared " + std::to_string(e) + "/" + std::to_string(s) +
             " but block status shows " + std::to_string(c.data) + " data and " +
             std::to_string(c.hole_only) + " HOLE-only blocks");
      }
    }
    if (only_volumes) {
      if (s != 0) Fail(where + ": blocks shared with no snapshot left");
      uint64_t vblocks = U(v, "size") / opt.block_size;
      bool active = v["active"].get<bool>();
      uint64_t want_reserved =
          (opt.strategy == "full" || (opt.strategy == "volume" && active)) ? vblocks - m : 0;
      if (r != want_reserved) {
        Fail(where + ": reserved_blocks " + std::to_string(r) + ", want " + std::to_string(want_reserved) +
             " for strategy " + opt.strategy);
      }
    }
    sum_reserved += r;
    sum_mapped += m;
    sum_exclusive += e;
    max_mapped = std::max(max_mapped, m);
  }
  uint64_t used = U(*pool, "used_blocks"), fr = U(*pool, "free_blocks"), tot = U(*pool, "total_blocks"),
           res = U(*pool, "reserved_blocks");
  std::string where = std::string(phase) + ": status " + pool->dump();
  if (used + fr != tot) Fail(where + ": used + free != total");
  if (res > fr) Fail(where + ": reserved > free");
  if (res != sum_reserved) Fail(where + ": pool reserved != sum of volumes' reserved " + std::to_string(sum_reserved));
  if (used < sum_exclusive || used < max_mapped || used > sum_mapped) {
    Fail(where + ": used_blocks outside [max(sum exclusive " + std::to_string(sum_exclusive) +
         ", max mapped " + std::to_string(max_mapped) + "), sum mapped " + std::to_string(sum_mapped) + "]");
  }
  if (only_volumes && used != sum_mapped) {
    Fail(where + ": used_blocks != the volumes' mapped blocks " + std::to_string(sum_mapped));
  }
  Log("%s: %zu exports, used %llu, free %llu, reserved %llu of %llu blocks", phase, after->size(),
      (unsigned long long)used, (unsigned long long)fr, (unsigned long long)res, (unsigned long long)tot);
}

// ---- main --------------------------------------------------------------------------

void Usage() {
  std::fprintf(stderr,
               "usage: stress_client --socket NBD.SOCK --control CTL.SOCK --cli THINSIM [--seed N]\n"
               "         [--seconds S] [--connections N] [--depth N] [--block-size BYTES]\n"
               "         [--strategy none|provision|volume|full] [--random-size BYTES] [--gen-slots N]\n"
               "         [--slot-layout aligned|half|straddle] [--max-snapshots N] [--verbose]\n"
               "       stress_client --print-sizes [geometry options]   (prints VOL0_SIZE VOL1_SIZE)\n");
}

bool ParseArgs(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stress_client: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--socket") opt.socket = val();
    else if (a == "--control") opt.control = val();
    else if (a == "--cli") opt.cli = val();
    else if (a == "--seed") opt.seed = std::stoull(val());
    else if (a == "--seconds") opt.seconds = std::stod(val());
    else if (a == "--connections") opt.connections = std::stoi(val());
    else if (a == "--depth") opt.depth = std::stoi(val());
    else if (a == "--block-size") opt.block_size = std::stoull(val());
    else if (a == "--strategy") opt.strategy = val();
    else if (a == "--random-size") opt.random_size = std::stoull(val());
    else if (a == "--gen-slots") opt.gen_slots = std::stoull(val());
    else if (a == "--slot-layout") opt.slot_layout = val();
    else if (a == "--max-snapshots") opt.max_snapshots = std::stoi(val());
    else if (a == "--verbose") opt.verbose = true;
    else if (a == "--print-sizes") opt.print_sizes = true;
    else {
      Usage();
      return false;
    }
  }
  if (opt.block_size < 4096 || (opt.block_size & (opt.block_size - 1)) || opt.connections < 1 ||
      opt.depth < 1 || opt.gen_slots < 2 || opt.random_size < 4 * opt.block_size) {
    std::fprintf(stderr, "stress_client: bad geometry\n");
    return false;
  }
  opt.Derive();
  if (opt.print_sizes) return true;
  if (opt.socket.empty() || opt.control.empty() || opt.cli.empty()) {
    Usage();
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (!ParseArgs(argc, argv)) return 2;
  if (opt.print_sizes) {
    std::printf("%llu %llu\n", (unsigned long long)opt.vol0_size, (unsigned long long)opt.vol1_size);
    return 0;
  }
  Log("stress_client: seed %llu, %.1fs, %d connections x %d in flight, block size %llu, strategy %s, "
      "random region %llu bytes, %llu generation slots of %llu bytes (%s), at most %d snapshots",
      (unsigned long long)opt.seed, opt.seconds, opt.connections, opt.depth, (unsigned long long)opt.block_size,
      opt.strategy.c_str(), (unsigned long long)opt.random_size, (unsigned long long)opt.gen_slots,
      (unsigned long long)opt.slot_bytes, opt.slot_layout.c_str(), opt.max_snapshots);
  model.Init(opt.random_size / kSector);

  EventLoop loop;
  loop.Bind();
  if (!loop.Setup()) return 1;
  Controller control;
  std::thread control_thread([&] { control.Run(); });
  loop.Run(opt.seconds);
  control.Stop();
  control_thread.join();
  const Stats& st = loop.stats();
  Log("I/O done: %llu reads (%llu MiB), %llu writes (%llu MiB), %llu zero, %llu zero-nohole, %llu fast-zero "
      "(%llu refused), %llu trims, %llu flushes, %llu block-status, %llu generation writes (%llu generations); "
      "max %llu in flight",
      (unsigned long long)st.n[0], (unsigned long long)(st.bytes_read >> 20), (unsigned long long)st.n[1],
      (unsigned long long)(st.bytes_written >> 20), (unsigned long long)st.n[2], (unsigned long long)st.n[3],
      (unsigned long long)st.n[4], (unsigned long long)st.fast_zero_refused, (unsigned long long)st.n[5],
      (unsigned long long)st.n[6], (unsigned long long)st.n[7], (unsigned long long)st.n[8],
      (unsigned long long)(loop.gen() - 1), (unsigned long long)st.max_inflight);
  {
    std::string lat;
    for (int k = 0; k < 9; ++k) {
      if (st.n[k] == 0) continue;
      char b[96];
      std::snprintf(b, sizeof b, "%s%s %.3f/%.3f", lat.empty() ? "" : ", ", ReqName(static_cast<Req>(k)),
                    st.total_seconds[k] / st.n[k], st.max_seconds[k]);
      lat += b;
    }
    Log("latency mean/max seconds: %s", lat.c_str());
  }
  Log("control: %d snapshots (%d of two volumes, %d of snapshots), %d written into, %d deleted, %d provisions, "
      "%d listings; snapshot command %.3fs max, %.3fs mean; delete %.3fs max",
      control.taken, control.multi, control.nested, control.scribbled, control.deleted, control.provisions,
      control.listings, control.max_snapshot_seconds,
      control.taken ? control.total_snapshot_seconds / control.taken : 0.0, control.max_delete_seconds);

  if (nr_failures == 0 || !stop_all) {
    // Quiescent: flush, then every final check.
    if (nbd_flush(loop.handle(0), 0) == -1) Fail(std::string("final flush: ") + nbd_get_error());
    uint64_t before = 0, after = 0;
    CheckFinalImages(&before);
    for (Snap& s : control.alive()) {
      Nbd c = Connect(s.name);
      if (!c) continue;
      uint64_t hash = 0;
      if (ReadAll(c.get(), s.name, [&](uint64_t off, const uint8_t* p, uint64_t n) { hash = HashBytes(hash + off, p, n); }) &&
          hash != s.hash) {
        Fail("snapshot " + s.name + " (of " + s.of + ") changed while it was alive");
      }
    }
    CheckCounters(false);
    for (const Snap& s : control.alive()) control.DeleteSnap(s);
    control.alive().clear();
    if (nbd_flush(loop.handle(0), 0) == -1) Fail(std::string("final flush: ") + nbd_get_error());
    CheckCounters(true);
    CheckFinalImages(&after);
    if (after != before) Fail("deleting the snapshots changed vol0 or vol1");
  }
  loop.Close();
  int n = nr_failures;
  Log("%s: %d failure(s); seed %llu", n ? "FAILED" : "PASSED", n, (unsigned long long)opt.seed);
  return n ? 1 : 0;
}
