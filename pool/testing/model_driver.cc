#include "pool/testing/model_driver.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <tuple>

#include "pool/volume.h"

namespace thinsim::model {

void ModelDriver::Start(bool persistent) {
  Init(persistent);
  CompareAll();
}

void ModelDriver::Step() {
  desc_.clear();
  failed_ = false;
  const Model before = model_;
  struct Record {  // history_ gets desc_ however the step ends
    ModelDriver* d;
    ~Record() {
      if (!d->desc_.empty()) d->history_.push_back(d->desc_);
    }
  };
  {
    Record record{this};
    RandomStep();
  }
  if (failed_) ExpectUnchanged(before);
  CompareAll();
}

void ModelDriver::Close() {
  if (pool_) OnPoolClosing();
  CloseHeld();
  pool_.reset();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
  dir_.clear();
}

std::string ModelDriver::Summary() const {
  const Acct a = Account(model_);
  std::ostringstream summary;
  for (const auto& [code, n] : outcomes_) summary << " " << ErrorClassName(code) << "=" << n;
  summary << "; guaranteed writes " << guaranteed_writes_ << "; failed steps checked unchanged "
          << failed_steps_checked_ << "; final pool " << a.used << "/" << model_.total << " used, "
          << a.reserved << " reserved, " << model_.vols.size() << " volumes";
  return summary.str();
}

// `persistent`: the pool lives in a directory (journal, blocks freed in a
// transaction reusable only after a commit, reopen).
void ModelDriver::Init(bool persistent) {
  model_.total = 32 + R(65);  // 32-96 blocks: refusals are frequent
  max_total_ = model_.total + 24;
  default_strategy_ = kStrategies[R(4)];
  options_.block_size = kBS;
  options_.size = model_.total * kBS;
  options_.default_strategy = default_strategy_;
  if (persistent) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                       "/thinsim-model-XXXXXX";
    MODEL_ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    options_.dir = dir_ + "/pool";
  }
  Status s = Pool::Open(options_, &pool_);
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  OnPoolOpened(/*reopened=*/false);
}

void ModelDriver::CloseHeld() {
  if (pool_) {
    for (auto& [name, hs] : held_) {
      for (Held& h : hs) pool_->CloseVolume(h.v, h.writable);
    }
  }
  held_.clear();
}

std::string ModelDriver::PickVolume() {
  auto it = model_.vols.begin();
  std::advance(it, static_cast<long>(R(model_.vols.size())));
  return it->first;
}

// A random in-range request: small, multi-block, block-aligned,
// sector-aligned or most of the volume.
std::pair<uint64_t, uint64_t> ModelDriver::PickRange(uint64_t size) {
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

uint64_t ModelDriver::PickVolumeSize() {
  uint64_t size = (4 + R(21)) * kBS;  // 4-24 blocks
  if (Chance(30)) size -= (1 + R(7)) * 512;  // a partial last block
  return size;
}

// Checks an engine status against the expected code and that its message
// holds each of `parts`.
void ModelDriver::ExpectStatus(const Status& s, ErrorCode want, const std::vector<std::string>& parts) {
  MODEL_ASSERT_EQ(s.code(), want) << "expected " << ErrorClassName(want) << ", engine said "
                            << s.ToString();
  ++outcomes_[want];
  ++coverage_[kind_ + " " + std::string(ErrorClassName(want))];
  if (want != ErrorCode::kOk) failed_ = true;
  for (const std::string& p : parts) {
    MODEL_EXPECT_NE(s.message().find(p), std::string::npos) << "'" << s.message() << "' lacks '" << p << "'";
  }
}

ModelDriver::Held* ModelDriver::FindHeldWritable(const std::string& name) {
  auto it = held_.find(name);
  if (it == held_.end()) return nullptr;
  for (Held& h : it->second) {
    if (h.writable) return &h;
  }
  return nullptr;
}

void ModelDriver::DataOp(Op op) {
  // Activation matters for `volume` volumes: favour them.
  const std::string name =
      PickVolumePreferring(25, [](const MVol& v) { return v.strategy != Strategy::kNone; });
  auto [off, len] = PickRange(model_.vols.at(name).size);
  DataOpAt(op, name, off, len, /*probe=*/false);
}

// A write to vblocks the volume guarantees (once the request's connection
// has activated it): it must not fail with NoSpace.
void ModelDriver::GuaranteedWrite() {
  std::vector<std::string> c;
  for (const auto& [name, v] : model_.vols) {
    if (v.read_only) continue;
    bool any_prov = std::any_of(v.prov.begin(), v.prov.end(), [](uint8_t p) { return p != 0; });
    if (v.strategy == Strategy::kFull || v.strategy == Strategy::kVolume ||
        (v.strategy == Strategy::kProvision && any_prov)) {
      c.push_back(name);
    }
  }
  if (c.empty()) return DataOp(Op::kWrite);
  const std::string name = c[R(c.size())];
  const MVol& v = model_.vols.at(name);
  uint64_t off, len;
  if (v.strategy == Strategy::kProvision) {
    // A run of provisioned vblocks.
    std::vector<uint64_t> p;
    for (uint64_t vb = 0; vb < v.prov.size(); ++vb) {
      if (v.prov[vb]) p.push_back(vb);
    }
    uint64_t first = p[R(p.size())], last = first;
    while (last + 1 < v.prov.size() && v.prov[last + 1] && last - first < 3 && Chance(60)) ++last;
    uint64_t lo = first * kBS + (Chance(50) ? R(kBS) : 0);
    if (lo >= v.size) lo = first * kBS;  // a partial last block
    uint64_t hi = std::min(v.size, (last + 1) * kBS - (Chance(50) ? R(kBS) : 0));
    if (hi <= lo) hi = std::min(v.size, lo + 1);
    off = lo;
    len = hi - lo;
  } else {
    std::tie(off, len) = PickRange(v.size);
  }
  DataOpAt(Chance(75) ? Op::kWrite : Op::kZeroNoHole, name, off, len, /*probe=*/true);
}

// One data request, checked against the model. Provision goes by name (the
// control socket: no connection, no activation); the others through a
// writable connection held open, or one opened for the request (which
// activates the volume and may be refused with NoSpace), or, for a
// read-only snapshot, a read-only connection.
void ModelDriver::DataOpAt(Op op, const std::string& name, uint64_t off, uint64_t len, bool probe) {
  const Span sp = SpanOf(off, len);
  static const char* kNames[] = {"write", "trim", "zero-may-trim", "zero-no-hole", "provision",
                                 "fast-zero-may-trim", "fast-zero-no-hole"};
  kind_ = std::string(probe ? "guaranteed-" : "") + kNames[static_cast<int>(op)];
  desc_ = std::string(probe ? "guaranteed " : "") + kNames[static_cast<int>(op)] + " " + name +
          " [" + std::to_string(off) + ", +" + std::to_string(len) + ")";

  Bytes data;
  if (op == Op::kWrite) {
    data.resize(len);
    uint8_t base = static_cast<uint8_t>(R(256));
    for (uint64_t i = 0; i < len; ++i) data[i] = static_cast<uint8_t>(base + i * 13 + (i >> 9));
  }

  // The connection.
  Model pre = model_;
  MVol* pv = &pre.vols.at(name);
  std::shared_ptr<Volume> handle;
  bool temp = false, temp_writable = false;
  if (op != Op::kProvision) {
    if (Held* h = FindHeldWritable(name)) {
      handle = h->v;
      desc_ += " (held connection)";
    } else {
      temp = true;
      temp_writable = !pv->read_only;
      ++pv->conns;
      ErrorCode want = ErrorCode::kOk;
      std::vector<std::string> parts;
      if (temp_writable) {
        ++pv->wconns;
        if (!Fits(pre)) {
          want = ErrorCode::kNoSpace;
          parts.push_back(NeedsMore(Reserved(pre) - Reserved(model_)));
        }
      }
      Status s = pool_->OpenVolume(name, temp_writable, &handle);
      if (want != ErrorCode::kOk) desc_ += " (opening its connection)";
      const std::string kind = kind_;
      kind_ = "open-for-request";
      ExpectStatus(s, want, parts);
      if (!s.ok()) return;
      kind_ = kind;
    }
  }

  // Prediction, phase 1: the blocks the request allocates and the
  // mappings it changes; AllocateBlocks admits it iff then reserved <= free.
  const Acct a0 = Account(pre);
  const Guar g = GuaranteeOf(*pv);
  auto hole = [&](uint64_t vb) { return pv->bid[vb] == 0; };
  auto shared = [&](uint64_t vb) { return !hole(vb) && a0.blocks.at(pv->bid[vb]).owners > 1; };
  Model mid = pre;
  MVol& mv = mid.vols.at(name);
  uint64_t n = 0;
  bool guaranteed = !pv->read_only;
  auto take = [&](uint64_t vb) {
    ++n;
    guaranteed = guaranteed && g.Covers(mv.prov[vb]);
    mv.bid[vb] = mid.next_bid++;  // keeps the provisioned mark
  };
  ErrorCode want = ErrorCode::kOk;
  if (pv->read_only) {
    want = ErrorCode::kReadOnly;
  } else {
    switch (op) {
      case Op::kWrite:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (hole(vb) || shared(vb)) take(vb);
        }
        break;
      case Op::kZeroNoHole:
      case Op::kProvision:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (hole(vb) || shared(vb)) take(vb);
          mv.prov[vb] = 1;
        }
        break;
      case Op::kZeroMayTrim:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (!sp.whole(vb) && shared(vb)) take(vb);
        }
        break;
      case Op::kFastZeroMayTrim:
        for (uint64_t vb = sp.first; vb <= sp.last; ++vb) {
          if (!sp.whole(vb) && !hole(vb)) want = ErrorCode::kUnsupported;
        }
        break;
      case Op::kFastZeroNoHole:
        want = ErrorCode::kUnsupported;  // every block needs zeroing or allocating
        break;
      case Op::kTrim:
        break;
    }
    if (want == ErrorCode::kOk && n > 0 && !Fits(mid)) want = ErrorCode::kNoSpace;
  }
  guaranteed = guaranteed && n > 0 && want != ErrorCode::kUnsupported;
  // The model itself must keep SPEC section 5's promise.
  if (guaranteed) {
    MODEL_EXPECT_EQ(want, ErrorCode::kOk) << "model refuses a write to guaranteed vblocks";
  }
  if (probe) {
    MODEL_EXPECT_TRUE(n == 0 || guaranteed) << "probe picked unguaranteed vblocks";
  }
  // Phase 2: whole blocks that the request unmaps.
  if (want == ErrorCode::kOk &&
      (op == Op::kTrim || op == Op::kZeroMayTrim || op == Op::kFastZeroMayTrim)) {
    for (uint64_t vb = sp.uf; vb < sp.ue; ++vb) {
      mv.bid[vb] = 0;
      mv.prov[vb] = 0;
    }
  }

  // The engine.
  Status s;
  switch (op) {
    case Op::kProvision: s = pool_->Provision(name, off, len); break;
    case Op::kWrite: s = pool_->Write(*handle, data.data(), len, off); break;
    case Op::kTrim: s = pool_->Trim(*handle, len, off); break;
    case Op::kZeroMayTrim: s = pool_->Zero(*handle, len, off, Pool::kMayTrim); break;
    case Op::kZeroNoHole: s = pool_->Zero(*handle, len, off, 0); break;
    case Op::kFastZeroMayTrim:
      s = pool_->Zero(*handle, len, off, Pool::kMayTrim | Pool::kFastZero);
      break;
    case Op::kFastZeroNoHole: s = pool_->Zero(*handle, len, off, Pool::kFastZero); break;
  }
  if (temp) pool_->CloseVolume(handle, temp_writable);
  ReportObserved(op, name, sp, pv->read_only, s);
  if (guaranteed && s.code() == ErrorCode::kNoSpace) {
    ++guaranteed_failures_;
    MODEL_FAIL() << "a request to guaranteed vblocks failed with NoSpace: " << s.ToString();
  }
  std::vector<std::string> parts;
  if (want == ErrorCode::kNoSpace) {
    parts = {"need " + std::to_string(n) + " block", " " + std::to_string(a0.free) + " free"};
  }
  ExpectStatus(s, want, parts);
  if (guaranteed) ++guaranteed_writes_;
  if (want != ErrorCode::kOk) return;

  // The model's effect.
  if (temp) {
    --mv.conns;
    if (temp_writable) --mv.wconns;
  }
  model_ = std::move(mid);
  Bytes& bytes = data_.at(name);
  switch (op) {
    case Op::kWrite:
      std::copy(data.begin(), data.end(), bytes.begin() + static_cast<long>(off));
      break;
    case Op::kTrim:
      for (uint64_t vb = sp.uf; vb < sp.ue; ++vb) {
        std::fill_n(bytes.begin() + static_cast<long>(vb * kBS), kBS, 0);
      }
      break;
    case Op::kZeroMayTrim:
    case Op::kFastZeroMayTrim:
    case Op::kZeroNoHole:
      std::fill_n(bytes.begin() + static_cast<long>(off), len, 0);
      break;
    default:
      break;
  }
}

// What ApplyRange shows the observers (pool_io.cc): nothing for a
// read-only volume or a trim without a whole block (len is never 0 here); a
// trim's whole blocks; every other request's range as it was made.
void ModelDriver::ReportObserved(Op op, const std::string& name, const Span& sp, bool read_only,
                                 const Status& result) {
  if (read_only) return;
  Observed r{name, ChangeRequest::Kind::kZero, sp.off, sp.len, result.code()};
  switch (op) {
    case Op::kWrite: r.kind = ChangeRequest::Kind::kWrite; break;
    case Op::kProvision: r.kind = ChangeRequest::Kind::kProvision; break;
    case Op::kTrim:
      if (sp.uf >= sp.ue) return;
      r.kind = ChangeRequest::Kind::kTrim;
      r.offset = sp.uf * kBS;
      r.length = (sp.ue - sp.uf) * kBS;
      break;
    default: break;  // the zeroes
  }
  OnObserved(r);
}

void ModelDriver::Connect() {
  const std::string name =
      PickVolumePreferring(50, [](const MVol& v) { return v.strategy == Strategy::kVolume; });
  if (held_[name].size() >= kMaxHeldPerVolume) return Disconnect();
  const MVol& cur = model_.vols.at(name);
  const bool writable = cur.read_only ? Chance(30) : Chance(85);
  desc_ = std::string("connect ") + (writable ? "writable " : "read-only ") + name;
  kind_ = writable ? "connect-writable" : "connect-read-only";
  Model pre = model_;
  MVol& pv = pre.vols.at(name);
  ErrorCode want = ErrorCode::kOk;
  std::vector<std::string> parts;
  if (writable && pv.read_only) {
    want = ErrorCode::kReadOnly;
  } else {
    ++pv.conns;
    if (writable) {
      ++pv.wconns;
      if (!Fits(pre)) {
        want = ErrorCode::kNoSpace;
        parts.push_back(NeedsMore(Reserved(pre) - Reserved(model_)));
      }
    }
  }
  std::shared_ptr<Volume> h;
  Status s = pool_->OpenVolume(name, writable, &h);
  ExpectStatus(s, want, parts);
  if (!s.ok()) return;
  held_[name].push_back({h, writable});
  model_ = std::move(pre);
}

void ModelDriver::Disconnect() {
  std::vector<std::pair<std::string, size_t>> all;
  for (const auto& [name, hs] : held_) {
    for (size_t i = 0; i < hs.size(); ++i) all.push_back({name, i});
  }
  if (all.empty()) return Connect();
  auto [name, i] = all[R(all.size())];
  Held h = held_[name][i];
  held_[name].erase(held_[name].begin() + static_cast<long>(i));
  desc_ = std::string("disconnect ") + (h.writable ? "writable " : "read-only ") + name;
  pool_->CloseVolume(h.v, h.writable);  // cannot fail: only lowers reservations
  MVol& mv = model_.vols.at(name);
  --mv.conns;
  if (h.writable) --mv.wconns;
}

void ModelDriver::Activate() {
  const std::string name =
      PickVolumePreferring(60, [](const MVol& v) { return v.strategy == Strategy::kVolume; });
  desc_ = "activate " + name;
  kind_ = "activate";
  Model pre = model_;
  MVol& pv = pre.vols.at(name);
  ErrorCode want = ErrorCode::kOk;
  std::vector<std::string> parts;
  if (pv.read_only) {
    want = ErrorCode::kReadOnly;
  } else {
    pv.pinned = true;
    if (!Fits(pre)) {
      want = ErrorCode::kNoSpace;
      parts.push_back(NeedsMore(Reserved(pre) - Reserved(model_)));
    }
  }
  ExpectStatus(pool_->Activate(name), want, parts);
  if (want == ErrorCode::kOk) model_ = std::move(pre);
}

void ModelDriver::Deactivate() {
  const std::string name = PickVolumePreferring(70, [](const MVol& v) { return v.pinned; });
  desc_ = "deactivate " + name;
  kind_ = "deactivate";
  ExpectStatus(pool_->Deactivate(name), ErrorCode::kOk);
  model_.vols.at(name).pinned = false;
}

void ModelDriver::SetStrategy() {
  const std::string name = PickVolume();
  const Strategy st = PickStrategy();
  desc_ = "set " + name + " reserve=" + std::string(StrategyName(st)) + " (was " +
          std::string(StrategyName(model_.vols.at(name).strategy)) + ")";
  kind_ = "set-strategy";
  Model pre = model_;
  pre.vols.at(name).strategy = st;
  ErrorCode want = ErrorCode::kOk;
  std::vector<std::string> parts;
  if (!Fits(pre)) {
    want = ErrorCode::kNoSpace;
    parts.push_back(NeedsMore(Reserved(pre) - Reserved(model_)));
  }
  ExpectStatus(pool_->SetStrategy(name, st), want, parts);
  if (want == ErrorCode::kOk) model_ = std::move(pre);
}

void ModelDriver::Snapshot() {
  const bool read_only = Chance(25);
  std::vector<SnapshotRequest> reqs;
  size_t n = 1 + (Chance(45) ? R(3) : 0);
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
  if (want == ErrorCode::kOk && model_.vols.size() + n > kMaxVolumes) return Delete();
  desc_ = std::string("snapshot") + (read_only ? " --read-only" : "");
  kind_ = std::string(read_only ? "snapshot-ro" : "snapshot-rw") + (n > 1 ? "-multi" : "");
  for (const auto& r : reqs) desc_ += " " + r.origin + ":" + r.name;
  // Admission, in request order: each snapshot is refused iff with it
  // reserved > free; a refusal undoes the whole call.
  Model pre = model_;
  std::vector<std::string> parts;
  if (want == ErrorCode::kOk) {
    int64_t before = Reserved(pre);
    for (const auto& r : reqs) {
      MVol s = pre.vols.at(r.origin);
      s.id = pre.next_id++;
      s.read_only = read_only;
      s.pinned = false;
      s.wconns = s.conns = 0;
      s.origin = r.origin;
      pre.vols[r.name] = std::move(s);
      Acct a = Account(pre);
      if (a.reserved > a.free) {
        want = ErrorCode::kNoSpace;
        parts = {"snapshot '" + r.name + "' of '" + r.origin + "' " + NeedsMore(a.reserved - before)};
        break;
      }
      before = a.reserved;
    }
  }
  ExpectStatus(pool_->CreateSnapshots(reqs, read_only), want, parts);
  if (want != ErrorCode::kOk) return;
  model_ = std::move(pre);
  for (const auto& r : reqs) data_[r.name] = data_.at(r.origin);
  for (const auto& r : reqs) OnSnapshotCreated(r.origin, r.name);
}

void ModelDriver::Delete() {
  std::string name = PickVolume();
  desc_ = "delete " + name;
  kind_ = "delete";
  const ErrorCode want = model_.vols.at(name).conns > 0 ? ErrorCode::kBusy : ErrorCode::kOk;
  ExpectStatus(pool_->DeleteVolume(name), want);
  if (want != ErrorCode::kOk) return;
  model_.vols.erase(name);
  data_.erase(name);
  held_.erase(name);
  for (auto& [n, v] : model_.vols) {
    if (v.origin == name) v.origin.clear();
  }
  OnVolumeDeleted(name);
}

void ModelDriver::Create() {
  const bool dup = !model_.vols.empty() && Chance(5);
  std::string name = dup ? PickVolume() : NewName("v");
  uint64_t size = PickVolumeSize();
  std::optional<Strategy> st;
  if (Chance(75)) st = PickStrategy();
  const Strategy eff = st.value_or(default_strategy_);
  desc_ = "create " + name + " " + std::to_string(size) + " reserve=" +
          (st ? std::string(StrategyName(*st)) : "(default " + std::string(StrategyName(eff)) + ")");
  kind_ = eff == Strategy::kFull ? "create-full" : "create";
  Model pre = model_;
  ErrorCode want = ErrorCode::kOk;
  std::vector<std::string> parts;
  if (dup) {
    want = ErrorCode::kExists;
  } else {
    MVol v;
    v.id = pre.next_id++;
    v.size = size;
    v.strategy = eff;
    v.bid.assign(BlocksFor(size), 0);
    v.prov.assign(BlocksFor(size), 0);
    pre.vols[name] = std::move(v);
    if (!Fits(pre)) {
      want = ErrorCode::kNoSpace;
      parts = {"volume '" + name + "' (strategy full) " + NeedsMore(BlocksFor(size))};
    }
  }
  ExpectStatus(pool_->CreateVolume(name, size, st), want, parts);
  if (want != ErrorCode::kOk) return;
  model_ = std::move(pre);
  data_[name].assign(size, 0);
  OnVolumeCreated(name, size);
}

void ModelDriver::Resize() {
  const std::string name = PickVolumePreferring(40, [](const MVol& v) {
    return GuaranteeOf(v).all;
  });
  const MVol& mv = model_.vols.at(name);
  uint64_t size = Chance(20) ? mv.size : PickVolumeSize();
  if (Chance(20)) size = mv.size + (1 + R(8)) * 512;  // often inside the same last block
  desc_ = "resize " + name + " " + std::to_string(mv.size) + " -> " + std::to_string(size);
  const bool growing = size > mv.size;
  kind_ = growing ? (GuaranteeOf(mv).all ? "grow-guaranteed" : "grow") : "resize";
  const uint64_t nb = BlocksFor(size), ob = mv.bid.size();
  ErrorCode want = ErrorCode::kOk;
  std::vector<std::string> parts;
  // Growing a fully guaranteed volume reserves its new vblocks.
  if (growing && GuaranteeOf(mv).all && nb > ob) {
    Model t = model_;
    t.vols.at(name).bid.resize(nb, 0);
    t.vols.at(name).prov.resize(nb, 0);
    if (!Fits(t)) {
      want = ErrorCode::kNoSpace;
      parts = {"growing '" + name + "' " + NeedsMore(nb - ob)};
    }
  }
  if (want == ErrorCode::kOk && mv.read_only) want = ErrorCode::kReadOnly;
  if (want == ErrorCode::kOk && size < mv.size && mv.conns > 0) want = ErrorCode::kBusy;
  // Growing zeroes the stale tail of the old last block: in place, or
  // breaking its sharing (a write like any other).
  Model post = model_;
  MVol& pv = post.vols.at(name);
  const Acct a0 = Account(model_);
  if (want == ErrorCode::kOk && growing && mv.size % kBS != 0) {
    uint64_t tail = mv.size / kBS;
    if (mv.bid[tail] != 0 && a0.blocks.at(mv.bid[tail]).owners > 1) {
      pv.bid[tail] = post.next_bid++;
      bool guaranteed = GuaranteeOf(mv).Covers(mv.prov[tail]);
      if (!Fits(post)) {
        want = ErrorCode::kNoSpace;
        parts = {"need 1 block", " " + std::to_string(a0.free) + " free"};
        MODEL_EXPECT_FALSE(guaranteed) << "model refuses zeroing a guaranteed tail";
      }
    }
  }
  ExpectStatus(pool_->ResizeVolume(name, size), want, parts);
  if (want != ErrorCode::kOk) return;
  const uint64_t old_size = mv.size;
  pv.size = size;
  pv.bid.resize(nb, 0);
  pv.prov.resize(nb, 0);
  model_ = std::move(post);
  data_.at(name).resize(size, 0);
  OnVolumeResized(name, old_size, size);
}

void ModelDriver::GrowPool() {
  uint64_t total = model_.total + 1 + R(8);
  desc_ = "grow pool to " + std::to_string(total) + " blocks";
  kind_ = "grow-pool";
  ExpectStatus(pool_->Grow(total * kBS), ErrorCode::kOk);
  model_.total = total;
}

void ModelDriver::CommitOrFlush() {
  const bool flush = Chance(50);
  desc_ = flush ? "flush" : "commit";
  kind_ = desc_;
  ExpectStatus(flush ? pool_->Flush() : pool_->Commit(), ErrorCode::kOk);
}

// Closes every connection (the server stops), then opens the pool again
// from its directory: strategies, pins, mappings, data and every
// reservation must come back.
void ModelDriver::Reopen() {
  desc_ = "reopen";
  kind_ = "reopen";
  for (const auto& [name, hs] : held_) {
    MVol& mv = model_.vols.at(name);
    for (const Held& h : hs) {
      --mv.conns;
      if (h.writable) --mv.wconns;
    }
  }
  OnPoolClosing();
  CloseHeld();
  pool_.reset();
  PoolOptions o = options_;
  o.size = 0;  // reopen at its size
  Status s = Pool::Open(o, &pool_);
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  ++outcomes_[ErrorCode::kOk];
  ++coverage_["reopen OK"];
  OnPoolOpened(/*reopened=*/true);
}

void ModelDriver::BusyCheck() {
  std::string name = PickVolume();
  desc_ = "busy check " + name;
  kind_ = "busy-check";
  std::shared_ptr<Volume> v;
  MODEL_ASSERT_TRUE(pool_->OpenVolume(name, false, &v).ok());
  ExpectStatus(pool_->DeleteVolume(name), ErrorCode::kBusy);
  const MVol& mv = model_.vols.at(name);
  if (!mv.read_only && mv.size > 512) {
    ExpectStatus(pool_->ResizeVolume(name, mv.size - 512), ErrorCode::kBusy);
  }
  if (mv.read_only) {
    std::shared_ptr<Volume> w;
    ExpectStatus(pool_->OpenVolume(name, true, &w), ErrorCode::kReadOnly);
    ExpectStatus(pool_->Activate(name), ErrorCode::kReadOnly);
  }
  ExpectStatus(pool_->SetStrategy("missing", Strategy::kFull), ErrorCode::kNotFound);
  ExpectStatus(pool_->Activate("missing"), ErrorCode::kNotFound);
  pool_->CloseVolume(v, false);
}

void ModelDriver::Capture(EngineState* st) {
  st->pool = pool_->QueryPool();
  st->vols = pool_->QueryVolumes();
  for (const VolumeInfo& vi : st->vols) {
    std::shared_ptr<Volume> v;
    Status s = pool_->OpenVolume(vi.name, false, &v);
    MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
    Bytes& bytes = st->data[vi.name];
    bytes.resize(vi.size);
    s = pool_->Read(*v, bytes.data(), bytes.size(), 0);
    if (s.ok()) s = pool_->Extents(*v, vi.size, 0, &st->extents[vi.name], ExtentsMode::kSpace);
    pool_->CloseVolume(v, false);
    MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  }
}

// Compares the engine with the model and keeps what it saw as the state
// before the next step.
void ModelDriver::CompareAll() {
  Status s = pool_->TEST_CheckCounters();
  MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
  EngineState st;
  Capture(&st);
  const Acct a = Account(model_);
  const PoolInfo& p = st.pool;
  MODEL_ASSERT_EQ(p.total_blocks, model_.total);
  MODEL_ASSERT_EQ(p.used_blocks, static_cast<uint64_t>(a.used));
  MODEL_ASSERT_EQ(p.free_blocks, static_cast<uint64_t>(a.free));
  MODEL_ASSERT_EQ(p.reserved_blocks, static_cast<uint64_t>(a.reserved)) << "pool reserved blocks";
  MODEL_ASSERT_LE(p.reserved_blocks, p.free_blocks) << "invariant reserved <= free";
  MODEL_ASSERT_EQ(p.nr_volumes, model_.vols.size());
  uint64_t attributed = 0;
  for (const auto& [name, r] : a.vol_reserved) attributed += r;
  MODEL_ASSERT_EQ(attributed, static_cast<uint64_t>(a.reserved)) << "model attribution";
  // Creation order.
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [name, mv] : model_.vols) order.push_back({mv.id, name});
  std::sort(order.begin(), order.end());
  MODEL_ASSERT_EQ(st.vols.size(), order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const VolumeInfo& info = st.vols[i];
    MODEL_ASSERT_EQ(info.name, order[i].second) << "volume " << i << " in creation order";
    const std::string& name = info.name;
    const MVol& mv = model_.vols.at(name);
    MODEL_SCOPED_TRACE("volume " + VolumeInfoString(info));
    uint64_t mapped = 0, exclusive = 0, provisioned = 0;
    for (uint64_t vb = 0; vb < mv.bid.size(); ++vb) {
      if (mv.bid[vb] == 0) continue;
      ++mapped;
      exclusive += a.blocks.at(mv.bid[vb]).owners == 1;
      provisioned += mv.prov[vb];
    }
    MODEL_ASSERT_EQ(info.size, mv.size);
    MODEL_ASSERT_EQ(info.strategy, mv.strategy);
    MODEL_ASSERT_EQ(info.active, mv.active());
    MODEL_ASSERT_EQ(info.pinned, mv.pinned);
    MODEL_ASSERT_EQ(info.read_only, mv.read_only);
    MODEL_ASSERT_EQ(info.origin.value_or(""), mv.origin);
    MODEL_ASSERT_EQ(info.connections, mv.conns);
    MODEL_ASSERT_EQ(info.writable_connections, mv.wconns);
    MODEL_ASSERT_EQ(info.mapped_blocks, mapped);
    MODEL_ASSERT_EQ(info.exclusive_blocks, exclusive);
    MODEL_ASSERT_EQ(info.shared_blocks, mapped - exclusive);
    MODEL_ASSERT_EQ(info.provisioned_blocks, provisioned);
    MODEL_ASSERT_EQ(info.reserved_blocks, a.vol_reserved.at(name)) << "reserved blocks charged to " << name;

    const Bytes& got = st.data.at(name);
    const Bytes& want = data_.at(name);
    if (got != want) {
      auto diff = std::mismatch(got.begin(), got.end(), want.begin());
      uint64_t at = static_cast<uint64_t>(diff.first - got.begin());
      MODEL_FAIL() << "data differs at byte " << at << " (vblock " << at / kBS << "): engine "
             << int(*diff.first) << ", model " << int(*diff.second);
    }
    std::vector<Extent> want_ext = ModelExtents(mv, a, 0, mv.size, ExtentsMode::kSpace);
    MODEL_ASSERT_EQ(ExtentsString(st.extents.at(name)), ExtentsString(want_ext)) << "extents of the whole volume";
    // A random sub-range, for the clipping and merging at its ends, in
    // both modes.
    auto [off, len] = PickRange(mv.size);
    std::shared_ptr<Volume> v;
    MODEL_ASSERT_TRUE(pool_->OpenVolume(name, false, &v).ok());
    for (ExtentsMode mode : {ExtentsMode::kAllocation, ExtentsMode::kSpace}) {
      std::vector<Extent> ext;
      s = pool_->Extents(*v, len, off, &ext, mode);
      MODEL_ASSERT_TRUE(s.ok()) << s.ToString();
      MODEL_ASSERT_EQ(ExtentsString(ext), ExtentsString(ModelExtents(mv, a, off, len, mode)))
          << "extents of [" << off << ", +" << len << ") in mode " << static_cast<int>(mode);
    }
    pool_->CloseVolume(v, false);
  }
  last_state_ = std::move(st);
  CompareExtra();
}

// After a step with a failed operation: the engine is exactly as before it.
void ModelDriver::ExpectUnchanged(const Model& model_before) {
  MODEL_ASSERT_TRUE(model_ == model_before) << "the model changed on a failed operation";
  EngineState now;
  Capture(&now);
  std::string diff = DiffStates(last_state_, now);
  MODEL_ASSERT_TRUE(diff.empty()) << "a failed operation changed the engine:\n" << diff;
  ++failed_steps_checked_;
}

void ModelDriver::RandomStep() {
  if (model_.vols.empty() || (model_.vols.size() < 2 && Chance(50))) return Create();
  if (const int extra = ExtraStepPercent(); extra > 0 && Chance(extra)) return ExtraStep();
  uint64_t r = R(100);
  if (r < 20) return DataOp(Op::kWrite);
  if (r < 25) return DataOp(Op::kTrim);
  if (r < 29) return DataOp(Op::kZeroMayTrim);
  if (r < 32) return DataOp(Op::kZeroNoHole);
  if (r < 37) return DataOp(Op::kProvision);
  if (r < 39) return DataOp(Op::kFastZeroMayTrim);
  if (r < 40) return DataOp(Op::kFastZeroNoHole);
  if (r < 45) return GuaranteedWrite();
  if (r < 53) return Snapshot();
  if (r < 61) return SetStrategy();
  if (r < 66) return Activate();
  if (r < 70) return Deactivate();
  if (r < 75) return Connect();
  if (r < 80) return Disconnect();
  if (r < 85) return model_.vols.size() > 1 ? Delete() : DataOp(Op::kTrim);
  if (r < 91) return Resize();
  if (r < 92) return model_.total < max_total_ ? GrowPool() : DataOp(Op::kWrite);
  if (r < 96) return model_.vols.size() < kMaxVolumes ? Create() : Delete();
  if (r < 98) return BusyCheck();
  if (!options_.dir.empty() && Chance(40)) return Reopen();
  return CommitOrFlush();
}

}  // namespace thinsim::model
